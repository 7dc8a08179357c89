"""ConceptBank: an ordered set of concepts in one space, saved as JSON + safetensors.

Also home of the small artifact helpers every saved conceptlab object uses: atomic JSON and
safetensors writes, reads whose errors name the file at fault, and the integrity checks of saved
artifacts: the sha256 of every file a config lists (:func:`file_checksums`, verified by
:func:`verify_checksums`), finite tensors, and JSON read safely (no FIFO hangs, no
``RecursionError``). No pickle anywhere.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.concepts.concept import Concept, jsonable
from conceptlab.limits import parse_json, read_regular_file
from conceptlab.utils import atomic_write_bytes, atomic_write_json

__all__ = [
    "ArtifactIntegrityError",
    "ConceptBank",
    "UnknownNameError",
    "file_checksums",
    "verify_checksums",
    "library_provenance",
    "write_json",
    "read_json",
    "write_tensors",
    "read_tensors",
]

BANK_FORMAT = "conceptlab.ConceptBank"
BANK_FORMAT_VERSION = 2  # 2: the config lists the sha256 of the tensor file
CONFIG_FILE = "config.json"
TENSOR_FILE = "concepts.safetensors"


# ----------------------------------------------------------------------------------------------
# errors and artifact helpers
# ----------------------------------------------------------------------------------------------


class UnknownNameError(KeyError, ValueError):
    """A concept or class name that is not there; the message lists near matches.

    It is both a ``KeyError`` (lookup failed) and a ``ValueError`` (bad argument), so either
    ``except`` catches it.
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def unknown_name(name: Any, known: Sequence[str], what: str = "concept") -> UnknownNameError:
    close = difflib.get_close_matches(str(name), list(known), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    sample = ", ".join(repr(k) for k in list(known)[:8]) + (", ..." if len(known) > 8 else "")
    return UnknownNameError(f"unknown {what} {name!r}.{hint} Known {what}s ({len(known)}): {sample}")


def library_provenance(seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The provenance block every artifact carries: library name and version, seed, extras."""
    from conceptlab import __version__

    return jsonable({"library": "conceptlab", "library_version": __version__, "seed": seed, **extra})


class ArtifactIntegrityError(ValueError):
    """A saved file that does not match what its config recorded: a changed checksum, a NaN or
    infinite weight, a tensor of the wrong shape. The message names the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(directory: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of ``names`` in ``directory`` (default: every file under it but
    ``config.json`` at its top), for a config to record and :func:`verify_checksums` to check."""
    directory = Path(directory)
    if names is None:
        names = sorted(
            p.relative_to(directory).as_posix() for p in directory.rglob("*")
            if p.is_file() and p.relative_to(directory).as_posix() != CONFIG_FILE
        )
    return {name: _sha256(directory / name) for name in names}


def verify_checksums(directory: str | os.PathLike, recorded: Any, config_path: str | os.PathLike) -> None:
    """Every file ``recorded`` (``{relative path: sha256}``, from ``config_path``) exists under
    ``directory`` and has that sha256. A missing file is ``FileNotFoundError``; a changed one
    :class:`ArtifactIntegrityError`; a malformed record (or a path leaving the folder) ValueError."""
    directory = Path(directory)
    if not isinstance(recorded, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in recorded.items()):
        raise ValueError(f"{config_path} is corrupt: 'files' must map file names to sha256 digests")
    root = directory.resolve()
    for name, digest in recorded.items():
        path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.resolve().is_relative_to(root):
            raise ValueError(f"{config_path} is corrupt: it lists {name!r}, which is not a file inside {directory}")
        if not path.is_file():
            raise FileNotFoundError(f"missing file {path} (listed in {config_path})")
        if _sha256(path) != digest:
            raise ArtifactIntegrityError(
                f"{path} is corrupt: its sha256 does not match the one recorded in {config_path} "
                "(the file was damaged or changed after it was saved); save the model again"
            )


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (temp file + rename)."""
    atomic_write_json(path, obj)


def read_json(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """Read a JSON object; a missing file is FileNotFoundError, a broken one ValueError, both naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing {what} file {path}")
    obj = parse_json(read_regular_file(path, what=f"{what} file"), f"{what} file {path} is corrupt: it")
    if not isinstance(obj, dict):
        raise ValueError(f"{what} file {path} is corrupt: expected a JSON object, got {type(obj).__name__}")
    return obj


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=dict(metadata or {}))
    atomic_write_bytes(path, data)


def read_tensors(path: str | os.PathLike, required: Iterable[str] = (), finite: bool = True) -> dict[str, torch.Tensor]:
    """Load a safetensors file; missing/corrupt files, absent keys and (``finite``) NaN or infinite
    values are errors naming the file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing tensor file {path}")
    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError(f"tensor file {path} is corrupt: not a regular file")
    try:
        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ValueError(f"tensor file {path} is corrupt (not a readable safetensors file): {error}") from error
    missing = [key for key in required if key not in tensors]
    if missing:
        raise ValueError(f"tensor file {path} is corrupt: it lacks {', '.join(missing)}")
    if finite:
        check_finite(tensors, path)
    return tensors


def check_finite(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """:class:`ArtifactIntegrityError` when a floating-point tensor holds NaN or infinite values."""
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise ArtifactIntegrityError(f"tensor file {path} is corrupt: {', '.join(map(repr, bad))} hold(s) NaN or infinite values")


# ----------------------------------------------------------------------------------------------
# the bank
# ----------------------------------------------------------------------------------------------


class ConceptBank:
    """An ordered set of uniquely named concepts sharing one space and one dimension.

    ``bank.vectors`` is (C, d), ``bank.biases`` and ``bank.norms`` are (C,), all float32.
    Banks are immutable: ``subset`` and ``rename`` return new banks.

    Args:
        concepts: the concepts, in order.
        provenance: bank-level provenance; defaults to :func:`library_provenance` (library
            version, seed None). Builders pass their seed.
    """

    def __init__(self, concepts: Iterable[Concept], provenance: Mapping[str, Any] | None = None) -> None:
        concepts = tuple(concepts)
        if not concepts:
            raise ValueError("a ConceptBank needs at least one concept; got an empty list")
        for position, concept in enumerate(concepts):
            if not isinstance(concept, Concept):
                raise TypeError(f"item {position} of a ConceptBank is a {type(concept).__name__}, not a Concept")
        seen: dict[str, int] = {}
        duplicates = []
        for concept in concepts:
            if concept.name in seen:
                duplicates.append(concept.name)
            seen[concept.name] = seen.get(concept.name, 0) + 1
        if duplicates:
            raise ValueError(f"concept names must be unique; duplicated: {', '.join(sorted(set(duplicates)))}")
        spaces = sorted({c.space for c in concepts})
        if len(spaces) > 1:
            raise ValueError(
                f"all concepts of a bank must live in one space; got {len(spaces)}: {', '.join(spaces)}. "
                "Concepts from different spaces can be aligned, not mixed."
            )
        dims = sorted({c.dim for c in concepts})
        if len(dims) > 1:
            odd = [f"{c.name}={c.dim}" for c in concepts if c.dim != concepts[0].dim][:5]
            raise ValueError(
                f"all concept vectors of a bank must have one dimension; got {dims} "
                f"(first concept {concepts[0].name!r} has {concepts[0].dim}; differing: {', '.join(odd)})"
            )
        norms = torch.stack([c.vector for c in concepts]).norm(dim=1)
        degenerate = [c.name for c, n in zip(concepts, norms.tolist()) if not (n > 0 and n != float("inf"))]
        if degenerate:
            shown = ", ".join(map(repr, degenerate[:5])) + (", ..." if len(degenerate) > 5 else "")
            raise ValueError(
                f"{len(degenerate)} concept(s) have a vector whose norm is zero or not finite in float32: {shown}. Such a "
                "direction scores every input the same and its margin (c·x + b)/‖c‖ divides by zero; drop or rebuild these concepts"
            )
        self._concepts = concepts
        self._index = {c.name: i for i, c in enumerate(concepts)}
        self.provenance: dict[str, Any] = jsonable(dict(provenance)) if provenance is not None else library_provenance()
        self._vectors: torch.Tensor | None = None

    # -- construction helpers ------------------------------------------------------------------

    @classmethod
    def from_tensors(
        cls,
        names: Sequence[str],
        vectors: Any,
        space: str,
        biases: Any = None,
        *,
        provenance: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        metrics: Sequence[Mapping[str, Any] | None] | None = None,
        class_links: Sequence[Sequence[str]] | None = None,
        bank_provenance: Mapping[str, Any] | None = None,
    ) -> ConceptBank:
        """Build a bank from names and a (C, d) matrix (plus optional (C,) biases)."""
        matrix = torch.as_tensor(np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float32))
        if matrix.ndim != 2:
            raise ValueError(f"vectors must be a (C, d) matrix, got shape {tuple(matrix.shape)}")
        names = list(names)
        if len(names) != matrix.shape[0]:
            raise ValueError(f"{len(names)} names for {matrix.shape[0]} vectors")
        bias_values = np.zeros(len(names)) if biases is None else np.asarray(biases, dtype=np.float64).reshape(-1)
        if bias_values.shape[0] != len(names):
            raise ValueError(f"{bias_values.shape[0]} biases for {len(names)} vectors")
        if provenance is None or isinstance(provenance, Mapping):
            provenances = [dict(provenance or {}) for _ in names]
        else:
            provenances = [dict(p) for p in provenance]
        concepts = [
            Concept(
                name=name,
                vector=matrix[i],
                space=space,
                bias=float(bias_values[i]),
                class_links=list(class_links[i]) if class_links is not None else [],
                provenance=provenances[i],
                metrics=None if metrics is None else metrics[i],
            )
            for i, name in enumerate(names)
        ]
        return cls(concepts, provenance=bank_provenance)

    # -- read access ---------------------------------------------------------------------------

    @property
    def concepts(self) -> tuple[Concept, ...]:
        return self._concepts

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._concepts]

    @property
    def space(self) -> str:
        return self._concepts[0].space

    @property
    def dim(self) -> int:
        return self._concepts[0].dim

    @property
    def vectors(self) -> torch.Tensor:
        """(C, d) float32; a fresh copy, so callers may modify it."""
        if self._vectors is None:
            self._vectors = torch.stack([c.vector for c in self._concepts])
        return self._vectors.clone()

    @property
    def biases(self) -> torch.Tensor:
        """(C,) float32 intercepts."""
        return torch.tensor([c.bias for c in self._concepts], dtype=torch.float32)

    @property
    def norms(self) -> torch.Tensor:
        """(C,) float32 L2 norms of the vectors."""
        return self.vectors.norm(dim=1)

    def __len__(self) -> int:
        return len(self._concepts)

    def __iter__(self) -> Iterator[Concept]:
        return iter(self._concepts)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        """Position of ``name``; unknown names raise :class:`UnknownNameError` with near matches."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise unknown_name(name, self.names) from None

    def __getitem__(self, key: int | str) -> Concept:
        if isinstance(key, str):
            return self._concepts[self.index(key)]
        if isinstance(key, (int, np.integer)):
            if not -len(self) <= int(key) < len(self):
                raise IndexError(f"concept index {key} out of range for a bank of {len(self)}")
            return self._concepts[int(key)]
        raise TypeError(f"index a ConceptBank by name or integer position, not {type(key).__name__}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConceptBank):
            return NotImplemented
        return self._concepts == other._concepts and self.provenance == other.provenance

    def __repr__(self) -> str:
        preview = ", ".join(self.names[:4]) + (", ..." if len(self) > 4 else "")
        return f"ConceptBank({len(self)} concepts, dim={self.dim}, space={self.space!r}: {preview})"

    def to_frame(self) -> pd.DataFrame:
        """One row per concept: name, kind, bias, norm, class links (for tables in the app)."""
        return pd.DataFrame(
            {
                "name": self.names,
                "kind": [c.kind for c in self],
                "bias": [c.bias for c in self],
                "norm": self.norms.tolist(),
                "class_links": [", ".join(c.class_links) for c in self],
            }
        )

    # -- edits (return new banks) --------------------------------------------------------------

    def subset(self, names: Iterable[str | int]) -> ConceptBank:
        """A new bank with the given concepts (by name or position), in the order given."""
        keys = list(names)
        picked = [self[k] for k in keys]
        return ConceptBank(picked, provenance={**self.provenance, "subset_of": len(self)})

    def rename(self, old: str | Mapping[str, str], new: str | None = None) -> ConceptBank:
        """A new bank with ``old`` renamed to ``new`` (or a whole ``{old: new}`` mapping)."""
        mapping = dict(old) if isinstance(old, Mapping) else {old: new}
        for source, target in mapping.items():
            self.index(source)
            if not isinstance(target, str) or not target.strip():
                raise ValueError(f"new name for {source!r} must be a non-empty string, got {target!r}")
        renamed = []
        for concept in self._concepts:
            if concept.name in mapping:
                provenance = dict(concept.provenance)
                provenance.setdefault("renamed_from", concept.name)
                concept = Concept(
                    name=mapping[concept.name],
                    vector=concept.vector,
                    space=concept.space,
                    bias=concept.bias,
                    class_links=concept.class_links,
                    provenance=provenance,
                    metrics=concept.metrics,
                )
            renamed.append(concept)
        return ConceptBank(renamed, provenance=self.provenance)  # duplicate names are caught here

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``concepts.safetensors`` into ``directory``; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format": BANK_FORMAT,
            "format_version": BANK_FORMAT_VERSION,
            "space": self.space,
            "dim": self.dim,
            "n_concepts": len(self),
            "concepts": [
                {
                    "name": c.name,
                    "class_links": c.class_links,
                    "provenance": c.provenance,
                    "metrics": c.metrics,
                }
                for c in self
            ],
            "provenance": self.provenance,
        }
        tensors = {
            "vectors": torch.stack([c.vector for c in self]),
            "biases": torch.tensor([c.bias for c in self], dtype=torch.float64),
        }
        write_tensors(directory / TENSOR_FILE, tensors, metadata={"format": BANK_FORMAT})
        config["files"] = file_checksums(directory, [TENSOR_FILE])
        write_json(directory / CONFIG_FILE, config)  # last: it vouches for the tensor file
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ConceptBank:
        """Read a bank written by :meth:`save`; every failure names the file at fault."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"no concept bank directory at {directory}")
        config_path = directory / CONFIG_FILE
        config = read_json(config_path, "concept bank config")
        if config.get("format") != BANK_FORMAT:
            raise ValueError(f"{config_path} is not a concept bank config (format {config.get('format')!r}, expected {BANK_FORMAT!r})")
        try:
            version = int(config.get("format_version", -1))
        except (TypeError, ValueError):
            raise ValueError(f"{config_path} is corrupt: bad format_version {config.get('format_version')!r}") from None
        if version > BANK_FORMAT_VERSION:
            raise ValueError(f"{config_path} has format_version {config.get('format_version')}; this conceptlab reads up to {BANK_FORMAT_VERSION}")
        try:
            entries = list(config["concepts"])
            space = str(config["space"])
            dim = int(config["dim"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{config_path} is corrupt: missing or bad field {error}") from error
        if version >= 2 or "files" in config:  # format 1 banks carry no checksums
            if "files" not in config:
                raise ValueError(f"{config_path} is corrupt: format_version {version} lists its files' checksums, this one has none")
            verify_checksums(directory, config["files"], config_path)
        tensor_path = directory / TENSOR_FILE
        tensors = read_tensors(tensor_path, required=("vectors", "biases"))
        vectors, biases = tensors["vectors"], tensors["biases"]
        if vectors.ndim != 2 or vectors.shape != (len(entries), dim) or biases.shape != (len(entries),):
            raise ValueError(
                f"{tensor_path} does not match {config_path}: vectors {tuple(vectors.shape)} and biases "
                f"{tuple(biases.shape)} for {len(entries)} concepts of dimension {dim}"
            )
        try:
            concepts = [
                Concept(
                    name=entry["name"],
                    vector=vectors[i],
                    space=space,
                    bias=float(biases[i]),
                    class_links=entry.get("class_links", []),
                    provenance=entry.get("provenance", {}),
                    metrics=entry.get("metrics"),
                )
                for i, entry in enumerate(entries)
            ]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{config_path} is corrupt: a concept entry lacks {error}") from error
        except ValueError as error:  # e.g. an empty name
            raise ValueError(f"{config_path} is corrupt: {error}") from error
        try:
            return cls(concepts, provenance=config.get("provenance") or {})
        except (TypeError, ValueError) as error:  # duplicated names, a zero vector, ...
            raise ValueError(f"{config_path} is corrupt: {error}") from error

