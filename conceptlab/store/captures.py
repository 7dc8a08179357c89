"""Capture points: what the store records from a backbone, and how the inputs are batched.

A capture knows three things: how to turn dataset items into one model-input batch (run in
DataLoader workers, so it must be picklable), how to encode that batch, and how wide the result is.
``"image"`` is the image encoder's embedding. Layer captures name a layer and a pooling, and the
whole name is part of the store key: ``"image:visual.layer3@mean"`` (any module of an open_clip
image tower, through a forward hook), ``"text:blocks.1.hook_resid_post@last"`` (any hook point of a
language model) or ``"text:0.model.encoder.layer.3@mean"`` (a module of a sentence encoder)
over a dataset of texts. See :mod:`conceptlab.backbones.layer_taps` for the pools.
"""

from __future__ import annotations

import torch

from conceptlab.backbones.image_batch import BatchPreprocess
from conceptlab.backbones.layer_taps import POOLS, TokenBatch, forward_with_tap, layer_kind, layer_names, pool_activation

__all__ = ["CAPTURES", "Capture", "ImageCapture", "ImageCollate", "LayerCapture", "TextCollate", "get_capture", "layer_capture", "tokenize_for"]


class Capture:
    """Base class of capture points; subclasses fill in every method."""

    name: str = ""

    def check(self, backbone) -> None:
        """Raise a clear error when ``backbone`` cannot provide this capture."""

    def preprocess_id(self, backbone) -> str:
        """A description of the input preprocessing; part of the store key."""
        raise NotImplementedError

    def dim(self, backbone) -> int:
        raise NotImplementedError

    def collate(self, backbone):
        """A picklable callable: list of dataset items -> one model-input batch."""
        raise NotImplementedError

    def encode(self, backbone, batch) -> torch.Tensor:
        """(N, dim) activations of one batch, float32 on the CPU."""
        raise NotImplementedError

    def input_bytes_per_row(self, backbone, dataset, index: int) -> int:
        """Bytes one preprocessed input takes (for memory estimates)."""
        raise NotImplementedError


class ImageCollate:
    """Preprocess and stack the images of a batch, exactly as ``encode_images`` does for PIL input
    (:class:`~conceptlab.backbones.image_batch.BatchPreprocess`: ToTensor + Normalize once per batch).

    A top-level class rather than a closure so DataLoader workers can receive it under any
    multiprocessing start method.
    """

    def __init__(self, preprocess) -> None:
        self.preprocess = preprocess
        self._batch = BatchPreprocess(preprocess)

    def __call__(self, items) -> torch.Tensor:
        return self._batch([item[0] if isinstance(item, (tuple, list)) else item for item in items])


