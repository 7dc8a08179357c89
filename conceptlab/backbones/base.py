"""The backbone interface every method sees: the :class:`Backbone` protocol and its image-text base."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image

from conceptlab.backbones.image_batch import BatchPreprocess
from conceptlab.utils import default_device

__all__ = ["Backbone", "ImageTextBackbone", "WeightFingerprint", "default_device", "encode_texts_in_batches", "fingerprint_state_dict"]

#: texts per forward pass of the text encoder, unless a caller says otherwise
TEXT_BATCH_SIZE = 256


@runtime_checkable
class Backbone(Protocol):
    """What every method reads from a backbone.

    ``spec`` names it, ``dim`` is the embedding width, ``fingerprint`` hashes its weights and
    ``preprocess_id`` describes its preprocessing (both part of every store key). The encoders
    return (N, dim) raw float32 CPU embeddings; ``encode_texts`` encodes ``batch_size`` texts
    per forward pass. ``isinstance(x, Backbone)`` checks that the members exist (reading
    ``fingerprint`` may hash the weights once).
    """

    spec: str
    dim: int

    @property
    def fingerprint(self) -> str: ...

    @property
    def preprocess_id(self) -> str: ...

    def encode_images(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor: ...

    def encode_texts(self, texts: Sequence[str], batch_size: int = TEXT_BATCH_SIZE) -> torch.Tensor: ...


def _in_batches(encode: Callable[[list[str]], torch.Tensor], texts: list[str], batch_size: int) -> torch.Tensor:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    return torch.cat([encode(texts[s : s + batch_size]).float().cpu() for s in range(0, len(texts), batch_size)])


def encode_texts_in_batches(backbone: Any, texts: Sequence[str], batch_size: int = TEXT_BATCH_SIZE) -> torch.Tensor:
    """(M, d) float32 CPU text embeddings from any object with ``encode_texts``, ``batch_size`` at a time.

    A :class:`Backbone` batches itself; a bare ``encode_texts(texts)`` (a test double, a user's
    adapter) is called once per batch of ``batch_size`` texts.
    """
    texts = list(texts)
    if "batch_size" in inspect.signature(backbone.encode_texts).parameters:
        return backbone.encode_texts(texts, batch_size=batch_size).float().cpu()
    return _in_batches(backbone.encode_texts, texts, batch_size)


def fingerprint_state_dict(state_dict: dict[str, torch.Tensor]) -> str:
    """A stable hash of weights: parameter names, shapes, dtypes and bytes, in sorted order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


class WeightFingerprint:
    """The ``fingerprint`` of a wrapper around ``self.model``: the hash of its weights, computed once
    (set ``self._fingerprint = None`` after changing the weights)."""

    model: torch.nn.Module
    _fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """Hash of the weights (names, shapes, dtypes, bytes); computed once, it keys everything the store holds for this model."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_state_dict(self.model.state_dict())
        return self._fingerprint


class ImageTextBackbone(WeightFingerprint):
    """An image-text encoder: images and texts into one embedding space.

    Subclasses set ``model``, ``preprocess`` (PIL image -> CHW tensor), ``tokenizer`` and
    ``dim``. Embeddings are returned raw (not normalised); methods normalise when they need to.
    """

    spec: str
    dim: int
    preprocess: Callable[[Image.Image], torch.Tensor]

    def __init__(self, spec: str, model: torch.nn.Module, preprocess, tokenizer, device) -> None:
        self.spec = spec
        self.device = default_device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self._fingerprint: str | None = None
        with torch.no_grad():
            self.dim = int(self.encode_texts(["a"]).shape[1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, dim={self.dim}, device={self.device})"

    @property
    def preprocess_id(self) -> str:
        """A description of the preprocessing, part of every store key."""
        return repr(self.preprocess)

    def _image_batch(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"image tensor must be (N, 3, H, W) and already preprocessed, got {tuple(images.shape)}"
                )
            return images
        images = list(images)
        if not images:
            raise ValueError("encode_images got no images")
        if not all(isinstance(im, Image.Image) for im in images):
            raise TypeError("encode_images takes a list of PIL images or a preprocessed (N, 3, H, W) tensor")
        return BatchPreprocess(self.preprocess)(images)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """(N, dim) raw image embeddings, on the CPU, float32."""
        batch = self._image_batch(images).to(self.device, non_blocking=True)  # asynchronous from a pinned batch
        return self.model.encode_image(batch).float().cpu()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = TEXT_BATCH_SIZE) -> torch.Tensor:
        """(M, dim) raw text embeddings, on the CPU, float32; ``batch_size`` texts per forward pass."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("encode_texts got no texts")
        return _in_batches(self._encode_text_batch, texts, batch_size)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens).float().cpu()
