"""The analyst's edits to a class -> concepts set, as a log that is replayed, saved and reloaded.

>>> edits = ConceptSetEdits(selected)                 # selected: class -> concepts (LaBo's selection)
>>> edits.add("ruby disc", "shiny crimson").status     # 'added'
>>> edits.add("ruby disc", "shiny crimson").status     # 'already present'
>>> edits.rename("ruby disc", "shiny crimson", "glossy red").status   # 'renamed'
>>> edits.current()                                    # the base with every edit applied
>>> edits.apply(other_set)                             # the same edits replayed on another ConceptSet
>>> edits.save("edits.json"); ConceptSetEdits.load("edits.json")

Each call checks the edit against the set as it now stands and says what happened (an
:class:`EditResult`); only edits that changed something enter the log. The state is the base plus
the log, never a widget's value, so an app can redraw its widgets from :meth:`current` at any
time. Phrases are compared with their whitespace collapsed, as :class:`ConceptSet` stores them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conceptlab.concepts.bank import read_json, unknown_name, write_json
from conceptlab.concepts.language import ConceptSet

__all__ = ["EDITS_FORMAT", "EDIT_STATUSES", "ConceptEdit", "ConceptSetEdits", "EditResult"]

EDITS_FORMAT = "conceptlab.ConceptSetEdits"
OPERATIONS = ("add", "remove", "rename")
#: what an edit can report: the first three changed the set, the others did not
EDIT_STATUSES = ("added", "removed", "renamed", "already present", "empty name", "not found", "unchanged")
CHANGED = ("added", "removed", "renamed")


def clean_phrase(text: Any) -> str:
    """A phrase with its whitespace collapsed (how a ConceptSet stores it)."""
    return " ".join(str(text if text is not None else "").split())


@dataclass(frozen=True)
class ConceptEdit:
    """One logged edit: ``op`` ("add", "remove" or "rename") of ``concept`` in class ``cls``
    (``new`` is the new phrase of a rename)."""

    op: str
    cls: str
    concept: str
    new: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown edit {self.op!r}; edits are {', '.join(OPERATIONS)}")
        if not clean_phrase(self.concept) or (self.op == "rename" and not clean_phrase(self.new)):
            raise ValueError(f"a logged {self.op} needs non-empty phrases, got {self.concept!r} -> {self.new!r}")

    def to_dict(self) -> dict[str, Any]:
        out = {"op": self.op, "class": self.cls, "concept": self.concept}
        if self.op == "rename":
            out["new"] = self.new
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ConceptEdit:
        try:
            return cls(str(obj["op"]), str(obj["class"]), str(obj["concept"]), None if obj.get("new") is None else str(obj["new"]))
        except KeyError as error:
            raise ValueError(f"an edit needs 'op', 'class' and 'concept'; {dict(obj)!r} has no {error}") from None


@dataclass(frozen=True)
class EditResult:
    """What one edit did: ``status`` (one of :data:`EDIT_STATUSES`) and a sentence saying so."""

    status: str
    cls: str
    concept: str
    new: str | None = None

    @property
    def changed(self) -> bool:
        return self.status in CHANGED

    @property
    def message(self) -> str:
        quoted, where = f"“{self.concept}”", f"class {self.cls}"
        return {
            "added": f"Added {quoted} to {where}.",
            "removed": f"Removed {quoted} from {where}.",
            "renamed": f"Renamed {quoted} to “{self.new}” in {where}.",
            "already present": f"{quoted} is already present in {where}; nothing changed.",
            "empty name": "The name is empty; nothing changed.",
            "not found": f"{quoted} is not in {where}; nothing changed.",
            "unchanged": f"{quoted} already has that name; nothing changed.",
        }[self.status]


def _replay(concepts: dict[str, list[str]], edit: ConceptEdit) -> str:
    """Apply one edit in place to ``concepts``; returns its status (the log's replay rule)."""
    items = concepts.setdefault(edit.cls, [])
    concept = clean_phrase(edit.concept)
    if edit.op == "add":
        if concept in items:
            return "already present"
        items.append(concept)
        return "added"
    if concept not in items:
        return "not found"
    if edit.op == "remove":
        items.remove(concept)
        return "removed"
    new = clean_phrase(edit.new)
    if new == concept:
        return "unchanged"
    if new in items:
        return "already present"
    items[items.index(concept)] = new
    return "renamed"


class ConceptSetEdits:
    """A base class -> concepts set and the log of edits made to it (module docstring).

    Args:
        base: the set the edits start from (a :class:`ConceptSet` or a class -> phrases mapping).
        edits: an existing log (e.g. from :meth:`load`), replayed on ``base``; edits that no longer
            change anything (a concept the base already has) are dropped, an edit of a class the
            base lacks is an :class:`~conceptlab.concepts.UnknownNameError`.
    """

    def __init__(self, base: ConceptSet | Mapping[str, Sequence[str]], edits: Iterable[ConceptEdit] = ()) -> None:
        concepts = base.to_dict() if isinstance(base, ConceptSet) else base
        self.base: dict[str, list[str]] = ConceptSet({str(c): list(v) for c, v in concepts.items()}).to_dict()
        self.edits: list[ConceptEdit] = []
        self._current = {c: list(v) for c, v in self.base.items()}
        for edit in edits:
            if _replay(self._current, self._checked(edit)) in CHANGED:
                self.edits.append(edit)

    # -- reading ----------------------------------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        return list(self.base)

    def __len__(self) -> int:
        return len(self.edits)

    def __repr__(self) -> str:
        return f"ConceptSetEdits({len(self.base)} classes, {len(self.edits)} edits)"

    def current(self) -> dict[str, list[str]]:
        """Class -> concepts: the base with every logged edit applied."""
        return {c: list(v) for c, v in self._current.items()}

    def concepts(self, cls: str) -> list[str]:
        return list(self._current[self._check_class(cls)])

    def restorable(self, cls: str) -> list[str]:
        """Concepts once in ``cls`` (in the base or added) that a later edit removed: what an app can
        offer to tick back on."""
        cls = self._check_class(cls)
        seen = list(self.base[cls]) + [e.concept for e in self.edits if e.cls == cls and e.op == "add"]
        renamed_away = {e.concept for e in self.edits if e.cls == cls and e.op == "rename"}
        now = set(self._current[cls])
        return list(dict.fromkeys(x for x in seen if x not in now and x not in renamed_away))

    def _checked(self, edit: ConceptEdit) -> ConceptEdit:
        self._check_class(edit.cls)
        return edit

    def _check_class(self, cls: str) -> str:
        if cls not in self.base:
            raise unknown_name(cls, self.classes, "class")
        return cls

    # -- editing ----------------------------------------------------------------------------------

    def _record(self, edit: ConceptEdit) -> EditResult:
        status = _replay(self._current, edit)
        if status in CHANGED:
            self.edits.append(edit)
        return EditResult(status, edit.cls, clean_phrase(edit.concept), clean_phrase(edit.new) if edit.new is not None else None)

    def add(self, cls: str, concept: str) -> EditResult:
        """Add ``concept`` to class ``cls``: "added", "already present" or "empty name"."""
        cls, concept = self._check_class(cls), clean_phrase(concept)
        if not concept:
            return EditResult("empty name", cls, concept)
        return self._record(ConceptEdit("add", cls, concept))

    def remove(self, cls: str, concept: str) -> EditResult:
        """Remove ``concept`` from class ``cls``: "removed" or "not found"."""
        cls, concept = self._check_class(cls), clean_phrase(concept)
        if not concept:
            return EditResult("empty name", cls, concept)
        return self._record(ConceptEdit("remove", cls, concept))

    def rename(self, cls: str, old: str, new: str) -> EditResult:
        """Rename ``old`` to ``new`` in class ``cls`` (same place in the list): "renamed", "not found",
        "empty name", "unchanged" or "already present" (``new`` is in the class already)."""
        cls, old, new = self._check_class(cls), clean_phrase(old), clean_phrase(new)
        if not new:
            return EditResult("empty name", cls, old, new)
        if old not in self._current[cls]:
            return EditResult("not found", cls, old, new)
        return self._record(ConceptEdit("rename", cls, old, new))

    def keep_only(self, cls: str, kept: Iterable[str]) -> list[EditResult]:
        """Make class ``cls`` hold exactly ``kept`` (what a multiselect shows): removes what is not
        kept, adds back what is new; returns one result per change."""
        cls = self._check_class(cls)
        kept = [clean_phrase(x) for x in kept]
        results = [self.remove(cls, x) for x in list(self._current[cls]) if x not in kept]
        results += [self.add(cls, x) for x in kept if x and x not in self._current[cls]]
        return results

    def reset(self) -> None:
        """Drop every edit: back to the base."""
        self.edits = []
        self._current = {c: list(v) for c, v in self.base.items()}

    # -- using ------------------------------------------------------------------------------------

    def apply(self, concept_set: ConceptSet | Mapping[str, Sequence[str]] | None = None) -> ConceptSet:
        """The log replayed on ``concept_set`` (default: the base), as a :class:`ConceptSet` whose
        provenance records the edits. Edits of classes the set lacks are skipped."""
        if concept_set is None:
            concepts, provenance = self.current(), {}
        else:
            source = concept_set if isinstance(concept_set, ConceptSet) else ConceptSet({str(c): list(v) for c, v in concept_set.items()})
            concepts, provenance = source.to_dict(), dict(source.provenance)
            for edit in self.edits:
                if edit.cls in concepts:
                    _replay(concepts, edit)
        return ConceptSet(concepts, provenance={**provenance, "edits": self.to_dict()["edits"]})

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": EDITS_FORMAT, "base": self.base, "edits": [e.to_dict() for e in self.edits]}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ConceptSetEdits:
        if obj.get("format") != EDITS_FORMAT:
            raise ValueError(f"not a concept-set edit log (format {obj.get('format')!r}, expected {EDITS_FORMAT!r})")
        base, edits = obj.get("base"), obj.get("edits")
        if not isinstance(base, Mapping) or not isinstance(edits, list):
            raise ValueError("a concept-set edit log needs a 'base' mapping and an 'edits' list")
        return cls(base, [ConceptEdit.from_dict(e) for e in edits])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the base and the log as JSON, atomically."""
        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConceptSetEdits:
        try:
            return cls.from_dict(read_json(path, "concept-set edit log"))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
