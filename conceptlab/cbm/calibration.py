"""Concept probabilities: per-concept calibration of concept scores, and a concept layer that outputs them.

A concept score (a margin, a dot product, an SAE activation) is graded and unbounded; an
intervention needs to know what "this concept is present" means in the model's own units.
Koh et al. (2020) intervene on probabilities (true = 1, false = 0), or, for logit-valued concepts,
put the 5th / 95th percentile of the training scores in their place.

- :class:`ConceptCalibrator` -- per concept, Platt scaling ``P(c_j | x) = σ(a_j·s_j(x) + b_j)`` fitted
  on training scores and concept labels (Platt's smoothed targets, Newton's method). A concept
  without labels (or whose labels are constant) is **not calibrated**: it falls back to the
  logistic that puts its 5th and 95th training percentiles at 0.05 and 0.95 (Koh's values), and
  ``calibrated_`` says which concepts are which.
- :class:`CalibratedLayer` -- any concept layer followed by that calibration: its scores are
  probabilities, so a head on it is a *sequential* CBM (Koh et al.) and an intervention sets a
  concept to 1 or 0 (or 0.95 / 0.05 where it is not calibrated).
- :func:`align_concept_labels` -- concept labels (a DataFrame with concept-named columns, a
  mapping, or an array in the bank's order) as an (N, C) float matrix in the bank's order, NaN
  where a concept has no label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from conceptlab.cbm.layers import ConceptLayer, MarginLayer
from conceptlab.utils import store_params

__all__ = ["CalibratedLayer", "ConceptCalibrator", "align_concept_labels", "platt_scaling"]

#: the probability Koh's percentiles stand for: the 5th percentile is "absent", the 95th "present"
PERCENTILE_PROBABILITY = 0.95


def align_concept_labels(concept_labels: Any, names: Sequence[str], n_rows: int | None = None) -> np.ndarray:
    """Concept labels as an (N, C) float matrix in the order of ``names`` (1 present, 0 absent,
    NaN unknown).

    ``concept_labels``: a DataFrame whose columns are concept names (extra columns are ignored), a
    mapping name -> (N,) values, or an (N, C) array already in the order of ``names``.
    """
    names = list(names)
    if isinstance(concept_labels, pd.DataFrame):
        columns = {str(c): concept_labels[c].to_numpy() for c in concept_labels.columns}
    elif isinstance(concept_labels, Mapping):
        columns = {str(k): np.asarray(v) for k, v in concept_labels.items()}
    else:
        array = concept_labels.detach().cpu().numpy() if isinstance(concept_labels, torch.Tensor) else np.asarray(concept_labels)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise ValueError(
                f"concept labels given as an array must be (N, {len(names)}) in the concepts' order, got shape {array.shape}; "
                "pass a DataFrame with concept-named columns to match them by name"
            )
        columns = {n: array[:, j] for j, n in enumerate(names)}
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"concept label columns differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else (n_rows or 0)
    if n_rows is not None and n != n_rows:
        raise ValueError(f"{n} rows of concept labels for {n_rows} embeddings")
    out = np.full((n, len(names)), np.nan)
    for j, name in enumerate(names):
        if name in columns:
            values = np.asarray(columns[name], dtype=np.float64)
            known = ~np.isnan(values)
            if not np.isin(values[known], (0.0, 1.0)).all():
                raise ValueError(f"concept labels of {name!r} must be 0/1 (or booleans, NaN for unknown)")
            out[:, j] = values
    return out


def platt_scaling(scores: np.ndarray, truth: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> tuple[float, float]:
    """(a, b) of Platt's sigmoid σ(a·s + b) for one concept, fitted by Newton's method on Platt's
    smoothed targets ((N₊+1)/(N₊+2) for positives, 1/(N₋+2) for negatives), with step halving."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    target = np.where(t, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    mu, sigma = s.mean(), s.std() or 1.0
    z = (s - mu) / sigma  # fit on standardised scores, convert back at the end
    params = np.array([0.0, np.log((n_pos + 1.0) / (n_neg + 1.0))])

    def loss(p: np.ndarray) -> float:
        f = p[0] * z + p[1]
        return float(np.sum(np.logaddexp(0, f) - target * f))

    current = loss(params)
    for _ in range(max_iter):
        prob = 1.0 / (1.0 + np.exp(-(params[0] * z + params[1])))
        residual = prob - target
        gradient = np.array([residual @ z, residual.sum()])
        w = prob * (1 - prob) + 1e-12
        hessian = np.array([[w @ (z * z), w @ z], [w @ z, w.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6:
            candidate = params - scale * step
            value = loss(candidate)
            if value <= current + 1e-12:
                break
            scale /= 2
        else:
            break
        params, improvement = candidate, current - value
        current = value
        if improvement < tol * max(1.0, abs(current)):
            break
    a = params[0] / sigma
    return float(a), float(params[1] - a * mu)


class ConceptCalibrator(BaseEstimator):
    """Per-concept calibration of scores to probabilities (module docstring).

    Args:
        percentiles: the training-score percentiles that stand for "absent" and "present"
            (Koh et al.'s 5th / 95th); used for concepts without labels.

    Fitted: ``a_``, ``b_`` (C,) of σ(a·s + b); ``calibrated_`` (C,) bool (Platt on labels, or the
    percentile fallback); ``low_``, ``high_`` (C,) the percentiles in score space; ``n_labelled_``.
    """

    def __init__(self, percentiles: tuple[float, float] = (5.0, 95.0)) -> None:
        store_params(self, locals())

    def fit(self, scores: Any, concept_labels: np.ndarray | None = None) -> ConceptCalibrator:
        """``scores`` (N, C) on training data; ``concept_labels`` (N, C) 0/1/NaN in the same column
        order (:func:`align_concept_labels`), or None when there are none."""
        S = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
        if S.ndim != 2 or len(S) < 2:
            raise ValueError(f"scores must be (N, C) with N >= 2, got shape {S.shape}")
        low_p, high_p = self.percentiles
        if not 0 <= low_p < high_p <= 100:
            raise ValueError(f"percentiles must be two increasing numbers in [0, 100], got {self.percentiles}")
        truth = None if concept_labels is None else np.asarray(concept_labels, dtype=np.float64)
        if truth is not None and truth.shape != S.shape:
            raise ValueError(f"concept labels {truth.shape} and scores {S.shape} must have one shape")
        self.low_, self.high_ = np.percentile(S, low_p, axis=0), np.percentile(S, high_p, axis=0)
        logit = np.log(PERCENTILE_PROBABILITY / (1 - PERCENTILE_PROBABILITY))
        span = np.where(self.high_ > self.low_, self.high_ - self.low_, 1.0)
        self.a_ = 2 * logit / span
        self.b_ = -self.a_ * (self.low_ + self.high_) / 2
        self.calibrated_ = np.zeros(S.shape[1], dtype=bool)
        self.n_labelled_ = np.zeros(S.shape[1], dtype=np.int64)
        if truth is not None:
            for j in range(S.shape[1]):
                known = ~np.isnan(truth[:, j])
                t = truth[known, j] > 0.5
                self.n_labelled_[j] = int(known.sum())
                if 0 < t.sum() < len(t):
                    self.a_[j], self.b_[j] = platt_scaling(S[known, j], t)
                    self.calibrated_[j] = True
        return self

    def _check(self) -> None:
        if getattr(self, "a_", None) is None:
            raise NotFittedError("this ConceptCalibrator is not fitted yet; call fit(scores, concept_labels) first")

    @property
    def is_calibrated(self) -> bool:
        """True when every concept was calibrated on labels."""
        self._check()
        return bool(self.calibrated_.all())

    def predict_proba(self, scores: Any) -> np.ndarray:
        """(N, C) probabilities σ(a·s + b) of scores (N, C)."""
        self._check()
        S = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-(S * self.a_ + self.b_)))

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """The same map in torch (differentiable), float32 like the scores."""
        self._check()
        a = torch.as_tensor(self.a_, dtype=scores.dtype, device=scores.device)
        b = torch.as_tensor(self.b_, dtype=scores.dtype, device=scores.device)
        return torch.sigmoid(scores * a + b)

    def true_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(present (C,), absent (C,)) in **score** space: Koh's 95th / 5th training percentiles."""
        self._check()
        return self.high_.copy(), self.low_.copy()

    def true_probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """(present (C,), absent (C,)) in **probability** space: 1 / 0 for calibrated concepts,
        0.95 / 0.05 (what the percentiles map to) for the others."""
        self._check()
        fallback = PERCENTILE_PROBABILITY
        return np.where(self.calibrated_, 1.0, fallback), np.where(self.calibrated_, 0.0, 1 - fallback)

    def state(self) -> dict[str, Any]:
        self._check()
        return {
            "percentiles": list(self.percentiles), "a_": self.a_.tolist(), "b_": self.b_.tolist(), "low_": self.low_.tolist(),
            "high_": self.high_.tolist(), "calibrated_": self.calibrated_.tolist(), "n_labelled_": self.n_labelled_.tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ConceptCalibrator:
        out = cls(percentiles=tuple(state.get("percentiles", (5.0, 95.0))))
        for key in ("a_", "b_", "low_", "high_"):
            setattr(out, key, np.asarray(state[key], dtype=np.float64))
        out.calibrated_ = np.asarray(state["calibrated_"], dtype=bool)
        out.n_labelled_ = np.asarray(state.get("n_labelled_", [0] * len(out.a_)), dtype=np.int64)
        return out

    def summary(self) -> pd.DataFrame:
        """One row per concept: ``calibrated``, ``a``, ``b``, ``low``, ``high``, ``labelled``."""
        self._check()
        return pd.DataFrame({"calibrated": self.calibrated_, "a": self.a_, "b": self.b_, "low": self.low_, "high": self.high_, "labelled": self.n_labelled_})


class CalibratedLayer(ConceptLayer):
    """A concept layer whose scores are calibrated concept probabilities (module docstring).

    ``fit`` fits the ``inner`` layer (PCBM's :class:`~conceptlab.cbm.layers.MarginLayer` by
    default), then a :class:`ConceptCalibrator` on its training scores and the concept labels the
    model's ``fit`` was given (``concept_labels=``); without labels every concept falls back to
    Koh's percentiles, and ``calibrator_.calibrated_`` says so.
    """

    formula = "σ(a·s + b): the inner layer's score s, calibrated per concept (Platt) on concept labels"
    #: ``ConceptBottleneckModel.fit(..., concept_labels=...)`` passes them to this layer
    uses_concept_labels: ClassVar[bool] = True

    def __init__(self, inner: ConceptLayer | None = None, percentiles: tuple[float, float] = (5.0, 95.0)) -> None:
        store_params(self, locals())

    def _new_inner(self) -> ConceptLayer:
        return clone(self.inner) if self.inner is not None else MarginLayer()

    def fit(self, bank, X, y, class_names, val=None, concept_labels: Any = None) -> CalibratedLayer:
        self.inner_ = self._new_inner().fit(bank, X, y, class_names, val=val)
        self.bank_ = self.inner_.bank_
        truth = None if concept_labels is None else align_concept_labels(concept_labels, self.bank_.names, len(X))
        with torch.no_grad():
            raw = self.inner_.scores(X)
        self.calibrator_ = ConceptCalibrator(percentiles=self.percentiles).fit(raw, truth)
        return self

    def raw_scores(self, X: torch.Tensor) -> torch.Tensor:
        """The inner layer's uncalibrated scores."""
        self._check_fitted()
        return self.inner_.scores(X)

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return self.calibrator_.probabilities(self.inner_.scores(X))

    def state(self) -> dict[str, Any]:
        return {"inner_layer": type(self.inner_).__name__, "inner": self.inner_.state(), "calibrator": self.calibrator_.state()}

    def restore(self, bank, state=None) -> CalibratedLayer:
        state = dict(state or {})
        self.inner_ = self._new_inner().restore(bank, dict(state.get("inner") or {}))
        self.bank_ = bank
        self.calibrator_ = ConceptCalibrator.from_state(state["calibrator"])
        return self

    def save_artifacts(self, directory) -> None:
        self.inner_.save_artifacts(directory)

    def load_artifacts(self, directory) -> None:
        self.inner_.load_artifacts(directory)

    def info(self) -> dict[str, Any]:
        out = {**super().info(), "inner": self.inner_.info() if hasattr(self, "inner_") else None}
        if hasattr(self, "calibrator_"):
            out["calibrated_concepts"] = int(self.calibrator_.calibrated_.sum())
            out["uncalibrated_concepts"] = int((~self.calibrator_.calibrated_).sum())
            out["fallback"] = None if self.calibrator_.is_calibrated else f"Koh's {self.percentiles[0]:g}th/{self.percentiles[1]:g}th percentiles (no concept labels)"
        return out
