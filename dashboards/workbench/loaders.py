"""Cached loaders: models and the store once per process, arrays once per store key.

- ``st.cache_resource``: backbones (by spec), datasets (by split/size/seed), stores (by root).
- ``st.cache_data``: embeddings (by store key), concept vectors (by backbone fingerprint + text),
  PCA and UMAP maps (by store key). A slider move or a page switch never recomputes an embedding.
- :func:`load_split`: a ShapesWorld split the page trains on (with a progress bar the first time);
  :func:`text_bank`: the 25 ShapesWorld text concepts in the backbone's space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from conceptlab import zoo
from conceptlab.analysis import pca_2d, umap_2d
from conceptlab.backbones import load
from conceptlab.concepts import text_concepts
from conceptlab.data import DatasetError, ShapesWorld, parse_dataset_spec, shapesworld_text_prompts, split_dataset
from conceptlab.data import load as load_dataset_spec
from conceptlab.store import ActivationStore, default_root
from workbench.state import Selection

__all__ = [
    "BackboneUnavailable",
    "SplitData",
    "clear_caches",
    "concept_vector",
    "get_store",
    "load_backbone",
    "load_dataset",
    "load_embeddings",
    "load_map",
    "load_split",
    "text_bank",
    "try_load_backbone",
]


class BackboneUnavailable(Exception):
    """The selected backbone could not be loaded; the message says what to do."""


@st.cache_resource(show_spinner=False, max_entries=4)
def _backbone(spec: str):
    return load(spec, device="cpu")


@st.cache_resource(show_spinner=False, max_entries=8)
def _dataset(split: str, size: int, seed: int) -> ShapesWorld:
    return ShapesWorld(split, size=size, seed=seed)


@st.cache_resource(show_spinner=False)
def _store(root: str) -> ActivationStore:
    return ActivationStore(root)


def get_store() -> ActivationStore:
    """The store under $CONCEPTLAB_HOME/store (read on every call, so tests can move it)."""
    return _store(str(default_root()))


def _advice(spec: str) -> str:
    if spec.startswith("zoo:"):
        name = spec[4:]
        if zoo.available().get(name, "unknown") is None:
            return (
                f"`{spec}` is not built on this machine yet. Build it once with "
                f"`conceptlab zoo build {name}` (a few minutes on a CPU) and reload, "
                "or type another spec in the sidebar, e.g. `local-dir:/path/to/open_clip_folder`."
            )
    return "Check the spec in the sidebar (`local-dir:PATH`, `open_clip:NAME/TAG` or `zoo:NAME`)."


def try_load_backbone(spec: str):
    """The backbone for ``spec``; raises BackboneUnavailable with advice when it cannot load."""
    try:
        with st.spinner(f"Loading backbone `{spec}` ..."):
            return _backbone(spec)
    except (FileNotFoundError, ValueError, ImportError, OSError, RuntimeError, KeyError) as error:
        raise BackboneUnavailable(f"Could not load backbone `{spec}`: {error}\n\n{_advice(spec)}") from error


def load_backbone(spec: str):
    """Like ``try_load_backbone``, but shows the error and stops the page when it fails."""
    try:
        return try_load_backbone(spec)
    except BackboneUnavailable as error:
        st.error(str(error), icon=":material/error:")
        st.stop()


@st.cache_resource(show_spinner=False, max_entries=8)
def _spec_dataset(spec: str, _version: float):
    return load_dataset_spec(spec)


def load_dataset(selection: Selection):
    """The selected dataset: the ShapesWorld slice, or the user's data named by its spec (a bad
    spec or an unreadable folder stops the page with the reason)."""
    if selection.dataset_spec:
        try:
            with st.spinner(f"Reading {selection.dataset_spec} ..."):
                return _spec_dataset(selection.dataset_spec, _spec_version(selection.dataset_spec))
        except (DatasetError, OSError) as error:
            st.error(f"Cannot use dataset `{selection.dataset_spec}`: {error}", icon=":material/error:")
            st.stop()
    with st.spinner(f"Generating {selection.dataset_label} ..."):
        return _dataset(selection.split, selection.size, selection.seed)


def _spec_version(spec: str) -> float:
    """The modification time of what a spec points at, so a changed folder is read again."""
    import os

    try:
        _, target, _ = parse_dataset_spec(spec)
        return os.stat(target).st_mtime
    except (DatasetError, OSError):
        return 0.0


@st.cache_data(show_spinner=False, max_entries=16)
def _embeddings(key: str, root: str, _backbone, _dataset) -> np.ndarray:
    acts = _store(root).get_or_compute(_backbone, _dataset, num_workers=0, progress=False)
    return acts.numpy()


def load_embeddings(backbone, dataset) -> tuple[np.ndarray, str]:
    """(N, dim) image embeddings of ``dataset`` from the store (computed on first use) and the key."""
    store = get_store()
    key = store.key(backbone, dataset)
    if store.contains(key):
        message = f"Reading {len(dataset)} embeddings from the store ..."
    else:
        estimate = store.estimate(backbone, dataset, num_workers=0)
        message = (
            f"Embedding {len(dataset)} images with `{backbone.spec}` (once; the store keeps them, "
            f"{estimate['disk']} on disk) ..."
        )
    with st.spinner(message, show_time=True):
        return _embeddings(key, str(store.root), backbone, dataset), key


@st.cache_data(show_spinner=False, max_entries=512)
def _concept_vector(fingerprint: str, text: str, _backbone) -> np.ndarray:
    return text_concepts(_backbone, [text]).vectors[0].numpy()


def concept_vector(backbone, text: str) -> np.ndarray:
    """The unit text-concept vector of ``text`` (conceptlab.concepts.text_concepts)."""
    return _concept_vector(backbone.fingerprint, text, backbone)


@st.cache_data(show_spinner=False, max_entries=16)
def _map(key: str, _embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return pca_2d(_embeddings)


@st.cache_data(show_spinner=False, max_entries=16)
def _umap(key: str, _embeddings: np.ndarray) -> np.ndarray:
    return umap_2d(_embeddings)


def load_map(key: str, embeddings: np.ndarray, method: str = "PCA") -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 2) coordinates, cached by store key and method: ``"PCA"`` (with its explained-variance
    ratios) or ``"UMAP"`` (no variance: None; ImportError when umap-learn is missing)."""
    if method == "UMAP":
        with st.spinner("Projecting the embeddings to 2-D (UMAP; the first time takes a minute) ...", show_time=True):
            return _umap(key, embeddings), None
    with st.spinner("Projecting the embeddings to 2-D (PCA) ..."):
        return _map(key, embeddings)


