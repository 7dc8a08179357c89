"""``source = "cav"``: linear-SVM CAVs from a dataset's annotated concepts (PCBM's protocol)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conceptlab.concepts.cav import DEFAULT_C, cavs_from_labels
from conceptlab.concepts.sources.base import ConceptSourceError, SourceContext
from conceptlab.concepts.text import image_embedding_space
from conceptlab.registry import register_concept_source

__all__ = ["cav_source"]


@register_concept_source(
    "cav", keys={"split": "train", "names": None, "n_samples": 50, "seed": 1, "C": list(DEFAULT_C)},
    description="linear-SVM CAVs from the dataset's ground-truth concepts (PCBM's protocol)",
)
def cav_source(config: Mapping[str, Any], context: SourceContext):
    split = config["split"]
    if split not in context.datasets:
        raise ConceptSourceError(f"split {split!r} is not among the run's splits ({', '.join(context.datasets)})")
    dataset = context.datasets[split]
    available = list(getattr(dataset, "concept_names", None) or [])
    if not available:
        raise ConceptSourceError(f"the {split} split has no annotated concepts to learn CAVs from")
    names = list(config["names"]) if config["names"] else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConceptSourceError(f"names {unknown} are not annotated concepts of the dataset ({', '.join(available[:4])}, ...)")
    columns = [available.index(n) for n in names]
    return cavs_from_labels(
        context.embeddings[split], dataset.concepts[:, columns], names, n_samples=config["n_samples"],
        seed=config["seed"], C=config["C"], space=image_embedding_space(context.backbone.spec),
    )
