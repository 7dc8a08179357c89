"""Discover concepts with a sparse autoencoder on the backbone's embeddings, browse and rename its named latents."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import workbench
from workbench import discovery as dn

from conceptlab.analysis import dataset_image, dataset_table
from conceptlab.discovery import activation_bands, duplicate_names, feature_density, grade_latents

TOP_K = 16
CURRENT = "cl.dn.current"  # session state: the latent id the panel shows (the picker and a table click set it)
MESSAGE = "cl.dn.message"  # session state: (kind, text) saying what the last rename did
SAVED = "cl.dn.saved"  # session state: (kind, text) saying what the last save did
KEEP = "session"  # widgets keep their value across page switches (Streamlit's persist_state)

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
if st.session_state.get("cl.dn.source") not in (None, *choices):
    st.session_state.pop("cl.dn.source")  # a run that is gone
source_col, settings_col = st.columns([2, 3])
source = source_col.selectbox("SAE", choices, key="cl.dn.source", persist_state=KEEP,
                              help=f"Train on this backbone, or open a run saved under `{dn.discovery_root()}`.")
with settings_col.expander("Training settings", expanded=False):
    cols = st.columns(4)
    train_size = cols[0].number_input("Train images", 100, 20000, TRAIN_SIZE, step=500, key="cl.dn.train_size", persist_state=KEEP)
    n_latents = cols[1].number_input("Latents", 8, 4096, dn.DEFAULTS["n_latents"], step=64, key="cl.dn.latents", persist_state=KEEP)
    l1 = cols[2].select_slider("L1", [3e-5, 1e-3, 3e-3, 1e-2, 3e-2], value=dn.DEFAULTS["l1"], key="cl.dn.l1", persist_state=KEEP,
                               help="sparsity penalty; 3e-5 is DN-CBM's (dense on 64-d embeddings)")
    steps = cols[3].number_input("Steps", 10, 5000, dn.DEFAULTS["steps"], step=100, key="cl.dn.steps", persist_state=KEEP)
    centring = "centred on the train mean (inside the SAE)" if dn.DEFAULTS["center"] else "raw"
    st.caption(f"Inputs are {centring}; names come from the caption grammar (“a {{word}} shape”, "
               "“a shape on a {word} background”, …) ensembled per vocabulary word.")

if source == choices[0]:
    train = workbench.load_split(backbone, "train", train_size, selection.seed, spec=selection.dataset_spec)
    trained = dn.train_run(backbone, train, n_latents=int(n_latents), l1=float(l1), steps=int(steps))
    run_id = dn.run_key(backbone, train, {**dn.DEFAULTS, "n_latents": int(n_latents), "l1": float(l1), "steps": int(steps)})
    label = f"trained on {len(train.labels)} train embeddings ({n_latents} latents, L1 {l1:g}, {steps} steps)"
else:
    info = saved[choices.index(source) - 1]
    try:
        trained = dn.load_run(info)
    except (OSError, ValueError, KeyError) as error:
        st.error(f"Could not open the saved run at `{info.path}`: {error}")
        st.stop()
    if trained.sae.d_in_ != backbone.dim:
        st.error(f"The saved SAE encodes {trained.sae.d_in_}-d embeddings, but `{backbone.spec}` gives {backbone.dim}-d ones.")
        st.stop()
    run_id = f"saved:{info.path}"
    label = f"saved run `{info.name}` from `{info.path}`"

# the analyst's renames: a table keyed by latent id (the library's LatentRenames), kept in the
# session and in a draft file until the run is saved
edits, restored = dn.pending_renames(run_id, trained)
run = edits.apply(trained)
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
table = dn.with_duplicates(dn.feature_table(run, report), names)
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


def _discard() -> None:
    edits.discard()
    dn.keep_draft(run_id, edits)
    st.session_state[MESSAGE] = ("info", "Discarded the unsaved renames.")


if restored:
    st.info(f"Restored {len(edits)} unsaved rename(s) from your last session (a draft in `{dn.draft_path(run_id)}`).", icon=":material/restore:")
if len(edits):
    listed = ", ".join(f"{m} → “{n}”" for m, n in sorted(edits.pending.items())[:8]) + (" …" if len(edits) > 8 else "")
    warn_col, discard_col = st.columns([5, 1], vertical_alignment="center")
    warn_col.warning(f"**{len(edits)} unsaved rename(s)**: {listed}. They are not in the run until you save it (section Save); "
                     "until then a draft keeps them if the page is refreshed.", icon=":material/edit_note:")
    discard_col.button("Discard renames", key="cl.dn.discard", on_click=_discard)

# -- 2. the feature table ---------------------------------------------------------------------------
st.header("Features")
query = st.text_input("Search by name", key="cl.dn.search", placeholder="e.g. red, striped, circle", persist_state=KEEP)
shown = dn.search(table, query)
shown = shown.sort_values(["auroc", "latent"], ascending=[False, True], kind="stable").reset_index(drop=True)
duplicates = duplicate_names(names, table["latent"].tolist())
st.caption(f"{len(shown)} of {len(table)} live latents" + (f" match “{query}”" if query else "")
           + "; sorted by AUROC of their best true concept. Click a row to open that latent.")
if duplicates:
    st.warning("Names carried by several live latents: " + "; ".join(f"“{n}” ({', '.join(map(str, ids))})" for n, ids in list(duplicates.items())[:10])
               + (" …" if len(duplicates) > 10 else "") + ". Column “same name as” flags them.", icon=":material/content_copy:")
listed_latents = [int(m) for m in shown["latent"]]


def _open_row(latents=listed_latents) -> None:
    rows = st.session_state["cl.dn.table"].selection.rows
    if rows and rows[0] < len(latents):
        st.session_state[CURRENT] = latents[rows[0]]


st.dataframe(
    shown, hide_index=True, key="cl.dn.table", height=300, on_select=_open_row, selection_mode="single-row",
    column_order=["latent", "name", "auto_name", "same_name_as", "score", "runner_up", "margin", "firing", "best_concept", "auroc", "renamed"],
    column_config={
        "latent": st.column_config.NumberColumn("latent", width="small"),
        "auto_name": st.column_config.TextColumn("automatic name"),
        "same_name_as": st.column_config.TextColumn("same name as", help="other live latents with this name"),
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
if st.session_state.get(CURRENT) not in listed_latents:
    st.session_state[CURRENT] = listed_latents[0]
st.session_state["cl.dn.latent"] = st.session_state[CURRENT]  # the picker shows the current latent
auto_names = names.table["auto_name"].tolist()


def _picked() -> None:
    st.session_state[CURRENT] = int(st.session_state["cl.dn.latent"])


# options are latent ids; labels use the automatic name, which a rename never changes, so the
# picker's value survives every rename
st.selectbox("Latent", listed_latents, key="cl.dn.latent", on_change=_picked,
             format_func=lambda m: f"{m} · {auto_names[m]}", help="latent id · automatic name")
latent = int(st.session_state[CURRENT])
row = names.table.iloc[latent]
info = table.set_index("latent").loc[latent]


def _rename(latent: int) -> None:
    """Rename the latent whose box was typed in (the id is bound when the button is drawn)."""
    result = edits.rename(latent, st.session_state.get(f"cl.dn.rename.{latent}", ""))
    dn.keep_draft(run_id, edits)
    st.session_state[MESSAGE] = ("success" if result.changed and not result.shared_with else "warning", result.message)


left, right = st.columns([2, 3])
with left:
    st.subheader(f"Latent {latent}: “{names[latent]}”")
    if bool(row["renamed"]):
        saved_or_not = "not saved yet" if latent in edits.pending else f"by {row['renamed_by']}"
        st.caption(f"renamed ({saved_or_not}); automatic name “{row['auto_name']}”")
    if info["same_name_as"]:
        st.caption(f":orange[Same name as latent(s) {info['same_name_as']}]")
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
    name_col.text_input("New name", value=names[latent], key=f"cl.dn.rename.{latent}", persist_state=KEEP)
    button_col.button("Rename", key=f"cl.dn.rename_button.{latent}", on_click=_rename, args=(latent,))
    if st.session_state.get(MESSAGE):
        kind, text = st.session_state[MESSAGE]
        getattr(st, kind)(text)
values = z[:, latent]
bands = activation_bands(values, top=TOP_K)
with right:
    histogram = go.Figure(go.Histogram(x=values[values > 0], nbinsx=40, marker_color="#4C78A8", name="images"))
    for band in bands[1:-1]:  # the quantile bands' lower edges
        histogram.add_vline(x=band.low, line_dash="dot", line_color="#E45756", annotation_text=band.name.split()[-1], annotation_font_size=10)
    histogram.update_layout(
        title={"text": f"Activation of latent {latent} on the {int((values > 0).sum())} images where it fires "
                       f"(zero on {int((values == 0).sum())}); dotted: quantile bands", "x": 0, "font": {"size": 14}},
        height=300, template="plotly_white", margin={"t": 50, "b": 40, "l": 40, "r": 10}, showlegend=False,
        xaxis={"title": {"text": "activation"}}, yaxis={"title": {"text": "images"}}, bargap=0.05,
    )
    st.plotly_chart(histogram, key="cl.dn.histogram")
    density = feature_density(z)
    live = density > 0
    log_density = np.log10(density[live])
    chart = go.Figure(go.Histogram(x=log_density, nbinsx=30, marker_color="#9D7660"))
    if density[latent] > 0:
        chart.add_vline(x=float(np.log10(density[latent])), line_color="#E45756", annotation_text=f"latent {latent}")
    chart.update_layout(
        title={"text": f"Feature density: log10 of the share of images each of the {int(live.sum())} live latents fires on", "x": 0, "font": {"size": 14}},
        height=260, template="plotly_white", margin={"t": 50, "b": 40, "l": 40, "r": 10},
        xaxis={"title": {"text": "log10 firing share"}}, yaxis={"title": {"text": "latents"}}, bargap=0.05,
    )
    st.plotly_chart(chart, key="cl.dn.density")

st.subheader("Examples across the activation range")
if bands:
    attributes, _ = dataset_table(dataset)
    st.caption("Top activations, then random images from each quantile band of the latent's non-zero activations "
               "(highest band first), then random images among all where it fires; images where it is zero are never shown.")
    for band in bands:
        st.markdown(f"**{band.label}**")
        if selection.is_shapesworld:
            captions = [workbench.image_caption(int(i), attributes.iloc[int(i)], float(v)) for i, v in zip(band.indices, band.values)]
        else:
            captions = [f"{float(v):+.2f} · #{int(i)} {attributes['class_name'].iloc[int(i)]}" for i, v in zip(band.indices, band.values)]
        workbench.image_grid([dataset_image(dataset, int(i)) for i in band.indices], captions, columns=8)
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


def _save() -> None:
    folder = st.session_state.get("cl.dn.save_name", "")
    try:
        path = dn.save_run(folder, edits.apply(trained))
    except (ValueError, OSError) as error:
        st.session_state[SAVED] = ("error", str(error))
        return
    n = len(edits)
    edits.discard()
    dn.keep_draft(run_id, edits)  # the renames are in the saved run now
    st.session_state[MESSAGE] = None
    st.session_state[SAVED] = ("success", f"Saved to `{path}` (sae/ in sae-lens format, names/ with {n} new rename(s), run.json); now showing the saved run.")
    st.session_state["cl.dn.source"] = f"Saved: {path.name}"
    st.session_state.get(dn.RENAMES, {}).pop(f"saved:{path}", None)  # the saved run is read afresh
    dn.draft_path(f"saved:{path}").unlink(missing_ok=True)


name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
name_col.text_input("Folder name", value=f"sae-{sae.d_sae_}-seed{selection.seed}", key="cl.dn.save_name", persist_state=KEEP)
button_col.button("Save", key="cl.dn.save", type="primary", on_click=_save)
if st.session_state.get(SAVED):
    kind, text = st.session_state.pop(SAVED)  # said once
    getattr(st, kind)(text)
st.caption(f"Runs are saved under `{dn.discovery_root()}`; renames are kept as a draft until saved.")
