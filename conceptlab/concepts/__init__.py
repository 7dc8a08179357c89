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

# -- concepts from language (LaBo, Label-free CBM, V2C-CBM) --------------------------------------
from conceptlab.concepts.filters import (  # noqa: E402
    FilterResult,
    SentenceEncoder,
    filter_class_similarity,
    filter_length,
    filter_near_duplicates,
    filter_not_in_data,
    lfcbm_filters,
)
from conceptlab.concepts.generation import (  # noqa: E402
    PROMPT_SETS,
    ConceptProvider,
    ConceptSet,
    OfflineProvider,
    OpenAIProvider,
    PromptSet,
    concept_set_precision,
    load_concept_set,
    parse_list_answer,
    shapesworld_concept_set,
)
from conceptlab.concepts.selection import SelectionResult, greedy_reference, mi_scores, submodular_select  # noqa: E402
from conceptlab.concepts.v2c import V2CTokenizer, embed_codebook, load_v2c_vocabulary  # noqa: E402

__all__ += [
    "ConceptProvider",
    "ConceptSet",
    "FilterResult",
    "OfflineProvider",
    "OpenAIProvider",
    "PROMPT_SETS",
    "PromptSet",
    "SelectionResult",
    "SentenceEncoder",
    "V2CTokenizer",
    "concept_set_precision",
    "embed_codebook",
    "filter_class_similarity",
    "filter_length",
    "filter_near_duplicates",
    "filter_not_in_data",
    "greedy_reference",
    "lfcbm_filters",
    "load_concept_set",
    "load_v2c_vocabulary",
    "mi_scores",
    "parse_list_answer",
    "shapesworld_concept_set",
    "submodular_select",
]

# -- alignment of any two concept sets (lives with discovery, where it was first needed) ----------
from conceptlab.discovery.alignment import align_concepts  # noqa: E402

__all__ += ["align_concepts"]
