"""Concept vectors inside a language model (ConceptVectors): type a concept's terms, find the MLP
value vectors that promote them, perturb one and watch which answers break, then unlearn; and
steer the model with a contrastive vector, with its dose-response and coherence curves."""

import streamlit as st
from workbench import vectors as cv

from conceptlab.vectors import BUILDERS, METHODS, SCORERS, dose_response_figure, layer_score_figure, unlearning_figure, validation_figure

st.set_page_config(page_title="Concept vectors (LM) · conceptlab", page_icon=":material/category:", layout="wide")
st.title("Concept vectors (LM)")
spec = st.sidebar.text_input(
    "Language model spec", value=cv.default_spec(), key="cl.cv.spec",
    help="`zoo:facts-gpt2` (the embedded FactsWorld LM), `hf:PATH` (a local Hugging Face causal LM) or `transformer_lens:NAME`",
).strip()
try:
    lm = cv.load_lm(spec)
except (OSError, ValueError, ImportError) as error:
    st.error(f"Cannot load `{spec}`: {error}", icon=":material/error:")
    st.stop()
world = cv.load_world(spec)
st.sidebar.caption(f"{lm.architecture} · {lm.n_layers} layers · {lm.d_mlp} neurons each · vocabulary {lm.d_vocab}")
st.markdown(
    "An MLP layer writes `Σ a_i(x) · v_i`; each **value vector** `v_i` projects onto the vocabulary (`v_i · W_U`). "
    "A *concept vector* is one whose top tokens are about one concept (Hong et al., ConceptVectors). "
    f"The model knows **{world}**; its accuracy (exact match, greedy) per surface form:"
)
st.dataframe(cv.qa_accuracy(spec), key="cl.cv.qa")

# -- 1. locate ------------------------------------------------------------------------------------
st.header("Locate")
entity = st.selectbox("FactsWorld entity (fills the terms)", world.names, key="cl.cv.entity")
facts = world.entity(entity)
st.caption(f"{facts.kind}: " + ", ".join(f"{a} = {v}" for a, v in facts.attributes.items()))
terms_text = st.text_input("Concept terms", value=" ".join(world.terms(entity)), key=f"cl.cv.terms.{entity}")
left, middle, right = st.columns(3)
k = left.slider("top-k tokens per vector", 3, min(50, lm.d_vocab), 10, key="cl.cv.k")
scorer = middle.radio("score", list(SCORERS), horizontal=True, key="cl.cv.scorer")
projection = right.radio("projection", ["raw", "folded"], horizontal=True, key="cl.cv.projection", help="raw: W_U as stored (ConceptVectors); folded: the final norm folded in")
terms = cv.parse_terms(terms_text)
if not terms:
    st.info("Type at least one term.")
    st.stop()
try:
    result = cv.scan(spec, tuple(terms), k, scorer, projection)
except ValueError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()
table = cv.scan_table(result)
st.dataframe(table, hide_index=True, key="cl.cv.table")
st.plotly_chart(layer_score_figure(result), key="cl.cv.map")

# -- 2. validate ----------------------------------------------------------------------------------
st.header("Validate")
choices = [f"L{r.layer}.{r.index}  ({r.score:.2f})" for r in table.itertuples()]
picked = st.selectbox("Value vector", range(len(choices)), format_func=lambda i: choices[i], key="cl.cv.vector")
layer, index = int(table.iloc[picked]["layer"]), int(table.iloc[picked]["index"])
left, middle, right = st.columns(3)
kind = left.radio("intervention", cv.INTERVENTIONS, horizontal=True, key="cl.cv.kind")
relative = middle.toggle("noise relative to the vector's norm", value=True, key="cl.cv.relative", disabled=kind != "noise")
std = right.slider("noise std", 0.0, 20.0, 5.0, 0.5, key="cl.cv.std", disabled=kind != "noise", help="absolute σ, or σ·‖v‖/√d when relative (the paper adds σ = 0.1 on LLaMA-7B)")
check = cv.validate(spec, layer, index, entity, kind, std, relative)
summary = check["summary"]
st.plotly_chart(validation_figure(summary, title=f"{entity}'s questions vs 5 unrelated entities', L{layer}.{index} {summary['intervention']}"), key="cl.cv.bars")
a, b = st.columns(2)
a.metric("target accuracy drop", f"{summary['target_accuracy_drop']:+.2f}")
b.metric("unrelated accuracy drop", f"{summary['unrelated_accuracy_drop']:+.2f}")
with st.expander("Every answer"):
    st.dataframe(check["answers"], hide_index=True, key="cl.cv.answers")

