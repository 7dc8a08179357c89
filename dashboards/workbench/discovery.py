"""What the Discovered concepts page needs, cached: a discovery run (SAE + latent names) trained on
the train split's embeddings or opened from ``$CONCEPTLAB_HOME/discovery``, its grading against the
ground truth, and the tables the page draws.

The computing is the library's: ``conceptlab.discovery.discover`` trains and names with
ShapesWorld's recommended settings (``conceptlab.data.SAE_SETTINGS``, centring included),
``DiscoveryRun`` saves and loads runs atomically, ``grade_latents`` gives naming precision,
recovery and each latent's best true concept, ``align_concepts`` the aligned text concepts.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import streamlit as st

from conceptlab.data import SAE_SETTINGS
from conceptlab.discovery import (
    DiscoveryRun,
    GradingReport,
    RunInfo,
    align_concepts,
    check_run_name,
    discover,
    discovery_root,
    list_runs,
)

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
ENV_TRAIN = "CONCEPTLAB_DISCOVERY_TRAIN"
BUILTIN_TRAIN = 2000
#: the settings the page trains with; the analyst changes n_latents, l1 and steps
DEFAULTS = dict(SAE_SETTINGS)


def default_train_size() -> int:
    text = os.environ.get(ENV_TRAIN, "").strip()
    if not text:
        return BUILTIN_TRAIN
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{ENV_TRAIN}={text!r}: expected an integer") from None
    if value < 100:
        raise ValueError(f"{ENV_TRAIN}={text!r}: at least 100 train images")
    return value


@st.cache_resource(show_spinner=False, max_entries=4)
def _discover(train_key: str, fingerprint: str, settings_json: str, _embeddings: np.ndarray, _backbone) -> DiscoveryRun:
    return discover(_embeddings, _backbone, json.loads(settings_json), provenance={"train_key": train_key})


def train_run(backbone, train, **overrides) -> DiscoveryRun:
    """The run trained on ``train`` (a SplitData) with :data:`DEFAULTS` updated by ``overrides``;
    trained and named once per (backbone, train split, settings)."""
    settings = {**DEFAULTS, **overrides}
    with st.spinner(f"Training a {settings['n_latents']}-latent SAE on {len(train.labels)} train embeddings "
                    f"({settings['steps']} steps) and naming its latents ...", show_time=True):
        return _discover(train.key, backbone.fingerprint, json.dumps(settings, sort_keys=True), train.embeddings, backbone)


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
