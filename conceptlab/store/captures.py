"""Capture points: what the store records from a backbone, and how the inputs are batched.

A capture knows three things: how to turn dataset items into one model-input batch (run in
DataLoader workers, so it must be picklable), how to encode that batch, and how wide the result is.
Only ``"image"`` exists now; a ``"text"`` capture (tokenised captions) or layer captures such as
``"image:layer3"`` (a forward hook) slot in by adding a class here and an entry in ``get_capture``.
"""

from __future__ import annotations

import torch

__all__ = ["CAPTURES", "Capture", "ImageCapture", "ImageCollate", "get_capture"]


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
    """Preprocess and stack the images of a batch, exactly as ``encode_images`` does for PIL input.

    A top-level class rather than a closure so DataLoader workers can receive it under any
    multiprocessing start method.
    """

    def __init__(self, preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, items) -> torch.Tensor:
        images = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        return torch.stack([self.preprocess(image.convert("RGB")) for image in images])


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


#: capture name -> capture; the names `get_capture` accepts
CAPTURES: dict[str, Capture] = {"image": ImageCapture()}


def get_capture(name: str) -> Capture:
    """The capture called ``name``; an unknown name lists the supported ones."""
    if name not in CAPTURES:
        raise ValueError(f"unknown capture point {name!r}; supported captures: {', '.join(sorted(CAPTURES))}")
    return CAPTURES[name]
