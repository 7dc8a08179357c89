"""Concept sets from language: providers, the LaBo and Label-free CBM prompt sets, answer parsing.

A :class:`ConceptSet` maps each class to a list of concept phrases (the ``class2concepts.json``
format LaBo, LF-CBM and V2C-CBM ship). Two providers make one:

- :class:`OfflineProvider` reads such JSON files (no network; what the tests and the app use);
- :class:`OpenAIProvider` asks any OpenAI-compatible server through the ``openai`` client. Every
  answer is cached on disk, keyed by model + prompt + sampling settings, so a rerun pays nothing;
  failed requests are retried with exponential backoff; the API key is never logged, cached or
  written into provenance.

Prompt sets (:data:`PROMPT_SETS`):

- ``"labo"`` -- the five prompts the LaBo authors give in LaBo#12 ("Use 10 sentences to describe
  how the {} looks like:\\n1)" ...). LaBo then turns sentences into short concepts with a
  fine-tuned T5 model (LaBo#22) that cannot run here; :func:`sentence_to_concept` is a small
  rule-based stand-in (drops the subject and the verb: "The ruby disc is bright red." -> "bright red").
- ``"lfcbm"`` -- LF-CBM's three few-shot prompts (``GPT_initial_concepts.ipynb``: important
  features, superclasses, things around), two samples per prompt, temperature 0.7, 256 tokens.

Parsing (:func:`parse_list_answer`) copes with numbered lists ("1)", "2."), bullets ("-", "*",
"•"), a preamble line, Markdown, items run together on one line, duplicates, and class-name
leakage (an item that names its own class is masked, dropped or kept, see ``leakage``).

Also here: :func:`class_attribute_words` / :func:`concept_set_precision` -- how many concepts of
a set name a true attribute of their class (ShapesWorld's class rules are the ground truth).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from conceptlab.concepts.bank import library_provenance, read_json, unknown_name, write_json
from conceptlab.concepts.concept import jsonable

__all__ = [
    "ConceptSet",
    "ConceptProvider",
    "OfflineProvider",
    "OpenAIProvider",
    "PromptSet",
    "PROMPT_SETS",
    "LABO_PROMPTS",
    "LFCBM_PROMPTS",
    "parse_list_answer",
    "normalise_concept",
    "sentence_to_concept",
    "load_concept_set",
    "shapesworld_concept_set",
    "class_attribute_words",
    "concept_set_precision",
    "SHAPESWORLD_SYNONYMS",
]

log = logging.getLogger(__name__)

CONCEPT_SET_FORMAT = "conceptlab.ConceptSet"


# ----------------------------------------------------------------------------------------------
# the concept set
# ----------------------------------------------------------------------------------------------


@dataclass
class ConceptSet:
    """Class name -> ordered list of unique concept phrases, plus provenance.

    ``scores`` optionally gives a number per (class, concept) -- V2C's token frequencies -- and is
    carried into banks built from the set.
    """

    concepts: dict[str, list[str]]
    provenance: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.concepts, Mapping):
            raise TypeError(f"a ConceptSet needs a mapping class -> list of concepts, got {type(self.concepts).__name__}")
        clean: dict[str, list[str]] = {}
        for cls, items in self.concepts.items():
            if isinstance(items, str) or not isinstance(items, Iterable):
                raise ValueError(f"concepts of class {cls!r} must be a list of strings, got {type(items).__name__}")
            seen, kept = set(), []
            for item in items:
                if not isinstance(item, str):
                    raise ValueError(f"class {cls!r} has a non-string concept {item!r}")
                text = " ".join(item.split())
                if text and text not in seen:
                    seen.add(text)
                    kept.append(text)
            clean[str(cls)] = kept
        self.concepts = clean
        self.provenance = jsonable(dict(self.provenance))
        if self.scores is not None:
            self.scores = {str(c): {str(k): float(v) for k, v in s.items()} for c, s in self.scores.items()}

    @property
    def classes(self) -> list[str]:
        return list(self.concepts)

    def __len__(self) -> int:
        return sum(len(v) for v in self.concepts.values())

    def __getitem__(self, cls: str) -> list[str]:
        if cls not in self.concepts:
            raise unknown_name(cls, self.classes, "class")
        return list(self.concepts[cls])

    def __repr__(self) -> str:
        return f"ConceptSet({len(self.concepts)} classes, {len(self)} concepts, {len(self.unique())} unique)"

    def unique(self) -> list[str]:
        """Every concept once, in order of first appearance (class order, then list order)."""
        seen: dict[str, None] = {}
        for items in self.concepts.values():
            for item in items:
                seen.setdefault(item, None)
        return list(seen)

    def links(self) -> dict[str, list[str]]:
        """Concept -> the classes that list it, in class order (LaBo keeps only the first)."""
        out: dict[str, list[str]] = {}
        for cls, items in self.concepts.items():
            for item in items:
                out.setdefault(item, []).append(cls)
        return out

    def map(self, fn: Callable[[str, str], str | None]) -> "ConceptSet":
        """A new set with ``fn(class, concept)`` applied to every concept (None drops it)."""
        out = {c: [r for r in (fn(c, x) for x in items) if r] for c, items in self.concepts.items()}
        return ConceptSet(out, provenance=self.provenance, scores=self.scores)

    def restrict(self, keep: Iterable[str]) -> "ConceptSet":
        """A new set holding only the concepts in ``keep`` (a filter's survivors)."""
        keep = set(keep)
        return self.map(lambda _c, x: x if x in keep else None)

    def to_dict(self) -> dict[str, list[str]]:
        """The papers' plain ``{class: [concepts]}`` form."""
        return {c: list(v) for c, v in self.concepts.items()}

    def save(self, path: str | os.PathLike, plain: bool = False) -> Path:
        """Write JSON; ``plain=True`` writes the papers' bare class -> list mapping."""
        path = Path(path)
        if plain:
            write_json(path, self.to_dict())
        else:
            write_json(path, {"format": CONCEPT_SET_FORMAT, "concepts": self.to_dict(), "scores": self.scores, "provenance": self.provenance})
        return path


def load_concept_set(path: str | os.PathLike) -> ConceptSet:
    """Read a class -> list JSON file (the papers' format) or one written by :meth:`ConceptSet.save`."""
    obj = read_json(path, "concept set")
    if obj.get("format") == CONCEPT_SET_FORMAT:
        concepts = obj.get("concepts")
        if not isinstance(concepts, dict):
            raise ValueError(f"concept set file {path} is corrupt: 'concepts' is not a mapping")
        provenance = {**(obj.get("provenance") or {}), "file": str(path)}
        return ConceptSet(concepts, provenance=provenance, scores=obj.get("scores"))
    bad = [k for k, v in obj.items() if not isinstance(v, list)]
    if bad:
        raise ValueError(f"concept set file {path} must map each class to a list of concepts; {bad[:3]} do not")
    return ConceptSet(obj, provenance={"source": "file", "file": str(path)})


def shapesworld_concept_set() -> ConceptSet:
    """The concept set shipped for ShapesWorld's 12 classes (``resources/shapesworld_concepts.json``,
    see ``data_cards/shapesworld_concepts.md``)."""
    from importlib import resources

    path = Path(str(resources.files("conceptlab") / "resources" / "shapesworld_concepts.json"))
    out = load_concept_set(path)
    out.provenance = {**out.provenance, "file": "conceptlab/resources/shapesworld_concepts.json", "card": "data_cards/shapesworld_concepts.md"}
    return out


# ----------------------------------------------------------------------------------------------
# prompt sets
# ----------------------------------------------------------------------------------------------

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


def _prompt_set(prompt_set: str | PromptSet) -> PromptSet:
    if isinstance(prompt_set, PromptSet):
        return prompt_set
    if prompt_set not in PROMPT_SETS:
        raise unknown_name(prompt_set, list(PROMPT_SETS), "prompt set")
    return PROMPT_SETS[prompt_set]


# ----------------------------------------------------------------------------------------------
# parsing answers
# ----------------------------------------------------------------------------------------------

_MARKER = re.compile(r"^\s*(?:[-*•·–—+>]+|\(?\d{1,3}\s*[.):\]]|\(?[a-hA-H][.)]\s)\s*")
_INLINE_NUMBERS = re.compile(r"(?:(?<=\s)|^)\(?\d{1,3}[.)]\s+")
_ARTICLES = ("a ", "an ", "the ")
_NEUTRAL = "object"
_PREAMBLE = re.compile(r"^\s*(?:sure|certainly|of course|okay|ok|here (?:are|is)|below (?:are|is))\b", re.IGNORECASE)


def normalise_concept(text: str, strip_articles: bool = True, lower: bool = True) -> str:
    """One clean concept phrase: Markdown, quotes, brackets and end punctuation removed, single
    spaces, lower case, and (``strip_articles``) no leading article -- LF-CBM's ``format_concept``."""
    s = text.replace("**", "").replace("__", "").replace("`", "")
    s = s.strip().strip("\"'“”‘’").strip()
    s = re.sub(r"\s+", " ", s)
    s = s.rstrip(" .;,:!?")
    if lower:
        s = s.lower()
    if strip_articles:
        for article in _ARTICLES:
            if s.lower().startswith(article):
                s = s[len(article):]
                break
    return s.strip().strip("\"'“”‘’").strip()


_SUBJECT = re.compile(
    r"^(?:(?:the|a|an|this|that|its|their|each|every)\s+)?(?:object|objects|it|they|one)\s+"
    r"(?:(?:is|are|has|have|looks|look|appears|appear|features|feature|shows|show|comes|come|can be|may be|tends to be|usually has|typically has|often has|usually is|typically is|often is)\s+)+"
    r"(?:(?:like|as|in|with)\s+)?",
    re.IGNORECASE,
)


def sentence_to_concept(sentence: str) -> str:
    """Shorten a descriptive sentence into a concept phrase (a rule-based stand-in for LaBo's T5).

    The subject (already masked to "object"/"it") and its verb are dropped, then articles and end
    punctuation: "the object is bright red in color." -> "bright red in color";
    "it has a round shape" -> "round shape". Sentences that do not start that way are kept whole.
    """
    s = normalise_concept(sentence, strip_articles=False)
    s = _SUBJECT.sub("", s, count=1)
    return normalise_concept(s, strip_articles=True)


def _split_items(text: str) -> list[str]:
    lines = []
    for raw in text.replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        # "1) red 2) round 3) small" on one line -> three items
        parts = [p for p in _INLINE_NUMBERS.split(line) if p.strip()]
        lines.extend(parts if len(parts) > 1 else [line])
    return lines


def _class_pattern(class_name: str) -> re.Pattern:
    words = [re.escape(w) for w in class_name.lower().split()]
    return re.compile(r"\b" + r"[\s\-_]+".join(words) + r"(?:e?s)?\b", re.IGNORECASE)


def parse_list_answer(
    text: str,
    class_name: str | None = None,
    *,
    sentences: bool = False,
    strip_articles: bool = True,
    leakage: str = "mask",
    max_words: int | None = None,
) -> list[str]:
    """Concept phrases from one LLM answer.

    Handles numbered lists ("1)", "2.", "(3)"), bullets ("-", "*", "•"), items run together on one
    line ("1) a 2) b"), a preamble ("Here are ten sentences:"), Markdown emphasis and code fences.
    Items are normalised (:func:`normalise_concept`) and deduplicated, first occurrence kept.

    Args:
        class_name: the class the answer describes, for leakage handling.
        sentences: shorten each item with :func:`sentence_to_concept` (LaBo's sentences).
        leakage: what to do with an item that names its class -- ``"mask"`` (default) replaces the
            class name by the neutral word "object", so "the ruby disc is red" becomes "red" after
            shortening, and drops the item if nothing else is left; ``"drop"`` drops the item;
            ``"keep"`` keeps it. An item that *is* the class name is always dropped.
        max_words: drop items longer than this many words (None keeps all).
    """
    if leakage not in ("mask", "drop", "keep"):
        raise ValueError(f"leakage must be 'mask', 'drop' or 'keep', got {leakage!r}")
    if not isinstance(text, str):
        raise TypeError(f"an answer must be a string, got {type(text).__name__}")
    pattern = _class_pattern(class_name) if class_name else None
    own = normalise_concept(class_name) if class_name else None
    out: list[str] = []
    seen: set[str] = set()
    for line in _split_items(text):
        had_marker = bool(_MARKER.match(line))
        item = _MARKER.sub("", line, count=1)
        if not had_marker and (item.rstrip().endswith(":") or _PREAMBLE.match(item)):
            continue  # a preamble such as "Here are 10 features of a ruby disc:"
        item = item.rstrip(":").strip()
        if not item:
            continue
        masked = False
        if pattern is not None and pattern.search(item):
            if normalise_concept(pattern.sub("", item)) in ("", "s"):
                continue  # the item is the class name itself
            if leakage == "drop":
                continue
            if leakage == "mask":
                item = pattern.sub(_NEUTRAL, item)
                masked = True
        concept = sentence_to_concept(item) if sentences else normalise_concept(item, strip_articles=strip_articles)
        if masked:  # remove what is left of the masked class name
            concept = normalise_concept(re.sub(r"\b(?:the |a |an |its |this )?object('s)?\b", " ", concept), strip_articles=strip_articles)
        if not concept or (own is not None and concept == own):
            continue
        if max_words is not None and len(concept.split()) > max_words:
            continue
        if concept not in seen:
            seen.add(concept)
            out.append(concept)
    return out


# ----------------------------------------------------------------------------------------------
# providers
# ----------------------------------------------------------------------------------------------


class ConceptProvider:
    """Makes a :class:`ConceptSet` for a list of class names."""

    name: str = "provider"

    def generate(self, class_names: Sequence[str], prompt_set: str | PromptSet = "labo") -> ConceptSet:
        raise NotImplementedError


class OfflineProvider(ConceptProvider):
    """Serves concept sets read from JSON files (class -> list), as the papers ship them.

    Args:
        source: a path, a :class:`ConceptSet`, a plain mapping, or a list of those (merged in order;
            a class in several sources gets the union of their lists).
    """

    name = "offline"

    def __init__(self, source: str | os.PathLike | ConceptSet | Mapping[str, Sequence[str]] | Sequence[Any]) -> None:
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        merged: dict[str, list[str]] = {}
        files = []
        for item in sources:
            if isinstance(item, ConceptSet):
                cs = item
            elif isinstance(item, Mapping):
                cs = ConceptSet(dict(item))
            else:
                cs = load_concept_set(item)
                files.append(str(item))
            for cls, concepts in cs.concepts.items():
                merged.setdefault(cls, []).extend(concepts)
        self._set = ConceptSet(merged, provenance={"source": "offline", "files": files})

    def generate(self, class_names: Sequence[str] | None = None, prompt_set: str | PromptSet | None = None) -> ConceptSet:
        """The stored concepts of ``class_names`` (all classes when None), in that order."""
        names = self._set.classes if class_names is None else [str(c) for c in class_names]
        missing = [c for c in names if c not in self._set.concepts]
        if missing:
            raise unknown_name(missing[0], self._set.classes, "class")
        return ConceptSet({c: self._set.concepts[c] for c in names}, provenance={**self._set.provenance, **library_provenance(provider="offline")})


_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIProvider(ConceptProvider):
    """Concept generation through an OpenAI-compatible server, with a disk cache and retries.

    Args:
        model: model name; default ``$CONCEPTLAB_LLM_MODEL``, then ``$OPENAI_MODEL``.
        base_url: server URL ending in ``/v1``; default ``$OPENAI_BASE_URL`` (the client's own default).
        api_key: default ``$OPENAI_API_KEY``. Never logged, cached or stored in provenance.
        cache_dir: answers are stored here, one JSON file per request (key, answer text, time;
            never the API key); default ``$CONCEPTLAB_HOME/llm_cache``.
        cache: ``False`` neither reads nor writes the cache.
        api: ``"chat"`` (``/chat/completions``, the prompt as one user message) or
            ``"completions"`` (``/completions``, as the papers' GPT-3 calls).
        max_retries: retries after the first attempt, on connection errors, timeouts, 408/409/429
            and 5xx answers; other errors (bad key, bad request) are raised at once.
        backoff: first wait in seconds, doubled after each failure (capped by ``max_backoff``),
            with up to 10% jitter.
        timeout: per-request timeout in seconds.
        client: an already built ``openai.OpenAI`` (its own retries should be 0); for tests.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        cache: bool = True,
        api: str = "chat",
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        timeout: float = 60.0,
        client: Any = None,
    ) -> None:
        if api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
        self.model = model or os.environ.get("CONCEPTLAB_LLM_MODEL") or os.environ.get("OPENAI_MODEL")
        if not self.model:
            raise ValueError("OpenAIProvider needs a model: pass model=... or set $CONCEPTLAB_LLM_MODEL / $OPENAI_MODEL")
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.__api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if cache_dir is None:
            from conceptlab.utils import conceptlab_home

            cache_dir = conceptlab_home() / "llm_cache"
        self.cache_dir = Path(cache_dir)
        self.cache = bool(cache)
        self.api = api
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.timeout = float(timeout)
        self._client = client
        self.stats = {"requests": 0, "failures": 0, "retries": 0, "cache_hits": 0, "cache_misses": 0}

    def __repr__(self) -> str:  # never shows the key
        key = "set" if self.__api_key else "unset"
        return f"OpenAIProvider(model={self.model!r}, base_url={self.base_url!r}, api={self.api!r}, api_key=<{key}>, cache_dir={str(self.cache_dir)!r})"

    # -- the client ------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            try:
                import openai
            except ImportError as error:  # pragma: no cover - a core dependency
                raise ImportError("OpenAIProvider needs the openai package: pip install openai") from error
            if not self.__api_key:
                raise ValueError("OpenAIProvider needs an API key: pass api_key=... or set $OPENAI_API_KEY")
            self._client = openai.OpenAI(api_key=self.__api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
        return self._client

    # -- the cache -------------------------------------------------------------------------------

    def cache_key(self, prompt: str, temperature: float, max_tokens: int, sample: int) -> dict[str, Any]:
        """What identifies one answer: model, API, prompt, sampling settings, sample number."""
        return {"model": self.model, "api": self.api, "prompt": prompt, "temperature": float(temperature), "max_tokens": int(max_tokens), "sample": int(sample)}

    def cache_path(self, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _read_cache(self, key: Mapping[str, Any]) -> str | None:
        path = self.cache_path(key)
        if not (self.cache and path.is_file()):
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("ignoring unreadable LLM cache entry %s", path)
            return None
        if entry.get("key") != dict(key) or not isinstance(entry.get("text"), str):
            log.warning("ignoring mismatched LLM cache entry %s", path)
            return None
        return entry["text"]

    def _write_cache(self, key: Mapping[str, Any], text: str) -> None:
        if self.cache:
            write_json(self.cache_path(key), {"key": dict(key), "text": text, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    # -- requests --------------------------------------------------------------------------------

    def _request(self, prompt: str, temperature: float, max_tokens: int) -> str:
        if self.api == "chat":
            response = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}], temperature=temperature, max_tokens=max_tokens
            )
            choices = getattr(response, "choices", None) or []
            content = choices[0].message.content if choices and choices[0].message is not None else None
        else:
            response = self.client.completions.create(model=self.model, prompt=prompt, temperature=temperature, max_tokens=max_tokens)
            choices = getattr(response, "choices", None) or []
            content = choices[0].text if choices else None
        if not isinstance(content, str):
            raise ValueError(f"the server's answer has no text (model {self.model!r}); got {type(content).__name__}")
        return content

    @staticmethod
    def _retryable(error: Exception) -> bool:
        import openai

        if isinstance(error, (openai.APIConnectionError, openai.APITimeoutError)):
            return True
        if isinstance(error, openai.APIStatusError):
            return error.status_code in _RETRYABLE_STATUS
        return False

    def complete(self, prompt: str, temperature: float = 0.7, max_tokens: int = 256, sample: int = 0) -> str:
        """The answer text for ``prompt``: from the cache when there, else from the server (retried)."""
        key = self.cache_key(prompt, temperature, max_tokens, sample)
        cached = self._read_cache(key)
        if cached is not None:
            self.stats["cache_hits"] += 1
            log.debug("LLM cache hit for model %s (%s)", self.model, self.cache_path(key).name)
            return cached
        self.stats["cache_misses"] += 1
        attempt = 0
        while True:
            self.stats["requests"] += 1
            try:
                text = self._request(prompt, temperature, max_tokens)
                break
            except Exception as error:
                self.stats["failures"] += 1
                if attempt >= self.max_retries or not self._retryable(error):
                    log.error("LLM request to model %s failed after %d attempt(s): %s", self.model, attempt + 1, type(error).__name__)
                    raise
                wait = min(self.max_backoff, self.backoff * 2**attempt) * (1.0 + 0.1 * random.random())
                attempt += 1
                self.stats["retries"] += 1
                log.warning("LLM request to model %s failed (%s); retry %d/%d in %.2fs", self.model, type(error).__name__, attempt, self.max_retries, wait)
                time.sleep(wait)
        self._write_cache(key, text)
        return text

    def generate(
        self,
        class_names: Sequence[str],
        prompt_set: str | PromptSet = "labo",
        leakage: str = "mask",
        max_words: int | None = None,
        on_error: str = "raise",
    ) -> ConceptSet:
        """Ask every prompt of ``prompt_set`` about every class and parse the answers.

        ``on_error="skip"`` records a failed or unparseable answer in provenance and goes on;
        ``"raise"`` (default) stops. An answer that parses to nothing is recorded as ``empty``.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        ps = _prompt_set(prompt_set)
        class_names = [str(c) for c in class_names]
        if not class_names:
            raise ValueError("generate needs at least one class name")
        concepts: dict[str, list[str]] = {}
        sources: dict[str, dict[str, list[str]]] = {}
        problems: list[dict[str, Any]] = []
        hits_before = self.stats["cache_hits"]
        for cls in class_names:
            found: list[str] = []
            for kind, template in ps.prompts.items():
                for sample in range(int(ps.samples)):
                    try:
                        text = self.complete(template.format(cls), ps.temperature, ps.max_tokens, sample)
                    except Exception as error:
                        if on_error == "raise":
                            raise
                        problems.append({"class": cls, "prompt": kind, "sample": sample, "error": type(error).__name__})
                        continue
                    items = parse_list_answer(text, cls, sentences=ps.sentences, strip_articles=ps.strip_articles, leakage=leakage, max_words=max_words)
                    if not items:
                        problems.append({"class": cls, "prompt": kind, "sample": sample, "error": "empty"})
                    for item in items:
                        sources.setdefault(cls, {}).setdefault(item, []).append(kind)
                    found.extend(items)
            concepts[cls] = found
        provenance = library_provenance(
            provider="openai", model=self.model, api=self.api, prompt_set=ps.name, prompts=dict(ps.prompts),
            samples=ps.samples, temperature=ps.temperature, max_tokens=ps.max_tokens, leakage=leakage,
            cache_hits=self.stats["cache_hits"] - hits_before, problems=problems, prompt_kinds=sources,
        )
        return ConceptSet(concepts, provenance=provenance)


# ----------------------------------------------------------------------------------------------
# grading a concept set against ground truth
# ----------------------------------------------------------------------------------------------

#: words an LLM uses for ShapesWorld attribute values (value -> synonyms), for grading only. The
#: invented class-name words ("ruby", "jade", "azure", "spire", "zebra", "block") are left out on
#: purpose: a concept must name the attribute in ordinary words to count.
SHAPESWORLD_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "circles", "circular", "round", "disc", "disk", "ring", "no corners", "curved edge"),
    "square": ("square", "squares", "squared", "boxy", "cube", "four equal sides", "four corners", "right-angled corners"),
    "triangle": ("triangle", "triangles", "triangular", "pyramid", "pointed top", "three sides", "three straight sides", "three corners"),
    "cross": ("cross", "crosses", "plus sign", "plus shape", "plus shaped", "cruciform", "four arms", "crossing bars"),
    "star": ("star", "stars", "star-shaped", "five points", "five-pointed", "pointed tips"),
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald"),
    "blue": ("blue", "navy", "cobalt"),
    "yellow": ("yellow", "golden", "lemon"),
    "purple": ("purple", "violet", "lilac", "lavender"),
    "orange": ("orange", "amber", "tangerine"),
    "solid": ("solid", "plain", "uniform", "flat color", "single color", "even colour", "even color", "filled"),
    "striped": ("striped", "stripes", "stripe", "stripy", "parallel lines", "banded"),
    "dotted": ("dotted", "dots", "dot", "spotted", "spots", "polka"),
}


