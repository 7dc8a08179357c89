"""Helpers of the "Concept vectors & TCAV" page: cached calls into :mod:`conceptlab.vectors`.

Every number the page shows comes from a library function a notebook can call
(``conceptlab.vectors.shapes_tcav_study`` for ShapesWorld concept columns; ``folder_concepts`` +
``TCAV`` + ``layer_gradients`` for a folder of concept images); this module only caches them per
input and picks the layers worth offering.
"""

from __future__ import annotations

import os

import streamlit as st

from workbench.vectors import one_thread  # one home for the one-thread context of the small models' pages

__all__ = ["DEFAULT_BACKBONE", "ENV_BACKBONE", "ENV_RUNS", "default_runs", "default_spec", "folder_study", "main_layers", "one_thread", "shapes_study"]

#: environment variable naming the page's default backbone (tests may point it elsewhere)
ENV_BACKBONE = "CONCEPTLAB_TCAV_BACKBONE"
DEFAULT_BACKBONE = "zoo:shapes-clip"
#: environment variable for the random-run slider's starting value (browser tests use 10; 100 otherwise)
ENV_RUNS = "CONCEPTLAB_TCAV_RUNS"


def default_spec() -> str:
    return os.environ.get(ENV_BACKBONE, DEFAULT_BACKBONE)


def default_runs() -> int:
    return int(os.environ.get(ENV_RUNS, "100"))


def main_layers(backbone) -> list[str]:
    """The layers worth offering first: the image tower's top-level blocks (then every module)."""
    from conceptlab.backbones import layer_names

    names = layer_names(backbone)
    top = [n for n in names if n.count(".") == 1 and not n.split(".")[1].startswith(("conv", "bn", "act", "avgpool", "ln", "patch", "drop"))]
    return top + [n for n in names if n not in top]


@st.cache_resource(show_spinner="Loading the backbone…", max_entries=2)
def _backbone(spec: str):
    from conceptlab.backbones import load

    return load(spec, device="cpu")


@st.cache_data(show_spinner=False, max_entries=8)
def shapes_study(spec: str, layer: str, pool: str, concepts: tuple[str, ...], classes: tuple[str, ...], n_random: int, n_examples: int,
                 n_inputs: int, method: str, significance: float) -> dict:
    """:func:`conceptlab.vectors.shapes_tcav_study` on ShapesWorld concept columns, as plain parts the page shows."""
    from conceptlab.store import ActivationStore, default_root
    from conceptlab.vectors import shapes_tcav_study

    with one_thread():
        study = shapes_tcav_study(_backbone(spec), layer=layer, pool=pool, concepts=list(concepts), classes=list(classes), n_random=n_random,
                                  n_examples=n_examples, n_inputs=n_inputs, method=method, significance=significance,
                                  store=ActivationStore(default_root()), world_size=max(1500, 6 * n_examples))
    return {"result": study.result, "accuracy": study.tcav.accuracy_, "grading": study.grading}


@st.cache_data(show_spinner=False, max_entries=4)
def folder_study(spec: str, path: str, layer: str, pool: str, prompts: tuple[str, ...], n_random: int, method: str, significance: float,
                 negative: str = "random") -> dict:
    """TCAV of zero-shot logits (one per prompt, on the concept images themselves) for a folder with one
    subfolder per concept and a ``random`` subfolder of negatives."""
    from conceptlab.data import FolderDataset
    from conceptlab.store import ActivationStore, default_root
    from conceptlab.vectors import TCAV, folder_concepts, layer_gradients, zero_shot_logit

    backbone = _backbone(spec)
    with one_thread():
        concepts, negatives = folder_concepts(backbone, path, layer, pool, negative=negative, store=ActivationStore(default_root()))
        tcav = TCAV(n_random=n_random, method=method, significance=significance).fit(concepts, negatives)
        dataset = FolderDataset(path)
        images = [dataset[i][0] for i in range(len(dataset))]
        grads = {p: layer_gradients(backbone, layer, images, zero_shot_logit(backbone, p), pool=pool).grads for p in prompts}
        result = tcav.test(grads)
    return {"result": result, "accuracy": tcav.accuracy_, "grading": None}
