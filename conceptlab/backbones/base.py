"""The image-text backbone interface every method sees."""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import torch
from PIL import Image

__all__ = ["ImageTextBackbone", "fingerprint_state_dict", "default_device"]


def default_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit ``device`` always wins."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fingerprint_state_dict(state_dict: dict[str, torch.Tensor]) -> str:
    """A stable hash of weights: parameter names, shapes, dtypes and bytes, in sorted order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


class ImageTextBackbone:
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
    def fingerprint(self) -> str:
        """Hash of the weights; computed once, it keys everything the store holds for this model."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_state_dict(self.model.state_dict())
        return self._fingerprint

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
        return torch.stack([self.preprocess(im.convert("RGB")) for im in images])

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """(N, dim) raw image embeddings, on the CPU, float32."""
        batch = self._image_batch(images).to(self.device)
        return self.model.encode_image(batch).float().cpu()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(M, dim) raw text embeddings, on the CPU, float32."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("encode_texts got no texts")
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens).float().cpu()
