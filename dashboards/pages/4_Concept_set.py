"""Build a LaBo concept set: candidates per class, what LF-CBM's filters removed and why, LaBo's
selection, then add, drop or rename concepts and refit."""

import streamlit as st
import workbench
from workbench import cbm
from workbench import concept_set as cs

from conceptlab.concepts import ConceptSetEdits

EDITS = "cl.cs.edits"  # session state: the ConceptSetEdits (LaBo's selection + the analyst's edit log)
WORKING = "cl.cs.working"  # session state: class -> concepts, the edited set (read by tests)
MODEL = "cl.cs.model"  # session state: the LaBo fitted on the current set (read by tests)
KEEP = "cl.cs.keep."  # + class: the multiselect of that class's kept concepts
MESSAGE = "cl.cs.message"  # session state: (kind, text) saying what the last edit did
PERSIST = "session"  # typed text and picks survive page switches (Streamlit's persist_state)

selection = workbench.page_setup("Concept set")
backbone = workbench.load_backbone(selection.backbone)
TRAIN_SIZE, EVAL_SIZE = cbm.page_sizes()
train = cbm.load_split(backbone, "train", TRAIN_SIZE, 0, spec=selection.dataset_spec)
val = cbm.load_split(backbone, "val", EVAL_SIZE, 0, spec=selection.dataset_spec)
classes = list(train.dataset.class_names)
if not selection.is_shapesworld:  # the shipped candidates are ShapesWorld's; the user's classes need their own
    st.info(
        "LaBo starts from candidate concepts for each of your classes. Give them as a JSON file "
        "(`{\"class\": [\"concept\", ...], ...}`, e.g. saved from an LLM with `conceptlab.concepts.OpenAIProvider`).",
        icon=":material/info:",
    )
    path = st.text_input("Concept set file", key="cl.cs.source_input", placeholder="/path/to/concepts.json", persist_state=PERSIST).strip()
    if not path:
        st.stop()
    try:
        chosen = cs.load_concept_set(path)
    except (OSError, ValueError) as error:
        st.error(f"Cannot read `{path}`: {error}", icon=":material/error:")
        st.stop()
    missing = [c for c in classes if c not in chosen.classes]
    if missing:
        st.error(f"`{path}` has no concepts for class(es) {', '.join(missing[:5])}; it lists {', '.join(chosen.classes[:5])}.")
        st.stop()
    st.session_state[cs.SOURCE_FILE] = path
st.markdown(
    "**LaBo** (language in a bottle): concepts generated per class (here the offline provider serving the shipped "
    "ShapesWorld set, a stand-in for LLM answers) pass LF-CBM's filters, LaBo's submodular selection keeps up to "
    f"{cs.N_PER_CLASS} per class, and a class-concept association head is trained from the language prior on "
    f"{TRAIN_SIZE} train images; accuracy is measured on {EVAL_SIZE} val images."
)

# -- 1. candidates --------------------------------------------------------------------------------
st.header("Generated candidates")
generated = cs.candidates(classes)
frame = cs.candidates_frame(generated)
st.caption(f"{len(frame)} candidates ({len(generated.unique())} unique) over {len(classes)} classes")
st.dataframe(frame, hide_index=True, key="cl.cs.candidates")

# -- 2. filters -----------------------------------------------------------------------------------
st.header("What LF-CBM's filters removed")
filtered = cs.run_filters(backbone, train)
st.caption(", ".join(f"{s['filter']}: −{s['removed']}" for s in filtered.steps) + f" → {len(filtered.kept)} kept")
st.dataframe(filtered.frame[["concept", "filter", "reason"]], hide_index=True, key="cl.cs.removed")
if not filtered.kept:
    st.error("The filters removed every candidate: nothing is left to select from (with this backbone the concepts "
             "are too close to the class names, to each other, or to no image).", icon=":material/error:")
    st.stop()

# -- 3. selection and edits -----------------------------------------------------------------------
st.header("Selected set")
selected = cs.select(backbone, train, filtered)
# the analyst's edits are a log the library owns (ConceptSetEdits), kept in session state so they
# survive reruns and page switches; every widget below is redrawn from it
edits = st.session_state.get(EDITS)
if edits is None or edits.base != selected:
    edits = ConceptSetEdits(selected, edits.edits if edits is not None and edits.classes == classes else ())
    st.session_state[EDITS] = edits
st.session_state[WORKING] = edits.current()


