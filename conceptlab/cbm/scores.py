"""The concept-score operator: embeddings (N, d) -> concept scores (N, C)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["concept_scores", "as_matrix", "SCORE_MODES"]

SCORE_MODES = ("margin", "dot")


def as_matrix(value: Any, what: str = "embeddings", dim: int | None = None, dim_what: str = "the concept bank") -> torch.Tensor:
    """A finite (N, d) float32 CPU tensor from a tensor or array; a single row (d,) becomes (1, d)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu", torch.float32)
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise TypeError(f"{what} must be a tensor or array of numbers, got {type(value).__name__}") from error
    if tensor.ndim == 1:
        tensor = tensor[None, :]
    if tensor.ndim != 2:
        raise ValueError(f"{what} must be (N, d), got shape {tuple(tensor.shape)}")
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(f"{what} have dimension {tensor.shape[1]} but {dim_what} expects {dim}")
    if torch.isnan(tensor).any():
        raise ValueError(f"{what} contain NaN values (rows {torch.isnan(tensor).any(1).nonzero().flatten()[:5].tolist()} ...)")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} contain infinite values")
    return tensor


def concept_scores(embeddings: Any, bank, mode: str = "margin") -> torch.Tensor:
    """Concept scores of raw embeddings against a bank, (N, C) float32.

    - ``"margin"`` (PCBM, ``PosthocLinearCBM.compute_dist``): (c·f(x) + b) / ‖c‖, the signed
      distance to each concept's hyperplane. For unit-norm text concepts with b = 0 it is c·f(x).
    - ``"dot"`` (LaBo, V2C): f(x)·c, no bias, no normalisation.

    The embeddings are used as given: PCBM keeps CLIP image embeddings raw (unnormalised).
    """
    if mode not in SCORE_MODES:
        raise ValueError(f"mode must be one of {SCORE_MODES}, got {mode!r}")
    if len(bank) == 0:
        raise ValueError("the concept bank is empty")
    X = as_matrix(embeddings, "embeddings", bank.dim, f"the concept bank ({bank.space})")
    vectors = bank.vectors
    raw = X @ vectors.T
    if mode == "dot":
        return raw
    return (raw + bank.biases) / vectors.norm(dim=1)
