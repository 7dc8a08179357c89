"""What the Discovered concepts page needs, cached: a discovery run (SAE + latent names) trained on
the train split's embeddings or opened from ``$CONCEPTLAB_HOME/discovery``, its grading against the
ground truth, and the tables the page draws.

The computing is the library's: ``conceptlab.discovery.discover`` trains and names with
ShapesWorld's recommended settings (``conceptlab.data.SAE_SETTINGS``, centring included),
``DiscoveryRun`` saves and loads runs atomically, ``grade_latents`` gives naming precision,
recovery and each latent's best true concept, ``align_concepts`` the aligned text concepts.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from conceptlab.data import APP_SIZES, ENV_DISCOVERY_TRAIN, SAE_SETTINGS, discovery_train_size
from conceptlab.discovery import (
    DiscoveryRun,
    GradingReport,
    LatentRenames,
    RunInfo,
    align_concepts,
    check_run_name,
    discover,
    discovery_root,
    duplicate_names,
    list_runs,
)
from conceptlab.discovery.train import TrainProgress

__all__ = [
    "BUILTIN_TRAIN",
    "DEFAULTS",
    "ENV_TRAIN",
    "alignments",
    "default_train_size",
    "discovery_root",
    "feature_table",
    "load_run",
    "save_run",
    "saved_runs",
    "search",
    "train_run",
]

#: ``$CONCEPTLAB_DISCOVERY_TRAIN``: train images the page starts with (tests and demos make it smaller)
ENV_TRAIN = ENV_DISCOVERY_TRAIN
BUILTIN_TRAIN = APP_SIZES["train"]
#: the settings the page trains with; the analyst changes n_latents, l1 and steps
DEFAULTS = dict(SAE_SETTINGS)
default_train_size = discovery_train_size


#: session state: the key of a training run the analyst cancelled (the page then waits for "Train again")
CANCELLED = "cl.dn.cancelled"
#: session state: the last progress a training run reported (step, steps), shown after a cancel
LAST_PROGRESS = "cl.dn.last_progress"
MAX_TRAINED = 4


@st.cache_resource(show_spinner=False)
def _trained_runs() -> OrderedDict:
    """Runs trained by this server, newest last (shared by sessions like ``st.cache_resource``; kept
    by hand so that training can draw its progress bar, which a cached function cannot replay)."""
    return OrderedDict()


def run_key(backbone, train, settings: dict) -> str:
    return f"train:{backbone.fingerprint}:{train.key}:{json.dumps(settings, sort_keys=True)}"


def _cancel(key: str) -> None:
    st.session_state[CANCELLED] = key


def _describe(progress: TrainProgress) -> str:
    eta = progress.eta_seconds
    return (f"Training the SAE: step {progress.step} of {progress.steps} · loss {progress.loss:.4g} · "
            f"{progress.seconds:.0f} s so far, about {eta:.0f} s left")


def train_run(backbone, train, **overrides) -> DiscoveryRun:
    """The run trained on ``train`` (a SplitData) with :data:`DEFAULTS` updated by ``overrides``;
    trained and named once per (backbone, train split, settings), with a progress bar (steps, ETA)
    and a Cancel button. A cancelled run is discarded (nothing partial is kept or cached) and the
    page stops with a "Train again" button; the exception ends the script run, so any other
    click during training also stops it, and the next run starts it afresh."""
    settings = {**DEFAULTS, **overrides}
    key = run_key(backbone, train, settings)
    runs = _trained_runs()
    if key in runs:
        runs.move_to_end(key)
        return runs[key]
    if st.session_state.get(CANCELLED) == key:
        step, steps = st.session_state.get(LAST_PROGRESS, (0, settings["steps"]))
        st.warning(f"Training cancelled after step {step} of {steps}; the partial SAE was discarded.", icon=":material/cancel:")
        st.button("Train again", key="cl.dn.train_again", on_click=st.session_state.pop, args=(CANCELLED, None))
        st.stop()
    bar_col, cancel_col = st.columns([5, 1], vertical_alignment="center")
    bar = bar_col.progress(0.0, text=f"Training a {settings['n_latents']}-latent SAE on {len(train.labels)} train embeddings ({settings['steps']} steps) ...")
    cancel_col.button("Cancel training", key="cl.dn.cancel", on_click=_cancel, args=(key,))
    every = max(1, int(settings["steps"]) // 100)

    def report(progress: TrainProgress) -> None:
        st.session_state[LAST_PROGRESS] = (progress.step, progress.steps)
        if progress.step % every == 0 or progress.step == progress.steps:
            bar.progress(progress.fraction, text=_describe(progress))  # also where a click interrupts the run

    run = discover(train.embeddings, backbone, settings, provenance={"train_key": train.key}, callback=report,
                   cancel=lambda: st.session_state.get(CANCELLED) == key)
    bar.progress(1.0, text="Naming done.")
    bar.empty()
    cancel_col.empty()
    runs[key] = run
    while len(runs) > MAX_TRAINED:
        runs.popitem(last=False)
    return run


def saved_runs() -> list[RunInfo]:
    return list_runs(discovery_root())


@st.cache_resource(show_spinner=False, max_entries=8)
def _load(path: str, mtime: float) -> DiscoveryRun:
    return DiscoveryRun.load(path)


def load_run(info: RunInfo) -> DiscoveryRun:
    """A saved run (cached until its run.json changes)."""
    return _load(str(info.path), info.mtime)


def save_run(name: str, run: DiscoveryRun):
    """Save under ``$CONCEPTLAB_HOME/discovery/<name>``; a bad name is a ValueError."""
    return run.save(discovery_root() / check_run_name(name))


def feature_table(run: DiscoveryRun, report: GradingReport) -> pd.DataFrame:
    """One row per latent live on the graded images: its names and evidence (``run.names``) next
    to its grading (best true concept, AUROC, firing rate, mean activation when firing)."""
    names = run.names.table.set_index("latent")
    graded = report.latents.set_index("latent")
    frame = pd.DataFrame({
        "latent": graded.index.astype(int),
        "name": names.loc[graded.index, "name"].to_numpy(),
        "auto_name": names.loc[graded.index, "auto_name"].to_numpy(),
        "score": names.loc[graded.index, "score"].astype(float).to_numpy(),
        "runner_up": names.loc[graded.index, "runner_up"].to_numpy(),
        "margin": names.loc[graded.index, "margin"].astype(float).to_numpy(),
        "renamed": names.loc[graded.index, "renamed"].astype(bool).to_numpy(),
        "firing": graded["firing"].to_numpy(),
        "mean_activation": graded["mean_activation"].to_numpy(),
        "best_concept": graded["best_concept"].to_numpy(),
        "auroc": graded["auroc"].astype(float).to_numpy(),
    })
    return frame.reset_index(drop=True)


def search(table: pd.DataFrame, query: str) -> pd.DataFrame:
    """Rows whose name, automatic name or best concept contains ``query`` (case-insensitive)."""
    query = " ".join(str(query).lower().split())
    if not query:
        return table
    hay = (table["name"].astype(str) + "|" + table["auto_name"].astype(str) + "|" + table["best_concept"].astype(str)).str.lower()
    return table[hay.str.contains(query, regex=False)].reset_index(drop=True)


def alignments(run: DiscoveryRun, bank, z: np.ndarray, embeddings: np.ndarray, latent: int, top: int = 3) -> pd.DataFrame:
    """The text concepts closest to one latent, ranked by direction cosine and by the correlation of
    its activation with the concepts' scores c·x (``align_concepts``)."""
    names = run.names
    bank_scores = np.asarray(embeddings) @ bank.vectors.numpy().T
    frames = []
    for by in ("cosine", "correlation"):
        frame = align_concepts(
            directions_a=names.directions[latent : latent + 1], directions_b=bank,
            scores_a=np.asarray(z)[:, latent : latent + 1], scores_b=bank_scores,
            names_a=[names[latent]], by=by, top=top,
        )
        frame.insert(0, "ranked by", by)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[["ranked by", "rank", "b_name", "cosine", "correlation"]].rename(columns={"b_name": "text concept"})


