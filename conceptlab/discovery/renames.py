"""The analyst's pending renames of SAE latents: a table keyed by latent id, never by a label.

>>> edits = LatentRenames(run.names)                   # nothing pending
>>> edits.rename(48, "red shape")                      # RenameResult(latent=48, old='red', new='red shape', status='renamed')
>>> edits.names[48], edits.pending                     # ('red shape', {48: 'red shape'})
>>> run = edits.apply(run); run.save(path)             # the renames written into the saved run
>>> edits.save(draft); LatentRenames.load(draft, run.names)   # unsaved renames kept across sessions

An app keys its widgets by latent id and calls :meth:`LatentRenames.rename` with that id, so a
rename can only reach the latent it was typed for. :func:`duplicate_names` says which names more
than one latent carries.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conceptlab.concepts.bank import UnknownNameError
from conceptlab.discovery.naming import LatentNames
from conceptlab.utils import atomic_write_json

__all__ = ["RENAMES_FORMAT", "LatentRenames", "RenameResult", "duplicate_names"]

RENAMES_FORMAT = "conceptlab.LatentRenames"


def _clean(name: Any) -> str:
    return " ".join(str(name if name is not None else "").split())


def check_latent(latent: Any, n_latents: int) -> int:
    """``latent`` as an int id of one of ``n_latents`` latents; anything else is a clear error
    (a label such as ``"48 · red"`` is a TypeError, an id out of range an ``UnknownNameError``,
    both a KeyError and a ValueError)."""
    if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)):
        raise TypeError(f"latents are addressed by integer id, got {latent!r}")
    if not 0 <= int(latent) < n_latents:
        raise UnknownNameError(f"there is no latent {int(latent)}: this run has {n_latents} latents (ids 0 to {n_latents - 1})")
    return int(latent)


def duplicate_names(names: LatentNames | Sequence[str], latents: Iterable[int] | None = None) -> dict[str, list[int]]:
    """Name -> the latent ids that carry it, for every name carried by more than one latent.

    ``latents`` restricts the check to some ids (e.g. the live ones); names compare case- and
    whitespace-insensitively, and each is reported as its first latent spells it.
    """
    values = names.names if isinstance(names, LatentNames) else [str(n) for n in names]
    ids = range(len(values)) if latents is None else [check_latent(i, len(values)) for i in latents]
    groups: dict[str, list[int]] = {}
    spelling: dict[str, str] = {}
    for i in ids:
        key = _clean(values[i]).lower()
        spelling.setdefault(key, _clean(values[i]))
        groups.setdefault(key, []).append(int(i))
    return {spelling[k]: sorted(v) for k, v in groups.items() if len(v) > 1}


@dataclass(frozen=True)
class RenameResult:
    """What one rename did: ``status`` is "renamed", "unchanged" (same name) or "empty name";
    ``shared_with`` lists other latents that already carry the new name."""

    latent: int
    old: str
    new: str
    status: str
    shared_with: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        return self.status == "renamed"

    @property
    def message(self) -> str:
        text = {
            "renamed": f"Renamed latent {self.latent} from “{self.old}” to “{self.new}”.",
            "unchanged": f"Latent {self.latent} is already called “{self.new}”; nothing changed.",
            "empty name": f"A name cannot be empty; latent {self.latent} keeps “{self.old}”.",
        }[self.status]
        if self.shared_with:
            text += f" Latent{'s' if len(self.shared_with) > 1 else ''} {', '.join(map(str, self.shared_with))} also carr{'y' if len(self.shared_with) > 1 else 'ies'} this name."
        return text


class LatentRenames:
    """Renames not yet saved, over the names of a run (``base``: its :class:`LatentNames`).

    ``pending`` maps latent id -> new name; :attr:`names` is ``base`` with them applied. Renaming a
    latent back to its name in ``base`` drops it from ``pending``.
    """

    def __init__(self, base: LatentNames, pending: Mapping[int, str] | None = None, by: str = "analyst") -> None:
        self.base = base
        self.by = str(by)
        self.pending: dict[int, str] = {}
        for latent, name in dict(pending or {}).items():
            name = _clean(name)
            if not name:
                raise ValueError(f"the pending name of latent {latent} is empty")
            self.pending[check_latent(latent, len(base))] = name
        self._names: LatentNames | None = None

    def __len__(self) -> int:
        return len(self.pending)

    def __repr__(self) -> str:
        return f"LatentRenames({len(self.pending)} pending over {len(self.base)} latents)"

    @property
    def names(self) -> LatentNames:
        """The base names with the pending renames applied (cached until the next rename)."""
        if self._names is None:
            self._names = self.base.rename(self.pending, by=self.by) if self.pending else self.base
        return self._names

    def rename(self, latent: int, name: str) -> RenameResult:
        """Rename one latent, addressed by id; returns what changed (see :class:`RenameResult`)."""
        latent = check_latent(latent, len(self.base))
        old, new = self.names[latent], _clean(name)
        if not new:
            return RenameResult(latent, old, new, "empty name")
        if new == old:
            return RenameResult(latent, old, new, "unchanged")
        if new == self.base[latent] and not bool(self.base.table.loc[latent, "renamed"]):
            self.pending.pop(latent, None)  # back to the automatic name: nothing left to save
        else:
            self.pending[latent] = new
        self._names = None
        shared = tuple(i for i, n in enumerate(self.names.names) if i != latent and _clean(n).lower() == new.lower())
        return RenameResult(latent, old, new, "renamed", shared)

    def discard(self) -> None:
        """Forget every pending rename."""
        self.pending = {}
        self._names = None

    def apply(self, run: Any) -> Any:
        """``run`` (a :class:`~conceptlab.discovery.DiscoveryRun` over the same latents) with the
        pending renames applied."""
        if run.n_latents != len(self.base):
            raise ValueError(f"these renames are for {len(self.base)} latents, the run has {run.n_latents}")
        return run.rename(self.pending, by=self.by) if self.pending else run

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": RENAMES_FORMAT, "n_latents": len(self.base), "by": self.by,
                "renames": {str(k): v for k, v in sorted(self.pending.items())}}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], base: LatentNames) -> LatentRenames:
        if obj.get("format") != RENAMES_FORMAT:
            raise ValueError(f"not a latent-renames file (format {obj.get('format')!r}, expected {RENAMES_FORMAT!r})")
        if int(obj.get("n_latents", -1)) != len(base):
            raise ValueError(f"these renames are for {obj.get('n_latents')} latents, the names have {len(base)}")
        renames = obj.get("renames")
        if not isinstance(renames, Mapping):
            raise ValueError("'renames' must map latent ids to names")
        try:
            pending = {int(k): str(v) for k, v in renames.items()}
        except ValueError:
            raise ValueError(f"latent ids must be integers, got {sorted(renames)[:5]}") from None
        return cls(base, pending, by=str(obj.get("by") or "analyst"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the pending renames as JSON, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, base: LatentNames) -> LatentRenames:
        from conceptlab.concepts.bank import read_json

        try:
            return cls.from_dict(read_json(path, "latent renames"), base)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from None
