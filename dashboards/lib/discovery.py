"""What the Discovered concepts page needs: a cached SAE on the train split's embeddings, its
named latents, a feature table, top images, alignment with the text concepts, and saved runs
under $CONCEPTLAB_HOME/discovery.

Only conceptlab's public API is used: ``conceptlab.discovery`` (SparseAutoencoder, naming,
grading, alignment) and ``conceptlab.concepts`` (the ShapesWorld text-concept bank via lib.cbm).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from conceptlab.discovery import (
    LatentNames,
    SparseAutoencoder,
    align_concepts,
    SHAPES_TEMPLATES,
    auroc_matrix,
    load_vocabulary,
    name_latents,
)
from conceptlab.utils import conceptlab_home

__all__ = [
    "DEFAULTS",
    "ENV_TRAIN",
    "SavedRun",
    "alignments",
    "best_concepts",
    "default_train_size",
    "discovery_root",
    "feature_table",
    "latent_names",
    "load_run",
    "save_run",
    "saved_runs",
    "search",
    "top_images",
    "train_sae",
]

#: ``$CONCEPTLAB_DISCOVERY_TRAIN``: train images the page starts with (tests and demos make it smaller)
ENV_TRAIN = "CONCEPTLAB_DISCOVERY_TRAIN"
BUILTIN_TRAIN = 2000
#: the SAE the page trains by default (see tests/test_dn_shapes.py for why these values)
DEFAULTS = {"n_latents": 64, "l1": 1e-2, "steps": 400, "batch_size": 1024, "centre": True}
#: the naming templates: the zoo's caption grammar, ensembled per word
TEMPLATES = tuple(SHAPES_TEMPLATES)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


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
def _train(train_key: str, n_latents: int, l1: float, steps: int, batch_size: int, centre: bool, seed: int, _embeddings: np.ndarray):
    X = np.asarray(_embeddings, dtype=np.float32)
    mean = X.mean(0) if centre else np.zeros(X.shape[1], dtype=np.float32)
    sae = SparseAutoencoder(n_latents=n_latents, l1=l1, steps=steps, batch_size=batch_size, seed=seed, progress=False)
    sae.fit(X - mean, provenance={"store_key": train_key, "centred_on_train_mean": bool(centre)})
    return sae, mean


def train_sae(train, n_latents: int, l1: float, steps: int, batch_size: int = 1024, centre: bool = True, seed: int = 49):
    """(SAE, input mean): trained once per (train split, settings); the page subtracts the mean."""
    with st.spinner(f"Training a {n_latents}-latent SAE on {len(train.labels)} train embeddings ({steps} steps) ...", show_time=True):
        return _train(train.key, int(n_latents), float(l1), int(steps), int(batch_size), bool(centre), int(seed), train.embeddings)


@st.cache_resource(show_spinner=False, max_entries=8)
def _names(sae_id: str, fingerprint: str, _sae, _backbone) -> LatentNames:
    return name_latents(_sae, _backbone, load_vocabulary(), templates=list(TEMPLATES))


def latent_names(sae_id: str, sae, backbone) -> LatentNames:
    """Automatic names (cached per SAE): decoder rows vs the caption-grammar text embeddings
    ("a {} shape", "a {}", "a shape on a {} background", "a shape at the {}", ensembled)."""
    with st.spinner("Naming the latents against the vocabulary ..."):
        return _names(sae_id, backbone.fingerprint, sae, backbone)


def top_images(z: np.ndarray, latent: int, k: int) -> np.ndarray:
    """Indices of the ``k`` images where ``latent`` fires most (ties by index), zero activations left out."""
    column = np.asarray(z)[:, latent]
    order = np.argsort(-column, kind="stable")[:k]
    return order[column[order] > 0]


def best_concepts(z: np.ndarray, concepts: np.ndarray, concept_names: list[str]) -> pd.DataFrame:
    """Per latent: the true concept its activation tracks best and that AUROC."""
    auc = auroc_matrix(z, concepts)
    safe = np.where(np.isnan(auc), -np.inf, auc)
    best = safe.argmax(1)
    return pd.DataFrame({"best_concept": [concept_names[j] for j in best], "auroc": auc[np.arange(len(best)), best]})


def feature_table(names: LatentNames, z: np.ndarray, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per latent live on the shown images: name, automatic name, score, runner-up,
    firing rate, mean activation when firing, best true concept and AUROC."""
    z = np.asarray(z)
    fires = z > 0
    table = names.table
    frame = pd.DataFrame({
        "latent": table["latent"].astype(int),
        "name": table["name"],
        "auto_name": table["auto_name"],
        "score": table["score"].astype(float),
        "runner_up": table["runner_up"],
        "margin": table["margin"].astype(float),
        "renamed": table["renamed"].astype(bool),
        "firing": fires.mean(0),
        "mean_activation": np.where(fires.any(0), z.sum(0) / np.maximum(fires.sum(0), 1), 0.0),
        "best_concept": truth["best_concept"],
        "auroc": truth["auroc"].astype(float),
    })
    return frame[fires.any(0)].reset_index(drop=True)


