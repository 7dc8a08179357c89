"""Model adapters: ``load(spec)`` returns an image-text backbone."""

from conceptlab.backbones.base import ImageTextBackbone, default_device, fingerprint_state_dict
from conceptlab.backbones.open_clip_backbone import OpenClipBackbone, load_local_dir, load_open_clip
from conceptlab.backbones.registry import SCHEMES, load, parse_spec

__all__ = [
    "ImageTextBackbone",
    "OpenClipBackbone",
    "SCHEMES",
    "default_device",
    "fingerprint_state_dict",
    "load",
    "load_local_dir",
    "load_open_clip",
    "parse_spec",
]