# -- 3. unlearn -----------------------------------------------------------------------------------
st.header("Unlearn")
st.caption(f"Fine-tune {entity}'s facts away (forget set: its paragraphs, QA and cloze texts) and compare L{layer}.{index} before and after.")
method = st.selectbox("Method", list(METHODS), index=list(METHODS).index("needle"), key="cl.cv.method")
if st.button("Run unlearning", key="cl.cv.run"):
    st.session_state["cl.cv.unlearn"] = (spec, entity, layer, index, method, k)
request = st.session_state.get("cl.cv.unlearn")
if request is not None and request[0] == spec:
    done = cv.unlearn_one(*request)
    frame = done["table"]
    diff = frame.iloc[0]
    a, b, c = st.columns(3)
    a.metric("cosine(v, v′)", f"{diff['cosine']:.3f}")
    b.metric("‖v − v′‖", f"{diff['l2']:.3f}")
    c.metric(f"top-{request[5]} Jaccard", f"{diff['jaccard']:.2f}")
    st.plotly_chart(unlearning_figure(frame, title=f"{request[1]} after {request[4]}, per form"), key="cl.cv.unlearned")
    st.dataframe(frame[["method", "form", "seen", "group", "before", "after"]], hide_index=True, key="cl.cv.unlearn_table")
    st.markdown(f"**top tokens before:** {' '.join(done['tokens_before'])}  \n**after:** {' '.join(done['tokens_after'])}")

# -- 4. steer ----------------------------------------------------------------------------------------
st.header("Steer")
st.caption(
    "A steering vector is the mean difference of the residual stream (a block's output, at the prompt's last token) between "
    "questions about entities that have a value and the same questions about entities that do not; adding it × a multiplier "
    "to every position pushes answers towards the value. The curves show where it works and where the model breaks."
)
steerable = cv.steerable_values(world)
if not steerable:
    st.info("This world has no attribute value to steer towards.")
    st.stop()
names = list(steerable)
a, b, c, d = st.columns(4)
attribute = a.selectbox("Attribute", names, index=names.index("colour") if "colour" in names else 0, key="cl.cv.steer.attribute")
values = steerable[attribute]
value = b.selectbox("Steer towards", values, index=values.index("white") if "white" in values else 0, key=f"cl.cv.steer.value.{attribute}")
steer_layer = c.selectbox("Layer (block output)", list(range(lm.n_layers)), index=lm.n_layers - 1, key="cl.cv.steer.layer")
builder = d.radio(
    "Vector", list(BUILDERS), key="cl.cv.steer.method", help="mean_difference: steering-vectors / CAA; pca_diff and pca_center: repeng (scaled to the mean difference's norm)"
)
multiplier = st.slider("Multiplier", -4.0, 8.0, 1.0, 0.25, key="cl.cv.steer.multiplier")
sweep = cv.steering_sweep(spec, attribute, value, steer_layer, builder)
span = sweep["coherent"]
st.plotly_chart(dose_response_figure(sweep["table"], multiplier, span, title=f"{attribute} → {value}: {builder} at layer {steer_layer}"), key="cl.cv.steer.curves")
if span["low"] is None:
    st.warning("No multiplier raises the target rate while coherence holds (NLL ≤ unsteered + 0.1 nats, repeat share ≤ 0.05).", icon=":material/warning:")
else:
    broken = "" if span["breaks_at"] is None else f"; coherence breaks at × {span['breaks_at']:g}"
    st.success(f"Works from × {span['low']:g} to × {span['high']:g} (target rate up to {span['best_rate']:.2f}, unsteered {span['baseline_rate']:.2f}){broken}.")
now = cv.steered(spec, attribute, value, steer_layer, builder, multiplier)
row = now["row"]
a, b, c, d = st.columns(4)
a.metric("target rate", f"{row['target_rate']:.2f}")
b.metric("control accuracy", f"{row['other_accuracy']:.2f}")
c.metric("held-out NLL", f"{row['nll']:.3f}", delta=f"{row['nll'] - span['baseline_nll']:+.3f}", delta_color="inverse")
d.metric("repeat share", f"{row['repeat_share']:.2f}")
st.caption(sweep["task"] + " · " + sweep["vector"])
st.dataframe(now["examples"], hide_index=True, key="cl.cv.steer.examples")
with st.expander("Dose-response table"):
    st.dataframe(sweep["table"], hide_index=True, key="cl.cv.steer.table")
