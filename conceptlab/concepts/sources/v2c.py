"""``source = "v2c"``: V2C's vocabulary tokenizer over the training images.

The training images are used as the unlabelled set (labels are not read); ``n_images``,
``tokens_per_image``, ``concepts_per_class``; ``pairs`` adds the "adjective noun" pairs to the
vocabulary and ``templates`` replaces V2C's 86 codebook templates (the full setting embeds
7 506 × 86 texts, minutes on a CPU; the shipped probe uses single words and one template).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conceptlab.concepts.from_set import concept_bank_from_set
from conceptlab.concepts.sources.base import ConceptSourceError, SourceContext, resolve_path, train_split
from conceptlab.concepts.v2c import V2CTokenizer, class_text_features, embed_codebook, load_v2c_vocabulary
from conceptlab.registry import register_concept_source

__all__ = ["V2C_KEYS", "v2c_source"]

#: ``[concepts]`` keys of ``source = "v2c"`` and their defaults (V2C-CBM's)
V2C_KEYS: dict[str, Any] = {
    "vocabulary": "",
    "pairs": True,
    "templates": None,
    "n_images": 500,
    "tokens_per_image": 5,
    "concepts_per_class": 50,
    "normalize": False,
}


def _validate(config: Mapping[str, Any]) -> None:
    if config["templates"] is not None and not all("{}" in t for t in config["templates"]):
        raise ConceptSourceError("every template must contain '{}'")


@register_concept_source("v2c", keys=V2C_KEYS, validate=_validate, description="V2C's vocabulary tokenizer over the training images")
def v2c_source(config: Mapping[str, Any], context: SourceContext):
    X, _, class_names = train_split(context)
    vocabulary = None
    if config["vocabulary"]:
        vocabulary = resolve_path(config["vocabulary"], context)
        if not vocabulary.is_file():
            raise ConceptSourceError(f"no vocabulary file at {vocabulary}")
    words = load_v2c_vocabulary(vocabulary, pairs=config["pairs"])
    codebook = embed_codebook(context.backbone, words, config["templates"])
    tokenizer = V2CTokenizer(config["n_images"], config["tokens_per_image"], config["concepts_per_class"])
    tokenizer.fit(X, codebook, words, class_text_features(context.backbone, class_names), class_names)
    return concept_bank_from_set(context.backbone, tokenizer.to_concept_set(), normalize=config["normalize"])
