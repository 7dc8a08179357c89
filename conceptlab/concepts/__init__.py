"""Concepts: one ``Concept`` type whatever backs it, ordered ``ConceptBank``s, and their builders.

- :class:`Concept` -- a named vector in a stated space, with bias, class links and provenance.
- :class:`ConceptBank` -- an ordered, uniquely named set of concepts in one space; save/load as
  ``config.json`` + ``concepts.safetensors``.
- :func:`text_concepts` -- text-encoder concepts (PCBM's multimodal bank, optional templates).
- :func:`learn_cavs` / :func:`cavs_from_labels` -- linear-SVM CAVs with PCBM's protocol.
"""

from conceptlab.concepts.bank import ConceptBank, UnknownNameError, library_provenance
from conceptlab.concepts.cav import DEFAULT_C, cavs_from_labels, learn_cavs, margin_statistics
from conceptlab.concepts.concept import Concept, jsonable
from conceptlab.concepts.text import image_embedding_space, text_concepts

__all__ = [
    "Concept",
    "ConceptBank",
    "UnknownNameError",
    "DEFAULT_C",
    "cavs_from_labels",
    "image_embedding_space",
    "jsonable",
    "learn_cavs",
    "library_provenance",
    "margin_statistics",
    "text_concepts",
]
