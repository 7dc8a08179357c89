"""Train a concept bottleneck model (PCBM / PCBM-h / sequential PCBM) or open a saved one (LaBo, LF-CBM, ...), read its weights,
explain an image in the method's own terms (and why not another class), intervene with present / absent presets or true
concept values, see where a concept looks in the image, prune spurious concepts; every accuracy with its 95 % bootstrap interval."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import workbench
from workbench import cbm

from conceptlab.analysis import dataset_image, dataset_table
from conceptlab.cbm import figures
from conceptlab.cbm.editing import DEFAULT_MIN_SHIFT, editing_study, suggest_from_shift
from conceptlab.cbm.explanations import intervention_presets, misclassified, relative_contributions, why_not
from conceptlab.cbm.grounding import concept_region
from conceptlab.cbm.interventions import MODES, POLICIES, intervention_summary
from conceptlab.metrics import accuracy_ci

LAM_SCALES = [0.2, 0.5, 1.0, 2.0, 5.0]
N_SLIDERS = 5

PRESETS = ("as predicted", "present", "absent", "custom")

selection = workbench.page_setup("Concept bottleneck")
# the chosen model, image and intervention settings survive a switch to another page and back
for prefix in ("cl.cbm.source", "cl.cbm.image", "cl.cbm.pick_from", "cl.cbm.wrong", "cl.cbm.whynot.", "cl.cbm.iv_concepts.", "cl.cbm.iv_mode.", "cl.cbm.iv."):
    workbench.remember(prefix)
backbone = workbench.load_backbone(selection.backbone)
TRAIN_SIZE, EVAL_SIZE = cbm.page_sizes()
st.markdown(
    "A **concept bottleneck model** predicts a class from named concept scores (“a red shape”, “a circle”, “a shape on a "
    "white background”, … text concepts through the backbone's text encoder), so every prediction is a sum of concept "
    "contributions. The page trains PCBM, PCBM-h or the sequential PCBM on the ShapesWorld *train* split (each class on its "
    "usual background 90 % of the time; the *shifted* split never shows a class on its usual background), or opens any "
    "saved model (LaBo, LF-CBM, DN-CBM ...); below the model, how that method predicts."
)

# -- 1. the model ---------------------------------------------------------------------------------
st.header("Model")
saved = cbm.saved_models()
choices = [f"Train {name}" for name in cbm.METHODS] + [f"Saved: {m.name}" for m in saved]
source_col, settings_col = st.columns([2, 3])
if st.session_state.get("cl.cbm.source") not in choices:  # a remembered saved model that is gone
    st.session_state.pop("cl.cbm.source", None)
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
    concepts_file = ""
    if not selection.is_shapesworld:
        st.caption(f"Your data: {workbench.USER_FRACTIONS['train']:.0%} train / {workbench.USER_FRACTIONS['val']:.0%} val of "
                   f"{selection.dataset_label} (the sizes above are ShapesWorld's).")
        concepts_file = st.text_input("Concepts file (one phrase per line; empty: ShapesWorld's 25)", key="cl.cbm.concepts_file").strip()
        if concepts_file and not Path(concepts_file).expanduser().is_file():
            st.error(f"No concepts file at `{concepts_file}`; using ShapesWorld's 25 concepts.")
            concepts_file = ""

spec = selection.dataset_spec
train = cbm.load_split(backbone, "train", train_size, selection.seed, spec=spec)
val = cbm.load_split(backbone, "val", eval_size, selection.seed, spec=spec)
shifted = cbm.load_split(backbone, "shifted", eval_size, selection.seed, spec=spec)  # None on the user's data: no shifted split
evaluated = {"val": val, **({"shifted": shifted} if shifted is not None else {})}

if source.startswith("Train "):
    method = source.removeprefix("Train ")
    model = cbm.train_model(method, backbone, train, lam_scale, concepts_file=concepts_file)
    model_id = f"{method}:{backbone.fingerprint}:{train.key}:{lam_scale}:{concepts_file}"
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

intervals = {name: accuracy_ci(split.labels, model.predict(split.embeddings)) for name, split in evaluated.items()}
accuracy = {name: estimate.value for name, estimate in intervals.items()}
weights = model.weights_frame()
nonzero = int((weights.abs() > 1e-5).to_numpy().sum())
st.caption(model_label)
method_label = type(model).display_name
st.info(model.how_it_predicts, icon=":material/school:")
# interventions and explanations are keyed by the model's identity, so two models never share them
model_key = hashlib.sha1(model_id.encode()).hexdigest()[:10]
metric_cols = st.columns(4)
metric_cols[0].metric("Accuracy on val", f"{accuracy['val']:.3f}", help=f"{len(val.labels)} val images (backgrounds as in training)")
if shifted is not None:
    metric_cols[1].metric("Accuracy on shifted", f"{accuracy['shifted']:.3f}", help=f"{len(shifted.labels)} shifted images (no class on its usual background)")
else:
    metric_cols[1].metric("Accuracy on shifted", "—", help="Your data has no shifted split.")
metric_cols[2].metric("Non-zero weights", f"{nonzero} / {weights.size}")
metric_cols[3].metric("Concepts used", f"{int((weights.abs() > 1e-5).any(axis=0).sum())} / {weights.shape[1]}")
st.caption(
    "95 % bootstrap intervals over the images: " + " · ".join(f"{name} {ci.format()} ({len(evaluated[name].labels)} images)" for name, ci in intervals.items())
    + ", 2000 resamples."
)

# -- 2. weights -----------------------------------------------------------------------------------
st.header("Concept weights")
st.plotly_chart(figures.weight_heatmap(model), key="cl.cbm.weights")

# -- 3. explain one image -------------------------------------------------------------------------
st.header("Explain an image")
dataset = workbench.load_dataset(selection)
embeddings, _ = workbench.load_embeddings(backbone, dataset)
table = dataset_table(dataset)[0]
labels = np.asarray(dataset.labels)
same_classes = list(getattr(dataset, "class_names", [])) == list(model.class_names_)
wrong = misclassified(model, embeddings, labels) if same_classes else None
pick_col, wrong_col = st.columns([1, 2])
pick_from = pick_col.radio("Pick the image", ["by index", "from the misclassified"], horizontal=True, key="cl.cbm.pick_from",
                           disabled=wrong is None, help="The misclassified images of the split in the sidebar, the most confidently wrong first.")
if pick_from == "from the misclassified" and wrong is not None:
    if wrong.empty:
        wrong_col.success("The model gets every image of this split right.")
        index = int(st.session_state.get("cl.cbm.image", 0))
    else:
        options = wrong["image"].tolist()
        described = {int(r.image): f"#{r.image}: {r.true} → predicted {r.predicted} ({r.confidence:.0%})" for r in wrong.itertuples()}
        if st.session_state.get("cl.cbm.wrong") not in options:
            st.session_state["cl.cbm.wrong"] = options[0]
        index = int(wrong_col.selectbox(f"Misclassified images ({len(wrong)} of {len(labels)})", options, format_func=described.get, key="cl.cbm.wrong"))
else:
    if int(st.session_state.get("cl.cbm.image", 0)) >= len(dataset):
        st.session_state["cl.cbm.image"] = 0
    index = int(
        wrong_col.number_input(
            f"Image of {selection.dataset_label} (0 – {len(dataset) - 1})", 0, len(dataset) - 1, key="cl.cbm.image",
            help="The sidebar chooses the split; the shifted split shows where the model goes wrong.",
        )
    )
    if wrong is not None:
        wrong_col.caption(f"{len(wrong)} of {len(labels)} images of this split are misclassified; pick them from the list to see why.")
x = embeddings[index : index + 1]
row = table.iloc[index]
explanation = relative_contributions(model, x)
proba = model.predict_proba(x)[0]
predicted = explanation.attrs["predicted"]
true_class = str(row["class_name"])
image_col, chart_col = st.columns([1, 3])
with image_col:
    caption = workbench.image_caption(index, row) if selection.is_shapesworld else f"#{index} {row['class_name']}"
    st.image(dataset_image(dataset, index).resize((192, 192)), caption=caption)
    verdict = "correct" if predicted == true_class else f"wrong, the true class is **{true_class}**"
    st.markdown(f"Prediction: **{predicted}** ({proba.max():.0%}) — {verdict}")
with chart_col:
    st.plotly_chart(figures.contribution_bars(explanation, top=12), key="cl.cbm.contributions")
    baseline = {"zero": "Each bar is score × weight; they sum to the class's logit.",
                "mean": "Each bar is score × (the class's weight − the mean weight over classes): what this class gets beyond the "
                "average class. They sum to its logit minus the mean logit, which is all the softmax sees."}[explanation.attrs["against"]]
    st.caption(f"{method_label} · scores are {model.score_units}. {baseline} Labels in brackets: each bar's share of all the evidence.")

st.subheader("Why not another class?")
others = [c for c in model.class_names_ if c != predicted]
default_other = true_class if true_class in others else model.class_names_[int(np.argsort(-proba)[1])]
other_key = f"cl.cbm.whynot.{model_key}.{index}"
if st.session_state.get(other_key) not in others:
    st.session_state[other_key] = default_other
other = st.selectbox(f"Why **{predicted}** and not …", others, key=other_key,
                     help="By default the true class when the prediction is wrong, else the runner-up.")
contrast = why_not(model, x, other)
st.plotly_chart(figures.contribution_bars(contrast, top=12), key="cl.cbm.whynot_chart")
favour = contrast[~contrast["concept"].str.startswith("(")]
for_other = favour[favour["contribution"] < 0].head(3)["concept"].tolist()
st.caption(
    f"Each bar: score × (weight for {predicted} − weight for {other}); they sum to the logit difference "
    f"{contrast.attrs['total']:+.2f} (probabilities {proba[model.class_names_.index(predicted)]:.0%} vs "
    f"{proba[model.class_names_.index(other)]:.0%}). Blue bars favour {predicted}, vermillion ones {other}"
    + (f" (most: {', '.join(f'`{c}`' for c in for_other)})." if for_other else "; no concept favours it here.")
)

# -- 4. intervene -----------------------------------------------------------------------------------
st.header("Intervene on concepts")
image_key = f"{model_key}.{index}"
presets = intervention_presets(model, train.embeddings, x)
low, high = cbm.score_ranges(model.transform(train.embeddings))
scores = presets["predicted"].to_numpy()
concept_rows = explanation[~explanation["concept"].str.startswith("(")]
names = list(model.concept_names_)
picked_key = f"cl.cbm.iv_concepts.{image_key}"
if picked_key not in st.session_state:
    st.session_state[picked_key] = list(concept_rows["concept"].head(N_SLIDERS))
picked = st.multiselect(
    "Concepts to set", names, key=picked_key,
    help="By default the image's largest contributions. Presets are in the model's own units: present = the concept's 95th "
    "percentile on the train split, absent = its 5th, as predicted = this image's own score.",
)
st.caption(f"Values are {model.score_units} ({method_label}). Present / absent: the concept's 95th / 5th percentile on the "
           f"{len(train.labels)} train images; custom: any value in the train range.")
values = {}
slider_cols = st.columns(max(1, min(len(picked), N_SLIDERS)))
for position, name in enumerate(picked):
    j = names.index(name)
    column = slider_cols[position % len(slider_cols)]
    preset_value = {"as predicted": presets.loc[name, "predicted"], "present": presets.loc[name, "present"], "absent": presets.loc[name, "absent"]}
    mode = column.radio(
        f"`{name}`", PRESETS, key=f"cl.cbm.iv_mode.{image_key}.{name}",
        format_func=lambda m, v=preset_value: m if m == "custom" else f"{m} ({v[m]:.2f})",
    )
    if mode == "custom":
        values[name] = column.slider(
            f"value of `{name}`", float(low[j]), float(high[j]), float(np.clip(scores[j], low[j], high[j])),
            key=f"cl.cbm.iv.{image_key}.{name}", format="%.2f", label_visibility="collapsed",
        )
    else:
        values[name] = float(preset_value[mode])


def reset_interventions() -> None:
    """Back to the image's own scores (a callback: it runs before the widgets are drawn again)."""
    for name in names:
        for key in (f"cl.cbm.iv.{image_key}.{name}", f"{workbench.SHADOW}cl.cbm.iv.{image_key}.{name}"):
            st.session_state.pop(key, None)
        st.session_state[f"cl.cbm.iv_mode.{image_key}.{name}"] = "as predicted"


