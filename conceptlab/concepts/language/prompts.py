"""Prompt sets for concept generation: LaBo's and Label-free CBM's, and the :class:`PromptSet` type.

- ``"labo"`` -- the five prompts the LaBo authors give in LaBo#12 ("Use 10 sentences to describe
  how the {} looks like:\\n1)" ...). LaBo then turns sentences into short concepts with a
  fine-tuned T5 model (LaBo#22) that cannot run here;
  :func:`~conceptlab.concepts.language.parsing.sentence_to_concept` is a small rule-based stand-in.
- ``"lfcbm"`` -- LF-CBM's three few-shot prompts (``GPT_initial_concepts.ipynb``: important
  features, superclasses, things around), two samples per prompt, temperature 0.7, 256 tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from conceptlab.concepts.bank import unknown_name

__all__ = ["LABO_PROMPTS", "LFCBM_PROMPTS", "PROMPT_SETS", "PromptSet", "resolve_prompt_set"]

#: LaBo#12 (author's comment): five prompts per class, the answer continues after "1)".
LABO_PROMPTS: dict[str, str] = {
    "looks": "Use 10 sentences to describe how the {} looks like:\n1)",
    "appearance": "Use 10 sentences to describe the appearance of the {}:\n1)",
    "color": "Use 10 sentences to describe the color of the {}:\n1)",
    "pattern": "Use 10 sentences to describe the pattern of the {}:\n1)",
    "shape": "Use 10 sentences to describe the shape of the {}:\n1)",
}

#: LF-CBM ``GPT_initial_concepts.ipynb``: three few-shot prompts (two worked examples each).
LFCBM_PROMPTS: dict[str, str] = {
    "important": (
        'List the most important features for recognizing something as a "goldfish":\n\n-bright orange color\n'
        '-a small, round body\n-a long, flowing tail\n-a small mouth\n-orange fins\n\n'
        'List the most important features for recognizing something as a "beerglass":\n\n-a tall, cylindrical shape\n'
        '-clear or translucent color\n-opening at the top\n-a sturdy base\n-a handle\n\n'
        'List the most important features for recognizing something as a "{}":'
    ),
    "superclass": (
        'Give superclasses for the word "tench":\n\n-fish\n-vertebrate\n-animal\n\n'
        'Give superclasses for the word "beer glass":\n\n-glass\n-container\n-object\n\n'
        'Give superclasses for the word "{}":'
    ),
    "around": (
        'List the things most commonly seen around a "tench":\n\n- a pond\n-fish\n-a net\n-a rod\n-a reel\n-a hook\n-bait\n\n'
        'List the things most commonly seen around a "beer glass":\n\n- beer\n-a bar\n-a coaster\n-a napkin\n-a straw\n-a lime\n-a person\n\n'
        'List the things most commonly seen around a "{}":'
    ),
}


@dataclass(frozen=True)
class PromptSet:
    """Prompts (``{}`` = the class name) and how to sample and read their answers.

    Args:
        name: recorded in provenance.
        prompts: kind -> template with one ``{}``.
        samples: completions per (class, prompt) -- separate requests, each cached.
        temperature, max_tokens: sampling settings (part of the cache key).
        sentences: answers are sentences to be shortened by :func:`sentence_to_concept` (LaBo).
        strip_articles: drop a leading "a"/"an"/"the" (LF-CBM's ``format_concept``).
    """

    name: str
    prompts: Mapping[str, str]
    samples: int = 1
    temperature: float = 0.7
    max_tokens: int = 256
    sentences: bool = False
    strip_articles: bool = True

    def __post_init__(self) -> None:
        bad = [k for k, t in self.prompts.items() if t.count("{}") != 1]
        if not self.prompts or bad:
            raise ValueError(f"every prompt needs exactly one '{{}}' for the class name; bad: {bad or 'no prompts'}")
        if int(self.samples) < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


#: The two prompt sets of the papers. LaBo's sampling settings are unpublished [unverified]: we use
#: one sample at LF-CBM's temperature 0.7 and 256 tokens.
PROMPT_SETS: dict[str, PromptSet] = {
    "labo": PromptSet("labo", LABO_PROMPTS, samples=1, temperature=0.7, max_tokens=256, sentences=True, strip_articles=False),
    "lfcbm": PromptSet("lfcbm", LFCBM_PROMPTS, samples=2, temperature=0.7, max_tokens=256, sentences=False, strip_articles=True),
}


def resolve_prompt_set(prompt_set: str | PromptSet) -> PromptSet:
    """A :class:`PromptSet` as given, or the one of :data:`PROMPT_SETS` with that name."""
    if isinstance(prompt_set, PromptSet):
        return prompt_set
    if prompt_set not in PROMPT_SETS:
        raise unknown_name(prompt_set, list(PROMPT_SETS), "prompt set")
    return PROMPT_SETS[prompt_set]