def search(table: pd.DataFrame, query: str) -> pd.DataFrame:
    """Rows whose name, automatic name or best concept contains ``query`` (case-insensitive)."""
    query = " ".join(str(query).lower().split())
    if not query:
        return table
    hay = (table["name"].astype(str) + "|" + table["auto_name"].astype(str) + "|" + table["best_concept"].astype(str)).str.lower()
    return table[hay.str.contains(query, regex=False)].reset_index(drop=True)


def alignments(names: LatentNames, bank, z: np.ndarray, bank_scores: np.ndarray, latent: int, top: int = 3) -> pd.DataFrame:
    """The text concepts closest to one latent, ranked by direction cosine and by activation correlation."""
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


# -- saved runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedRun:
    name: str
    path: Path
    n_latents: int
    renamed: int
    mtime: float


def discovery_root() -> Path:
    """Where the page saves SAEs and their names: ``$CONCEPTLAB_HOME/discovery``."""
    return conceptlab_home() / "discovery"


def save_run(name: str, sae: SparseAutoencoder, mean: np.ndarray, names: LatentNames, provenance: dict[str, Any]) -> Path:
    """``name/sae`` (sae-lens format), ``name/names`` (LatentNames with renames), ``name/run.json``."""
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} cannot name a folder: use letters, digits, '.', '_' or '-' (at most 80, no spaces)")
    path = discovery_root() / name
    path.mkdir(parents=True, exist_ok=True)
    sae.save(path / "sae")
    names.save(path / "names")
    run = {"format": "conceptlab.discovery-run", "input_mean": [float(v) for v in np.asarray(mean)], **provenance,
           "renamed": {int(r.latent): {"name": r.name, "auto_name": r.auto_name, "by": r.renamed_by}
                       for r in names.table.itertuples() if r.renamed}}
    (path / "run.json").write_text(json.dumps(run, indent=2, default=str))
    return path


def saved_runs() -> list[SavedRun]:
    root = discovery_root()
    found = []
    if root.is_dir():
        for run in root.glob("*/run.json"):
            try:
                data = json.loads(run.read_text())
            except (OSError, ValueError):
                continue
            found.append(SavedRun(run.parent.name, run.parent, int(data.get("n_latents", 0)), len(data.get("renamed", {})), run.stat().st_mtime))
    return sorted(found, key=lambda r: -r.mtime)


@st.cache_resource(show_spinner=False, max_entries=8)
def _load(path: str, mtime: float):
    folder = Path(path)
    data = json.loads((folder / "run.json").read_text())
    return SparseAutoencoder.load(folder / "sae"), np.asarray(data["input_mean"], dtype=np.float32), LatentNames.load(folder / "names"), data


def load_run(run: SavedRun):
    """(SAE, input mean, names, run.json) of a saved run."""
    return _load(str(run.path), run.mtime)
