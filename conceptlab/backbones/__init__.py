"""Model adapters: ``load(spec)`` returns an image-text backbone."""

from conceptlab.backbones.base import Backbone, ImageTextBackbone, default_device, encode_texts_in_batches, fingerprint_state_dict
from conceptlab.backbones.language_model import HFLanguageModel, LanguageModel, exact_match, is_language_model_dir, load_hf_language_model
from conceptlab.backbones.layer_taps import POOLS, TokenBatch, forward_with_tap, layer_names, pool_activation, pool_gradient
from conceptlab.backbones.open_clip_backbone import OpenClipBackbone, load_local_dir, load_open_clip
from conceptlab.backbones.registry import load, parse_spec, scheme_usage
from conceptlab.backbones.sentence_encoder import SentenceEncoderBackbone, load_minilm
from conceptlab.backbones.tokens import TextCheck, check_concept_texts
from conceptlab.backbones.transformer_lens_backbone import load_transformer_lens

__all__ = [
    "POOLS",
    "SentenceEncoderBackbone",
    "TokenBatch",
    "forward_with_tap",
    "layer_names",
    "load_minilm",
    "pool_activation",
    "pool_gradient",
    "Backbone",
    "HFLanguageModel",
    "ImageTextBackbone",
    "LanguageModel",
    "OpenClipBackbone",
    "TextCheck",
    "check_concept_texts",
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
