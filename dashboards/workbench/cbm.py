"""What the Concept bottleneck page needs: split embeddings with a progress bar, cached CBM
training, saved models under $CONCEPTLAB_HOME/models, and small pure helpers.

Only conceptlab's public API is used: ``conceptlab.cbm`` (PCBM, PCBM-h, editing, figures); the
splits and the text-concept bank come from ``workbench.loaders``.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from conceptlab.cbm import ConceptBottleneckModel, available_methods
from conceptlab.cbm.calibration import CalibratedLayer
from conceptlab.cbm.editing import concept_shift, editing_comparison, groups_from_concepts
from conceptlab.cbm.grounding import GroundingResult, ground_model
from conceptlab.cbm.interventions import fit_calibrator, intervene_with_truth, intervention_curves
from conceptlab.concepts import text_bank_from_file
from conceptlab.data import APP_SIZES, ENV_CBM_SIZES, METHOD_SETTINGS, cbm_page_sizes
from conceptlab.utils import conceptlab_home
from workbench.loaders import SplitData, load_split, text_bank

__all__ = [
    "ENV_SIZES",
    "METHODS",
    "SplitData",
    "SavedModel",
    "concept_frame",
    "default_sizes",
    "edit_comparison",
    "family_grounding",
    "intervention_study",
    "is_probability_model",
    "load_saved_model",
    "true_value_intervention",
    "where_it_looks",
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
def page_methods() -> dict[str, type]:
    """The methods the page can train on its text bank, read from the method registry: display
    name -> class (every method that works on any bank and needs no validation split)."""
    return {cls.display_name: cls for cls in available_methods("any").values() if not cls.needs_validation}


METHODS = page_methods()
#: ``TRAIN:EVAL`` image counts the page starts with (a demo or a test can make them smaller)
ENV_SIZES = ENV_CBM_SIZES
BUILTIN_SIZES = (APP_SIZES["train"], APP_SIZES["val"])
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
#: (train, val/shifted) image counts: ``$CONCEPTLAB_CBM_SIZES`` (``TRAIN:EVAL``) or the library's APP_SIZES
default_sizes = cbm_page_sizes


def page_sizes() -> tuple[int, int]:
    """:func:`default_sizes` for a page: a bad setting is shown as an error and the built-in
    sizes are used, so the page still works."""
    try:
        return default_sizes()
    except ValueError as error:
        st.error(f"{error}. Using {BUILTIN_SIZES[0]} and {BUILTIN_SIZES[1]}.")
        return BUILTIN_SIZES


def concept_frame(split) -> pd.DataFrame | None:
    """A split's (or a dataset's) ground-truth concepts as a DataFrame with concept-named columns
    (None when the dataset has none, e.g. the user's own images)."""
    dataset = split.dataset if isinstance(split, SplitData) else split
    concepts, names = getattr(dataset, "concepts", None), getattr(dataset, "concept_names", None)
    if concepts is None or names is None:
        return None
    return pd.DataFrame(np.asarray(concepts), columns=list(names))


@st.cache_resource(show_spinner=False, max_entries=8)
def _train(method: str, fingerprint: str, train_key: str, lam_scale: float, bank_key: str, _bank, _embeddings, _labels, _class_names, _concepts=None):
    klass = page_methods()[method]
    kwargs = {**METHOD_SETTINGS.get(klass.method_name(), {})}
    if "lam_scale" in klass._get_param_names():
        # the slider is relative to PCBM's 2.0: a method with another default (the sequential CBM's 0.2
        # on probabilities) moves by the same factor
        default = inspect.signature(klass.__init__).parameters["lam_scale"].default
        kwargs["lam_scale"] = lam_scale * float(default) / 2.0
    model = klass(bank=_bank, class_names=list(_class_names), **kwargs)
    # a sequential CBM calibrates its concepts on the train split's concept labels
    extra = {"concept_labels": _concepts} if _concepts is not None and getattr(model._make_layer(), "uses_concept_labels", False) else {}
    return model.fit(_embeddings, _labels, **extra)


def train_model(method: str, backbone, train: SplitData, lam_scale: float = 2.0, concepts_file: str = "") -> ConceptBottleneckModel:
    """A CBM of the page's methods on the text bank (ShapesWorld's 25 prompts, or one concept per
    line of ``concepts_file``), trained once per (method, weights, train split, λ scale, bank)."""
    if method not in page_methods():
        raise ValueError(f"unknown method {method!r}; the page trains {', '.join(page_methods())}")
    bank = phrases_bank(backbone, concepts_file) if concepts_file else text_bank(backbone)
    with st.spinner(f"Training {method} on {len(train.labels)} train embeddings ...", show_time=True):
        return _train(method, backbone.fingerprint, train.key, float(lam_scale), f"{concepts_file}:{bank.names}", bank, train.embeddings,
                      train.labels, tuple(train.dataset.class_names), concept_frame(train))


@st.cache_resource(show_spinner=False, max_entries=4)
def _phrases_bank(fingerprint: str, path: str, mtime: float, _backbone):
    return text_bank_from_file(_backbone, path)


def phrases_bank(backbone, path: str):
    """A text bank with one concept per line of ``path`` (cached until the file changes)."""
    return _phrases_bank(backbone.fingerprint, path, Path(path).stat().st_mtime, backbone)


@st.cache_data(show_spinner=False, max_entries=16)
def _shift(model_id: str, train_key: str, shifted_key: str, _model, _train_split: SplitData, _shifted: SplitData) -> pd.DataFrame:
    return concept_shift(_model, _train_split.embeddings, _shifted.embeddings, _train_split.labels, _shifted.labels)


def shift_table(model, model_id: str, train: SplitData, shifted: SplitData) -> pd.DataFrame:
    """``concept_shift`` between the train and shifted splits (cached per model and splits)."""
    return _shift(model_id, train.key, shifted.key, model, train, shifted)


def is_probability_model(model) -> bool:
    """Whether the model's concept layer outputs calibrated probabilities (a sequential CBM)."""
    return isinstance(getattr(model, "concept_layer_", None), CalibratedLayer)


def _calibrator(model, train: SplitData):
    if isinstance(getattr(model, "concept_layer_", None), CalibratedLayer):
        return None
    return fit_calibrator(model, train.embeddings, concept_frame(train))


@st.cache_data(show_spinner=False, max_entries=8)
def _interventions(model_id: str, train_key: str, split_key: str, mode: str, _model, _train_split: SplitData, _split: SplitData) -> pd.DataFrame:
    return intervention_curves(_model, _split.embeddings, _split.labels, concept_frame(_split), calibrator=_calibrator(_model, _train_split),
                               mode=mode, n_random=3, n_boot=500)


def intervention_study(model, model_id: str, train: SplitData, split: SplitData, mode: str = "replace") -> pd.DataFrame:
    """``intervention_curves`` of the model on ``split`` for every policy (cached per model, split and mode)."""
    return _interventions(model_id, train.key, split.key, mode, model, train, split)


def true_value_intervention(model, train: SplitData, embeddings: np.ndarray, truth: pd.DataFrame, k: int, policy: str, mode: str) -> dict:
    """``intervene_with_truth`` on some images (the explained one): the first k concepts of ``policy``."""
    return intervene_with_truth(model, embeddings, truth, k=k, policy=policy, calibrator=_calibrator(model, train), mode=mode)


@st.cache_data(show_spinner=False, max_entries=8)
def _comparison(model_id: str, keys: tuple[str, ...], concepts: tuple[str, ...], _model, _train: SplitData, _val: SplitData, _shifted: SplitData) -> pd.DataFrame:
    truth = concept_frame(_train)
    groups = groups_from_concepts(truth[list(concepts)].to_numpy()) if truth is not None and all(c in truth for c in concepts) else None
    labels = truth if truth is not None and getattr(_model._make_layer(), "uses_concept_labels", False) else None
    result = editing_comparison(_model, (_train.embeddings, _train.labels), {"val": (_val.embeddings, _val.labels),
                                "shifted": (_shifted.embeddings, _shifted.labels)}, list(concepts), groups=groups, concept_labels=labels,
                                test_split="val")
    return result.table


def edit_comparison(model, model_id: str, train: SplitData, val: SplitData, shifted: SplitData, concepts: list[str]) -> pd.DataFrame:
    """``editing_comparison`` (prune, prune + normalise, refit without, DFR) on val and shifted (cached)."""
    return _comparison(model_id, (train.key, val.key, shifted.key), tuple(concepts), model, train, val, shifted)


@st.cache_resource(show_spinner=False, max_entries=32)
def _where(model_id: str, dataset_id: str, index: int, concept: str, _backbone, _model, _dataset) -> GroundingResult:
    return ground_model(_backbone, _model, _dataset, [index], concepts=[concept], positives_only=False, keep_maps=True)


def where_it_looks(backbone, model, model_id: str, dataset, index: int, concept: str) -> GroundingResult:
    """Integrated gradients and occlusion of one concept's score on one image, graded against its
    region (the image is graded whether or not it shows the concept)."""
    return _where(model_id, getattr(dataset, "identity", repr(dataset)), int(index), concept, backbone, model, dataset)


@st.cache_data(show_spinner=False, max_entries=4)
def _families(model_id: str, dataset_id: str, n_images: int, _backbone, _model, _dataset) -> pd.DataFrame:
    result = ground_model(_backbone, _model, _dataset, range(min(int(n_images), len(_dataset))), ig={"steps": 8, "n_baselines": 1})
    return result.table(n_boot=500)


def family_grounding(backbone, model, model_id: str, dataset, n_images: int = 8) -> pd.DataFrame:
    """``GroundingResult.table()`` per concept family on the first ``n_images`` images (cached)."""
    return _families(model_id, getattr(dataset, "identity", repr(dataset)), int(n_images), backbone, model, dataset)


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
