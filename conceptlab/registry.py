"""The one registry every plug-in registers itself in (a leaf: it imports nothing of conceptlab).

A plug-in is one file that registers itself with a decorator when it is imported::

    from conceptlab.registry import register_method

    @register_method("pcbm", description="Post-hoc CBM: sparse elastic-net head over concept margins")
    class PCBM(ConceptBottleneckModel):
        ...

The declarative runs, the app's pickers and ``load()`` all read these registries, so a new CBM
method, concept source, backbone scheme or dataset kind is one new file (and its tests). The
packages that hold built-in plug-ins import them in their ``__init__`` (``conceptlab.cbm``
imports every file of ``conceptlab/cbm/methods/``), so ``import conceptlab.cbm`` fills
``METHODS``. :func:`ensure_builtins` imports those packages for a reader that needs the full list.

Registering a name twice is an error (a silent overwrite is how two plug-ins end up fighting);
``replace=True`` is for tests and interactive sessions that re-run a cell.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "REQUIRED",
    "BACKBONE_SCHEMES",
    "CONCEPT_SOURCES",
    "DATASET_KINDS",
    "METHODS",
    "PROBE_KINDS",
    "Registry",
    "RegistryEntry",
    "RegistryError",
    "ensure_builtins",
    "register_backbone_scheme",
    "register_concept_source",
    "register_dataset_kind",
    "register_method",
    "register_probe_kind",
]

T = TypeVar("T")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a plug-in key that has none: the user must give it
REQUIRED: Any = _Required()


class RegistryError(ValueError):
    """An unknown or duplicate name; the message lists what is registered."""


@dataclass(frozen=True)
class RegistryEntry(Generic[T]):
    """One registered plug-in: its ``name``, the registered object (a class or a function), a
    one-line ``description`` and free-form ``meta`` (e.g. a concept source's accepted keys)."""

    name: str
    obj: T
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> plug-in, for one kind of plug-in (``kind`` names it in error messages)."""

    def __init__(self, kind: str, builtin_packages: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.builtin_packages = builtin_packages
        self._entries: dict[str, RegistryEntry[T]] = {}

    def register(self, name: str, obj: T | None = None, *, description: str = "", replace: bool = False, **meta: Any):
        """Register ``obj`` under ``name``; without ``obj`` it is a decorator."""
        if not isinstance(name, str) or not name or name.strip() != name or ":" in name:
            raise RegistryError(f"a {self.kind} name must be a non-empty string without spaces at its ends or ':', got {name!r}")

        def add(target: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and not replace and existing.obj is not target:
                where = getattr(existing.obj, "__module__", "?")
                raise RegistryError(f"{self.kind} {name!r} is already registered (by {where}); pick another name")
            self._entries[name] = RegistryEntry(name, target, description or _first_line(target), dict(meta))
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def _fill(self) -> None:
        for package in self.builtin_packages:
            importlib.import_module(package)

    def entry(self, name: str) -> RegistryEntry[T]:
        """The entry for ``name``; an unknown name is a :class:`RegistryError` with near matches."""
        if name not in self._entries:
            self._fill()
        if name not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise RegistryError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(known) or '(none)'}")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def name_of(self, obj: Any) -> str | None:
        """The name ``obj`` is registered under (None when it is not)."""
        self._fill()
        return next((e.name for e in self._entries.values() if e.obj is obj), None)

    def names(self) -> list[str]:
        self._fill()
        return list(self._entries)

    def entries(self) -> list[RegistryEntry[T]]:
        self._fill()
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        self._fill()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


#: CBM methods: name -> a ConceptBottleneckModel subclass (``conceptlab/cbm/methods/``)
METHODS: Registry[type] = Registry("CBM method", ("conceptlab.cbm",))
#: concept sources of declarative runs: name -> ``build(config, context) -> ConceptBank``;
#: meta ``keys`` maps each accepted key to its default
CONCEPT_SOURCES: Registry[Callable[..., Any]] = Registry("concept source", ("conceptlab.concepts.sources", "conceptlab.discovery"))
#: backbone spec schemes: name -> ``load(rest, device=None, spec=...) -> backbone``
BACKBONE_SCHEMES: Registry[Callable[..., Any]] = Registry("backbone scheme", ("conceptlab.backbones", "conceptlab.zoo"))
#: dataset spec kinds: name -> ``load(rest) -> dataset``
DATASET_KINDS: Registry[Callable[..., Any]] = Registry("dataset kind", ("conceptlab.data",))


#: kinds of declarative run beside CBM probes (``kind = "..."`` at the top of a probe file): name ->
#: an object with ``parse(raw, source, name) -> config`` (config has ``kind``, ``name`` and
#: ``summary()``) and ``run(config, out_dir, store, progress, write, log) -> result`` (result has
#: ``out_dir`` and ``summary()``)
PROBE_KINDS: Registry[Any] = Registry("probe kind", ("conceptlab.experiments",))


def register_probe_kind(name: str, obj: Any = None, **kwargs: Any):
    """Register a kind of declarative run (decorator on a class with ``parse`` and ``run``)."""
    return PROBE_KINDS.register(name, obj, **kwargs)


def register_method(name: str, obj: Any = None, **kwargs: Any):
    """Register a CBM method class (decorator)."""
    return METHODS.register(name, obj, **kwargs)


def register_concept_source(
    name: str, obj: Any = None, *, keys: Mapping[str, Any] | None = None, validate: Callable[[Mapping[str, Any]], None] | None = None, **kwargs: Any
):
    """Register a concept source ``build(config, context) -> ConceptBank``.

    ``keys``: the accepted keys and their defaults (:data:`REQUIRED` for mandatory ones; the type
    of a default checks the value); ``validate(config)``: raises ``ValueError`` on a
    configuration it cannot run, before any embedding starts."""
    return CONCEPT_SOURCES.register(name, obj, keys=dict(keys or {}), validate=validate, **kwargs)


def register_backbone_scheme(name: str, obj: Any = None, *, usage: str = "", **kwargs: Any):
    """Register a backbone scheme loader ``load(rest, device=None, spec=...)``; ``usage`` shows its form."""
    return BACKBONE_SCHEMES.register(name, obj, usage=usage or f"{name}:...", **kwargs)


def register_dataset_kind(name: str, obj: Any = None, *, usage: str = "", **kwargs: Any):
    """Register a dataset kind loader ``load(rest)``; ``usage`` shows its form."""
    return DATASET_KINDS.register(name, obj, usage=usage or f"{name}:...", **kwargs)


def ensure_builtins() -> None:
    """Import every package that holds built-in plug-ins, so each registry lists them all."""
    for registry in (METHODS, CONCEPT_SOURCES, BACKBONE_SCHEMES, DATASET_KINDS, PROBE_KINDS):
        registry._fill()
