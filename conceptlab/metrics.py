"""Metrics for concept bottleneck models: accuracy, sparsity, coverage, concept quality, interventions.

All functions take plain arrays or tensors (labels (N,), logits/scores (N, K) or (N, C), weights
(K, C)) and return Python numbers, numpy arrays or pandas objects. The conventions follow the
reference code: non-zero counts at |w| > 1e-5 (LF-CBM), NEC = mean non-zero weights per class
(VLG-CBM), coverage as in DN-CBM's ``ImageWiseCoverageEnergyPercent``.
"""

from __future__ import annotations

from typing import Any, Sequence

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
]


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
