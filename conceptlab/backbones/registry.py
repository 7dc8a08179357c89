"""Backbone specs: one string names a model, ``load(spec)`` builds it."""

from __future__ import annotations

from conceptlab.backbones.base import ImageTextBackbone
from conceptlab.backbones.open_clip_backbone import load_local_dir, load_open_clip

__all__ = ["load", "SCHEMES", "parse_spec"]

SCHEMES = {
    "open_clip": "open_clip:NAME/PRETRAINED  (a built-in open_clip model and a pretrained tag or weight file)",
    "local-dir": "local-dir:PATH  (a folder with open_clip_config.json and open_clip_model.safetensors)",
    "zoo": "zoo:NAME  (a model conceptlab trains itself; `conceptlab info` lists them)",
}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``scheme:rest``; an unknown scheme is an error listing the known ones."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"backbone spec {spec!r} has no scheme. Known forms:\n  " + "\n  ".join(SCHEMES.values()))
    scheme, rest = spec.split(":", 1)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown backbone scheme {scheme!r} in {spec!r}. Known forms:\n  " + "\n  ".join(SCHEMES.values()))
    if not rest:
        raise ValueError(f"backbone spec {spec!r} names nothing after {scheme}:")
    return scheme, rest


def load(spec: str, device=None) -> ImageTextBackbone:
    """Build the backbone a spec names, e.g. ``zoo:shapes-clip`` or ``local-dir:/ckpt``."""
    scheme, rest = parse_spec(spec)
    if scheme == "local-dir":
        return load_local_dir(rest, device=device, spec=spec)
    if scheme == "open_clip":
        name, _, pretrained = rest.partition("/")
        return load_open_clip(name, pretrained or None, device=device, spec=spec)
    from conceptlab.zoo import zoo_path

    return load_local_dir(zoo_path(rest), device=device, spec=spec)
