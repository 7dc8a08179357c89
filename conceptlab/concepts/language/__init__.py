"""Concepts from language (LaBo, Label-free CBM, V2C-CBM): concept sets, prompts, parsing, providers.

- :mod:`~conceptlab.concepts.language.sets` -- :class:`ConceptSet` (class -> concept phrases),
  loading, the shipped ShapesWorld set, and grading a set against ground truth;
- :mod:`~conceptlab.concepts.language.prompts` -- LaBo's and LF-CBM's prompt sets;
- :mod:`~conceptlab.concepts.language.parsing` -- LLM answers -> concept phrases;
- :mod:`~conceptlab.concepts.language.providers` -- :class:`ConceptProvider` and the offline and
  OpenAI-compatible providers.
"""

from conceptlab.concepts.language.parsing import normalise_concept, parse_list_answer, sentence_to_concept
from conceptlab.concepts.language.prompts import LABO_PROMPTS, LFCBM_PROMPTS, PROMPT_SETS, PromptSet, resolve_prompt_set
from conceptlab.concepts.language.providers import ConceptProvider, OfflineProvider, OpenAIProvider
from conceptlab.concepts.language.sets import (
    CONCEPT_SET_FORMAT,
    SHAPESWORLD_SYNONYMS,
    ConceptSet,
    class_attribute_words,
    concept_set_precision,
    load_concept_set,
    shapesworld_concept_set,
)

__all__ = [
    "CONCEPT_SET_FORMAT",
    "LABO_PROMPTS",
    "LFCBM_PROMPTS",
    "PROMPT_SETS",
    "SHAPESWORLD_SYNONYMS",
    "ConceptProvider",
    "ConceptSet",
    "OfflineProvider",
    "OpenAIProvider",
    "PromptSet",
    "class_attribute_words",
    "concept_set_precision",
    "load_concept_set",
    "normalise_concept",
    "parse_list_answer",
    "resolve_prompt_set",
    "sentence_to_concept",
    "shapesworld_concept_set",
]
