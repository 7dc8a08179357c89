"""conceptlab: choose a backbone and a dataset (ShapesWorld or your own), and see what the activation store holds."""

import streamlit as st
import workbench
from workbench.store_panel import delete_entries, first_run_progress

from conceptlab import zoo
from conceptlab.experiments import read_status
from conceptlab.utils import human_bytes

selection = workbench.page_setup("conceptlab")
st.markdown(
    "A workbench for finding, naming, testing and editing the concepts inside models. "
    "Choose a **backbone** and a **dataset** in the sidebar; every page works on that selection."
)

backbone_col, dataset_col = st.columns(2)
with backbone_col:
    st.subheader("Backbone")
    try:
        backbone = workbench.try_load_backbone(selection.backbone)
    except workbench.BackboneUnavailable as error:
        backbone = None
        st.error(str(error), icon=":material/error:")
    else:
        st.markdown(f"`{backbone.spec}`")
        st.caption(f"{backbone.dim}-d embeddings · {backbone.device} · weights {backbone.fingerprint[:12]}")
    for name, folder in zoo.available().items():
        state = f"built, at `{folder}`" if folder else f"not built (`conceptlab zoo build {name}`)"
        st.caption(f"zoo:{name} — {state}")

with dataset_col:
    st.subheader("Dataset")
    dataset = workbench.load_dataset(selection)
    st.markdown(selection.dataset_label)
    st.caption(f"{len(dataset.class_names)} classes · {len(dataset.concept_names)} ground-truth concepts · `{dataset.identity}`")
    if not selection.is_shapesworld:
        st.caption(f"{len(dataset)} images · classes: {', '.join(dataset.class_names[:12])}{' …' if len(dataset.class_names) > 12 else ''}")
        if not dataset.concept_names:
            st.info("No concept annotations: pages that grade concepts against ground truth hide the grading.", icon=":material/info:")
        for skipped in getattr(dataset, "skipped", []):
            st.warning(f"Skipped row {skipped['row']}: `{skipped['file']}` ({skipped['reason']})", icon=":material/warning:")

store = workbench.get_store()
current_key = None
st.subheader("Embeddings of this selection")
if backbone is None:
    st.info("Load a backbone to see whether its embeddings of this dataset are stored.")
else:
    current_key = store.key(backbone, dataset)
    if store.contains(current_key):
        st.success(f"Stored under key `{current_key[:12]}`; every page reads them from there.", icon=":material/check_circle:")
    else:
        estimate = store.estimate(backbone, dataset, num_workers=0)
        first_run = read_status(store)
        who = ("The first run is embedding what the pages read (progress below); a page that needs them waits for it."
               if first_run and first_run["alive"] else "The Embeddings page computes them on first visit.")
        st.info(
            f"Not computed yet: {estimate['rows']} × {estimate['dim']} floats, {estimate['disk']} on disk, "
            f"about {estimate['peak_memory']} of memory. {who}"
        )
        if st.button("Compute them now"):
            workbench.load_embeddings(backbone, dataset)
            st.rerun()

st.subheader("Activation store")
first_run_progress(store)
deleted = st.session_state.pop("cl.home.deleted", None)
if deleted:
    st.success(f"Deleted {', '.join(deleted[0]) or 'nothing (already gone)'}.", icon=":material/delete:")
entries = store.entries()
st.caption(f"`{store.root}` · {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} · {human_bytes(store.total_bytes())}")
if entries:
    workbench.store_table(entries, current_key)
    delete_entries(store, entries)
else:
    st.info("The store is empty. Open the Embeddings page (or press the button above) to fill it.")
if st.button("Reload models and data", help="Clear the app's caches, e.g. after rebuilding a zoo model"):
    workbench.clear_caches()
    st.rerun()

st.subheader("Pages")
workbench.page_links()
