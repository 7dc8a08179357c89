"""``source = "bank"``: a saved ConceptBank folder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conceptlab.concepts.bank import ConceptBank
from conceptlab.concepts.sources.base import ConceptSourceError, SourceContext, resolve_path
from conceptlab.registry import REQUIRED, register_concept_source

__all__ = ["bank_source"]


@register_concept_source("bank", keys={"path": REQUIRED, "names": None}, description="a saved ConceptBank folder")
def bank_source(config: Mapping[str, Any], context: SourceContext):
    path = resolve_path(config["path"], context)
    bank = ConceptBank.load(path)
    if bank.dim != context.backbone.dim:
        raise ConceptSourceError(f"the bank at {path} has {bank.dim}-d concepts but {context.backbone.spec} gives {context.backbone.dim}-d embeddings")
    if config["names"]:
        bank = bank.subset(config["names"])
    return bank
