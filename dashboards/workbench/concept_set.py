"""The Concept set page's logic: candidates -> LF-CBM filters -> LaBo selection -> an editable set -> LaBo.

Everything is computed by the library: the one LaBo pipeline the declarative runs use too
(``conceptlab.concepts.sources.build_concept_set_bank``: filters, raw text bank, selection) and
``conceptlab.cbm.LaBo``;
this module only caches it for the page. A concept set is passed around as a tuple of
``(class, (concept, ...))`` pairs so it can key the caches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from conceptlab.cbm import LaBo, concept_bank_from_set
from conceptlab.concepts import ConceptSetEdits
from conceptlab.concepts.filters import FilterResult, lfcbm_filters
from conceptlab.concepts.language import ConceptSet, OfflineProvider, load_concept_set, shapesworld_concept_set
from conceptlab.concepts.sources import build_concept_set_bank

#: LaBo's training settings on the page (ShapesWorld's small sets train in 1000 Adam epochs at 1e-3)
LABO_PARAMS = {"lr": 1e-3, "epochs": 1000, "val_every": 10, "batch_size": 512, "seed": 42, "device": "cpu"}
N_PER_CLASS = 5

Frozen = tuple[tuple[str, tuple[str, ...]], ...]


def freeze(concepts: Mapping[str, Sequence[str]]) -> Frozen:
    return tuple((str(c), tuple(dict.fromkeys(str(x) for x in v))) for c, v in concepts.items())


#: session state: the path of the user's concept-set JSON (class -> concepts) for their own data
SOURCE_FILE = "cl.cs.source_file"


def _source() -> ConceptSet:
    path = st.session_state.get(SOURCE_FILE, "")
    return load_concept_set(path) if path else shapesworld_concept_set()


def candidates(class_names: Sequence[str]) -> ConceptSet:
    """The generated candidates: the offline provider serving the shipped ShapesWorld set, or the
    user's concept-set file (``SOURCE_FILE``) for their own classes."""
    return OfflineProvider(_source()).generate(list(class_names))


def candidates_frame(concept_set: ConceptSet) -> pd.DataFrame:
    return pd.DataFrame([{"class": c, "concept": x} for c in concept_set.classes for x in concept_set[c]])


@st.cache_resource(show_spinner="Running LF-CBM's filters ...", max_entries=4)
def _filters(fingerprint: str, train_key: str, _backbone, _embeddings, class_names: tuple[str, ...], source: str = "") -> FilterResult:
    return lfcbm_filters(candidates(class_names).unique(), list(class_names), _embeddings, backbone=_backbone)


def run_filters(backbone, train) -> FilterResult:
    """LF-CBM filters 1-4 over the candidates (filter 4 on the train split's embeddings)."""
    source = st.session_state.get(SOURCE_FILE, "")
    return _filters(backbone.fingerprint, train.key, backbone, train.embeddings, tuple(train.dataset.class_names), source)


@st.cache_resource(show_spinner="LaBo's submodular selection ...", max_entries=4)
def _select(
    fingerprint: str, train_key: str, kept: tuple[str, ...], n_per_class: int, _backbone, _embeddings, _labels, class_names: tuple[str, ...], source: str = ""
) -> Frozen:
    concept_set = candidates(class_names).restrict(kept)  # the filters ran (and are cached) separately
    built = build_concept_set_bank(concept_set, _backbone, _embeddings, _labels, list(class_names), filters=False, n_per_class=n_per_class)
    table = built.selection.table  # one row per selected concept, class by class, in greedy order
    return freeze({c: list(table.loc[table["class"] == c, "concept"]) for c in class_names})


def select(backbone, train, filtered: FilterResult, n_per_class: int = N_PER_CLASS) -> dict[str, list[str]]:
    """Class -> concepts LaBo's selection keeps from the filtered candidates (each in its first class)."""
    frozen = _select(backbone.fingerprint, train.key, tuple(filtered.kept), int(n_per_class), backbone, train.embeddings, train.labels,
                     tuple(train.dataset.class_names), st.session_state.get(SOURCE_FILE, ""))
    return {c: list(v) for c, v in frozen}


@st.cache_resource(show_spinner="Fitting LaBo ...", max_entries=16)
def _fit(fingerprint: str, train_key: str, concepts: Frozen, _backbone, _embeddings, _labels, class_names: tuple[str, ...], edits_json: str = "[]") -> LaBo:
    provenance = {"source": "app: edited concept set", "edits": json.loads(edits_json)}
    concept_set = ConceptSet({c: list(v) for c, v in concepts if v}, provenance=provenance)
    bank = concept_bank_from_set(_backbone, concept_set)
    return LaBo(bank, list(class_names), **LABO_PARAMS).fit(_embeddings, _labels)


def fit_labo(backbone, train, concepts: Mapping[str, Sequence[str]], edits: ConceptSetEdits | None = None) -> LaBo:
    """LaBo over exactly ``concepts`` (class -> list), trained on the train split; cached per set.
    ``edits`` (the log that made the set) goes into the concept set's provenance, so a saved model
    records them."""
    frozen = freeze(concepts)
    if not any(v for _, v in frozen):
        raise ValueError("the concept set is empty")
    log = json.dumps(edits.to_dict()["edits"] if edits is not None else [])
    return _fit(backbone.fingerprint, train.key, frozen, backbone, train.embeddings, train.labels, tuple(train.dataset.class_names), log)


def accuracy(model, split) -> float:
    return float(model.score(split.embeddings, split.labels))


def working_frame(concepts: Mapping[str, Sequence[str]], original: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    rows = [{"class": c, "concept": x, "edited": x not in original.get(c, [])} for c, v in concepts.items() for x in v]
    return pd.DataFrame(rows, columns=["class", "concept", "edited"])


def per_class_counts(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("class", sort=False).size() if len(frame) else pd.Series(dtype=np.int64)
