"""Metrics for concept bottleneck models: accuracy, sparsity, coverage, concept quality, interventions,
and the statistics that go with every number (bootstrap intervals, paired tests, mean ± sd over seeds).

All functions take plain arrays or tensors (labels (N,), logits/scores (N, K) or (N, C), weights
(K, C)) and return Python numbers, numpy arrays or pandas objects. The conventions follow the
reference code: non-zero counts at |w| > 1e-5 (LF-CBM), NEC = mean non-zero weights per class
(VLG-CBM), coverage as in DN-CBM's ``ImageWiseCoverageEnergyPercent``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "accuracy",
    "top_k_accuracy",
    "per_class_accuracy",
    "sparsity",
    "coverage",
    "concept_auroc",
    "true_value_map",
    "intervention_curve",
    "Estimate",
    "PairedComparison",
    "accuracy_ci",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "compare_predictions",
    "concept_auroc_ci",
    "fast_auroc",
    "mcnemar_test",
    "mean_sd",
    "paired_bootstrap_test",
]

#: bootstrap settings every report uses unless told otherwise (95 % percentile intervals, seeded)
DEFAULT_LEVEL = 0.95
DEFAULT_N_BOOT = 2000


def _np(value: Any, dtype=None) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _labels(y_true: Any) -> np.ndarray:
    y = _np(y_true).reshape(-1)
    if y.dtype.kind == "f":
        if np.isnan(y).any() or not np.all(y == np.round(y)):
            raise ValueError("labels must be integers")
    return y.astype(np.int64)


def _predictions(y_pred_or_scores: Any) -> np.ndarray:
    pred = _np(y_pred_or_scores)
    return pred.argmax(1) if pred.ndim == 2 else pred.reshape(-1).astype(np.int64)


def accuracy(y_true: Any, y_pred_or_scores: Any) -> float:
    """Top-1 accuracy from predicted labels (N,) or logits/probabilities (N, K)."""
    y, pred = _labels(y_true), _predictions(y_pred_or_scores)
    if len(y) != len(pred):
        raise ValueError(f"{len(y)} labels but {len(pred)} predictions")
    if len(y) == 0:
        raise ValueError("no samples")
    return float(np.mean(y == pred))


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores (ties broken by index)."""
    y, S = _labels(y_true), _np(scores, np.float64)
    if S.ndim != 2 or len(S) != len(y):
        raise ValueError(f"scores must be (N, K) with N={len(y)}, got shape {S.shape}")
    if not 1 <= k:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, S.shape[1])
    top = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == y[:, None]).any(1)))


def per_class_accuracy(y_true: Any, y_pred_or_scores: Any, class_names: Sequence[str] | None = None, n_classes: int | None = None) -> pd.Series:
    """Accuracy within each true class (NaN for classes with no samples), indexed by class name."""
    y, pred = _labels(y_true), _predictions(y_pred_or_scores)
    K = len(class_names) if class_names is not None else (n_classes or int(max(y.max(), pred.max())) + 1)
    values = [float(np.mean(pred[y == k] == k)) if np.any(y == k) else np.nan for k in range(K)]
    index = list(class_names) if class_names is not None else list(range(K))
    return pd.Series(values, index=index, name="accuracy")


def sparsity(weight: Any, tol: float = 1e-5) -> dict[str, Any]:
    """Sparsity of a head W (K, C) (or a model with ``weight_``); a weight counts when |w| > tol.

    Returns ``nonzeros``, ``total``, ``fraction_nonzero``, ``nec`` (mean non-zero weights per
    class), ``nonzeros_per_class`` (list) and ``concepts_used`` (concepts with any non-zero weight).
    """
    W = _np(getattr(weight, "weight_", weight), np.float64)
    if W.ndim != 2:
        raise ValueError(f"weight must be (K, C), got shape {W.shape}")
    nz = np.abs(W) > tol
    return {
        "nonzeros": int(nz.sum()),
        "total": int(nz.size),
        "fraction_nonzero": float(nz.mean()),
        "nec": float(nz.sum(1).mean()),
        "nonzeros_per_class": nz.sum(1).astype(int).tolist(),
        "concepts_used": int(nz.any(0).sum()),
    }


