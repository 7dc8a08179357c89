"""Train a concept bottleneck model (PCBM / PCBM-h), read its weights, explain and intervene on an image, prune spurious concepts."""

import sys
from pathlib import Path

DASHBOARDS = str(Path(__file__).resolve().parents[1])  # for `import lib`
if DASHBOARDS not in sys.path:
    sys.path.insert(0, DASHBOARDS)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

import lib  # noqa: E402
from lib import cbm  # noqa: E402
from conceptlab.cbm import figures  # noqa: E402
from conceptlab.cbm.editing import DEFAULT_MIN_SHIFT, editing_study, suggest_from_shift  # noqa: E402

LAM_SCALES = [0.2, 0.5, 1.0, 2.0, 5.0]
N_SLIDERS = 5

selection = lib.page_setup("Concept bottleneck")
backbone = lib.load_backbone(selection.backbone)
TRAIN_SIZE, EVAL_SIZE = cbm.page_sizes()
st.markdown(
    "A **post-hoc concept bottleneck model** (PCBM) predicts a class from named concept scores "
    "(“a red shape”, “a circle”, “a shape on a white background”, … 25 text concepts through the backbone's text "
    "encoder) with a sparse linear head, so every prediction is a sum of concept contributions. "
    "**PCBM-h** adds a residual on the raw embedding. The model is trained on the ShapesWorld "
    "*train* split, where each class sits on its usual background 90 % of the time; the *shifted* "
    "split never shows a class on its usual background."
)

# -- 1. the model ---------------------------------------------------------------------------------
st.header("Model")
saved = cbm.saved_models()
choices = [f"Train {name}" for name in cbm.METHODS] + [f"Saved: {m.name}" for m in saved]
source_col, settings_col = st.columns([2, 3])
source = source_col.selectbox(
    "Model", choices, key="cl.cbm.source",
    help=f"Train a new model on this backbone, or open one saved under `{cbm.models_root()}`.",
)
with settings_col.expander("Training data and λ", expanded=False):
    size_cols = st.columns(3)
    train_size = size_cols[0].number_input("Train images", 100, 20000, TRAIN_SIZE, step=500, key="cl.cbm.train_size")
    eval_size = size_cols[1].number_input("Val / shifted images", 50, 5000, EVAL_SIZE, step=100, key="cl.cbm.eval_size")
    lam_scale = size_cols[2].select_slider(
        "λ scale", LAM_SCALES, value=2.0, key="cl.cbm.lam_scale",
        help="PCBM's λ = scale / (concepts × classes); larger is sparser. 2 is PCBM's published setting.",
    )
    st.caption(f"Seed {selection.seed} (the sidebar's). Splits are embedded once and kept in the store.")

train = cbm.load_split(backbone, "train", train_size, selection.seed)
val = cbm.load_split(backbone, "val", eval_size, selection.seed)
shifted = cbm.load_split(backbone, "shifted", eval_size, selection.seed)

if source.startswith("Train "):
    method = source.removeprefix("Train ")
    model = cbm.train_model(method, backbone, train, lam_scale)
    model_id = f"{method}:{backbone.fingerprint}:{train.key}:{lam_scale}"
    model_label = f"{method} trained on {len(train.labels)} train images (λ scale {lam_scale})"
else:
    entry = saved[choices.index(source) - len(cbm.METHODS)]
    try:
        model = cbm.load_saved_model(entry)
    except (ValueError, FileNotFoundError, TypeError) as error:
        st.error(f"Could not open the saved model at `{entry.path}`: {error}")
        st.stop()
    if model.bank.dim != backbone.dim:
        st.error(
            f"The saved model `{entry.name}` works on {model.bank.dim}-d embeddings, but `{backbone.spec}` gives "
            f"{backbone.dim}-d ones. Pick the backbone it was trained on (its concepts live in `{model.bank.space}`)."
        )
        st.stop()
    model_id = f"saved:{entry.path}:{entry.mtime}"
    model_label = f"saved model `{entry.name}` ({entry.model_class}, {entry.edits} edit(s)) from `{entry.path}`"
    if not model.bank.space.startswith(backbone.spec):
        st.warning(f"This model's concepts were built for `{model.bank.space}`, not `{backbone.spec}`; its scores may mean little here.")

