"""Concept vectors & TCAV: pick a layer and concept examples, see each CAV's held-out accuracy, and
TCAV scores of class logits with their significance against random-concept CAVs."""

import streamlit as st
from workbench import tcav as tc

from conceptlab.backbones import POOLS
from conceptlab.data import CLASS_RULES, ShapesWorld
from conceptlab.vectors import CAV_METHODS, cav_accuracy_figure, class_truth, stars, tcav_figure

st.set_page_config(page_title="Concept vectors & TCAV · conceptlab", page_icon=":material/category:", layout="wide")
st.title("Concept vectors & TCAV")
spec = st.sidebar.text_input("Image-text backbone", value=tc.default_spec(), key="cl.tcav.spec",
                             help="`zoo:shapes-clip`, `open_clip:NAME/TAG` or `local-dir:PATH`").strip()
try:
    backbone = tc._backbone(spec)
    layers = tc.main_layers(backbone)
except (OSError, ValueError, TypeError, ImportError) as error:
    st.error(f"Cannot load `{spec}`: {error}", icon=":material/error:")
    st.stop()
default_layer = "visual.layer4" if "visual.layer4" in layers else layers[0]
layer = st.sidebar.selectbox("Layer", layers, index=layers.index(default_layer), key="cl.tcav.layer", help="any module of the image tower (open_clip names)")
pool = st.sidebar.radio("Pooling", [p for p in POOLS if p in ("mean", "flatten", "cls")], horizontal=True, key="cl.tcav.pool",
                        help="mean over positions (conv maps, tokens), the CLS token (ViT), or flatten (captum's choice)")
n_random = st.sidebar.slider("Random runs N", 10, 200, tc.default_runs(), 10, key="cl.tcav.n_random",
                             help="CAVs per concept against N random sets, and N random-vs-random CAVs for the null distribution")
method = st.sidebar.radio("CAV classifier", list(CAV_METHODS), horizontal=True, key="cl.tcav.method", help="sgd: TCAV's reference (hinge, alpha 0.01)")
significance = st.sidebar.select_slider("Family-wise α", [0.01, 0.05, 0.1], value=0.05, key="cl.tcav.alpha")
st.markdown(
    "A **CAV** is the normal of a linear classifier separating a concept's activations from random ones (Kim et al., 2018). "
    "**TCAV** counts the inputs of a class whose logit rises along the CAV (*sign count*) or averages the directional "
    "derivative (*magnitude*). A score means something only next to the scores of CAVs trained on random sets: each concept "
    f"gets {n_random} CAVs against {n_random} random sets, a two-sided t-test compares them with {n_random} random-vs-random CAVs, "
    "and Bonferroni corrects for the number of concepts tested. Stars: * p < α/m, ** < α/10m, *** < α/100m."
)
source = st.radio("Concept examples", ["ShapesWorld concept columns", "A folder (one subfolder per concept + random/)"], horizontal=True, key="cl.tcav.source")
world_names = ShapesWorld("test", size=1).concept_names
if source.startswith("ShapesWorld"):
    concepts = st.multiselect("Concepts", world_names, default=["shape:circle", "shape:square", "color:red", "color:blue", "fill:striped", "background:white"],
                              key="cl.tcav.concepts")
    classes = st.multiselect("Targets: zero-shot class logits", list(CLASS_RULES), default=["ruby disc", "azure block"], key="cl.tcav.classes")
    left, right = st.columns(2)
    n_examples = left.slider("Images per concept", 30, 200, 100, 10, key="cl.tcav.n_examples")
    n_inputs = right.slider("Test images per class", 10, 100, 30, 10, key="cl.tcav.n_inputs")
    if not concepts or not classes:
        st.info("Pick at least one concept and one class.")
        st.stop()
else:
    path = st.text_input("Folder", key="cl.tcav.folder", help="ImageFolder layout: one subfolder of images per concept and a `random` subfolder of negatives").strip()
    prompt_text = st.text_input("Targets: zero-shot prompts (comma-separated)", value="a red circle, a blue square", key="cl.tcav.prompts")
    prompts = tuple(p.strip() for p in prompt_text.split(",") if p.strip())
    if not path or not prompts:
        st.info("Give a folder and at least one prompt.")
        st.stop()
run_key = (spec, layer, pool, n_random, method, significance, source)
if st.button("Run TCAV", type="primary", key="cl.tcav.run"):
    st.session_state["cl.tcav.request"] = run_key
if st.session_state.get("cl.tcav.request") != run_key:
    st.caption("Settings changed: press **Run TCAV**.")
    st.stop()
try:
    with st.spinner(f"Training {n_random + 1} CAV sets and computing gradients…"):
        if source.startswith("ShapesWorld"):
            out = tc.shapes_study(spec, layer, pool, tuple(concepts), tuple(classes), n_random, n_examples, n_inputs, method, significance)
        else:
            out = tc.folder_study(spec, path, layer, pool, prompts, n_random, method, significance)
except (OSError, ValueError, TypeError) as error:
    st.error(str(error), icon=":material/error:")
    st.stop()
result = out["result"]
st.header("CAV accuracy")
st.plotly_chart(cav_accuracy_figure(out["accuracy"], title=f"Held-out accuracy at {layer} ({pool}), mean over {n_random} runs"), key="cl.tcav.accuracy")
st.header("TCAV scores")
score = st.radio("Score", ["sign_count", "magnitude"], horizontal=True, key="cl.tcav.score")
targets = list(result.table["target"].unique())
target = st.selectbox("Target", targets, key="cl.tcav.target")
st.plotly_chart(tcav_figure(result, target, score), key="cl.tcav.bars")
table = result.table[(result.table["target"] == target) & (result.table["score"] == score)].copy()
table["stars"] = [stars(p, a) for p, a in zip(table["p_value"], table["alpha_used"])]
if source.startswith("ShapesWorld"):
    truth = class_truth([target])[target]
    table["in the class rule"] = table["concept"].isin(truth)
columns = ["concept", "concept_mean", "random_mean", "difference", "ci_low", "ci_high", "effect_size", "p_value", "stars", "significant", "direction", "cav_accuracy"]
columns += ["in the class rule"] if "in the class rule" in table else []
st.dataframe(table[columns], hide_index=True, key="cl.tcav.table")
if out["grading"] is not None:
    st.header("Against the class rules")
    st.caption("Precision and recall of 'significant and raising the logit' against the concepts each class's rule names, "
               "for the default test, the same runs without correction, and one CAV without random runs.")
    st.dataframe(out["grading"], hide_index=True, key="cl.tcav.grading")