class ImageCapture(Capture):
    """The image encoder's output embedding (``backbone.encode_images``)."""

    name = "image"

    def check(self, backbone) -> None:
        for attribute in ("encode_images", "preprocess", "dim"):
            if not hasattr(backbone, attribute):
                raise TypeError(f"capture 'image' needs a backbone with `{attribute}`; {type(backbone).__name__} has none")

    def preprocess_id(self, backbone) -> str:
        return str(getattr(backbone, "preprocess_id", None) or repr(backbone.preprocess))

    def dim(self, backbone) -> int:
        return int(backbone.dim)

    def collate(self, backbone) -> ImageCollate:
        return ImageCollate(backbone.preprocess)

    def encode(self, backbone, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return backbone.encode_images(batch)

    def input_bytes_per_row(self, backbone, dataset, index: int) -> int:
        sample = ImageCollate(backbone.preprocess)([dataset[index]])
        return sample.numel() * sample.element_size()


class TextCollate:
    """A batch of a text dataset is its list of strings (tokenisation happens in ``encode``)."""

    def __call__(self, items) -> list[str]:
        return [str(item[0] if isinstance(item, (tuple, list)) else item) for item in items]


def tokenize_for(backbone, texts: list[str]) -> TokenBatch:
    """Right-padded ids and real lengths of ``texts`` for a language model or a sentence encoder."""
    if hasattr(backbone, "tokenize"):
        return backbone.tokenize(texts)
    encoded = backbone.encode(texts)
    if any(len(ids) == 0 for ids in encoded):
        raise ValueError("a text tokenised to no tokens; layer captures need at least one token per text")
    width = max(len(ids) for ids in encoded)
    pad = getattr(backbone.tokenizer, "pad_token_id", None) or 0
    ids = torch.tensor([list(ids) + [pad] * (width - len(ids)) for ids in encoded])
    return TokenBatch(ids, torch.tensor([len(ids) for ids in encoded]))


class LayerCapture(Capture):
    """A named layer of a backbone, pooled to one vector per input (``image:LAYER@POOL`` / ``text:LAYER@POOL``)."""

    def __init__(self, modality: str, layer: str, pool: str) -> None:
        self.modality, self.layer, self.pool = modality, layer, pool
        self.name = f"{modality}:{layer}@{pool}"
        self._dims: dict[str, int] = {}

    def check(self, backbone) -> None:
        kind = layer_kind(backbone)
        if self.modality == "image" and kind != "image_text":
            raise TypeError(f"capture {self.name!r} needs an image-text backbone; {type(backbone).__name__} is a {kind.replace('_', ' ')}")
        if self.modality == "text" and kind == "image_text":
            raise TypeError(f"capture {self.name!r} reads a language model or sentence encoder; for an image tower use 'image:{self.layer}@{self.pool}'")
        if self.layer not in layer_names(backbone):
            names = layer_names(backbone)
            spec = getattr(backbone, "spec", type(backbone).__name__)
            raise ValueError(f"capture {self.name!r}: {spec} has no layer {self.layer!r}; layers include {', '.join(names[:12])}, ...")

    def preprocess_id(self, backbone) -> str:
        if self.modality == "image":
            return str(getattr(backbone, "preprocess_id", None) or repr(backbone.preprocess))
        return str(getattr(backbone, "preprocess_id", None) or f"{type(backbone.tokenizer).__name__}|vocab={len(backbone.tokenizer)}")

    def _probe_batch(self, backbone):
        if self.modality == "text":
            return tokenize_for(backbone, ["a"])
        size = getattr(backbone.model.visual, "image_size", 224)
        size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        return torch.zeros(1, 3, *size)

    def dim(self, backbone) -> int:
        key = f"{id(backbone)}|{backbone.fingerprint}"
        if key not in self._dims:
            batch = self._probe_batch(backbone)
            act, _, _ = forward_with_tap(backbone, self.layer, batch)
            self._dims[key] = int(pool_activation(act, self.pool, getattr(batch, "lengths", None)).shape[1])
        return self._dims[key]

    def collate(self, backbone):
        return ImageCollate(backbone.preprocess) if self.modality == "image" else TextCollate()

    def encode(self, backbone, batch) -> torch.Tensor:
        if self.modality == "text":
            batch = tokenize_for(backbone, batch)
        act, _, _ = forward_with_tap(backbone, self.layer, batch)
        return pool_activation(act.float(), self.pool, getattr(batch, "lengths", None)).cpu()

    def input_bytes_per_row(self, backbone, dataset, index: int) -> int:
        if self.modality == "text":
            return 8 * 128  # token ids of one text, generously
        sample = ImageCollate(backbone.preprocess)([dataset[index]])
        return sample.numel() * sample.element_size()


def layer_capture(modality: str, layer: str, pool: str = "mean") -> str:
    """The capture name for ``layer`` pooled by ``pool`` (``layer_capture("image", "visual.layer3")``)."""
    return get_capture(f"{modality}:{layer}@{pool}").name


#: capture name -> capture; the fixed names `get_capture` accepts (layer captures are parsed)
CAPTURES: dict[str, Capture] = {"image": ImageCapture()}
_LAYER_CAPTURES: dict[str, LayerCapture] = {}


def get_capture(name: str) -> Capture:
    """The capture called ``name``: ``"image"`` or a layer capture ``MODALITY:LAYER@POOL``; an unknown name says what is supported."""
    if name in CAPTURES:
        return CAPTURES[name]
    modality, colon, rest = str(name).partition(":")
    layer, at, pool = rest.rpartition("@")
    if colon and modality in ("image", "text") and at and layer and pool in POOLS:
        if name not in _LAYER_CAPTURES:
            _LAYER_CAPTURES[name] = LayerCapture(modality, layer, pool)
        return _LAYER_CAPTURES[name]
    raise ValueError(
        f"unknown capture point {name!r}; supported captures: {', '.join(sorted(CAPTURES))}, or a layer capture "
        f"'image:MODULE@POOL' / 'text:HOOK@POOL' with POOL one of {', '.join(POOLS)} (e.g. 'image:visual.layer3@mean')"
    )