accuracy = {name: float(np.mean(model.predict(split.embeddings) == split.labels)) for name, split in (("val", val), ("shifted", shifted))}
weights = model.weights_frame()
nonzero = int((weights.abs() > 1e-5).to_numpy().sum())
st.caption(model_label)
metric_cols = st.columns(4)
metric_cols[0].metric("Accuracy on val", f"{accuracy['val']:.3f}", help=f"{len(val.labels)} val images (backgrounds as in training)")
metric_cols[1].metric("Accuracy on shifted", f"{accuracy['shifted']:.3f}", help=f"{len(shifted.labels)} shifted images (no class on its usual background)")
metric_cols[2].metric("Non-zero weights", f"{nonzero} / {weights.size}")
metric_cols[3].metric("Concepts used", f"{int((weights.abs() > 1e-5).any(axis=0).sum())} / {weights.shape[1]}")

# -- 2. weights -----------------------------------------------------------------------------------
st.header("Concept weights")
st.plotly_chart(figures.weight_heatmap(model), key="cl.cbm.weights")

# -- 3. explain one image -------------------------------------------------------------------------
st.header("Explain an image")
dataset = lib.load_dataset(selection)
embeddings, _ = lib.load_embeddings(backbone, dataset)
index = int(
    st.number_input(
        f"Image of {selection.dataset_label} (0 – {len(dataset) - 1})", 0, len(dataset) - 1, 0, key="cl.cbm.image",
        help="The sidebar chooses the split; the shifted split shows where the model goes wrong.",
    )
)
x = embeddings[index : index + 1]
row = dataset.attributes.iloc[index]
explanation = model.explain(x)
proba = model.predict_proba(x)[0]
predicted = explanation.attrs["predicted"]
image_col, chart_col = st.columns([1, 3])
with image_col:
    st.image(dataset.image(index).resize((192, 192)), caption=lib.image_caption(index, row))
    verdict = "correct" if predicted == row["class_name"] else f"wrong, the true class is **{row['class_name']}**"
    st.markdown(f"Prediction: **{predicted}** ({proba.max():.0%}) — {verdict}")
with chart_col:
    st.plotly_chart(figures.contribution_bars(explanation, top=12), key="cl.cbm.contributions")

# -- 4. intervene -----------------------------------------------------------------------------------
st.header("Intervene on concepts")
scores = model.transform(x)[0]
low, high = cbm.score_ranges(model.transform(train.embeddings))
concept_rows = explanation[~explanation["concept"].str.startswith("(")]
default_concepts = list(concept_rows["concept"].head(N_SLIDERS))
names = list(model.concept_names_)
picked = st.multiselect(
    "Concepts to set", names, default=default_concepts, key=f"cl.cbm.iv_concepts.{index}",
    help="By default the image's largest contributions. Each slider spans the concept's range of scores on the train split.",
)
values = {}
slider_cols = st.columns(max(1, min(len(picked), N_SLIDERS)))
for position, name in enumerate(picked):
    j = names.index(name)
    column = slider_cols[position % len(slider_cols)]
    values[name] = column.slider(
        f"`{name}`", float(low[j]), float(high[j]), float(np.clip(scores[j], low[j], high[j])),
        key=f"cl.cbm.iv.{index}.{name}", format="%.2f",
    )
if st.button("Reset the sliders", key="cl.cbm.iv_reset"):
    for name in names:
        st.session_state.pop(f"cl.cbm.iv.{index}.{name}", None)
    st.rerun()
result = model.intervene(x, set=values) if values else None
new_proba = result.proba[0] if result is not None else proba
new_class = model.class_names_[int(np.argmax(new_proba))]
changed = {name: (float(scores[names.index(name)]), value) for name, value in values.items() if abs(value - scores[names.index(name)]) > 1e-6}
if changed:
    moved = "; ".join(f"`{n}` {a:.2f} → {b:.2f}" for n, (a, b) in changed.items())
    arrow = "stays" if new_class == predicted else "moves to"
    st.markdown(f"With {moved}, the prediction {arrow} **{new_class}** ({new_proba.max():.0%}).")
else:
    st.caption("Move a slider to see the prediction change.")
