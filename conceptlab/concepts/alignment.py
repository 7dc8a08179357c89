"""Concept alignment: which concept of set B does each concept of set A correspond to?

Two kinds of evidence, used together or apart:

- **direction**: cosine of the concept vectors (SAE decoder rows, CAVs, text embeddings, CBM
  projection rows) when both sets live in one space;
- **activation**: Pearson correlation, over the same images, of the two sets' concept scores
  (SAE latent activations, CBM concept scores, ground-truth concept labels).

>>> align_concepts(directions_a=sae.decoder_directions, directions_b=bank, scores_a=z, scores_b=s)
   a  a_name  b  b_name  rank  cosine  correlation
   ...                                   # "SAE latent 412 ≈ CBM concept striped"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.utils import as_matrix

__all__ = ["cosine_matrix", "correlation_matrix", "align_concepts", "ALIGN_BY"]

ALIGN_BY = ("cosine", "correlation")


def _matrix(value: Any, what: str) -> torch.Tensor:
    return as_matrix(value, what, single_row=False).double()


def _unpack(value: Any, names: Sequence[str] | None, what: str) -> tuple[torch.Tensor | None, list[str] | None]:
    """A ConceptBank or LatentNames gives (vectors, names); anything else is a matrix."""
    if value is None:
        return None, list(names) if names is not None else None
    if hasattr(value, "directions") and hasattr(value, "unique_names"):  # LatentNames
        return _matrix(value.directions, what), list(names) if names is not None else value.unique_names()
    if hasattr(value, "vectors") and hasattr(value, "names"):
        return _matrix(value.vectors, what), list(names) if names is not None else list(value.names)
    return _matrix(value, what), list(names) if names is not None else None


def cosine_matrix(a: Any, b: Any) -> np.ndarray:
    """(Ma, Mb) cosine similarities of the rows of ``a`` (Ma, d) and ``b`` (Mb, d)."""
    A, B = _matrix(a, "directions A"), _matrix(b, "directions B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"directions A have dimension {A.shape[1]} but directions B {B.shape[1]}: "
                         "cosine alignment needs both sets in one space (use activation correlation otherwise)")
    for M, what in ((A, "A"), (B, "B")):
        if bool((M.norm(dim=1) == 0).any()):
            raise ValueError(f"directions {what} contain a zero vector, which has no direction")
    A = A / A.norm(dim=1, keepdim=True)
    B = B / B.norm(dim=1, keepdim=True)
    return (A @ B.T).numpy()


def correlation_matrix(a: Any, b: Any) -> np.ndarray:
    """(Ma, Mb) Pearson correlations between the columns of ``a`` (N, Ma) and ``b`` (N, Mb).

    Rows are the same N images in both. A constant column (e.g. a dead latent) correlates with
    nothing: its entries are NaN.
    """
    A, B = _matrix(a, "scores A"), _matrix(b, "scores B")
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"scores A have {A.shape[0]} rows but scores B {B.shape[0]}: they must score the same images")
    if A.shape[0] < 2:
        raise ValueError("correlation needs at least 2 images")
    A = A - A.mean(0)
    B = B - B.mean(0)
    na, nb = A.norm(dim=0), B.norm(dim=0)
    corr = (A.T @ B) / (na[:, None] * nb[None, :])
    corr[(na == 0)[:, None].expand_as(corr) | (nb == 0)[None, :].expand_as(corr)] = float("nan")
    return corr.clamp(-1.0, 1.0).numpy()


def align_concepts(
    directions_a: Any = None,
    directions_b: Any = None,
    scores_a: Any = None,
    scores_b: Any = None,
    names_a: Sequence[str] | None = None,
    names_b: Sequence[str] | None = None,
    by: str | None = None,
    top: int = 1,
    one_to_one: bool = False,
) -> pd.DataFrame:
    """Best matches in B for every concept of A, with both scores where both are available.

    Args:
        directions_a, directions_b: (Ma, d) and (Mb, d) concept vectors, or ConceptBanks.
        scores_a, scores_b: (N, Ma) and (N, Mb) concept scores on the same N images.
        names_a, names_b: labels (a bank's names by default; indices as strings otherwise).
        by: rank matches by ``"cosine"`` or ``"correlation"``; default cosine when directions
            are given, else correlation.
        top: matches kept per concept of A (ignored with ``one_to_one``).
        one_to_one: a one-to-one assignment maximising the total score (Hungarian algorithm)
            instead of each A's independent best.

    Returns:
        DataFrame with columns ``a``, ``a_name``, ``b``, ``b_name``, ``rank``, ``cosine``,
        ``correlation`` (NaN where that evidence was not given), sorted by ``a`` then ``rank``.
        ``attrs["by"]`` records the ranking score.
    """
    A_dir, names_a = _unpack(directions_a, names_a, "directions A")
    B_dir, names_b = _unpack(directions_b, names_b, "directions B")
    if (A_dir is None) != (B_dir is None):
        raise ValueError("give directions for both sets or for neither")
    if (scores_a is None) != (scores_b is None):
        raise ValueError("give scores for both sets or for neither")
    if A_dir is None and scores_a is None:
        raise ValueError("align_concepts needs directions (directions_a, directions_b) or scores (scores_a, scores_b)")
    cos = cosine_matrix(A_dir, B_dir) if A_dir is not None else None
    corr = correlation_matrix(scores_a, scores_b) if scores_a is not None else None
    by = by or ("cosine" if cos is not None else "correlation")
    if by not in ALIGN_BY:
        raise ValueError(f"by must be one of {ALIGN_BY}, got {by!r}")
    primary = cos if by == "cosine" else corr
    if primary is None:
        raise ValueError(f"by={by!r} needs {'directions' if by == 'cosine' else 'scores'} for both sets")
    if cos is not None and corr is not None and cos.shape != corr.shape:
        raise ValueError(f"directions give {cos.shape[0]}×{cos.shape[1]} concepts but scores {corr.shape[0]}×{corr.shape[1]}")
    n_a, n_b = primary.shape
    for names, n, what in ((names_a, n_a, "names_a"), (names_b, n_b, "names_b")):
        if names is not None and len(names) != n:
            raise ValueError(f"{what} has {len(names)} names for {n} concepts")
    names_a = names_a or [str(i) for i in range(n_a)]
    names_b = names_b or [str(j) for j in range(n_b)]
    ranking = np.where(np.isnan(primary), -np.inf, primary)
    pairs: list[tuple[int, int, int]] = []
    if one_to_one:
        from scipy.optimize import linear_sum_assignment

        finite = np.where(np.isfinite(ranking), ranking, -1e6)
        rows, cols = linear_sum_assignment(finite, maximize=True)
        pairs = [(int(i), int(j), 1) for i, j in zip(rows, cols)]
    else:
        if int(top) < 1:
            raise ValueError(f"top must be at least 1, got {top}")
        k = min(int(top), n_b)
        order = np.argsort(-ranking, axis=1, kind="stable")[:, :k]
        pairs = [(i, int(order[i, r]), r + 1) for i in range(n_a) for r in range(k)]
    frame = pd.DataFrame({
        "a": [i for i, _, _ in pairs],
        "a_name": [names_a[i] for i, _, _ in pairs],
        "b": [j for _, j, _ in pairs],
        "b_name": [names_b[j] for _, j, _ in pairs],
        "rank": [r for _, _, r in pairs],
        "cosine": [float(cos[i, j]) if cos is not None else np.nan for i, j, _ in pairs],
        "correlation": [float(corr[i, j]) if corr is not None else np.nan for i, j, _ in pairs],
    })
    frame = frame.sort_values(["a", "rank"], kind="stable").reset_index(drop=True)
    frame.attrs["by"] = by
    return frame
