"""A list of texts as a dataset the activation store can key: ``TextSet(texts, name)[i] -> str``.

Layer captures of language models and sentence encoders (``text:LAYER@POOL``) read one; its
``identity`` hashes every text in order, so a changed example is never served from a stale entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

__all__ = ["TextSet"]


class TextSet(torch.utils.data.Dataset):
    """An ordered list of texts with a content-hash ``identity`` (and optional integer ``labels``)."""

    def __init__(self, texts: Sequence[str], name: str = "texts", labels: Sequence[int] | None = None) -> None:
        self.texts = [str(t) for t in texts]
        if not self.texts:
            raise ValueError("a TextSet needs at least one text")
        if labels is not None and len(labels) != len(self.texts):
            raise ValueError(f"{len(labels)} labels for {len(self.texts)} texts")
        self.name = str(name)
        self.labels = None if labels is None else [int(v) for v in labels]
        digest = hashlib.sha256("\x1f".join(self.texts).encode("utf-8")).hexdigest()[:24]
        self.identity = f"texts:{self.name}:{len(self.texts)}:{digest}"

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> str:
        return self.texts[index]

    def __repr__(self) -> str:
        return f"TextSet({self.name!r}, {len(self.texts)} texts)"
