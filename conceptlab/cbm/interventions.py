"""Test-time interventions with true concept values, and the intervention curve per policy.

A person who knows some of an image's concepts tells the model; the model replaces its own
prediction of those concepts by the truth and predicts again (Koh et al. 2020). What "the truth"
is in the model's units depends on its concept layer:

- a model whose concept layer outputs calibrated probabilities (a sequential CBM, e.g.
  :class:`~conceptlab.cbm.methods.sequential.SequentialPCBM`): 1 or 0 (0.95 / 0.05 for a concept the
  calibration had no labels for);
- a model on raw scores (PCBM's margins, dot products): Koh's 95th / 5th training percentile of
  the concept's score, with a :class:`~conceptlab.cbm.calibration.ConceptCalibrator` fitted on the
  model's training scores (:func:`fit_calibrator`) for the probabilities the policies read.

Which concepts first (``policy``):

- ``"random"``: a random order per image (averaged over ``n_random`` draws);
- ``"weight"``: the head's weight order, largest column L1 norm of W first (the same for every image);
- ``"uncertainty"``: per image, the concepts whose predicted probability is closest to 0.5 first
  (ties by weight).

``mode="replace"`` sets every chosen concept to its true value; ``mode="correct"`` only those whose
predicted probability is on the wrong side of 0.5 (a person confirming the rest leaves them as
they are). Accuracies come with a bootstrap interval over the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from conceptlab.cbm.calibration import CalibratedLayer, ConceptCalibrator, align_concept_labels
from conceptlab.metrics import DEFAULT_LEVEL, bootstrap_mean_ci

__all__ = [
    "MODES",
    "POLICIES",
    "InterventionSpace",
    "fit_calibrator",
    "intervene_with_truth",
    "intervention_curves",
    "intervention_order",
    "intervention_space",
    "intervention_summary",
]

POLICIES = ("random", "weight", "uncertainty")
MODES = ("replace", "correct")


@dataclass(frozen=True)
class InterventionSpace:
    """A model's concepts on some images, in the units an intervention needs.

    ``scores`` (N, C): what the head reads; ``probabilities`` (N, C): the predicted concept
    probabilities (the policies and ``mode="correct"`` read them); ``present`` / ``absent`` (C,):
    the value a true / false concept takes in score space; ``calibrated`` (C,): whether the
    probabilities come from labels; ``kind``: ``"probability"`` (the head reads probabilities) or
    ``"score"`` (raw scores with percentile true values).
    """

    scores: np.ndarray
    probabilities: np.ndarray
    present: np.ndarray
    absent: np.ndarray
    calibrated: np.ndarray
    kind: str


def _embeddings(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def fit_calibrator(model, embeddings: Any, concept_labels: Any = None, percentiles: tuple[float, float] = (5.0, 95.0)) -> ConceptCalibrator:
    """A :class:`ConceptCalibrator` on a fitted model's scores of its training ``embeddings`` and
    their ``concept_labels`` (None: Koh's percentiles only, no calibration)."""
    model._check_fitted()
    scores = model.transform(embeddings)
    truth = None if concept_labels is None else align_concept_labels(concept_labels, model.concept_names_, len(scores))
    return ConceptCalibrator(percentiles=percentiles).fit(scores, truth)


def intervention_space(model, embeddings: Any, calibrator: ConceptCalibrator | None = None) -> InterventionSpace:
    """The model's scores on ``embeddings`` and what true / false mean for them (module docstring).

    A model with a :class:`~conceptlab.cbm.calibration.CalibratedLayer` needs nothing more; a model on
    raw scores needs ``calibrator`` (:func:`fit_calibrator` on its training data)."""
    model._check_fitted()
    scores = model.transform(embeddings).astype(np.float64)
    layer = getattr(model, "concept_layer_", None)
    if isinstance(layer, CalibratedLayer):
        present, absent = layer.calibrator_.true_probabilities()
        return InterventionSpace(scores, scores, present, absent, layer.calibrator_.calibrated_.copy(), "probability")
    if calibrator is None:
        raise ValueError(
            f"{type(model).__name__} predicts from raw concept scores: pass calibrator=fit_calibrator(model, train_embeddings, "
            "train_concept_labels) so that true values (Koh's percentiles) and probabilities are known"
        )
    if len(calibrator.a_) != scores.shape[1]:
        raise ValueError(f"the calibrator has {len(calibrator.a_)} concepts, the model {scores.shape[1]}")
    present, absent = calibrator.true_scores()
    return InterventionSpace(scores, calibrator.predict_proba(scores), present, absent, calibrator.calibrated_.copy(), "score")


def intervention_order(model, space: InterventionSpace, policy: str, known: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """(N, C) rank of each concept for each image under ``policy`` (0 = first); concepts that are
    not ``known`` (C,) bool get rank C (never intervened on)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    N, C = space.scores.shape
    known = np.ones(C, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    importance = np.abs(model.coef_).sum(0)
    if policy == "weight":
        order = np.tile(np.argsort(-importance, kind="stable"), (N, 1))
    elif policy == "uncertainty":
        closeness = np.abs(space.probabilities - 0.5)
        # lexicographic: closest to 0.5 first, then the larger weight
        order = np.lexsort((np.tile(-importance, (N, 1)), closeness), axis=1)
    else:
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((N, C)), axis=1)
    # unknown concepts go last, the known keep their relative order
    order = np.take_along_axis(order, np.argsort(~known[order], axis=1, kind="stable"), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(C), (N, C)).copy(), axis=1)
    return np.where(known[None, :], rank, C)


def _true_matrix(space: InterventionSpace, truth: np.ndarray) -> np.ndarray:
    return np.where(truth > 0.5, space.present[None, :], space.absent[None, :])


def intervene_with_truth(
    model,
    embeddings: Any,
    concept_labels: Any,
    k: int,
    policy: str = "uncertainty",
    calibrator: ConceptCalibrator | None = None,
    mode: str = "replace",
    seed: int = 0,
) -> dict[str, Any]:
    """Intervene on the first ``k`` concepts of ``policy`` of each image with their true values.

    Returns ``predictions`` (N,), ``logits`` (N, K), ``scores`` (N, C) after the intervention and
    ``intervened`` (N, C) bool (which concepts were set)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    X = _embeddings(embeddings)
    space = intervention_space(model, X, calibrator)
    truth = align_concept_labels(concept_labels, model.concept_names_, len(X))
    known_cells = ~np.isnan(truth)
    rank = intervention_order(model, space, policy, known_cells.any(0), seed)
    chosen = (rank < int(k)) & known_cells
    if mode == "correct":
        chosen &= (space.probabilities > 0.5) != (truth > 0.5)
    edited = np.where(chosen, _true_matrix(space, np.nan_to_num(truth)), space.scores).astype(np.float32)
    logits = model.decision_from_scores(edited, X if model.has_residual else None)
    return {"predictions": logits.argmax(1), "logits": logits, "scores": edited, "intervened": chosen}


def intervention_curves(
    model,
    embeddings: Any,
    labels: Any,
    concept_labels: Any,
    *,
    calibrator: ConceptCalibrator | None = None,
    policies: Sequence[str] = POLICIES,
    ks: Sequence[int] | None = None,
    mode: str = "replace",
    n_random: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = DEFAULT_LEVEL,
) -> pd.DataFrame:
    """Accuracy as k = 0, 1, ... concepts per image take their true values, for each policy.

    Args:
        model: a fitted CBM.
        embeddings, labels: the images to intervene on.
        concept_labels: their true concepts (DataFrame with concept-named columns, or (N, C) in
            the model's concept order); concepts without a label are never intervened on.
        calibrator: for a model on raw scores, :func:`fit_calibrator` on its training data.
        policies: any of :data:`POLICIES`.
        ks: default 0 .. the number of concepts with labels.
        mode: ``"replace"`` or ``"correct"`` (module docstring).
        n_random: random orders averaged for ``"random"``.
        n_boot, level, seed: the bootstrap interval over images (and the random orders' seed).

    Returns a long DataFrame: ``policy``, ``k``, ``accuracy``, ``low``, ``high`` (the interval),
    ``sd`` (over the random orders; 0 for the deterministic policies), ``intervened`` (mean
    concepts set per image). ``attrs`` holds ``kind`` (probability / score space) and ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {POLICIES}")
    X = _embeddings(embeddings)
    y = model._resolve_classes(labels)[0].numpy()
    space = intervention_space(model, X, calibrator)
    truth = align_concept_labels(concept_labels, model.concept_names_, len(X))
    known_cells = ~np.isnan(truth)
    known = known_cells.any(0)
    if not known.any():
        raise ValueError("no concept of the model has a label: nothing to intervene on")
    n_known = int(known.sum())
    ks = list(range(n_known + 1)) if ks is None else sorted({int(k) for k in ks})
    if ks[0] < 0 or ks[-1] > n_known:
        raise ValueError(f"ks must lie in [0, {n_known}]")
    true_scores = _true_matrix(space, np.nan_to_num(truth))
    wrong = (space.probabilities > 0.5) != (truth > 0.5)
    residual = X if model.has_residual else None
    rows = []
    for policy in policies:
        draws = range(int(n_random)) if policy == "random" else range(1)
        correct = np.zeros((len(draws), len(ks), len(X)))
        counts = np.zeros((len(draws), len(ks)))
        for d in draws:
            rank = intervention_order(model, space, policy, known, seed + d)
            for i, k in enumerate(ks):
                chosen = (rank < k) & known_cells
                if mode == "correct":
                    chosen &= wrong
                edited = np.where(chosen, true_scores, space.scores).astype(np.float32)
                correct[d, i] = model.decision_from_scores(edited, residual).argmax(1) == y
                counts[d, i] = chosen.sum(1).mean()
        for i, k in enumerate(ks):
            estimate = bootstrap_mean_ci(correct[:, i].mean(0), n_boot=n_boot, level=level, seed=seed)
            per_draw = correct[:, i].mean(1)
            rows.append({
                "policy": policy, "k": k, "accuracy": estimate.value, "low": estimate.low, "high": estimate.high,
                "sd": float(per_draw.std(ddof=1)) if len(per_draw) > 1 else 0.0, "intervened": float(counts[:, i].mean()),
            })
    frame = pd.DataFrame(rows)
    frame.attrs.update({"kind": space.kind, "mode": mode, "n": int(len(X)), "calibrated": int(space.calibrated.sum()), "concepts": n_known})
    return frame


def intervention_summary(curves: pd.DataFrame, at: Sequence[int] = (0, 5), target: float | None = None) -> pd.DataFrame:
    """One row per policy: accuracy at each k of ``at`` and at all concepts, the largest drop
    between consecutive k (0 when the curve never falls), the mean accuracy over k (area under
    the curve / number of steps) and, with ``target``, the smallest k whose accuracy reaches it."""
    rows = {}
    for policy, group in curves.groupby("policy", sort=False):
        group = group.sort_values("k")
        acc = group.set_index("k")["accuracy"]
        row = {f"k={k}": float(acc.get(k, np.nan)) for k in at}
        row["all"] = float(acc.iloc[-1])
        row["largest drop"] = float(max(0.0, -np.diff(acc.to_numpy()).min())) if len(acc) > 1 else 0.0
        row["mean over k"] = float(acc.mean())
        if target is not None:
            reached = acc[acc >= target]
            row[f"k to reach {target:g}"] = int(reached.index[0]) if len(reached) else None
        rows[policy] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "policy"
    return out