def _say(results) -> None:
    results = [r for r in results if r is not None]
    if results:
        kind = "success" if all(r.changed for r in results) else "warning"
        st.session_state[MESSAGE] = (kind, " ".join(r.message for r in results))


def _on_keep(c: str) -> None:
    _say(edits.keep_only(c, st.session_state.get(KEEP + c, [])))


def _on_add() -> None:
    result = edits.add(st.session_state["cl.cs.add_class"], st.session_state.get("cl.cs.add_text", ""))
    _say([result])
    if result.changed:
        st.session_state["cl.cs.add_text"] = ""


def _on_rename() -> None:
    class_, old = st.session_state["cl.cs.rename_from"].split(" :: ", 1)
    result = edits.rename(class_, old, st.session_state.get("cl.cs.rename_to", ""))
    _say([result])
    if result.changed:
        st.session_state["cl.cs.rename_to"] = ""
        st.session_state["cl.cs.rename_from"] = f"{class_} :: {result.new}"


def _on_reset() -> None:
    edits.reset()
    st.session_state[MESSAGE] = ("info", "Back to LaBo's selection: every edit undone.")


current = edits.current()
st.caption("Untick a concept to drop it (tick it again to bring it back); the model below refits on the ticked set.")
columns = st.columns(3)
for i, c in enumerate(classes):
    st.session_state[KEEP + c] = current.get(c, [])  # the chips always show the edited set
    with columns[i % 3]:
        st.multiselect(c, options=current.get(c, []) + edits.restorable(c), key=KEEP + c, on_change=_on_keep, args=(c,))

add_col, rename_col = st.columns(2)
with add_col:
    st.selectbox("Add to class", classes, key="cl.cs.add_class", persist_state=PERSIST)
    st.text_input("New concept", key="cl.cs.add_text", persist_state=PERSIST)
    st.button("Add concept", on_click=_on_add, key="cl.cs.add")
with rename_col:
    options = [f"{c} :: {x}" for c in classes for x in current.get(c, [])]
    if st.session_state.get("cl.cs.rename_from") not in (None, *options):
        st.session_state.pop("cl.cs.rename_from")
    if options:
        st.selectbox("Rename", options, key="cl.cs.rename_from", persist_state=PERSIST)
        st.text_input("New name", key="cl.cs.rename_to", persist_state=PERSIST)
        st.button("Rename concept", on_click=_on_rename, key="cl.cs.rename")
if st.session_state.get(MESSAGE):
    kind, text = st.session_state[MESSAGE]
    getattr(st, kind)(text)
st.button("Back to LaBo's selection", on_click=_on_reset, key="cl.cs.reset")
if len(edits):
    st.caption(f"{len(edits)} edit(s) to LaBo's selection; they are saved with the model (its concept set's provenance).")

# -- 4. refit ---------------------------------------------------------------------------------------
st.header("LaBo on this set")
if not any(current.values()):
    st.warning("The set is empty: keep or add at least one concept.")
    st.stop()
baseline = cs.fit_labo(backbone, train, selected)
model = cs.fit_labo(backbone, train, current, edits=edits)
st.session_state[MODEL] = model
acc, base_acc = cs.accuracy(model, val), cs.accuracy(baseline, val)
left, right = st.columns(2)
left.metric("Accuracy (val), this set", f"{acc:.3f}", delta=f"{acc - base_acc:+.3f} vs LaBo's selection", delta_color="normal")
right.metric("Concepts in the bank", len(model.bank), delta=len(model.bank) - len(baseline.bank), delta_color="off")
st.dataframe(model.top_concepts(k=3), hide_index=True, key="cl.cs.top")

# -- 5. hand the model on ---------------------------------------------------------------------------
st.subheader("Open it on the Concept bottleneck page")
save_cols = st.columns([3, 1, 2])
save_name = save_cols[0].text_input("Model name", value="labo-concept-set", key="cl.cs.save_name", persist_state=PERSIST)
overwrite = save_cols[1].checkbox("overwrite", key="cl.cs.save_overwrite")
if save_cols[2].button("Save model", key="cl.cs.save"):
    try:
        path = cbm.save_model(model, save_name, overwrite=overwrite)
    except (ValueError, FileExistsError) as error:
        st.error(str(error))
    else:
        st.success(f"Saved to `{path}`; pick “Saved: {save_name}” on the Concept bottleneck page to inspect, intervene on and prune it.")