st.button("Reset to the predicted values", key="cl.cbm.iv_reset", on_click=reset_interventions)
result = model.intervene(x, set=values) if values else None
new_proba = result.proba[0] if result is not None else proba
new_class = model.class_names_[int(np.argmax(new_proba))]
changed = {name: (float(scores[names.index(name)]), value) for name, value in values.items() if abs(value - scores[names.index(name)]) > 1e-6}
if changed:
    moved = "; ".join(f"`{n}` {a:.2f} → {b:.2f}" for n, (a, b) in changed.items())
    arrow = "stays" if new_class == predicted else "moves to"
    st.markdown(f"With {moved}, the prediction {arrow} **{new_class}** ({new_proba.max():.0%}).")
else:
    st.caption("Choose a preset (or a custom value) to see the prediction change.")
top_classes = list(pd.Series(np.maximum(proba, new_proba), index=model.class_names_).sort_values(ascending=False).index[:6])
probability = go.Figure(
    [
        go.Bar(name="before", x=top_classes, y=[proba[model.class_names_.index(c)] for c in top_classes], marker_color=figures.BEFORE),
        go.Bar(name="after intervention", x=top_classes, y=[new_proba[model.class_names_.index(c)] for c in top_classes], marker_color=figures.AFTER),
    ]
)
probability.update_layout(
    title={"text": "Class probabilities", "x": 0, "y": 0.98, "yanchor": "top", "font": {"size": 15}}, barmode="group", height=330, template="plotly_white",
    margin={"t": 90, "b": 10, "l": 10, "r": 10}, yaxis={"range": [0, 1.05], "title": {"text": "probability"}},
    legend={"orientation": "h", "y": 1.02, "x": 0, "xanchor": "left", "yanchor": "bottom"},
)
st.plotly_chart(probability, key="cl.cbm.intervention_chart")

