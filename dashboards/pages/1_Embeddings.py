"""Images with their ground-truth concepts, zero-shot scores of any concept you type, and a 2-D map."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
import workbench
from workbench import FILTER_COLUMNS

from conceptlab.analysis import (
    dataset_image,
    dataset_table,
    family_of_text,
    filter_mask,
    ground_truth_auroc,
    rank_indices,
    zero_shot_scores,
)

#: the swatch each ShapesWorld colour is drawn with in charts coloured by "color"
COLOR_SWATCHES = {"red": "#d62728", "green": "#2ca02c", "blue": "#1f77b4", "yellow": "#e6c200", "purple": "#9467bd", "orange": "#ff7f0e"}
AUTO = "auto (from the concept)"

selection = workbench.page_setup("Embeddings")
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
    """Plotly Express arguments colouring by ``column``, values in a fixed order, real colours for colour."""
    args = {"color": column, "labels": {"class_name": "class"}}
    if column is None or column == "concept score":
        return args
    order = sorted(attributes[column].unique()) if column == "class_name" else list(attribute_values[column])
    args["category_orders"] = {column: order}
    if column == "color":
        args["color_discrete_map"] = COLOR_SWATCHES
    elif len(order) > 10:
        args["color_discrete_sequence"] = px.colors.qualitative.Dark24
    return args


with st.expander("Filter images by ground truth (applies to the whole page)", expanded=True):
    filters = workbench.attribute_filters(attributes, key="cl.embeddings.filter", columns=columns)
rows = np.flatnonzero(filter_mask(attributes, filters))
st.markdown(f"**{len(rows)}** of {len(dataset)} images match the filters.")
if len(rows) == 0:
    st.warning("No image matches these filters; remove a value to see images again.")
    st.stop()

# -- images -----------------------------------------------------------------------------------
st.header("Images")
shown = rows[: st.slider("Images shown", 8, 96, 24, step=8, key="cl.embeddings.grid_size")]


def caption(i: int, score: float | None = None) -> str:
    if selection.is_shapesworld:
        return workbench.image_caption(i, attributes.iloc[i], score)
    return f"#{i} {attributes['class_name'].iloc[i]}" + (f" · {score:.3f}" if score is not None else "")


workbench.image_grid([dataset_image(dataset, int(i)) for i in shown], [caption(int(i)) for i in shown])

# -- zero-shot concept scores -----------------------------------------------------------------
st.header("Score a concept")
text_col, colour_col, k_col = st.columns([3, 1, 1])
text = text_col.text_input(
    "Concept", key="cl.embeddings.concept", placeholder='type any concept, e.g. "a red shape" or "striped"',
    help="Encoded by the backbone's text encoder; each image scores the cosine similarity with it.",
).strip()
colour_choice = colour_col.selectbox("Colour by", [AUTO, "none", *columns], format_func=label, key="cl.embeddings.score_colour")
k = k_col.slider("Top / bottom images", 4, 24, 8, step=4, key="cl.embeddings.top_k")

scores = None
if not text:
    st.info('Type a concept above, e.g. "a red shape" or "striped", to score every image against it.')
else:
    try:
        scores = zero_shot_scores(embeddings, workbench.concept_vector(backbone, text))
    except ValueError as error:
        st.error(f"Could not encode {text!r}: {error}")
if scores is not None:
    if colour_choice == AUTO:
        colour = family_of_text(text, attribute_values)
    else:
        colour = None if colour_choice == "none" else colour_choice
    frame = chart_frame(rows, score=scores[rows])
    figure = px.histogram(
        frame, x="score", nbins=40, marginal="rug", barmode="overlay", opacity=0.75,
        hover_data=["image", *columns], title=f"Cosine similarity with “{text}” ({len(rows)} images)",
        **colour_args(colour),
    )
    figure.update_layout(height=380, margin={"t": 50, "b": 10})
    st.plotly_chart(figure, key="cl.embeddings.score_chart")
    aurocs = ground_truth_auroc(text, scores[rows], attributes.iloc[rows], attribute_values)
    if aurocs:
        for slot, (concept, value) in zip(st.columns(max(len(aurocs), 4)), aurocs.items()):
            family, name = concept.split(":", 1)
            slot.metric(
                f"AUROC for {name} ({family})", f"{value:.3f}",
                help=f"How well the score separates the images whose {family} is {name} from the rest "
                "(ground truth; 0.5 = chance, 1 = perfect).",
            )
    top, bottom = rank_indices(scores, rows, k)
    for title, picked in (("Highest scores", top), ("Lowest scores", bottom)):
        st.subheader(title)
        workbench.image_grid(
            [dataset_image(dataset, int(i)) for i in picked],
            [caption(int(i), float(scores[i])) for i in picked],
        )

# -- 2-D map ------------------------------------------------------------------------------------
st.header("Map of the embeddings")
options = [*columns, *(["concept score"] if scores is not None else [])]
colour = st.columns([1, 4])[0].selectbox(
    "Colour by", options, index=options.index("class_name"), format_func=label, key="cl.embeddings.map_colour"
)
coords, variance = workbench.load_map(key, embeddings)
extra = {"PC1": coords[rows, 0], "PC2": coords[rows, 1]}
if colour == "concept score":
    extra["concept score"] = scores[rows]
figure = px.scatter(
    chart_frame(rows, **extra), x="PC1", y="PC2", hover_data=["image", *columns],
    title=f"PCA of the L2-normalised embeddings (PC1 {variance[0]:.1%}, PC2 {variance[-1]:.1%} of the variance)",
    **colour_args(colour),
)
figure.update_traces(marker={"size": 7, "opacity": 0.8})
figure.update_layout(height=560, margin={"t": 50, "b": 10})
st.plotly_chart(figure, key="cl.embeddings.map_chart")
