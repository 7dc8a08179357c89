"""Backbone specs: one string names a model, ``load(spec)`` builds it.

A scheme (``open_clip:``, ``local-dir:``, ``zoo:``, ...) is a loader that registers itself in
``conceptlab.registry.BACKBONE_SCHEMES`` from its own file; this module only reads the registry.
"""

from __future__ import annotations

from conceptlab.registry import BACKBONE_SCHEMES

__all__ = ["load", "parse_spec", "scheme_usage"]


def scheme_usage() -> dict[str, str]:
    """scheme -> its spec form with a one-line description, for help texts and errors."""
    return {e.name: f"{e.meta['usage']}  ({e.description})" for e in BACKBONE_SCHEMES.entries()}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``scheme:rest``; an unknown scheme is an error listing the known ones."""
    forms = "\n  ".join(scheme_usage().values())
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"backbone spec {spec!r} has no scheme. Known forms:\n  {forms}")
    scheme, rest = spec.split(":", 1)
    if scheme not in BACKBONE_SCHEMES:
        raise ValueError(f"unknown backbone scheme {scheme!r} in {spec!r}. Known forms:\n  {forms}")
    if not rest:
        raise ValueError(f"backbone spec {spec!r} names nothing after {scheme}:")
    return scheme, rest


def load(spec: str, device=None):
    """Build the backbone a spec names, e.g. ``zoo:shapes-clip`` or ``local-dir:/ckpt``."""
    scheme, rest = parse_spec(spec)
    return BACKBONE_SCHEMES.get(scheme)(rest, device=device, spec=spec)
