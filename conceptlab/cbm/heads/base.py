"""The head interface: concept scores (N, C) -> class logits through W (K, C) + b (K,).

A head is a small scikit-learn-style object. ``fit_head(scores, y, n_classes, context)`` sets
``weight_`` (K, C) and ``bias_`` (K,) as float32 tensors, and a head with a residual on the raw
embedding also ``residual_weight_`` (K, d) and ``residual_bias_`` (K,). ``state()`` (JSON) and
``tensors()`` are what a saved model keeps of the head beyond W and b; ``restore`` reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from sklearn.base import BaseEstimator

__all__ = ["Head", "HeadContext"]


@dataclass(frozen=True)
class HeadContext:
    """What a head may read besides the training scores and labels.

    ``embeddings``: the raw training embeddings (N, d), for a residual; ``bank`` and
    ``class_names``: the fitted concepts and the classes, for a language prior; ``val``: the
    validation (scores, labels) when ``fit`` was given validation data, else None;
    ``concept_labels``: the training concept labels (N, C) in the fitted concepts' order (1 / 0,
    NaN unknown) when ``fit`` was given ``concept_labels``, else None.
    """

    embeddings: torch.Tensor
    bank: Any
    class_names: list[str]
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    concept_labels: Any = None


class Head(BaseEstimator):
    """Base class of CBM heads (see the module docstring)."""

    def fit_head(self, scores: torch.Tensor, y: torch.Tensor, n_classes: int, context: HeadContext) -> Head:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """How the head was trained, for the model's provenance."""
        return {"head": type(self).__name__}

    def state(self) -> dict[str, Any]:
        """JSON-safe learned state beyond W and b (saved with the model)."""
        return {}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Learned tensors beyond W and b (saved with the model)."""
        return {}

    def restore(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Head:
        """Set what :meth:`state` and :meth:`tensors` gave back on a freshly constructed head."""
        for key, value in state.items():
            setattr(self, key, value)
        return self