# -- the analyst's renames: kept per run in the session, and as a draft file until saved --------------

#: session state: run id -> LatentRenames (the pending renames of that run)
RENAMES = "cl.dn.renames"
DRAFTS_DIR = ".drafts"  # hidden: list_runs skips it


def draft_path(run_id: str) -> Path:
    """Where the unsaved renames of a run wait between sessions (a refresh starts a new session)."""
    return discovery_root() / DRAFTS_DIR / f"{hashlib.sha256(run_id.encode()).hexdigest()[:20]}.json"


def pending_renames(run_id: str, run: DiscoveryRun) -> tuple[LatentRenames, bool]:
    """This run's pending renames: from the session, else from its draft file (restored: True)."""
    store = st.session_state.setdefault(RENAMES, {})
    edits = store.get(run_id)
    if edits is not None and len(edits.base) == run.n_latents:
        return edits, False
    restored = False
    edits = LatentRenames(run.names)
    path = draft_path(run_id)
    if path.is_file():
        try:
            edits = LatentRenames.load(path, run.names)
            restored = len(edits) > 0
        except (OSError, ValueError) as error:
            st.warning(f"Could not restore the unsaved renames in `{path}`: {error}")
    store[run_id] = edits
    return edits, restored


def keep_draft(run_id: str, edits: LatentRenames) -> None:
    """Write the pending renames to the run's draft file (removed when nothing is pending)."""
    path = draft_path(run_id)
    if len(edits):
        edits.save(path)
    else:
        path.unlink(missing_ok=True)


def with_duplicates(table: pd.DataFrame, names) -> pd.DataFrame:
    """The feature table with ``same_name_as``: the other listed latents that carry the same name
    (``duplicate_names`` over the listed latents)."""
    groups = duplicate_names(names, [int(m) for m in table["latent"]])
    shared = {m: [o for o in group if o != m] for group in groups.values() for m in group}
    table = table.copy()
    table["same_name_as"] = [", ".join(map(str, shared.get(int(m), []))) for m in table["latent"]]
    return table
