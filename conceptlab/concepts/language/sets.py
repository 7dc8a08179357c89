"""Concept sets: class name -> concept phrases (LaBo's ``class2concepts.json`` format), and grading.

A :class:`ConceptSet` maps each class to a list of concept phrases, as LaBo, LF-CBM and V2C-CBM
ship them. :func:`concept_set_precision` (with :func:`class_attribute_words`) counts how many
concepts of a set name a true attribute of their class; ShapesWorld's class rules are the truth.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conceptlab.concepts.bank import read_json, unknown_name, write_json
from conceptlab.concepts.concept import jsonable
from conceptlab.data.shapes_facts import SHAPESWORLD_CONCEPTS_CARD, SHAPESWORLD_CONCEPTS_FILE, shapesworld_concepts

__all__ = [
    "CONCEPT_SET_FORMAT",
    "SHAPESWORLD_SYNONYMS",
    "ConceptSet",
    "class_attribute_words",
    "concept_set_precision",
    "load_concept_set",
    "shapesworld_concept_set",
]

CONCEPT_SET_FORMAT = "conceptlab.ConceptSet"


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

    def map(self, fn: Callable[[str, str], str | None]) -> ConceptSet:
        """A new set with ``fn(class, concept)`` applied to every concept (None drops it)."""
        out = {c: [r for r in (fn(c, x) for x in items) if r] for c, items in self.concepts.items()}
        return ConceptSet(out, provenance=self.provenance, scores=self.scores)

    def restrict(self, keep: Iterable[str]) -> ConceptSet:
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
    provenance = {"source": "file", "file": SHAPESWORLD_CONCEPTS_FILE, "card": SHAPESWORLD_CONCEPTS_CARD}
    return ConceptSet(shapesworld_concepts(), provenance=provenance)


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


def class_attribute_words(
    class_rules: Mapping[str, Any] | None = None, synonyms: Mapping[str, Sequence[str]] | None = None
) -> dict[str, dict[str, tuple[str, ...]]]:
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
