"""Concepts: one ``Concept`` type whatever backs it, ordered ``ConceptBank``s, and their builders.

- :class:`Concept` -- a named vector in a stated space, with bias, class links and provenance.
- :class:`ConceptBank` -- an ordered, uniquely named set of concepts in one space; save/load as
  ``config.json`` + ``concepts.safetensors``.
- :func:`text_concepts` -- text-encoder concepts (PCBM's multimodal bank, optional templates).
- :func:`learn_cavs` / :func:`cavs_from_labels` -- linear-SVM CAVs with PCBM's protocol.
- :mod:`~conceptlab.concepts.language` -- concept sets from language (LaBo, Label-free CBM,
  V2C-CBM): :class:`ConceptSet`, prompt sets, answer parsing, providers.
- :func:`filter_length` and friends -- Label-free CBM's concept filters; :func:`submodular_select`
  -- LaBo's selection; :class:`V2CTokenizer` -- V2C-CBM's vocabulary.
- :func:`cavs_from_annotations`, :func:`cav_from_folders`, :func:`text_bank_from_file` -- concepts
  from the user's own annotations, folders and phrase files; :func:`concept_bank_from_set` -- one
  text concept per phrase of a concept set.
- :class:`ConceptSetEdits` -- the analyst's add / remove / rename edits to a concept set, as a log
  that says what each edit did, replays on any set and round-trips through JSON.
- :func:`align_concepts` -- best matches between any two concept sets (direction cosine,
  activation correlation).
"""

from conceptlab.concepts.alignment import align_concepts
from conceptlab.concepts.annotations import cav_from_folders, cavs_from_annotations, read_phrases, text_bank_from_file
from conceptlab.concepts.bank import ConceptBank, UnknownNameError, library_provenance
from conceptlab.concepts.cav import DEFAULT_C, cavs_from_labels, learn_cavs, margin_statistics
from conceptlab.concepts.concept import Concept, jsonable
from conceptlab.concepts.edits import ConceptEdit, ConceptSetEdits, EditResult
from conceptlab.concepts.filters import (
    FilterResult,
    SentenceEncoder,
    filter_class_similarity,
    filter_length,
    filter_near_duplicates,
    filter_not_in_data,
    lfcbm_filters,
)
from conceptlab.concepts.from_set import concept_bank_from_set
from conceptlab.concepts.language import (
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
from conceptlab.concepts.selection import SelectionResult, greedy_reference, mi_scores, submodular_select
from conceptlab.concepts.text import image_embedding_space, text_concepts
from conceptlab.concepts.v2c import V2CTokenizer, embed_codebook, load_v2c_vocabulary

__all__ = [
    "cav_from_folders",
    "cavs_from_annotations",
    "concept_bank_from_set",
    "read_phrases",
    "text_bank_from_file",
    "DEFAULT_C",
    "PROMPT_SETS",
    "Concept",
    "ConceptBank",
    "ConceptEdit",
    "ConceptSetEdits",
    "EditResult",
    "ConceptProvider",
    "ConceptSet",
    "FilterResult",
    "OfflineProvider",
    "OpenAIProvider",
    "PromptSet",
    "SelectionResult",
    "SentenceEncoder",
    "UnknownNameError",
    "V2CTokenizer",
    "align_concepts",
    "cavs_from_labels",
    "concept_set_precision",
    "embed_codebook",
    "filter_class_similarity",
    "filter_length",
    "filter_near_duplicates",
    "filter_not_in_data",
    "greedy_reference",
    "image_embedding_space",
    "jsonable",
    "learn_cavs",
    "lfcbm_filters",
    "library_provenance",
    "load_concept_set",
    "load_v2c_vocabulary",
    "margin_statistics",
    "mi_scores",
    "parse_list_answer",
    "shapesworld_concept_set",
    "submodular_select",
    "text_concepts",
]
