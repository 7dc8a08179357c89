"""Reading LLM answers into concept phrases.

:func:`parse_list_answer` copes with numbered lists ("1)", "2."), bullets ("-", "*", "•"), a
preamble line, Markdown, items run together on one line, duplicates, and class-name leakage (an
item that names its own class is masked, dropped or kept, see ``leakage``).
"""

from __future__ import annotations

import re

__all__ = ["normalise_concept", "parse_list_answer", "sentence_to_concept"]

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
    r"(?:(?:is|are|has|have|looks|look|appears|appear|features|feature|shows|show|comes|come|can be|may be|tends to be|"
    r"usually has|typically has|often has|usually is|typically is|often is)\s+)+"
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
