"""The ConceptVectors pipeline on FactsWorld, where the truth is known: locate one vector per
entity, validate it causally, and trace unlearning -- the calls the probe, the app page and
notebook 05 share.

An entity's concept is its term set: its name and its attribute values (``FactsWorld.terms``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from conceptlab.backbones import LanguageModel
from conceptlab.concepts import Concept, ConceptBank, library_provenance
from conceptlab.data.facts_world import FactsWorld
from conceptlab.vectors.locate import ScanResult, scan_vocabulary
from conceptlab.vectors.unlearning import METHODS, UnlearningRun, intrinsic_diff, unlearn
from conceptlab.vectors.validate import answer_table

__all__ = ["EVAL_FORMS", "FORGET_FORMS", "entity_bank", "locate_entities", "unlearning_table"]

#: forms the unlearning trains on (its forget set) ...
FORGET_FORMS = ("paragraph", "qa", "cloze")
#: ... and the forms it is measured on: two it saw, two it never saw
EVAL_FORMS = ("qa", "cloze", "qa_heldout", "foreign")


def locate_entities(
    lm: LanguageModel,
    world: FactsWorld,
    entities: Sequence[str] | None = None,
    k: int = 10,
    scorer: str = "share",
    projection: str = "raw",
    layers: Sequence[int] | None = None,
    chunk: int = 1024,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, ScanResult]]:
    """Scan the vocabulary once per entity; the best vector of each, ranked by score.

    Returns (table with entity, layer, index, score, hits, tokens; the scans by entity)."""
    names = list(entities) if entities is not None else world.names
    scans: dict[str, ScanResult] = {}
    rows = []
    for name in tqdm(names, desc="locating", disable=not progress):
        scan = scan_vocabulary(lm, world.terms(name), layers=layers, k=k, scorer=scorer, projection=projection, chunk=chunk, keep=20, progress=False)
        scans[name] = scan
        best = scan.table.iloc[0]
        rows.append({"entity": name, **{key: int(best[key]) for key in ("layer", "index", "hits")}, "score": float(best["score"]), "tokens": list(best["tokens"])})
    table = pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    return table, scans


def entity_bank(lm: LanguageModel, located: pd.DataFrame, projection: str = "raw", k: int = 10) -> ConceptBank:
    """One :class:`Concept` per located entity: its value vector in ``lm``'s residual stream."""
    concepts = [
        Concept(
            str(row.entity),
            lm.value_vector(int(row.layer), int(row.index)),
            lm.space,
            provenance={
                "kind": "value_vector", "spec": lm.spec, "layer": int(row.layer), "index": int(row.index), "projection": projection, "k": k, "top_tokens": list(row.tokens)
            },
            metrics={"score": float(row.score)},
        )
        for row in located.itertuples()
    ]
    return ConceptBank(concepts, provenance=library_provenance(None, source="facts_world.locate_entities", spec=lm.spec))


def _scores(lm: LanguageModel, world: FactsWorld, target: str, unrelated: Sequence[str], forms: Sequence[str]) -> dict[tuple[str, str], float]:
    out = {}
    for form in forms:
        table = answer_table(lm, world.questions([target, *unrelated], form=form), generate=False)
        out[(form, "target")] = float(table[table["entity"] == target]["correct"].mean())
        out[(form, "unrelated")] = float(table[table["entity"] != target]["correct"].mean())
    return out


def unlearning_table(
    lm: LanguageModel,
    world: FactsWorld,
    entity: str,
    layer: int,
    index: int,
    methods: Sequence[str] = tuple(METHODS),
    forget_forms: Sequence[str] = FORGET_FORMS,
    forms: Sequence[str] = EVAL_FORMS,
    n_unrelated: int = 5,
    n_retain: int = 5,
    k: int = 10,
    seed: int = 999,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, UnlearningRun]]:
    """Unlearn ``entity`` with each method; accuracy per form before/after (target and unrelated)
    and the intrinsic diff of the located vector (``layer``, ``index``).

    Retain texts come from ``n_retain`` other entities, the unrelated questions from ``n_unrelated``
    further ones (disjoint, seeded). ``overrides`` maps a method to :func:`unlearn` settings.
    Rows: method, form, seen (whether the forget set holds that form), group, before, after, and
    the method's cosine / l2 / jaccard.
    """
    others = [n for n in world.names if n != world.entity(entity).name]
    picked = random.Random(f"{seed}:{entity}").sample(others, min(len(others), n_unrelated + n_retain))
    unrelated, retain_entities = picked[:n_unrelated], picked[n_unrelated:]
    forget = [t.text for t in world.texts(list(forget_forms), [entity])]
    retain = [t.text for t in world.texts(list(forget_forms), retain_entities)]
    before = _scores(lm, world, entity, unrelated, forms)
    rows, runs = [], {}
    for method in methods:
        settings = dict((overrides or {}).get(method, {}))
        target = (layer, index) if METHODS[method][1] == "needle" else None
        run = unlearn(lm, forget, retain, method=method, target=target, seed=seed, progress=progress, **settings)
        runs[method] = run
        after = _scores(run.model, world, entity, unrelated, forms)
        diff = intrinsic_diff(lm, run.model, layer, index, k=k)
        for (form, group), value in before.items():
            rows.append(
                {
                    "method": method, "form": form, "seen": form in forget_forms, "group": group, "before": value, "after": after[(form, group)],
                    "cosine": diff["cosine"], "l2": diff["l2"], "jaccard": diff["jaccard"],
                }
            )
    return pd.DataFrame(rows), runs
