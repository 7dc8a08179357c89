"""What the Concept bottleneck page needs: split embeddings with a progress bar, cached CBM
training, saved models under $CONCEPTLAB_HOME/models, and small pure helpers.

Only conceptlab's public API is used: ``conceptlab.cbm`` (PCBM, PCBM-h, editing, figures),
``conceptlab.concepts.text_concepts`` and ``conceptlab.probes.shapesworld_text_prompts``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from conceptlab.cbm import PCBM, ConceptBottleneckModel, PCBMHybrid
from conceptlab.cbm.editing import concept_shift
from conceptlab.concepts import text_concepts
from conceptlab.probes import shapesworld_text_prompts
from conceptlab.utils import conceptlab_home

from lib.loaders import get_store, load_dataset, load_embeddings
from lib.state import Selection

__all__ = [
    "ENV_SIZES",
    "METHODS",
    "SplitData",
    "SavedModel",
    "default_sizes",
    "load_saved_model",
    "load_split",
    "models_root",
    "safe_model_name",
    "saved_models",
    "save_model",
    "score_ranges",
    "shift_table",
    "text_bank",
    "train_model",
]

#: the methods the page can train: label -> class
METHODS = {"PCBM": PCBM, "PCBM-h": PCBMHybrid}
#: ``TRAIN:EVAL`` image counts the page starts with (a demo or a test can make them smaller)
ENV_SIZES = "CONCEPTLAB_CBM_SIZES"
BUILTIN_SIZES = (2000, 500)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def default_sizes() -> tuple[int, int]:
    """(train, val/shifted) image counts: ``$CONCEPTLAB_CBM_SIZES`` (``TRAIN:EVAL``) or 2000, 500."""
    text = os.environ.get(ENV_SIZES, "").strip()
    if not text:
        return BUILTIN_SIZES
    try:
        train, evaluation = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"{ENV_SIZES}={text!r}: expected TRAIN:EVAL, two integers") from None
    if train < 100 or evaluation < 50:
        raise ValueError(f"{ENV_SIZES}={text!r}: at least 100 train and 50 evaluation images")
    return train, evaluation


def page_sizes() -> tuple[int, int]:
    """:func:`default_sizes` for a page: a bad setting is shown as an error and the built-in
    sizes are used, so the page still works."""
    try:
        return default_sizes()
    except ValueError as error:
        st.error(f"{error}. Using {BUILTIN_SIZES[0]} and {BUILTIN_SIZES[1]}.")
        return BUILTIN_SIZES


@dataclass(frozen=True)
class SplitData:
    """One ShapesWorld split through the backbone: the dataset, its (N, d) embeddings, store key."""

    dataset: object
    embeddings: np.ndarray
    key: str

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.labels)


def load_split(backbone, split: str, size: int, seed: int) -> SplitData:
    """A split's embeddings from the store; computed with a progress bar the first time."""
    dataset = load_dataset(Selection(backbone.spec, split, int(size), int(seed)))
    store = get_store()
    key = store.key(backbone, dataset)
    if not store.contains(key):
        bar = st.progress(0.0, text=f"Embedding {len(dataset)} {split} images with `{backbone.spec}` (once; the store keeps them) ...")

        def report(done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"Embedding {split} images: {done} / {total}")

        store.get_or_compute(backbone, dataset, num_workers=0, progress=False, on_progress=report)
        bar.empty()
    embeddings, key = load_embeddings(backbone, dataset)
    return SplitData(dataset, embeddings, key)


@st.cache_resource(show_spinner=False, max_entries=4)
def _text_bank(fingerprint: str, spec: str, _backbone):
    prompts = shapesworld_text_prompts()
    return text_concepts(_backbone, list(prompts), prompts=prompts)


def text_bank(backbone):
    """The 25 ShapesWorld text concepts ("a red shape", "a circle", ...) in the backbone's space."""
    return _text_bank(backbone.fingerprint, backbone.spec, backbone)


@st.cache_resource(show_spinner=False, max_entries=8)
def _train(method: str, fingerprint: str, train_key: str, lam_scale: float, _bank, _embeddings, _labels, _class_names):
    kwargs = {"lam_scale": lam_scale}
    if method == "PCBM-h":
        kwargs["residual_lr"] = 0.001  # see probes/shapes_pcbm_h.toml: 0.01 is too large for raw embeddings
    return METHODS[method](_bank, list(_class_names), **kwargs).fit(_embeddings, _labels)


def train_model(method: str, backbone, train: SplitData, lam_scale: float = 2.0) -> ConceptBottleneckModel:
    """A PCBM / PCBM-h on the text bank, trained once per (method, weights, train split, λ scale)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; the page trains {', '.join(METHODS)}")
    bank = text_bank(backbone)
    with st.spinner(f"Training {method} on {len(train.labels)} train embeddings ...", show_time=True):
        return _train(method, backbone.fingerprint, train.key, float(lam_scale), bank, train.embeddings, train.labels, tuple(train.dataset.class_names))


@st.cache_data(show_spinner=False, max_entries=16)
def _shift(model_id: str, train_key: str, shifted_key: str, _model, _train_split: SplitData, _shifted: SplitData) -> pd.DataFrame:
    return concept_shift(_model, _train_split.embeddings, _shifted.embeddings, _train_split.labels, _shifted.labels)


def shift_table(model, model_id: str, train: SplitData, shifted: SplitData) -> pd.DataFrame:
    """``concept_shift`` between the train and shifted splits (cached per model and splits)."""
    return _shift(model_id, train.key, shifted.key, model, train, shifted)


def score_ranges(scores: np.ndarray, pad: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Slider bounds per concept: the training scores' range, widened by ``pad`` of it each side."""
    low, high = scores.min(0), scores.max(0)
    span = np.where(high > low, high - low, 1.0)
    return low - pad * span, high + pad * span


# -- saved models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedModel:
    name: str
    path: Path
    model_class: str
    n_concepts: int
    edits: int
    mtime: float


def models_root() -> Path:
    """Where the page saves models: ``$CONCEPTLAB_HOME/models``."""
    return conceptlab_home() / "models"


def saved_models() -> list[SavedModel]:
    """Every model folder under :func:`models_root` that a CBM's ``save`` wrote, newest first."""
    import json

    found = []
    root = models_root()
    if not root.is_dir():
        return found
    for config in root.glob("*/config.json"):
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        if data.get("format") != "conceptlab.ConceptBottleneckModel":
            continue
        found.append(
            SavedModel(
                config.parent.name, config.parent, str(data.get("model_class")), len(data.get("concept_names", [])),
                len(data.get("edits", [])), config.stat().st_mtime,
            )
        )
    return sorted(found, key=lambda m: -m.mtime)


@st.cache_resource(show_spinner=False, max_entries=8)
def _load(path: str, mtime: float) -> ConceptBottleneckModel:
    return ConceptBottleneckModel.load(path)


def load_saved_model(saved: SavedModel) -> ConceptBottleneckModel:
    return _load(str(saved.path), saved.mtime)


def safe_model_name(name: str) -> str:
    """``name`` if it can be a folder name (letters, digits, ``._-``; at most 80), else ValueError."""
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} cannot name a model folder: use letters, digits, '.', '_' or '-' (at most 80, no spaces)")
    return name


def save_model(model: ConceptBottleneckModel, name: str, overwrite: bool = False) -> Path:
    """Save into ``models_root()/name``; refuses to overwrite unless asked."""
    path = models_root() / safe_model_name(name)
    if (path / "config.json").exists() and not overwrite:
        raise FileExistsError(f"a model named {name!r} already exists at {path}; tick “overwrite” or choose another name")
    return model.save(path)
