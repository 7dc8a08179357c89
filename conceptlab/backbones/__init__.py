"""Model adapters: ``load(spec)`` returns an image-text backbone."""

from conceptlab.backbones.base import Backbone, ImageTextBackbone, default_device, encode_texts_in_batches, fingerprint_state_dict
from conceptlab.backbones.language_model import HFLanguageModel, LanguageModel, exact_match, is_language_model_dir, load_hf_language_model
from conceptlab.backbones.open_clip_backbone import OpenClipBackbone, load_local_dir, load_open_clip
from conceptlab.backbones.registry import load, parse_spec, scheme_usage
from conceptlab.backbones.transformer_lens_backbone import load_transformer_lens

__all__ = [
    "Backbone",
    "HFLanguageModel",
    "ImageTextBackbone",
    "LanguageModel",
    "OpenClipBackbone",
    "default_device",
    "encode_texts_in_batches",
    "exact_match",
    "fingerprint_state_dict",
    "is_language_model_dir",
    "load",
    "load_hf_language_model",
    "load_local_dir",
    "load_open_clip",
    "load_transformer_lens",
    "parse_spec",
    "scheme_usage",
]