# -- 4b. intervene with true values -----------------------------------------------------------------
st.header("Intervene with true concept values")
curves = None
truth_val = cbm.concept_frame(val)
if truth_val is None:
    st.info("This dataset has no ground-truth concepts, so there are no true values to intervene with.")
else:
    space = "calibrated concept probabilities (true = 1, false = 0)" if cbm.is_probability_model(model) else (
        "raw concept scores: a true concept takes its 95th training percentile, a false one its 5th (Koh et al.); "
        "a per-concept calibration on the train split's concept labels gives the probabilities the policies read")
    st.markdown(
        f"A person who knows an image's concepts tells the model; k of them per image replace the model's own. "
        f"This model reads {space}. *Uncertainty-first* sets the concepts whose probability is closest to 0.5 first, "
        "*weight* the head's most used concepts, *random* any (3 random orders)."
    )
    iv_cols = st.columns([2, 2, 3])
    policy = iv_cols[0].selectbox("Policy for this image", POLICIES, index=POLICIES.index("uncertainty"), key="cl.cbm.tv_policy")
    mode = iv_cols[1].radio("Mode", MODES, horizontal=True, key="cl.cbm.tv_mode",
                            help="replace: every chosen concept takes its true value; correct: only those on the wrong side of 0.5.")
    try:
        curves = cbm.intervention_study(model, model_id, train, val, mode)
    except ValueError as error:  # e.g. a LaBo model whose phrases name no ground-truth concept
        st.info(f"No intervention with true values for this model: {error}.", icon=":material/info:")
        curves = None
