"""``source = "concept_set"``: a class -> concepts set, LF-CBM's filters 1-4, LaBo's selection.

The one LaBo pipeline (the declarative runs and the app's Concept set page both call
:func:`build_concept_set_bank`): candidates (the shipped ShapesWorld set, ``set = "shapesworld"``,
or a JSON file, ``path = ...``) -> LF-CBM's filters (``filters = true``) -> one raw text concept per
phrase (LaBo embeds the raw string) -> LaBo's submodular selection on the training split
(``select = true``, ``n_per_class``, ``mi_scale``, ``coverage_weight``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conceptlab.concepts.filters import FilterResult, lfcbm_filters
from conceptlab.concepts.from_set import concept_bank_from_set
from conceptlab.concepts.language import load_concept_set, shapesworld_concept_set
from conceptlab.concepts.selection import SelectionResult, select_from_bank
from conceptlab.concepts.sources.base import ConceptSourceError, SourceContext, resolve_path, train_split
from conceptlab.registry import register_concept_source

__all__ = ["CONCEPT_SET_KEYS", "ConceptSetBank", "build_concept_set_bank", "concept_set_source"]

#: ``[concepts]`` keys of ``source = "concept_set"`` and their defaults (LF-CBM's filter cut-offs,
#: LaBo's CIFAR-10 selection weights)
CONCEPT_SET_KEYS: dict[str, Any] = {
    "set": "shapesworld",
    "path": "",
    "filters": True,
    "max_len": 30,
    "class_cutoff": 0.85,
    "duplicate_cutoff": 0.9,
    "clip_cutoff": 0.25,
    "select": True,
    "n_per_class": 5,
    "mi_scale": 1e7,
    "coverage_weight": 5.0,
    "normalize": False,
}


@dataclass
class ConceptSetBank:
    """What :func:`build_concept_set_bank` made: the bank, and each step's report (None when skipped)."""

    bank: Any
    candidates: Any
    filters: FilterResult | None = None
    selection: SelectionResult | None = None


def build_concept_set_bank(
    concept_set: Any,
    backbone: Any,
    embeddings: Any,
    labels: Any,
    class_names: list[str],
    filters: bool = True,
    max_len: int = 30,
    class_cutoff: float = 0.85,
    duplicate_cutoff: float = 0.9,
    clip_cutoff: float = 0.25,
    select: bool = True,
    n_per_class: int = 5,
    mi_scale: float = 1e7,
    coverage_weight: float = 5.0,
    normalize: bool = False,
) -> ConceptSetBank:
    """Candidates -> LF-CBM filters -> raw text bank -> LaBo selection (module docstring)."""
    unknown = [c for c in concept_set.classes if c not in class_names]
    if unknown:
        raise ConceptSourceError(f"the concept set's classes {unknown[:3]} are not the dataset's ({', '.join(class_names[:4])}, ...)")
    report = None
    if filters:
        report = lfcbm_filters(
            concept_set.unique(), class_names, embeddings, backbone=backbone, max_len=max_len,
            class_cutoff=class_cutoff, duplicate_cutoff=duplicate_cutoff, clip_cutoff=clip_cutoff,
        )
        concept_set = concept_set.restrict(report.kept)
    bank = concept_bank_from_set(backbone, concept_set, normalize=normalize)
    out = ConceptSetBank(bank=bank, candidates=concept_set, filters=report)
    if select:
        if n_per_class < 1:
            raise ConceptSourceError(f"n_per_class must be at least 1, got {n_per_class}")
        out.bank, out.selection = select_from_bank(
            bank, embeddings, labels, class_names, n_per_class=n_per_class, mi_scale=mi_scale, coverage_weight=coverage_weight,
        )
    return out


def _candidates(config: Mapping[str, Any], context: SourceContext):
    if config["path"]:
        path = resolve_path(config["path"], context)
        if not path.is_file():
            raise ConceptSourceError(f"no concept set file at {path}")
        return load_concept_set(path)
    if config["set"] == "shapesworld":
        return shapesworld_concept_set()
    raise ConceptSourceError(f"unknown concept set {config['set']!r}; give set = \"shapesworld\" or path = \"file.json\"")


@register_concept_source(
    "concept_set", keys=CONCEPT_SET_KEYS,
    description="a class -> concepts set (set = \"shapesworld\" or path), LF-CBM filters and LaBo selection, raw text embeddings",
)
def concept_set_source(config: Mapping[str, Any], context: SourceContext):
    X, y, class_names = train_split(context)
    settings = {k: config[k] for k in CONCEPT_SET_KEYS if k not in ("set", "path")}
    return build_concept_set_bank(_candidates(config, context), context.backbone, X, y, class_names, **settings).bank
