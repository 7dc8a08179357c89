"""The concept-score operator: embeddings (N, d) -> concept scores (N, C)."""

from __future__ import annotations

from typing import Any

import torch

from conceptlab.utils import as_matrix

__all__ = ["concept_scores", "SCORE_MODES"]

SCORE_MODES = ("margin", "dot")


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
