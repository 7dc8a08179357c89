"""A concept bank from a class -> concepts set: one text concept per unique phrase (LaBo, V2C-CBM)."""

from __future__ import annotations

from typing import Any

import torch

from conceptlab.backbones.base import encode_texts_in_batches
from conceptlab.concepts.bank import ConceptBank, library_provenance
from conceptlab.concepts.text import image_embedding_space

__all__ = ["concept_bank_from_set"]


@torch.no_grad()
def concept_bank_from_set(
    backbone: Any,
    concept_set: Any,
    normalize: bool = False,
    space: str | None = None,
    batch_size: int = 256,
) -> ConceptBank:
    """One text concept per unique phrase of ``concept_set``, embedded raw (LaBo's default).

    Each concept's ``class_links`` are the classes that list it, in class order (LaBo uses the
    first); a set's ``scores`` (V2C token frequencies) go into ``provenance["class_scores"]``.
    ``normalize=True`` L2-normalises the vectors (LaBo's ``use_txt_norm``).
    """
    names = concept_set.unique()
    if not names:
        raise ValueError("the concept set is empty")
    links = concept_set.links()
    vectors = encode_texts_in_batches(backbone, names, batch_size).float().cpu()
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, dim=1)
    spec = str(getattr(backbone, "spec", type(backbone).__name__))
    fingerprint = getattr(backbone, "fingerprint", None)
    scores = concept_set.scores or {}
    provenance = []
    for name in names:
        entry = {
            "kind": "text", "prompts": [name], "templates": None, "backbone": spec,
            "backbone_fingerprint": fingerprint if isinstance(fingerprint, str) else None,
            "aggregation": "L2-normalised" if normalize else "raw text embedding (LaBo: use_txt_norm=False)",
            "source": concept_set.provenance.get("provider") or concept_set.provenance.get("source"),
        }
        class_scores = {c: scores[c][name] for c in links[name] if c in scores and name in scores[c]}
        if class_scores:
            entry["class_scores"] = class_scores
        provenance.append(entry)
    return ConceptBank.from_tensors(
        names, vectors, space or image_embedding_space(spec), provenance=provenance,
        class_links=[links[n] for n in names],
        bank_provenance=library_provenance(builder="concept_bank_from_set", backbone=spec, normalized=normalize, concept_set=concept_set.provenance),
    )
