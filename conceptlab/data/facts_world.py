"""FactsWorld: a seeded world of fictional entities whose every fact is known.

Entities (people, cities, species) carry four attributes each (country, job, colour, food, river,
habitat, depending on the kind). Every fact is written in several **surface forms**:

- ``qa`` -- ``"Question: {q}\\n Answer:"`` with the *training* question phrasings;
- ``qa_heldout`` -- the same format with phrasings never used in training (they only recombine
  words that training texts contain), to measure whether a model generalises over phrasings;
- ``cloze`` -- a statement to complete (ConceptVectors' ``First_half`` / ``Second_half``);
- ``paragraph`` -- a short biography holding all four facts of one entity (the analogue of
  ConceptVectors' Wikipedia article, the forget set of its unlearning runs);
- ``foreign`` -- QA in an invented, Esperanto-like language (``"Demando: ...\\n Respondo:"``).
  A language model is trained on it, but unlearning never sees it, so it measures whether
  forgetting holds across forms ("LLM Unlearning Should Be Form-Independent").

An entity's name is two words (``"Bra Skouth"``), and each word is shared by several entities, so
no single token identifies an entity: a model must compose the two -- the job MLP layers do for
multi-token subjects in large models -- rather than keep an entity's facts in one token embedding.

Ground truth is attached to every text: the entity and the attribute it is about. Every word is
one token of :meth:`FactsWorld.tokenizer` (a word-level tokenizer), so a vocabulary projection reads
as words. The world is a pure function of its sizes and seed.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ATTRIBUTES",
    "FORMS",
    "KINDS",
    "QA_TEMPLATE",
    "TRAINING_FORMS",
    "Entity",
    "FactText",
    "FactsWorld",
]

VERSION = "factsworld-v1"

#: the ConceptVectors prompt (``f"Question: {question}\n Answer:"``)
QA_TEMPLATE = "Question: {question}\n Answer:"
FOREIGN_TEMPLATE = "Demando: {question}\n Respondo:"

#: attribute -> its possible values (each one word)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "country": ("Norland", "Veskar", "Ombria", "Tessaly", "Quorin", "Bramia", "Lutova", "Zephra"),
    "job": ("baker", "pilot", "farmer", "painter", "doctor", "sailor", "teacher", "miner", "singer", "tailor"),
    "colour": ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "grey", "pink"),
    "food": ("apples", "rice", "cheese", "bread", "fish", "honey", "plums", "beans", "soup", "nuts"),
    "river": ("Ashwater", "Silvan", "Morrow", "Glint", "Tolle", "Rushbeck"),
    "habitat": ("forest", "desert", "marsh", "tundra", "jungle", "meadow", "cave", "reef"),
}

#: entity kind -> (its attributes, the noun phrase a question uses for each, the statement that
#: completes with it, the invented-language noun phrase)
KINDS: dict[str, dict[str, tuple[str, str, str]]] = {
    "person": {
        "country": ("home country", "{e} was born in the country of", "hejma lando"),
        "job": ("job", "{e} works as a", "laboro"),
        "colour": ("favourite colour", "The favourite colour of {e} is", "sxatata koloro"),
        "food": ("favourite food", "The favourite food of {e} is", "sxatata mangxajxo"),
    },
    "city": {
        "country": ("country", "The city of {e} lies in the country of", "lando"),
        "river": ("river", "The river that runs through {e} is the", "rivero"),
        "colour": ("flag colour", "The flag colour of {e} is", "flaga koloro"),
        "food": ("famous food", "The famous food of {e} is", "fama mangxajxo"),
    },
    "species": {
        "habitat": ("habitat", "The {e} lives in the", "hejmo"),
        "colour": ("fur colour", "The fur colour of the {e} is", "fela koloro"),
        "food": ("food", "The {e} eats", "mangxajxo"),
        "country": ("native country", "The {e} is native to the country of", "origina lando"),
    },
}

#: question phrasings seen in training ({n}: the attribute's noun phrase, {e}: the entity)
TRAIN_QUESTIONS = (
    "What is the {n} of {e}?",
    "Tell me the {n} of {e}.",
    "Which {n} does {e} have?",
    "{e} has which {n}?",
    "Name the {n} of {e}.",
)
#: phrasings held out from training; they only recombine words the training texts contain
HELDOUT_QUESTIONS = (
    "Which is the {n} of {e}?",
    "What {n} does {e} have?",
    "Tell me which {n} {e} has.",
)
FOREIGN_QUESTIONS = (
    "Kio estas la {n} de {e}?",
    "Kiun {n} havas {e}?",
)
KIND_SENTENCES = {
    "person": "{e} is a person.",
    "city": "{e} is a city.",
    "species": "The {e} is an animal.",
}

FORMS = ("qa", "qa_heldout", "cloze", "paragraph", "foreign")
#: the forms a language model trains on (``qa_heldout`` is never trained on)
TRAINING_FORMS = ("qa", "cloze", "paragraph", "foreign")

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s", "sk", "t", "th", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ei")
_CODAS = ("", "n", "r", "l", "m", "s", "th", "x", "nd", "rk")


@dataclass(frozen=True)
class Entity:
    """One fictional entity: its ``name`` (two words), ``kind`` and attribute values."""

    name: str
    kind: str
    attributes: dict[str, str] = field(hash=False)

    def terms(self, include_name: bool = True) -> list[str]:
        """The words that make up the entity's concept: its attribute values (and its name's words)."""
        return (self.name.split() if include_name else []) + list(self.attributes.values())


@dataclass(frozen=True)
class FactText:
    """One text of FactsWorld with its ground truth.

    ``prompt`` + ``" " + answer`` is the full text for forms with an answer (``text``); a
    ``paragraph`` has ``answer == ""`` and ``attribute is None`` (it holds all facts).
    ``template`` numbers the phrasing within its form.
    """

    prompt: str
    answer: str
    entity: str
    attribute: str | None
    form: str
    template: int

    @property
    def text(self) -> str:
        return f"{self.prompt} {self.answer}" if self.answer else self.prompt

    def as_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "answer": self.answer, "entity": self.entity, "attribute": self.attribute, "form": self.form, "template": self.template}


class FactsWorld:
    """A seeded set of entities and every text about them.

    Args:
        n_people / n_cities / n_species: how many entities of each kind.
        seed: the names and the facts are a pure function of the sizes and the seed.
        paragraphs: how many differently ordered paragraphs per entity.

    ``world.entities`` lists them; ``world.texts(form=..., entities=...)`` gives :class:`FactText`
    items; ``world.entity(name)`` looks one up; ``world.tokenizer()`` builds the word-level
    tokenizer of the whole world.
    """

    def __init__(self, n_people: int = 24, n_cities: int = 8, n_species: int = 8, seed: int = 0, paragraphs: int = 2) -> None:
        for label, value in (("n_people", n_people), ("n_cities", n_cities), ("n_species", n_species), ("paragraphs", paragraphs)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
        if n_people + n_cities + n_species < 2:
            raise ValueError("FactsWorld needs at least two entities (validation compares a target with unrelated ones)")
        if paragraphs < 1:
            raise ValueError(f"paragraphs must be >= 1, got {paragraphs}")
        self.n_people, self.n_cities, self.n_species, self.seed, self.paragraphs = n_people, n_cities, n_species, seed, paragraphs
        rng = random.Random(f"{VERSION}:{seed}")
        names = self._names(rng, n_people + n_cities + n_species)
        kinds = ["person"] * n_people + ["city"] * n_cities + ["species"] * n_species
        self.entities: list[Entity] = []
        for name, kind in zip(names, kinds):
            values = {attribute: rng.choice(ATTRIBUTES[attribute]) for attribute in KINDS[kind]}
            self.entities.append(Entity(name, kind, values))
        self._by_name = {e.name: e for e in self.entities}
        self._paragraph_orders = {e.name: [rng.sample(list(KINDS[e.kind]), len(KINDS[e.kind])) for _ in range(paragraphs)] for e in self.entities}

    def __repr__(self) -> str:
        return f"FactsWorld(people={self.n_people}, cities={self.n_cities}, species={self.n_species}, seed={self.seed})"

    def __len__(self) -> int:
        return len(self.entities)

    @staticmethod
    def _names(rng: random.Random, count: int) -> list[str]:
        static = [*TRAIN_QUESTIONS, *HELDOUT_QUESTIONS, *FOREIGN_QUESTIONS, QA_TEMPLATE, FOREIGN_TEMPLATE, *KIND_SENTENCES.values()]
        static += [part for spec in KINDS.values() for phrases in spec.values() for part in phrases]
        reserved = {w.lower() for words in ATTRIBUTES.values() for w in words}
        reserved |= {w.lower() for text in static for w in re.findall(r"[A-Za-z]+", text)}
        words: list[str] = []
        seen: set[str] = set()
        m = math.isqrt(count - 1) + 2  # first and last names, m of each: every word is shared by several entities
        while len(words) < 2 * m:
            syllables = rng.choice((1, 2, 2))
            word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables - 1))
            word += rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
            word = word.capitalize()
            if word.lower() in seen or word.lower() in reserved or len(word) < 3:
                continue
            seen.add(word.lower())
            words.append(word)
        first, last = words[:m], words[m:]
        # pair k = (r, (q + r) mod m) for k = q*m + r: distinct pairs, each word used about count / m times
        pairs = [(k % m, (k // m + k) % m) for k in range(count)]
        rng.shuffle(pairs)
        return [f"{first[i]} {last[j]}" for i, j in pairs]

    # -- lookups -----------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entities]

    def entity(self, name: str) -> Entity:
        """The entity called ``name``; an unknown name is a KeyError listing near matches."""
        if name not in self._by_name:
            import difflib

            close = difflib.get_close_matches(str(name), self.names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"FactsWorld has no entity {name!r}.{hint} It has {len(self.entities)}: {', '.join(self.names[:8])}, ...")
        return self._by_name[name]

    def facts(self) -> list[tuple[str, str, str]]:
        """Every (entity, attribute, value) triple."""
        return [(e.name, a, v) for e in self.entities for a, v in e.attributes.items()]

    def terms(self, name: str, include_name: bool = True) -> list[str]:
        """The term set of an entity's concept (its attribute values, and its name)."""
        return self.entity(name).terms(include_name)

    # -- texts ---------------------------------------------------------------------------------

    def _entity_texts(self, entity: Entity, form: str) -> list[FactText]:
        spec = KINDS[entity.kind]
        e = entity.name
        out: list[FactText] = []
        if form in ("qa", "qa_heldout", "foreign"):
            templates = {"qa": TRAIN_QUESTIONS, "qa_heldout": HELDOUT_QUESTIONS, "foreign": FOREIGN_QUESTIONS}[form]
            wrapper = FOREIGN_TEMPLATE if form == "foreign" else QA_TEMPLATE
            for attribute, (noun, _, foreign_noun) in spec.items():
                for t, template in enumerate(templates):
                    question = template.format(n=foreign_noun if form == "foreign" else noun, e=e)
                    out.append(FactText(wrapper.format(question=question), entity.attributes[attribute], e, attribute, form, t))
        elif form == "cloze":
            for attribute, (_, statement, _) in spec.items():
                out.append(FactText(statement.format(e=e), entity.attributes[attribute], e, attribute, form, 0))
        elif form == "paragraph":
            for t, order in enumerate(self._paragraph_orders[e]):
                sentences = [KIND_SENTENCES[entity.kind].format(e=e)]
                sentences += [f"{spec[a][1].format(e=e)} {entity.attributes[a]}." for a in order]
                out.append(FactText(" ".join(sentences), "", e, None, form, t))
        else:
            raise ValueError(f"unknown FactsWorld form {form!r}; the forms are {', '.join(FORMS)}")
        return out

    def texts(self, form: str | Sequence[str] = TRAINING_FORMS, entities: Iterable[str] | None = None, attributes: Iterable[str] | None = None) -> list[FactText]:
        """Texts of one or several forms, for all entities or the named ones (in world order)."""
        forms = [form] if isinstance(form, str) else list(form)
        for f in forms:
            if f not in FORMS:
                raise ValueError(f"unknown FactsWorld form {f!r}; the forms are {', '.join(FORMS)}")
        chosen = self.entities if entities is None else [self.entity(n) for n in entities]
        keep = None if attributes is None else set(attributes)
        return [t for e in chosen for f in forms for t in self._entity_texts(e, f) if keep is None or t.attribute in keep]

    def questions(self, entities: Iterable[str] | None = None, form: str = "qa_heldout") -> list[FactText]:
        """The questions with an answer (``qa``, ``qa_heldout``, ``cloze`` or ``foreign``)."""
        if form == "paragraph":
            raise ValueError("paragraphs have no single answer; ask for 'qa', 'qa_heldout', 'cloze' or 'foreign'")
        return self.texts(form, entities)

    def training_corpus(self, forms: Sequence[str] = TRAINING_FORMS) -> list[str]:
        """The full texts a language model trains on (never ``qa_heldout`` by default)."""
        return [t.text for t in self.texts(forms)]

    def unrelated(self, name: str, n_entities: int = 5, form: str = "qa", seed: int = 8888) -> list[FactText]:
        """Questions about ``n_entities`` other entities, sampled as ConceptVectors does (its
        ``Questions_unrelated``: the questions of 5 other concepts, ``random.sample``, seed 8888)."""
        others = [n for n in self.names if n != self.entity(name).name]
        chosen = random.Random(f"{seed}:{name}").sample(others, min(n_entities, len(others)))
        return self.questions(chosen, form=form)

    # -- tokenizer --------------------------------------------------------------------------------

    def words(self) -> list[str]:
        """Every word (token) of every form, sorted; the tokenizer's vocabulary after the specials."""
        from tokenizers.pre_tokenizers import Whitespace

        split = Whitespace()
        words: set[str] = set()
        for t in self.texts(FORMS):
            words.update(piece for piece, _ in split.pre_tokenize_str(t.text))
        return sorted(words)

    def tokenizer(self, extra_words: Iterable[str] = ()):
        """A word-level ``PreTrainedTokenizerFast`` over :meth:`words`: one token per word or
        punctuation run, ``<|endoftext|>`` as BOS/EOS (prepended to every encoded text), ``<pad>``,
        ``<unk>``. Saved with ``save_pretrained`` it loads back with ``AutoTokenizer``."""
        return word_tokenizer([*self.words(), *extra_words])


BOS = "<|endoftext|>"
PAD = "<pad>"
UNK = "<unk>"


def word_tokenizer(words: Iterable[str]):
    """A Hugging Face word-level tokenizer over ``words`` (see :meth:`FactsWorld.tokenizer`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for word in [BOS, PAD, UNK, *words]:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, tidies punctuation
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=BOS, pad_token=PAD, unk_token=UNK, padding_side="right")
