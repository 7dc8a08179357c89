"""Images with their ground-truth concepts, zero-shot scores of any concept you type (graded against compound ground truth
such as "red AND circle"), and a 2-D map (PCA or UMAP) where a click shows the image."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
import workbench
from workbench import FILTER_COLUMNS

from conceptlab import palette
from conceptlab.analysis import (
    compound_auroc,
    dataset_image,
    dataset_table,
    default_expression,
    filter_mask,
    ground_truth_auroc,
    parse_concept_expression,
    rank_indices,
    zero_shot_scores,
)
from conceptlab.backbones import check_concept_texts

AUTO = "auto (the concept's ground truth)"
MATCH_COLUMN = "ground truth"
MAP_METHODS = ("PCA", "UMAP")
PICKED = "cl.embeddings_picked"  # the image clicked on the map (a plain key: it survives page switches)

selection = workbench.page_setup("Embeddings")
# typed text, filters and choices survive a switch to another page and back
workbench.remember("cl.embeddings.", exclude=("cl.embeddings.score_chart", "cl.embeddings.map_chart"))
backbone = workbench.load_backbone(selection.backbone)
dataset = workbench.load_dataset(selection)
embeddings, key = workbench.load_embeddings(backbone, dataset)
attributes, attribute_values = dataset_table(dataset)
columns = list(FILTER_COLUMNS) if selection.is_shapesworld else ["class_name", *list(attribute_values)[:6]]
st.caption(
    f"{selection.dataset_label} through `{backbone.spec}` · {embeddings.shape[0]} × {embeddings.shape[1]} "
    f"embeddings · store key `{key[:16]}`"
)


def chart_frame(rows: np.ndarray, **extra) -> pd.DataFrame:
    frame = attributes.iloc[rows][columns].copy()
    frame.insert(0, "image", rows)
    for name, values in extra.items():
        frame[name] = values
    return frame


def label(column: str) -> str:
    return "class" if column == "class_name" else column


def colour_args(column: str | None) -> dict:
    """Plotly Express arguments colouring by ``column`` with the palette's colours: a colour name in its
    own colour, every other category a distinct colour-blind-safe one, a score on Viridis."""
    args = {"color": column, "labels": {"class_name": "class"}}
    if column is None:
        return args
    if column == "concept score":
        return {**args, "color_continuous_scale": palette.SEQUENTIAL}
    if column == MATCH_COLUMN:
        order = ["matches", "does not match"]
        return {**args, "category_orders": {column: order}, "color_discrete_map": {"matches": palette.MATCH, "does not match": palette.OTHER}}
    order = sorted(attributes[column].unique()) if column == "class_name" else list(attribute_values[column])
    return {**args, "category_orders": {column: order}, "color_discrete_map": palette.category_colors(order, named=column == "color")}


def caption(i: int, score: float | None = None) -> str:
    if selection.is_shapesworld:
        return workbench.image_caption(i, attributes.iloc[i], score)
    return f"#{i} {attributes['class_name'].iloc[i]}" + (f" · {score:+.3f}" if score is not None else "")


# a filter value the data no longer has (another dataset chosen since) is dropped, not an error
for column in columns:
    kept = st.session_state.get(f"cl.embeddings.filter.{column}")
    if kept:
        st.session_state[f"cl.embeddings.filter.{column}"] = [v for v in kept if v in set(attributes[column].astype(str))]
with st.expander("Filter images by ground truth (applies to the whole page)", expanded=True):
    filters = workbench.attribute_filters(attributes, key="cl.embeddings.filter", columns=columns)
rows = np.flatnonzero(filter_mask(attributes, filters))
st.markdown(f"**{len(rows)}** of {len(dataset)} images match the filters.")
if len(rows) == 0:
    chosen = "; ".join(f"{label(c)} ∈ {{{', '.join(v)}}}" for c, v in filters.items() if v)
    st.warning(f"No image matches {chosen}. Remove a value above to see images again; your concept and choices are kept.",
               icon=":material/filter_alt_off:")

# -- images -----------------------------------------------------------------------------------
st.header("Images")
shown = rows[: st.slider("Images shown", 8, 96, 24, step=8, key="cl.embeddings.grid_size")]
if len(shown):
    workbench.image_grid([dataset_image(dataset, int(i)) for i in shown], [caption(int(i)) for i in shown])

# -- zero-shot concept scores -----------------------------------------------------------------
st.header("Score a concept")
text_col, truth_col, colour_col, k_col = st.columns([3, 3, 2, 1])
text = text_col.text_input(
    "Concept", key="cl.embeddings.concept", placeholder='type any concept, e.g. "a red shape" or "striped"',
    help="Encoded by the backbone's text encoder; each image scores the cosine similarity with it.",
).strip()
suggested = default_expression(text, attribute_values) if text else ""
truth_text = truth_col.text_input(
    "Ground truth to grade against", key="cl.embeddings.truth", placeholder=suggested or "e.g. red AND circle, red OR blue, NOT striped",
    help="Values of the ground-truth columns with AND, OR, NOT and parentheses (family:value when a value is ambiguous). "
    "Empty: the values the concept names, e.g. “a red circle” → red AND circle.",
).strip() or suggested
colour_choice = colour_col.selectbox("Colour by", [AUTO, "none", *columns], format_func=label, key="cl.embeddings.score_colour")
k = k_col.slider("Top / bottom", 4, 24, 8, step=4, key="cl.embeddings.top_k")

scores = expression = None
if not text:
    st.info('Type a concept above, e.g. "a red shape" or "striped", to score every image against it.')
else:
    try:
        for problem in check_concept_texts(backbone, [text])[0].problems:
            st.warning(f"“{text}”: {problem}.", icon=":material/content_cut:")
    except (AttributeError, TypeError, ValueError):  # a backbone without a readable tokenizer: nothing to check
        pass
    try:
        scores = zero_shot_scores(embeddings, workbench.concept_vector(backbone, text))
    except ValueError as error:
        st.error(f"Could not encode {text!r}: {error}")
    if truth_text:
        try:
            expression = parse_concept_expression(truth_text, attribute_values)
        except ValueError as error:
            st.error(f"Ground truth “{truth_text}”: {error}", icon=":material/error:")
if scores is not None and len(rows) == 0:
    st.info("The concept is scored, but no image matches the filters: remove a filter value to see the scores.")
elif scores is not None:
    truth_mask = expression.mask(attributes) if expression is not None else None
    if colour_choice == AUTO:
        colour = MATCH_COLUMN if truth_mask is not None else None
    else:
        colour = None if colour_choice == "none" else colour_choice
    extra = {"score": scores[rows]}
    if truth_mask is not None:
        extra[MATCH_COLUMN] = np.where(truth_mask[rows], "matches", "does not match")
    frame = chart_frame(rows, **extra)
    hover = {"image": True, "score": ":.3f", **{c: True for c in columns}}
    figure = px.histogram(
        frame, x="score", nbins=40, marginal="rug", barmode="overlay", opacity=0.75, hover_data=hover,
        title=f"Cosine similarity with “{text}” ({len(rows)} images)" + (f", coloured by whether an image is {expression}" if colour == MATCH_COLUMN else ""),
        **colour_args(colour),
    )
    figure.update_layout(height=400, margin={"t": 90, "b": 10}, title={"x": 0, "y": 0.98, "yanchor": "top"},
                         legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom", "title": {"text": ""}})
    st.plotly_chart(figure, key="cl.embeddings.score_chart")
    metrics = []
    if expression is not None:
        graded = compound_auroc(scores[rows], expression, attributes.iloc[rows])
        value = "undefined" if np.isnan(graded["auroc"]) else f"{graded['auroc']:.3f}"
        metrics.append((f"AUROC for {expression}", value, f"How well the score separates the {graded['positives']} images where "
                        f"{expression} holds from the other {graded['negatives']} (ground truth; 0.5 = chance, 1 = perfect)."
                        + (" Undefined: every image is on one side." if value == "undefined" else "")))
    for concept, auroc in ground_truth_auroc(text, scores[rows], attributes.iloc[rows], attribute_values).items():
        family, name = concept.split(":", 1)
        if expression is None or str(expression) != name:
            metrics.append((f"AUROC for {name} ({family})", f"{auroc:.3f}", f"How well the score separates the images whose {family} "
                            f"is {name} from the rest (ground truth; 0.5 = chance, 1 = perfect)."))
    for slot, (title, value, help_text) in zip(st.columns(max(len(metrics), 4)), metrics):
        slot.metric(title, value, help=help_text)
    top, bottom = rank_indices(scores, rows, k)
    for title, picked in (("Highest scores", top), ("Lowest scores", bottom)):
        st.subheader(title)
        workbench.image_grid([dataset_image(dataset, int(i)) for i in picked], [caption(int(i), float(scores[i])) for i in picked])

# -- 2-D map ------------------------------------------------------------------------------------
st.header("Map of the embeddings")
if len(rows) == 0:
    st.info("No image matches the filters, so the map is empty.")
    st.stop()
has_truth = scores is not None and expression is not None
options = [*columns, *(["concept score"] if scores is not None else []), *([MATCH_COLUMN] if has_truth else [])]
method_col, colour_col, _ = st.columns([1, 1, 3])
method = method_col.radio("Projection", MAP_METHODS, horizontal=True, key="cl.embeddings.map_method",
                          help="PCA keeps global distances (the two directions of largest variance); UMAP keeps neighbourhoods "
                          "(clusters) and distorts distances between them.")
if st.session_state.get("cl.embeddings.map_colour") not in options:
    st.session_state["cl.embeddings.map_colour"] = "class_name"
colour = colour_col.selectbox("Colour by", options, format_func=label, key="cl.embeddings.map_colour")
try:
    coords, variance = workbench.load_map(key, embeddings, method)
except ImportError as error:
    st.error(f"{error}. Showing PCA instead.")
    method = "PCA"
    coords, variance = workbench.load_map(key, embeddings, method)
x_name, y_name = ("PC1", "PC2") if method == "PCA" else ("UMAP 1", "UMAP 2")
extra = {x_name: coords[rows, 0], y_name: coords[rows, 1]}
if scores is not None:
    extra["concept score"] = scores[rows]
if has_truth:
    extra[MATCH_COLUMN] = np.where(expression.mask(attributes)[rows], "matches", "does not match")
title = (f"PCA of the L2-normalised embeddings (PC1 {variance[0]:.1%}, PC2 {variance[-1]:.1%} of the variance)" if method == "PCA"
         else "UMAP of the L2-normalised embeddings (cosine neighbourhoods; distances between clusters mean little)")
hover = {"image": True, x_name: ":.2f", y_name: ":.2f", **{c: True for c in columns}, **({"concept score": ":.3f"} if scores is not None else {})}
figure = px.scatter(chart_frame(rows, **extra), x=x_name, y=y_name, hover_data=hover, custom_data=["image"], title=title, **colour_args(colour))
figure.update_traces(marker={"size": 7, "opacity": 0.85})
figure.update_layout(height=580, margin={"t": 60, "b": 10}, title={"x": 0, "y": 0.98, "yanchor": "top"}, clickmode="event+select",
                     legend={"title": {"text": label(colour)}})
chart_col, side_col = st.columns([4, 1])
with chart_col:
    event = st.plotly_chart(figure, key="cl.embeddings.map_chart", on_select="rerun", selection_mode="points")
points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else getattr(getattr(event, "selection", None), "points", [])
if points:
    data = points[-1].get("customdata")
    if data is not None:
        st.session_state[PICKED] = int(data[0] if isinstance(data, (list, tuple)) else data)
with side_col:
    picked = st.session_state.get(PICKED)
    if picked is None or picked >= len(dataset):
        st.caption("Click a point (or drag a box) to see its image here.")
    else:
        st.image(dataset_image(dataset, picked).resize((192, 192)), caption=caption(picked, None if scores is None else float(scores[picked])))
        st.caption(f"{x_name} {coords[picked, 0]:.2f}, {y_name} {coords[picked, 1]:.2f}")