if curves is not None:
    n_known = int(curves["k"].max())
    k = iv_cols[2].slider("Concepts set to their true value (k)", 0, n_known, min(5, n_known), key="cl.cbm.tv_k")
    st.plotly_chart(figures.intervention_policies(curves, title="Accuracy on val as k concepts per image take their true value (95 % bands)"),
                    key="cl.cbm.tv_curves")
    summary = intervention_summary(curves, at=(0, k), target=0.99)
    st.dataframe(summary, key="cl.cbm.tv_summary", column_config={c: st.column_config.NumberColumn(format="%.3f") for c in summary.columns if not c.startswith("k to")})
    truth_row = cbm.concept_frame(dataset)
    if truth_row is not None:
        out = cbm.true_value_intervention(model, train, x, truth_row.iloc[index : index + 1].reset_index(drop=True), k, policy, mode)
        set_names = [names[j] for j in np.flatnonzero(out["intervened"][0])]
        new = model.class_names_[int(out["predictions"][0])]
        verdict = "correct" if new == row["class_name"] else "still wrong"
        st.markdown(
            f"This image, {policy} policy, k = {k}: " + (f"setting {', '.join(f'`{n}`' for n in set_names)} to the truth, " if set_names else "nothing set, ")
            + f"the prediction is **{new}** ({verdict}; before: {predicted})."
        )

# -- 4c. where does it look -------------------------------------------------------------------------
st.header("Where does it look")
groundable = [n for n in names if concept_region(n) is not None and n in getattr(dataset, "concept_names", [])]
if not hasattr(dataset, "masks") or not groundable or not hasattr(backbone, "model"):
    st.info("Attribution to pixels needs ShapesWorld images (their masks say where each concept lives) and an open_clip backbone.")