def class_attribute_words(class_rules: Mapping[str, Any] | None = None, synonyms: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, tuple[str, ...]]]:
    """Class -> {true attribute ``family:value`` -> words that name it}.

    From ShapesWorld's ``CLASS_RULES`` by default: only the families a class's rule constrains
    (its shape, colour and, for the violet classes, fill) are true attributes of the class; a
    value that is one of several allowed ("yellow or orange") counts as true. The usual background
    is a spurious cue, not a class attribute.
    """
    if class_rules is None:
        from conceptlab.data import CLASS_RULES

        class_rules = CLASS_RULES
    synonyms = SHAPESWORLD_SYNONYMS if synonyms is None else synonyms
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for cls, spec in class_rules.items():
        rule = spec[0] if isinstance(spec, tuple) else spec
        out[cls] = {f"{family}:{value}": tuple(synonyms.get(value, (value,))) for family, values in rule.items() for value in values}
    return out


def _names(concept: str, words: Sequence[str]) -> bool:
    text = " " + " ".join(re.sub(r"[^a-z0-9]+", " ", concept.lower()).split()) + " "
    return any(" " + " ".join(re.sub(r"[^a-z0-9]+", " ", w.lower()).split()) + " " in text for w in words)


def concept_set_precision(
    concept_set: ConceptSet | Mapping[str, Sequence[str]],
    truth: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    spurious: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """How many concepts of each class name a true attribute of that class.

    A concept matches when one of its attribute's words appears in it as whole words ("bright red
    color" names ``color:red``; "reddish" does not). ``truth`` defaults to
    :func:`class_attribute_words` of ShapesWorld; ``spurious`` (class -> words, default each
    ShapesWorld class's usual background colour, which no ShapesWorld shape has) is counted
    separately.

    Returns ``precision`` (matching concepts / all concepts, over the whole set), ``per_class``
    precision, ``attribute_recall`` (true attributes named at least once / all true attributes),
    ``spurious_share`` and a ``table`` (pandas DataFrame: class, concept, attribute or None, spurious).
    """
    import pandas as pd

    sets = concept_set.concepts if isinstance(concept_set, ConceptSet) else {str(k): list(v) for k, v in concept_set.items()}
    if truth is None:
        truth = class_attribute_words()
    if spurious is None:
        from conceptlab.data import CLASS_RULES

        # ShapesWorld draws shapes in none of the background colours, so naming a class's usual
        # background colour ("white background", "white circle") can only point at the background
        spurious = {cls: (bg,) for cls, (_, bg) in CLASS_RULES.items()}
    rows = []
    named: set[tuple[str, str]] = set()
    for cls, concepts in sets.items():
        if cls not in truth:
            raise unknown_name(cls, list(truth), "class")
        for concept in concepts:
            match = next((attr for attr, words in truth[cls].items() if _names(concept, words)), None)
            if match is not None:
                named.add((cls, match))
            rows.append({"class": cls, "concept": concept, "attribute": match, "spurious": _names(concept, spurious.get(cls, ()))})
    table = pd.DataFrame(rows, columns=["class", "concept", "attribute", "spurious"])
    if table.empty:
        raise ValueError("the concept set is empty")
    matched = table["attribute"].notna()
    n_attributes = sum(len(truth[c]) for c in sets)
    return {
        "precision": float(matched.mean()),
        "per_class": matched.groupby(table["class"], sort=False).mean().to_dict(),
        "attribute_recall": len(named) / max(n_attributes, 1),
        "spurious_share": float(table["spurious"].mean()),
        "n_concepts": int(len(table)),
        "table": table,
    }
