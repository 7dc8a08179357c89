"""A head trained to receive interventions: its training scores plus copies in which a random
share of each row's concepts is replaced by their true values.

A sequential CBM's head (Koh et al. 2020) only ever sees predicted concept probabilities; at
test time an intervention hands it hard 0/1 values it was not trained on, and a head that learned
to lean on the predictions' soft, correlated errors can get *worse* when a concept is corrected.
Intervention-aware training (the idea of Espinosa Zarlenga et al., "Learning to Receive Help",
NeurIPS 2023, here in its simplest form for a linear head) shows the head such corrected inputs:
``copies`` extra copies of the training set, each row with a share q ~ U(0, 1) of its labelled
concepts set to their true value. Without concept labels it is the inner head, unchanged.

The true values are the concept labels themselves (1 / 0), so this head belongs on a layer whose
scores are probabilities (:class:`~conceptlab.cbm.calibration.CalibratedLayer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from conceptlab.cbm.heads.base import Head, HeadContext
from conceptlab.utils import store_params

__all__ = ["InterventionAwareHead", "intervention_augment"]


def intervention_augment(scores: torch.Tensor, truth: np.ndarray, copies: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(scores stacked with ``copies`` corrected copies, the row index of each stacked row)."""
    rng = np.random.default_rng(seed)
    S = scores.detach().cpu().numpy()
    known = ~np.isnan(truth)
    filled = np.where(known, truth, 0.0)
    blocks, rows = [S], [np.arange(len(S))]
    for _ in range(int(copies)):
        share = rng.uniform(0.0, 1.0, size=(len(S), 1))
        replace = (rng.uniform(size=S.shape) < share) & known
        blocks.append(np.where(replace, filled, S))
        rows.append(np.arange(len(S)))
    return torch.as_tensor(np.concatenate(blocks), dtype=scores.dtype), np.concatenate(rows)


class InterventionAwareHead(Head):
    """Any head, trained on its scores plus ``copies`` intervention-corrected copies (module docstring).

    Args:
        head: the head to train (e.g. an :class:`~conceptlab.cbm.heads.ElasticNetHead`); fitted in place.
        copies: corrected copies of the training set (0: the inner head as is).
        seed: the draws of which concepts each copy corrects.
    """

    def __init__(self, head: Head, copies: int = 2, seed: int = 42) -> None:
        store_params(self, locals())

    def fit_head(self, scores: torch.Tensor, y: torch.Tensor, n_classes: int, context: HeadContext) -> InterventionAwareHead:
        truth = getattr(context, "concept_labels", None) if context is not None else None
        if int(self.copies) < 0:
            raise ValueError(f"copies must be >= 0, got {self.copies}")
        self.augmented_rows_ = 0
        if truth is None or int(self.copies) == 0 or np.isnan(truth).all():
            self.head.fit_head(scores, y, n_classes, context)
        else:
            augmented, rows = intervention_augment(scores, np.asarray(truth, dtype=np.float64), int(self.copies), int(self.seed))
            inner_context = dataclasses.replace(context, embeddings=context.embeddings[torch.as_tensor(rows)], concept_labels=truth[rows])
            self.head.fit_head(augmented, y[torch.as_tensor(rows)], n_classes, inner_context)
            self.augmented_rows_ = int(len(rows) - len(scores))
        self._copy_fitted()
        return self

    def _copy_fitted(self) -> None:
        self.weight_ = self.head.weight_
        self.bias_ = self.head.bias_
        for name in ("residual_weight_", "residual_bias_"):
            if getattr(self.head, name, None) is not None:
                setattr(self, name, getattr(self.head, name))

    def info(self) -> dict[str, Any]:
        inner = self.head.info()
        return {**inner, "head": f"intervention-aware {inner.get('head', type(self.head).__name__)}", "intervention_copies": int(self.copies),
                "augmented_rows": int(getattr(self, "augmented_rows_", 0))}

    def state(self) -> dict[str, Any]:
        return {"inner": self.head.state(), "augmented_rows_": int(getattr(self, "augmented_rows_", 0))}

    def tensors(self) -> dict[str, torch.Tensor]:
        return self.head.tensors()

    def restore(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> InterventionAwareHead:
        self.head.restore(dict(state.get("inner") or {}), tensors)
        self.augmented_rows_ = int(state.get("augmented_rows_", 0))
        return self
