"""Discover concepts with a sparse autoencoder on the backbone's embeddings, browse and rename its named latents."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import workbench
from workbench import discovery as dn

from conceptlab.analysis import dataset_image, dataset_table, rank_indices
from conceptlab.discovery import grade_latents

TOP_K = 16
RENAMES = "cl.dn.renames"  # session state: {run id: {latent: name}}

selection = workbench.page_setup("Discovered concepts")
backbone = workbench.load_backbone(selection.backbone)
try:
    TRAIN_SIZE = dn.default_train_size()
except ValueError as error:
    st.error(f"{error}. Using {dn.BUILTIN_TRAIN}.")
    TRAIN_SIZE = dn.BUILTIN_TRAIN
st.markdown(
    "**Discover, then name** (DN-CBM): a sparse autoencoder (sae-lens) learns a dictionary of directions in the "
    "backbone's image-embedding space from the *train* split alone, without labels; each latent is then named by the "
    "vocabulary word whose text embedding is closest to its decoder direction. Below, every latent is graded against "
    f"the ground truth of {selection.dataset_label} (the sidebar's images)."
)

# -- 1. the SAE -----------------------------------------------------------------------------------
st.header("Sparse autoencoder")
saved = dn.saved_runs()
choices = ["Train a new SAE"] + [f"Saved: {r.name}" for r in saved]
source_col, settings_col = st.columns([2, 3])
source = source_col.selectbox("SAE", choices, key="cl.dn.source", help=f"Train on this backbone, or open a run saved under `{dn.discovery_root()}`.")
with settings_col.expander("Training settings", expanded=False):
    cols = st.columns(4)
    train_size = cols[0].number_input("Train images", 100, 20000, TRAIN_SIZE, step=500, key="cl.dn.train_size")
    n_latents = cols[1].number_input("Latents", 8, 4096, dn.DEFAULTS["n_latents"], step=64, key="cl.dn.latents")
    l1 = cols[2].select_slider("L1", [3e-5, 1e-3, 3e-3, 1e-2, 3e-2], value=dn.DEFAULTS["l1"], key="cl.dn.l1",
                               help="sparsity penalty; 3e-5 is DN-CBM's (dense on 64-d embeddings)")
    steps = cols[3].number_input("Steps", 10, 5000, dn.DEFAULTS["steps"], step=100, key="cl.dn.steps")
    centring = "centred on the train mean (inside the SAE)" if dn.DEFAULTS["center"] else "raw"
    st.caption(f"Inputs are {centring}; names come from the caption grammar (“a {{word}} shape”, "
               "“a shape on a {word} background”, …) ensembled per vocabulary word.")

if source == choices[0]:
    train = workbench.load_split(backbone, "train", train_size, selection.seed, spec=selection.dataset_spec)
    run = dn.train_run(backbone, train, n_latents=int(n_latents), l1=float(l1), steps=int(steps))
    run_id = f"train:{backbone.fingerprint}:{train.key}:{n_latents}:{l1}:{steps}"
    label = f"trained on {len(train.labels)} train embeddings ({n_latents} latents, L1 {l1:g}, {steps} steps)"
else:
    info = saved[choices.index(source) - 1]
    try:
        run = dn.load_run(info)
    except (OSError, ValueError, KeyError) as error:
        st.error(f"Could not open the saved run at `{info.path}`: {error}")
        st.stop()
    if run.sae.d_in_ != backbone.dim:
        st.error(f"The saved SAE encodes {run.sae.d_in_}-d embeddings, but `{backbone.spec}` gives {backbone.dim}-d ones.")
        st.stop()
    run_id = f"saved:{info.path}:{info.mtime}"
    label = f"saved run `{info.name}` from `{info.path}`"

renames = st.session_state.setdefault(RENAMES, {}).setdefault(run_id, {})
if renames:
    run = run.rename(dict(renames))
sae, names = run.sae, run.names

dataset = workbench.load_dataset(selection)
embeddings, _ = workbench.load_embeddings(backbone, dataset)
z = run.encode(embeddings).numpy()
graded = bool(dataset.concept_names)
truth = dataset.concepts if graded else np.zeros((len(dataset), 0), dtype=bool)
report = grade_latents(z, truth, dataset.concept_names, names)
if not graded:
    st.info(f"{selection.dataset_label} has no concept annotations: latents are named and browsed, not graded "
            "(naming precision, recovery and AUROC need ground truth, e.g. 0/1 concept columns in a csv: dataset).",
            icon=":material/info:")
table = dn.feature_table(run, report)
metrics = sae.evaluate(embeddings)

st.caption(label)
metric_cols = st.columns(6)
metric_cols[0].metric("Explained variance", f"{metrics.explained_variance:.3f}", help=f"MSE {metrics.mse:.4f} on the shown images")
metric_cols[1].metric("L0", f"{metrics.l0:.1f}", help="mean number of active latents per image")
metric_cols[2].metric("Live latents", f"{len(table)} / {sae.d_sae_}", help="latents that fire on at least one shown image")
metric_cols[3].metric("Dead latents", f"{metrics.dead_latents}")
metric_cols[4].metric("Naming precision", f"{report.naming_precision:.2f}" if graded else "—",
                      help="share of live latents whose name names the true concept they track best")
metric_cols[5].metric("Concepts recovered", f"{report.recovery} / {report.n_concepts}" if graded else "—",
                      help=f"true concepts with a latent of AUROC ≥ {report.threshold:g}")

# -- 2. the feature table ---------------------------------------------------------------------------
st.header("Features")
query = st.text_input("Search by name", key="cl.dn.search", placeholder="e.g. red, striped, circle")
shown = dn.search(table, query)
st.caption(f"{len(shown)} of {len(table)} live latents" + (f" match “{query}”" if query else "") + "; sorted by AUROC of their best true concept.")
shown = shown.sort_values(["auroc", "latent"], ascending=[False, True], kind="stable").reset_index(drop=True)
st.dataframe(
    shown, hide_index=True, key="cl.dn.table", height=300,
    column_order=["latent", "name", "auto_name", "score", "runner_up", "margin", "firing", "best_concept", "auroc", "renamed"],
    column_config={
        "latent": st.column_config.NumberColumn("latent", width="small"),
        "auto_name": st.column_config.TextColumn("automatic name"),
        "score": st.column_config.NumberColumn("cosine", format="%.3f", help="cosine of the decoder row with the name's text embedding"),
        "runner_up": st.column_config.TextColumn("runner-up"),
        "margin": st.column_config.NumberColumn("margin", format="%.3f"),
        "firing": st.column_config.NumberColumn("fires on", format="percent"),
        "best_concept": st.column_config.TextColumn("best true concept"),
        "auroc": st.column_config.ProgressColumn("AUROC", min_value=0.5, max_value=1.0, format="%.3f"),
        "renamed": st.column_config.CheckboxColumn("renamed", width="small"),
    },
)
if shown.empty:
    st.info("No latent matches the search.")
    st.stop()

# -- 3. one latent ------------------------------------------------------------------------------------
st.header("Inspect a latent")
options = shown["latent"].tolist()
latent = st.selectbox("Latent", options, key="cl.dn.latent", format_func=lambda m: f"{m} · {names[m]}")
row = names.table.iloc[latent]
info = table.set_index("latent").loc[latent]
left, right = st.columns([2, 3])
with left:
    st.subheader(f"Latent {latent}: “{names[latent]}”")
    if bool(row["renamed"]):
        st.caption(f"renamed by {row['renamed_by']}; automatic name “{row['auto_name']}”")
    if graded:
        st.markdown(f"Best true concept: `{info['best_concept']}` (AUROC {info['auroc']:.3f}); fires on {info['firing']:.0%} of the images.")
    else:
        st.markdown(f"Fires on {info['firing']:.0%} of the images.")
    st.dataframe(
        {"name": list(row["candidates"]), "cosine": [float(s) for s in row["candidate_scores"]]},
        hide_index=True, key="cl.dn.candidates",
        column_config={"cosine": st.column_config.NumberColumn("cosine", format="%.3f")},
    )
    name_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    new_name = name_col.text_input("New name", value=names[latent], key=f"cl.dn.rename.{latent}")
    if button_col.button("Rename", key="cl.dn.rename_button"):
        if new_name.strip():
            renames[int(latent)] = " ".join(new_name.split())
            st.rerun()
        else:
            st.error("A name cannot be empty.")
with right:
    values = z[:, latent]
    histogram = go.Figure(go.Histogram(x=values[values > 0], nbinsx=40, marker_color="#4C78A8"))
    histogram.update_layout(
        title={"text": f"Activation of latent {latent} on the {int((values > 0).sum())} images where it fires "
                       f"(zero on {int((values == 0).sum())})", "x": 0, "font": {"size": 14}},
        height=320, template="plotly_white", margin={"t": 50, "b": 40, "l": 40, "r": 10},
        xaxis={"title": {"text": "activation"}}, yaxis={"title": {"text": "images"}}, bargap=0.05,
    )
    st.plotly_chart(histogram, key="cl.dn.histogram")

st.subheader("Top-activating images")
top, _ = rank_indices(z[:, latent], np.arange(len(z)), TOP_K)
top = top[z[top, latent] > 0]  # images where it does not fire are not its top images
if len(top):
    attributes, _ = dataset_table(dataset)
    if selection.is_shapesworld:
        captions = [workbench.image_caption(int(i), attributes.iloc[int(i)], float(z[i, latent])) for i in top]
    else:
        captions = [f"{float(z[i, latent]):+.2f} · #{int(i)} {attributes['class_name'].iloc[int(i)]}" for i in top]
    workbench.image_grid([dataset_image(dataset, int(i)) for i in top], captions, columns=8)
else:
    st.info("This latent does not fire on any shown image.")

st.subheader("Aligned text concepts")
st.dataframe(
    dn.alignments(run, workbench.text_bank(backbone), z, embeddings, latent), hide_index=True, key="cl.dn.alignment",
    column_config={"cosine": st.column_config.NumberColumn("cosine", format="%.3f"),
                   "correlation": st.column_config.NumberColumn("correlation", format="%.3f")},
)
st.caption("Cosine: decoder direction vs the concept's text embedding. "
           "Correlation: the latent's activation vs the concept's score c·x over the shown images.")

# -- 4. save ------------------------------------------------------------------------------------------
st.header("Save")
name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
folder = name_col.text_input("Folder name", value=f"sae-{sae.d_sae_}-seed{selection.seed}", key="cl.dn.save_name")
if button_col.button("Save", key="cl.dn.save", type="primary"):
    try:
        path = dn.save_run(folder, run)
    except (ValueError, OSError) as error:
        st.error(str(error))
    else:
        st.success(f"Saved to `{path}` (sae/ in sae-lens format, names/ with {len(renames)} rename(s), run.json).")
st.caption(f"Runs are saved under `{dn.discovery_root()}`; renames are kept for this session until saved.")
