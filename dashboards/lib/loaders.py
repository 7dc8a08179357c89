"""Cached loaders: models and the store once per process, arrays once per store key.

- ``st.cache_resource``: backbones (by spec), datasets (by split/size/seed), stores (by root).
- ``st.cache_data``: embeddings (by store key), concept vectors (by backbone fingerprint + text),
  PCA maps (by store key). A slider move or a page switch never recomputes an embedding.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from conceptlab import zoo
from conceptlab.backbones import load
from conceptlab.concepts import text_concepts
from conceptlab.data import ShapesWorld
from conceptlab.store import ActivationStore, default_root

from lib.analysis import pca_2d
from lib.state import Selection

__all__ = [
    "BackboneUnavailable",
    "clear_caches",
    "concept_vector",
    "get_store",
    "load_backbone",
    "load_dataset",
    "load_embeddings",
    "load_map",
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


def load_dataset(selection: Selection) -> ShapesWorld:
    with st.spinner(f"Generating {selection.dataset_label} ..."):
        return _dataset(selection.split, selection.size, selection.seed)


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


def load_map(key: str, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) PCA coordinates and explained-variance ratios, cached by store key."""
    with st.spinner("Projecting the embeddings to 2-D (PCA) ..."):
        return _map(key, embeddings)


def clear_caches() -> None:
    """Forget every cached model, dataset and array (e.g. after rebuilding a zoo model)."""
    st.cache_data.clear()
    st.cache_resource.clear()