def coverage(
    scores: Any,
    weight: Any,
    energy: float = 0.9,
    mode: str = "positive",
    classes: Any = None,
    bias: Any = None,
    zero_based: bool = False,
) -> np.ndarray:
    """DN-CBM's per-image coverage: how many concepts reach ``energy`` of the class evidence.

    For each row, take the contributions W[k]·s(x) to class k (the predicted class, argmax of
    s·Wᵀ + bias, unless ``classes`` gives one per row); keep their positive parts
    (``mode="positive"``) or absolute values (``"absolute"``); sort them in decreasing order and
    count how many are needed for their cumulative sum to reach ``energy`` × their total.

    DN-CBM's code records the 0-based position of that concept (one less than the count); pass
    ``zero_based=True`` to get its numbers. Rows with no positive evidence get 0 (DN-CBM: 0).
    Returns an (N,) integer array; its mean is the reported coverage.
    """
    S = _np(scores, np.float64)
    W = _np(weight, np.float64)
    if S.ndim != 2 or W.ndim != 2 or S.shape[1] != W.shape[1]:
        raise ValueError(f"scores (N, C) and weight (K, C) must share C; got {S.shape} and {W.shape}")
    if mode not in ("positive", "absolute"):
        raise ValueError(f"mode must be 'positive' or 'absolute', got {mode!r}")
    if not 0 < energy <= 1:
        raise ValueError(f"energy must lie in (0, 1], got {energy}")
    if classes is None:
        logits = S @ W.T + (0 if bias is None else _np(bias, np.float64))
        classes = logits.argmax(1)
    classes = _labels(classes)
    contributions = S * W[classes]
    contributions = np.clip(contributions, 0, None) if mode == "positive" else np.abs(contributions)
    ordered = -np.sort(-contributions, axis=1)
    cumulative = np.cumsum(ordered, axis=1)
    total = cumulative[:, -1]
    # first position where the cumulative sum reaches energy·total (a tiny slack absorbs rounding)
    reached = cumulative >= energy * total[:, None] - 1e-12 * np.abs(total[:, None])
    position = reached.argmax(1)
    if zero_based:
        return np.where(total > 0, position, 0).astype(np.int64)
    return np.where(total > 0, position + 1, 0).astype(np.int64)


def _align_truth(truth: Any, names: Sequence[str] | None, truth_names: Sequence[str] | None) -> tuple[np.ndarray, list[int]]:
    """Truth columns reordered to ``names``; returns (truth (N, C'), indices into names)."""
    T = _np(truth)
    if T.ndim != 2:
        raise ValueError(f"truth must be (N, C), got shape {T.shape}")
    if truth_names is None:
        return T.astype(bool), list(range(T.shape[1]))
    if names is None:
        raise ValueError("truth_names needs the score columns' names too")
    truth_names = list(truth_names)
    if len(truth_names) != T.shape[1]:
        raise ValueError(f"{len(truth_names)} truth_names for {T.shape[1]} truth columns")
    position = {n: i for i, n in enumerate(truth_names)}
    cols = [j for j, n in enumerate(names) if n in position]
    if not cols:
        raise ValueError("no concept name is shared between the scores and the ground truth")
    return T[:, [position[names[j]] for j in cols]].astype(bool), cols


def concept_auroc(scores: Any, truth: Any, names: Sequence[str] | None = None, truth_names: Sequence[str] | None = None) -> pd.Series:
    """AUROC of each concept score against its ground truth (sklearn ``roc_auc_score``).

    ``scores`` (N, C), ``truth`` (N, C) boolean in the same column order -- or give ``names``
    (of the score columns) and ``truth_names`` to match them by name (score columns without a
    truth column are left out). Columns whose truth is constant get NaN. ``.mean()`` skips NaN.
    """
    from sklearn.metrics import roc_auc_score

    S = _np(scores, np.float64)
    T, cols = _align_truth(truth, names, truth_names)
    if S.ndim != 2 or S.shape[0] != T.shape[0]:
        raise ValueError(f"scores must be (N, C) with N={T.shape[0]}, got {S.shape}")
    if truth_names is None and S.shape[1] != T.shape[1]:
        raise ValueError(f"scores have {S.shape[1]} columns but truth has {T.shape[1]}")
    values = []
    for t, j in enumerate(cols):
        column = T[:, t]
        values.append(float(roc_auc_score(column, S[:, j])) if 0 < column.sum() < len(column) else np.nan)
    index = [names[j] for j in cols] if names is not None else cols
    return pd.Series(values, index=index, name="auroc")