top_classes = list(pd.Series(np.maximum(proba, new_proba), index=model.class_names_).sort_values(ascending=False).index[:6])
probability = go.Figure(
    [
        go.Bar(name="before", x=top_classes, y=[proba[model.class_names_.index(c)] for c in top_classes], marker_color=figures.BEFORE),
        go.Bar(name="after intervention", x=top_classes, y=[new_proba[model.class_names_.index(c)] for c in top_classes], marker_color=figures.AFTER),
    ]
)
probability.update_layout(
    title={"text": "Class probabilities", "x": 0, "font": {"size": 15}}, barmode="group", height=300, template="plotly_white",
    margin={"t": 50, "b": 10, "l": 10, "r": 10}, yaxis={"range": [0, 1.05], "title": {"text": "probability"}},
    legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
)
st.plotly_chart(probability, key="cl.cbm.intervention_chart")

# -- 5. edit ----------------------------------------------------------------------------------------
st.header("Prune spurious concepts")
shift = cbm.shift_table(model, model_id, train, shifted)
suggested = suggest_from_shift(shift, top=4)
st.markdown(
    f"Suggested: the concepts that lost at least {DEFAULT_MIN_SHIFT:.0%} of their evidence (weight × correlation with the "
    "labels) between the train and the shifted split"
    + (f": {', '.join(f'`{n}`' for n in suggested)}." if suggested else " — none on this model.")
)
prune = st.multiselect("Concepts to prune (their weights are set to 0 for every class)", names, default=suggested, key=f"cl.cbm.prune.{model_id}")
renormalize = st.checkbox(
    "Prune + normalize", key="cl.cbm.renormalize",
    help="FACT's variant: rescale each class's weights so their L1 norm is what it was before pruning.",
)
edited = model
if prune:
    study = editing_study(
        model, {"val": (val.embeddings, val.labels), "shifted": (shifted.embeddings, shifted.labels)},
        concepts=prune, renormalize=renormalize,
    )
    edited = study.model
    after, gain = ("after_normalized", "gain_normalized") if renormalize else ("after", "gain")
    cols = st.columns(4)
    for column, split in zip(cols, ("val", "shifted")):
        column.metric(
            f"{split} accuracy after pruning", f"{study.accuracy.loc[split, after]:.3f}",
            delta=f"{study.accuracy.loc[split, gain]:+.3f}", help=f"before: {study.accuracy.loc[split, 'before']:.3f}",
        )
    st.plotly_chart(figures.editing_bars(study.accuracy, title=f"Accuracy before and after pruning {len(prune)} concept(s)"), key="cl.cbm.editing_chart")
else:
    st.info("Choose concepts to prune to see the accuracy change on val and shifted.")
with st.expander("How each concept fared under the shift"):
    st.dataframe(
        shift.reset_index()[["concept", "weight", "share", "evidence_train", "evidence_shifted", "shift"]],
        hide_index=True,
        column_config={
            "weight": st.column_config.NumberColumn("weight (L1)", format="%.3f"),
            "share": st.column_config.NumberColumn("share of evidence", format="percent"),
            "evidence_train": st.column_config.NumberColumn("evidence train", format="%.3f"),
            "evidence_shifted": st.column_config.NumberColumn("evidence shifted", format="%.3f"),
            "shift": st.column_config.NumberColumn("evidence lost", format="percent"),
        },
    )

st.subheader("Save")
default_name = f"{type(model).__name__.lower()}-{'edited' if prune else 'trained'}-seed{selection.seed}"
name_col, overwrite_col, button_col = st.columns([3, 1, 1], vertical_alignment="bottom")
name = name_col.text_input("Folder name", value=default_name, key="cl.cbm.save_name")
overwrite = overwrite_col.checkbox("overwrite", key="cl.cbm.overwrite")
if button_col.button("Save the edited model" if prune else "Save the model", key="cl.cbm.save", type="primary"):
    try:
        path = cbm.save_model(edited, name, overwrite=overwrite)
    except (ValueError, FileExistsError) as error:
        st.error(str(error))
    else:
        st.success(f"Saved to `{path}` (config.json + model.safetensors + bank/); open it from the Model menu above.")
st.caption(f"Models are saved under `{cbm.models_root()}`.")