@dataclass(frozen=True)
class SplitData:
    """One split through the backbone: the dataset (ShapesWorld or a view of the user's data), its
    (N, d) embeddings, store key."""

    dataset: object
    embeddings: np.ndarray
    key: str

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.labels)


#: how the app splits the user's own data (a folder or table comes whole): train and a held-out val
USER_FRACTIONS = {"train": 0.7, "val": 0.3}


@st.cache_resource(show_spinner=False, max_entries=4)
def _user_splits(spec: str, seed: int, _version: float):
    return split_dataset(_spec_dataset(spec, _version), USER_FRACTIONS, seed=seed)


def load_split(backbone, split: str, size: int, seed: int, spec: str = "") -> SplitData | None:
    """A split's embeddings from the store; computed with a progress bar the first time.

    With ``spec`` (the user's own data) the splits are :data:`USER_FRACTIONS` of it, seeded, and
    ``size`` is not used; a split the data does not have (``shifted``) is None."""
    if spec:
        parts = _user_splits(spec, int(seed), _spec_version(spec))
        if split not in parts:
            return None
        dataset = parts[split]
    else:
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


def clear_caches() -> None:
    """Forget every cached model, dataset and array (e.g. after rebuilding a zoo model)."""
    st.cache_data.clear()
    st.cache_resource.clear()