def true_value_map(scores: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-concept score of a "true" and a "false" concept: the mean score of the positives and
    of the negatives (N, C) -> (pos (C,), neg (C,)). Compute it on the training set; a concept
    with no positives (negatives) gets the overall mean."""
    S = _np(scores, np.float64)
    T = _np(truth).astype(bool)
    if S.shape != T.shape:
        raise ValueError(f"scores {S.shape} and truth {T.shape} must have one shape")
    overall = S.mean(0)
    n_pos, n_neg = T.sum(0), (~T).sum(0)
    pos = np.where(n_pos > 0, (S * T).sum(0) / np.maximum(n_pos, 1), overall)
    neg = np.where(n_neg > 0, (S * ~T).sum(0) / np.maximum(n_neg, 1), overall)
    return pos, neg


def intervention_curve(
    model,
    embeddings: Any,
    labels: Any,
    truth: Any,
    *,
    train_scores: Any = None,
    train_truth: Any = None,
    values: tuple[Any, Any] | None = None,
    truth_names: Sequence[str] | None = None,
    ks: Sequence[int] | None = None,
    order: str | Sequence[str] = "weight",
) -> pd.DataFrame:
    """Accuracy as the true values of the top-k concepts replace the predicted concept scores.

    The true value of concept j in score space is ``pos[j]`` where the concept is present and
    ``neg[j]`` where it is absent: the mean training score of images with and without it
    (:func:`true_value_map` on ``train_scores``/``train_truth``), or explicit ``values=(pos, neg)``.

    ``order="weight"`` intervenes first on the concepts the head relies on most (largest column
    L1 norm of W, summed over classes); a list of concept names gives the order explicitly. Only
    concepts with ground truth take part. ``ks`` defaults to 0, 1, ..., all of them. Returns a
    DataFrame with ``k``, ``accuracy`` and ``concept`` (the one added at that step; missing at k = 0).
    """
    model._check_fitted()
    names = list(model.concept_names_)
    S = model.transform(embeddings).astype(np.float64)
    y = _labels(labels)
    T, cols = _align_truth(truth, names, truth_names)
    if T.shape[0] != S.shape[0]:
        raise ValueError(f"truth has {T.shape[0]} rows for {S.shape[0]} embeddings")
    if values is not None:
        pos, neg = (_np(v, np.float64).reshape(-1) for v in values)
        if len(pos) != len(names) or len(neg) != len(names):
            raise ValueError(f"values must be two arrays of length {len(names)} (one per concept)")
    elif train_scores is not None and train_truth is not None:
        train_T, train_cols = _align_truth(train_truth, names, truth_names)
        if train_cols != cols:
            raise ValueError("train_truth and truth must cover the same concepts")
        train_S = _np(train_scores, np.float64)
        if train_S.ndim != 2 or train_S.shape[1] != len(names):
            raise ValueError(f"train_scores must be (N, {len(names)})")
        pos, neg = np.zeros(len(names)), np.zeros(len(names))
        pos[cols], neg[cols] = true_value_map(train_S[:, cols], train_T)
    else:
        raise ValueError("intervention_curve needs train_scores and train_truth (or values=(pos, neg)) to map true concepts into score space")
    true_scores = S.copy()
    for t, j in enumerate(cols):
        true_scores[:, j] = np.where(T[:, t], pos[j], neg[j])
    if isinstance(order, str):
        if order != "weight":
            raise ValueError(f"order must be 'weight' or a list of concept names, got {order!r}")
        importance = np.abs(model.coef_).sum(0)
        ranked = [j for j in np.argsort(-importance, kind="stable") if j in set(cols)]
    else:
        ranked = [model._concept_index(n) for n in order]
        missing = [names[j] for j in ranked if j not in set(cols)]
        if missing:
            raise ValueError(f"no ground truth for {missing}")
    ks = list(range(len(ranked) + 1)) if ks is None else sorted({int(k) for k in ks})
    if ks and (ks[0] < 0 or ks[-1] > len(ranked)):
        raise ValueError(f"ks must lie in [0, {len(ranked)}]")
    rows = []
    for k in ks:
        edited = S.copy()
        chosen = ranked[:k]
        edited[:, chosen] = true_scores[:, chosen]
        logits = model.decision_from_scores(edited.astype(np.float32), embeddings if model.has_residual else None)
        rows.append({"k": k, "accuracy": accuracy(y, logits), "concept": names[ranked[k - 1]] if k > 0 else None})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# statistics: bootstrap intervals, paired tests, mean ± sd over seeds
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A number with its bootstrap interval: ``value`` (on all the data), ``low`` and ``high``
    (the percentile interval at ``level`` over ``n_boot`` resamples of the ``n`` items)."""

    value: float
    low: float
    high: float
    level: float = DEFAULT_LEVEL
    n: int = 0
    n_boot: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level, "n": self.n, "n_boot": self.n_boot}

    def format(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def __str__(self) -> str:
        return self.format()

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _check_boot(n_boot: int, level: float) -> None:
    if int(n_boot) < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _percentiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.nanquantile(replicates, [tail, 1 - tail], axis=0)
    return float(low), float(high)


def _resample_indices(rng: np.random.Generator, n: int, n_boot: int, chunk: int):
    """Bootstrap index matrices (b, n), ``chunk`` rows at a time (bounded memory)."""
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def bootstrap_mean_ci(values: Any, n_boot: int = DEFAULT_N_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0) -> Estimate:
    """Percentile bootstrap interval of the mean of per-item ``values`` (N,) (e.g. 0/1 correctness).

    Seeded: the same inputs and seed give the same interval. Resamples are drawn as counts from a
    multinomial, which is the same distribution as resampling indices and needs no (n_boot, N) matrix.
    """
    v = _np(values, np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no values")
    _check_boot(n_boot, level)
    replicates = _multinomial_means(v, int(n_boot), seed)
    low, high = _percentiles(replicates, level)
    return Estimate(float(v.mean()), low, high, level, int(v.size), int(n_boot))


def _multinomial_means(v: np.ndarray, n_boot: int, seed: int, chunk: int = 256) -> np.ndarray:
    """Means of ``n_boot`` bootstrap resamples of ``v``, drawn as multinomial counts (``chunk`` at a time).

    Resampling N items with replacement puts Multinomial(N, 1/N each) copies on them; items with
    equal values can be pooled, so for data with few distinct values (0/1 correctness, paired
    differences in {−1, 0, 1}) the counts are drawn per distinct value: the same distribution, in
    O(n_boot) instead of O(n_boot · N)."""
    rng = np.random.default_rng(seed)
    values, counts = np.unique(v, return_counts=True)
    if len(values) <= 16:
        v, p = values, counts / v.size
    else:
        p = np.full(v.size, 1.0 / v.size)
    n = int(counts.sum())
    out = [rng.multinomial(n, p, size=min(chunk, n_boot - s)) @ v / n for s in range(0, n_boot, chunk)]
    return np.concatenate(out)


def bootstrap_ci(
    statistic,
    *arrays: Any,
    n_boot: int = 1000,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    chunk: int = 64,
) -> Estimate:
    """Percentile bootstrap interval of any ``statistic(*arrays) -> float`` over the rows the
    arrays share (they are resampled together, so paired data stay paired). Replicates where the
    statistic is NaN (e.g. an AUROC on a resample with one class only) are left out."""
    data = [_np(a) for a in arrays]
    if not data:
        raise ValueError("bootstrap_ci needs at least one array")
    n = len(data[0])
    if any(len(a) != n for a in data):
        raise ValueError(f"the arrays must share their first dimension; got {[len(a) for a in data]}")
    if n == 0:
        raise ValueError("no rows")
    _check_boot(n_boot, level)
    rng = np.random.default_rng(seed)
    replicates = []
    for block in _resample_indices(rng, n, int(n_boot), chunk):
        replicates.extend(float(statistic(*[a[idx] for a in data])) for idx in block)
    low, high = _percentiles(np.asarray(replicates), level)
    return Estimate(float(statistic(*data)), low, high, level, n, int(n_boot))


def accuracy_ci(y_true: Any, y_pred_or_scores: Any, n_boot: int = DEFAULT_N_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0) -> Estimate:
    """Top-1 accuracy with a percentile bootstrap interval over the images (seeded)."""
    y, pred = _labels(y_true), _predictions(y_pred_or_scores)
    if len(y) != len(pred):
        raise ValueError(f"{len(y)} labels but {len(pred)} predictions")
    return bootstrap_mean_ci(y == pred, n_boot=n_boot, level=level, seed=seed)


def fast_auroc(scores: Any, truth: Any) -> np.ndarray:
    """AUROC of each column of ``scores`` (N, C) against boolean ``truth`` (N, C), by ranks
    (Mann–Whitney, ties averaged): equal to sklearn's ``roc_auc_score`` column by column; NaN
    where a column's truth is constant."""
    from scipy.stats import rankdata

    S = _np(scores, np.float64)
    T = _np(truth).astype(bool)
    if S.ndim == 1:
        S, T = S[:, None], T.reshape(-1, 1)
    if S.shape != T.shape:
        raise ValueError(f"scores {S.shape} and truth {T.shape} must have one shape")
    ranks = rankdata(S, axis=0)
    n_pos = T.sum(0).astype(np.float64)
    n_neg = len(T) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * T).sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def concept_auroc_ci(
    scores: Any,
    truth: Any,
    names: Sequence[str] | None = None,
    truth_names: Sequence[str] | None = None,
    n_boot: int = 1000,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> tuple[pd.DataFrame, Estimate]:
    """Each concept's AUROC with a bootstrap interval over images, and the mean AUROC's interval.

    Returns (frame indexed like :func:`concept_auroc` with ``auroc``, ``low``, ``high``;
    the :class:`Estimate` of the mean over concepts). One set of resamples serves all concepts."""
    S = _np(scores, np.float64)
    T, cols = _align_truth(truth, names, truth_names)
    if S.ndim != 2 or S.shape[0] != T.shape[0]:
        raise ValueError(f"scores must be (N, C) with N={T.shape[0]}, got {S.shape}")
    S = S[:, cols]
    _check_boot(n_boot, level)
    rng = np.random.default_rng(seed)
    point = fast_auroc(S, T)
    # resampling images = multinomial weights on them; each column's AUROC under weights is a sum
    # over its sorted, tie-grouped scores (one pass per column serves every replicate)
    weights = rng.multinomial(len(S), np.full(len(S), 1.0 / len(S)), size=int(n_boot)).astype(np.float64)
    replicates = np.stack([_weighted_auroc(S[:, j], T[:, j], weights) for j in range(S.shape[1])], axis=1)
    tail = (1 - level) / 2
    finite = np.isfinite(point)
    low, high = np.full(len(point), np.nan), np.full(len(point), np.nan)
    with np.errstate(all="ignore"):
        for j in np.flatnonzero(finite):
            column = replicates[:, j][np.isfinite(replicates[:, j])]
            low[j], high[j] = np.quantile(column, [tail, 1 - tail])
        means = np.nanmean(replicates[:, finite], axis=1) if finite.any() else np.full(len(replicates), np.nan)
    index = [names[j] for j in cols] if names is not None else cols
    frame = pd.DataFrame({"auroc": point, "low": np.where(np.isfinite(point), low, np.nan), "high": np.where(np.isfinite(point), high, np.nan)}, index=index)
    mean_low, mean_high = _percentiles(means, level)
    mean = Estimate(float(np.nanmean(point)), mean_low, mean_high, level, int(len(S)), int(n_boot))
    return frame, mean


def _weighted_auroc(scores: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one score column under each row of ``weights`` (B, N) (bootstrap multiplicities):
    Σ over positives of w · (negative weight below + half the tied negative weight) / (W₊ · W₋)."""
    order = np.argsort(scores, kind="stable")
    s, t, w = scores[order], truth[order].astype(bool), weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups in sorted order
    pos = np.add.reduceat(w * t, starts, axis=1)
    neg = np.add.reduceat(w * ~t, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total_pos, total_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(1) / (total_pos * total_neg)
    return np.where((total_pos > 0) & (total_neg > 0), auc, np.nan)


@dataclass(frozen=True)
class PairedComparison:
    """Two models compared on the same images (a minus b).

    ``accuracy_a``, ``accuracy_b`` and ``difference``: estimates with paired-bootstrap intervals
    (the same resampled images for both); ``only_a`` / ``only_b``: images only a (only b) gets
    right (McNemar's discordant pairs); ``p_value``: of ``test`` (``"mcnemar"``: the exact
    two-sided binomial test on the discordant pairs; ``"bootstrap"``: the paired bootstrap's).
    """

    name_a: str
    name_b: str
    accuracy_a: Estimate
    accuracy_b: Estimate
    difference: Estimate
    only_a: int
    only_b: int
    p_value: float
    test: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.name_a, "b": self.name_b, "accuracy_a": self.accuracy_a.to_dict(), "accuracy_b": self.accuracy_b.to_dict(),
            "difference": self.difference.to_dict(), "only_a": self.only_a, "only_b": self.only_b, "p_value": self.p_value, "test": self.test,
        }

    def summary(self) -> str:
        return (
            f"{self.name_a} {self.accuracy_a} vs {self.name_b} {self.accuracy_b}: difference {self.difference.format()}, "
            f"{self.only_a} images only {self.name_a} gets right, {self.only_b} only {self.name_b}; {self.test} p = {self.p_value:.3g}"
        )


def _paired(y_true: Any, pred_a: Any, pred_b: Any) -> tuple[np.ndarray, np.ndarray]:
    y, a, b = _labels(y_true), _predictions(pred_a), _predictions(pred_b)
    if not len(y) == len(a) == len(b):
        raise ValueError(f"{len(y)} labels, {len(a)} and {len(b)} predictions: a paired test needs the same images")
    if len(y) == 0:
        raise ValueError("no samples")
    return a == y, b == y


def mcnemar_test(y_true: Any, pred_a: Any, pred_b: Any) -> dict[str, Any]:
    """McNemar's exact test of two classifiers on the same images: under "equally accurate", each
    discordant image (one right, the other wrong) is a fair coin. Returns ``only_a``, ``only_b``
    and the two-sided exact binomial ``p_value`` (1.0 when there is no discordant image)."""
    from scipy.stats import binomtest

    right_a, right_b = _paired(y_true, pred_a, pred_b)
    only_a = int(np.sum(right_a & ~right_b))
    only_b = int(np.sum(~right_a & right_b))
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p, "test": "mcnemar"}


def paired_bootstrap_test(
    y_true: Any, pred_a: Any, pred_b: Any, n_boot: int = DEFAULT_N_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0
) -> tuple[Estimate, float]:
    """The accuracy difference a − b with a paired bootstrap interval, and its two-sided p-value
    (twice the smaller share of resampled differences on either side of 0, at most 1)."""
    right_a, right_b = _paired(y_true, pred_a, pred_b)
    diff = right_a.astype(np.float64) - right_b.astype(np.float64)
    _check_boot(n_boot, level)
    replicates = _multinomial_means(diff, int(n_boot), seed)
    low, high = _percentiles(replicates, level)
    p = min(1.0, 2 * min(np.mean(replicates <= 0), np.mean(replicates >= 0)))
    return Estimate(float(diff.mean()), low, high, level, int(diff.size), int(n_boot)), float(p)


def compare_predictions(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    names: tuple[str, str] = ("a", "b"),
    test: str = "mcnemar",
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models' predictions on the same images: both accuracies and their difference
    with paired-bootstrap intervals (one set of resamples), and the p-value of ``test``
    (``"mcnemar"``, the default, or ``"bootstrap"``)."""
    if test not in ("mcnemar", "bootstrap"):
        raise ValueError(f"test must be 'mcnemar' or 'bootstrap', got {test!r}")
    right_a, right_b = _paired(y_true, pred_a, pred_b)
    difference, p_boot = paired_bootstrap_test(y_true, pred_a, pred_b, n_boot=n_boot, level=level, seed=seed)
    mc = mcnemar_test(y_true, pred_a, pred_b)
    return PairedComparison(
        str(names[0]), str(names[1]),
        bootstrap_mean_ci(right_a, n_boot, level, seed), bootstrap_mean_ci(right_b, n_boot, level, seed), difference,
        mc["only_a"], mc["only_b"], mc["p_value"] if test == "mcnemar" else p_boot, test,
    )


def mean_sd(values: Sequence[float] | Any) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) of per-seed numbers,
    with ``n`` and the ``values`` themselves."""
    v = _np(values, np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no values")
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size), "values": [float(x) for x in v]}
