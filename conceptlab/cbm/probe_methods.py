"""Probe registrations for the language-concept CBMs: LaBo and V2C-CBM.

:func:`register_language_methods` and :func:`register_language_sources` make these usable in probe
TOML files (``conceptlab.probes`` calls them when it fills its registries):

- ``[method] name = "labo"`` -- :class:`~conceptlab.cbm.labo.LaBo`;
- ``[method] name = "v2c"`` -- :class:`~conceptlab.cbm.labo.V2CCBM`;
- ``[concepts] source = "concept_set"`` -- a class -> concepts set (the shipped ShapesWorld set,
  ``set = "shapesworld"``, or a JSON file, ``path = ...``), optionally through LF-CBM's filters 1-4
  (``filters = true``) and LaBo's submodular selection on the training split (``select = true``,
  ``n_per_class``, ``mi_scale``, ``coverage_weight``), embedded raw as LaBo does;
- ``[concepts] source = "v2c"`` -- V2C's vocabulary tokenizer over the training images (used as
  the unlabelled set; labels are not read), ``n_images``, ``tokens_per_image``,
  ``concepts_per_class``; ``pairs`` adds the "adjective noun" pairs to the vocabulary and
  ``templates`` replaces V2C's 86 codebook templates (the full setting embeds 7 506 × 86 texts,
  about two minutes on a CPU; the shipped probe uses single words and one template).

The selection and the tokenizer live in the concept sources because a probe's method factory
sees only the bank and the class names; the fitted model then trains on the train split as usual
(LaBo holds out ``val_fraction`` of it for its best-epoch choice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

__all__ = ["register_language_methods", "register_language_sources", "concept_set_source", "v2c_source", "CONCEPT_SET_KEYS", "V2C_KEYS"]

#: ``[concepts]`` keys of ``source = "concept_set"`` and their defaults
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

#: ``[concepts]`` keys of ``source = "v2c"`` and their defaults
V2C_KEYS: dict[str, Any] = {
    "vocabulary": "",
    "pairs": True,
    "templates": None,
    "n_images": 500,
    "tokens_per_image": 5,
    "concepts_per_class": 50,
    "normalize": False,
}


def _error(message: str) -> Exception:
    from conceptlab.probes import ProbeConfigError

    return ProbeConfigError(f"[concepts] {message}")


def _resolve(path: str, context: Mapping[str, Any]) -> Path:
    out = Path(path).expanduser()
    return out if out.is_absolute() else Path(context["base_dir"]) / out


def _train(context: Mapping[str, Any]):
    import numpy as np

    return context["embeddings"]["train"], np.asarray(context["datasets"]["train"].labels), list(context["datasets"]["train"].class_names)


def load_probe_concept_set(config: Mapping[str, Any], context: Mapping[str, Any]):
    """The ``concept_set`` source's candidate set: ``path`` when given, else the named ``set``."""
    from conceptlab.concepts.generation import load_concept_set, shapesworld_concept_set

    if config["path"]:
        path = _resolve(config["path"], context)
        if not path.is_file():
            raise _error(f"no concept set file at {path}")
        return load_concept_set(path)
    if config["set"] == "shapesworld":
        return shapesworld_concept_set()
    raise _error(f"unknown concept set {config['set']!r}; give set = \"shapesworld\" or path = \"file.json\"")


def concept_set_source(config: Mapping[str, Any], context: Mapping[str, Any]):
    """``source = "concept_set"``: candidates -> LF-CBM filters -> LaBo selection -> ConceptBank."""
    from conceptlab.cbm.labo import LaBo, concept_bank_from_set
    from conceptlab.concepts.filters import lfcbm_filters

    backbone = context["backbone"]
    X, y, class_names = _train(context)
    concept_set = load_probe_concept_set(config, context)
    unknown = [c for c in concept_set.classes if c not in class_names]
    if unknown:
        raise _error(f"the concept set's classes {unknown[:3]} are not the dataset's ({', '.join(class_names[:4])}, ...)")
    if config["filters"]:
        result = lfcbm_filters(
            concept_set.unique(), class_names, X, backbone=backbone, max_len=config["max_len"],
            class_cutoff=config["class_cutoff"], duplicate_cutoff=config["duplicate_cutoff"], clip_cutoff=config["clip_cutoff"],
        )
        concept_set = concept_set.restrict(result.kept)
    bank = concept_bank_from_set(backbone, concept_set, normalize=config["normalize"])
    if config["select"]:
        if config["n_per_class"] < 1:
            raise _error(f"n_per_class must be at least 1, got {config['n_per_class']}")
        selected = LaBo.from_candidates(
            bank, X, y, class_names, n_per_class=config["n_per_class"], mi_scale=config["mi_scale"],
            coverage_weight=config["coverage_weight"], device="cpu",
        )
        bank = selected.bank
    return bank


def v2c_source(config: Mapping[str, Any], context: Mapping[str, Any]):
    """``source = "v2c"``: V2C's tokenizer over the training images -> ConceptBank with token counts."""
    from conceptlab.cbm.labo import concept_bank_from_set
    from conceptlab.concepts.v2c import V2CTokenizer, class_text_features, embed_codebook, load_v2c_vocabulary

    backbone = context["backbone"]
    X, _, class_names = _train(context)
    vocabulary = None
    if config["vocabulary"]:
        vocabulary = _resolve(config["vocabulary"], context)
        if not vocabulary.is_file():
            raise _error(f"no vocabulary file at {vocabulary}")
    words = load_v2c_vocabulary(vocabulary, pairs=config["pairs"])
    templates = config["templates"]
    if templates is not None and not all("{}" in t for t in templates):
        raise _error("every template must contain '{}'")
    codebook = embed_codebook(backbone, words, templates)
    tokenizer = V2CTokenizer(config["n_images"], config["tokens_per_image"], config["concepts_per_class"])
    tokenizer.fit(X, codebook, words, class_text_features(backbone, class_names), class_names)
    return concept_bank_from_set(backbone, tokenizer.to_concept_set(), normalize=config["normalize"])


def register_language_methods() -> None:
    """Register the ``labo`` and ``v2c`` probe methods."""
    from conceptlab.cbm.labo import V2CCBM, LaBo
    from conceptlab.probes import register_method

    register_method("labo", LaBo, description="LaBo: class-concept association 100·softmax(A) over text concepts, from the language prior")
    register_method("v2c", V2CCBM, description="V2C-CBM: LaBo's bottleneck over V2C tokenizer concepts, token-frequency prior")


def register_language_sources() -> None:
    """Register the ``concept_set`` and ``v2c`` probe concept sources."""
    from conceptlab.probes import register_concept_source

    register_concept_source(
        "concept_set", concept_set_source, CONCEPT_SET_KEYS,
        "a class -> concepts set (set = \"shapesworld\" or path), LF-CBM filters and LaBo selection, raw text embeddings",
    )
    register_concept_source("v2c", v2c_source, V2C_KEYS, "V2C's vocabulary tokenizer over the training images")
