"""Text concepts: a backbone's text encoder turns concept prompts into vectors (PCBM multimodal)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from conceptlab.backbones.base import encode_texts_in_batches
from conceptlab.concepts.bank import ConceptBank, library_provenance
from conceptlab.concepts.concept import Concept

__all__ = ["text_concepts", "image_embedding_space"]

Prompts = Mapping[str, str | Sequence[str]] | Sequence[str | Sequence[str]] | Callable[[str], str | Sequence[str]] | None


def image_embedding_space(spec: str) -> str:
    """The name of a backbone's joint image/text embedding space, e.g. ``zoo:shapes-clip#image-embedding``."""
    return f"{spec}#image-embedding"


def _prompts_for(names: Sequence[str], prompts: Prompts) -> list[list[str]]:
    if prompts is None:
        raw = list(names)
    elif callable(prompts) and not isinstance(prompts, Mapping):
        raw = [prompts(name) for name in names]
    elif isinstance(prompts, Mapping):
        missing = [n for n in names if n not in prompts]
        if missing:
            raise ValueError(f"prompts has no entry for {', '.join(map(repr, missing[:5]))}" + (" ..." if len(missing) > 5 else ""))
        raw = [prompts[n] for n in names]
    else:
        raw = list(prompts)
        if len(raw) != len(names):
            raise ValueError(f"{len(raw)} prompts for {len(names)} concept names")
    out = []
    for name, value in zip(names, raw):
        texts = [value] if isinstance(value, str) else list(value)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"concept {name!r} needs at least one non-empty prompt, got {value!r}")
        out.append(texts)
    return out


@torch.no_grad()
def text_concepts(
    backbone,
    names: Sequence[str],
    templates: Sequence[str] | None = None,
    prompts: Prompts = None,
    space: str | None = None,
    batch_size: int = 256,
) -> ConceptBank:
    """A bank of text concepts from ``backbone.encode_texts``.

    Each concept's texts are ``template.format(prompt)`` for every prompt and template (just the
    prompts when ``templates`` is None, as PCBM's ConceptNet bank does). Every text embedding is
    L2-normalised, the embeddings are averaged, and the mean is L2-normalised again (CLIP's
    zero-shot recipe), so each vector has unit norm and bias 0: PCBM's margin reduces to c·f(x).

    Args:
        backbone: a :class:`~conceptlab.backbones.Backbone`, or anything with
            ``encode_texts(list[str]) -> (M, d)`` and a ``spec`` string (called per batch of ``batch_size``).
        names: concept names, unique, in bank order.
        templates: e.g. ``["a photo of {}."]``; each must contain ``{}``.
        prompts: text for each name (the name itself by default): a mapping name -> prompt(s), a
            list aligned with ``names``, or a callable name -> prompt(s).
        space: the bank's space; by default :func:`image_embedding_space` of ``backbone.spec``.
    """
    names = list(names)
    if not names:
        raise ValueError("text_concepts needs at least one concept name")
    if templates is not None:
        templates = list(templates)
        bad = [t for t in templates if "{}" not in t]
        if not templates or bad:
            raise ValueError(f"every template must contain '{{}}'; got {bad or templates!r}")
    per_concept = _prompts_for(names, prompts)
    texts, owner = [], []
    for i, concept_prompts in enumerate(per_concept):
        for prompt in concept_prompts:
            for template in templates or ["{}"]:
                texts.append(template.format(prompt))
                owner.append(i)
    embeddings = encode_texts_in_batches(backbone, texts, batch_size)
    embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    owner_t = torch.tensor(owner)
    spec = str(getattr(backbone, "spec", type(backbone).__name__))
    fingerprint = getattr(backbone, "fingerprint", None)
    space = space or image_embedding_space(spec)
    concepts = []
    for i, name in enumerate(names):
        mean = embeddings[owner_t == i].mean(0)
        vector = torch.nn.functional.normalize(mean, dim=0)
        concepts.append(
            Concept(
                name=name,
                vector=vector,
                space=space,
                bias=0.0,
                provenance={
                    "kind": "text",
                    "prompts": per_concept[i],
                    "templates": templates,
                    "backbone": spec,
                    "backbone_fingerprint": fingerprint if isinstance(fingerprint, str) else None,
                    "aggregation": "mean of L2-normalised text embeddings, re-normalised",
                },
            )
        )
    return ConceptBank(concepts, provenance=library_provenance(builder="text_concepts", backbone=spec))
