"""Diversity of generated samples: attribute coverage and entropy where the truth is known, pairwise
distance and the Vendi score in an embedding space.

- :func:`attribute_diversity` -- for the families a condition leaves free, how many distinct values
  the samples show and the entropy of their distribution (read back from the images);
- :func:`pairwise_distance` -- mean cosine distance over all pairs (the paper's DreamSim diversity,
  here in zoo-CLIP space);
- :func:`vendi_score` -- exp of the order-q Rényi entropy of the eigenvalues of K/n, K a
  similarity matrix with unit diagonal (Friedman & Dieng, 2023). Written here because the
  ``vendi-score`` package's ``score_X`` ignores ``q``; its ``score_K`` is correct and is what the
  tests compare against.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["attribute_diversity", "entropy_bits", "pairwise_distance", "similarity_matrix", "vendi_score"]


def _matrix(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d (n, d) array, got shape {tuple(x.shape)}")
    if len(x) < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {len(x)}")
    return x


def similarity_matrix(embeddings) -> torch.Tensor:
    """The cosine-similarity matrix (PSD, unit diagonal) of (n, d) embeddings."""
    x = F.normalize(_matrix(embeddings), dim=1)
    return x @ x.T


def pairwise_distance(embeddings) -> float:
    """Mean cosine distance 1 − cos over all unordered pairs."""
    k = similarity_matrix(embeddings)
    n = len(k)
    return float((1.0 - k).sum() / (n * (n - 1)))


def vendi_score(embeddings=None, q: float = 1.0, K=None) -> float:
    """The Vendi score of order ``q`` from embeddings (cosine kernel) or a given kernel ``K``.

    VS_q = exp(H_q(λ)), λ the eigenvalues of K/n: H_1 = −Σ λ log λ, H_∞ = −log max λ,
    otherwise H_q = log(Σ λ^q) / (1 − q). It runs from 1 (all samples identical) to n (all
    orthogonal)."""
    if (embeddings is None) == (K is None):
        raise ValueError("give either embeddings or a kernel matrix K")
    if K is None:
        K = similarity_matrix(embeddings)
    K = torch.as_tensor(np.asarray(K) if not isinstance(K, torch.Tensor) else K).double()
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be a square matrix, got shape {tuple(K.shape)}")
    if not torch.allclose(torch.diagonal(K), torch.ones(len(K), dtype=K.dtype), atol=1e-6):
        raise ValueError("K must have a unit diagonal (a normalised similarity)")
    if q < 0:
        raise ValueError(f"q must be non-negative, got {q}")
    lam = torch.linalg.eigvalsh(K / len(K)).clamp(min=0.0)
    lam = lam[lam > 0]
    if math.isinf(q):
        return float(1.0 / lam.max())
    if abs(q - 1.0) < 1e-12:
        return float(torch.exp(-(lam * torch.log(lam)).sum()))
    return float(torch.exp(torch.log((lam**q).sum()) / (1.0 - q)))


def entropy_bits(values: Sequence[str]) -> float:
    """Shannon entropy, in bits, of the empirical distribution of ``values``."""
    counts = np.array(list(Counter(values).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def attribute_diversity(read: Mapping[str, Sequence[str]], families: Sequence[str], n_values: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """Per family: ``coverage`` (distinct values seen / values that exist), ``distinct``,
    ``entropy`` (bits) and ``max_entropy`` (log2 of the number of values)."""
    out = {}
    for family in families:
        values = list(read[family])
        out[family] = {
            "distinct": len(set(values)),
            "coverage": len(set(values)) / n_values[family],
            "entropy": round(entropy_bits(values), 4),
            "max_entropy": round(math.log2(n_values[family]), 4),
        }
    return out