else:
    ranked = [c for c in concept_rows["concept"] if c in groundable]
    concept = st.selectbox(
        "Concept", groundable, index=groundable.index(ranked[0]) if ranked else 0, key=f"cl.cbm.where_concept.{index}",
        help="By default the image's largest contribution. Its score is attributed to the pixels through the backbone.",
    )
    region = concept_region(concept)
    with st.spinner("Attributing the concept's score to the pixels ..."):
        looked = cbm.where_it_looks(backbone, model, model_id, dataset, index, concept)
    j = names.index(concept)
    maps = {m: looked.maps[(index, j, m)] for m in ("integrated_gradients", "occlusion")}
    st.plotly_chart(
        figures.grounding_panel(dataset.image(index), maps, dataset.masks(index)[region],
                                title=f"Where “{concept}” looks (outline: the {region}, where a {concept.split(':')[0]} concept should look)"),
        key="cl.cbm.where_panel",
    )
    where_cols = st.columns(4)
    short = {"integrated_gradients": "IG", "occlusion": "Occlusion"}
    for column, method in zip(where_cols[::2], short):
        graded = looked.frame.set_index("method").loc[method]
        column.metric(f"{short[method]}: mass in the {region}", f"{graded['mass']:.2f}",
                      help=f"Share of the positive attribution inside the {region}; a map that looks everywhere alike gets its area, {graded['area']:.2f}.")
    for column, method in zip(where_cols[1::2], short):
        graded = looked.frame.set_index("method").loc[method]
        column.metric(f"{short[method]}: pointing game", "hit" if graded["hit"] else "miss",
                      help=f"Does the most positively attributed pixel lie in the {region} (within 1 pixel)?")
    with st.expander("Grade every concept family"):
        n_images = st.number_input("Images", 2, 64, 8, key="cl.cbm.where_n", help="The first images of the split shown; each concept is graded where it is present.")
        if st.toggle("Grade them", key="cl.cbm.where_families"):
            with st.spinner(f"Attributing every concept on {n_images} images ..."):
                table = cbm.family_grounding(backbone, model, model_id, dataset, int(n_images))
            st.plotly_chart(figures.grounding_bars(table), key="cl.cbm.where_families_chart")
            st.dataframe(table, hide_index=True, key="cl.cbm.where_families_table")

# -- 5. edit ----------------------------------------------------------------------------------------
st.header("Prune spurious concepts")
prune = []
edited = model
if shifted is None:
    st.info("Finding and pruning spurious concepts compares the train split with a shifted one (ShapesWorld's breaks the "
            "background cue); your data has no shifted split.", icon=":material/info:")
else:
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
        ci = study.intervals
        st.caption(" · ".join(
            f"{split}: before [{ci.loc[split, 'before_low']:.3f}, {ci.loc[split, 'before_high']:.3f}], after "
            f"[{ci.loc[split, f'{after}_low']:.3f}, {ci.loc[split, f'{after}_high']:.3f}], McNemar p = {ci.loc[split, f'p_{after}']:.3g}"
            for split in ("val", "shifted")
        ) + " (95 % bootstrap intervals; the p-value compares the edited and the original model on the same images).")
        st.plotly_chart(figures.editing_bars(study.accuracy, title=f"Accuracy before and after pruning {len(prune)} concept(s)"), key="cl.cbm.editing_chart")
        if st.toggle("Compare with refitting without them and DFR", key="cl.cbm.compare_edits",
                     help="Refit the head without the pruned concepts; DFR retrains it on group-balanced subsets of the train split."):
            with st.spinner("Refitting ..."):
                comparison = cbm.edit_comparison(model, model_id, train, val, shifted, prune)
            st.plotly_chart(figures.editing_comparison_bars(comparison, splits=("val", "shifted"), title="Edits side by side (95 % intervals)"),
                            key="cl.cbm.compare_chart")
            shown_columns = [c for c in ("val", "val_low", "val_high", "shifted", "shifted_low", "shifted_high", "shifted gain", "p shifted") if c in comparison]
            st.dataframe(comparison[shown_columns], key="cl.cbm.compare_table",
                         column_config={c: st.column_config.NumberColumn(format="%.3f") for c in shown_columns if c != "p shifted"})
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
default_name = f"{model.method_name() or type(model).__name__.lower()}-{'edited' if prune else 'trained'}-seed{selection.seed}"
name_col, overwrite_col, button_col = st.columns([3, 1, 1], vertical_alignment="bottom")
# keyed by the model and its edits: another model (or another edit) starts from its own default name
name = name_col.text_input("Folder name", value=default_name, key=f"cl.cbm.save_name.{model_key}.{'edited' if prune else 'trained'}")
overwrite = overwrite_col.checkbox("overwrite", key="cl.cbm.overwrite")
if button_col.button("Save the edited model" if prune else "Save the model", key="cl.cbm.save", type="primary"):
    try:
        path = cbm.save_model(edited, name, overwrite=overwrite)
    except (ValueError, FileExistsError) as error:
        st.error(str(error))
    else:
        st.success(f"Saved to `{path}` (config.json + model.safetensors + bank/); open it from the Model menu above.")
st.caption(f"Models are saved under `{cbm.models_root()}`.")
