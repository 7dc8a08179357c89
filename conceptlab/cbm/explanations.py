"""Explanations with honest scales: contributions against a baseline, "why not class B", the images
a model gets wrong, and intervention presets in the method's own units.

:meth:`ConceptBottleneckModel.explain` gives score × weight, which sums to a class's logit. That is
the whole story for a signed head (PCBM: a margin times a signed weight argues for or against), but
not for a head whose weights are all positive (LaBo's 100·softmax(A) over positive dot products):
every contribution is large and positive, and only the part above what the other classes get
moves the softmax. :func:`relative_contributions` therefore reads contributions against a
baseline, one per method by default (``contribution_baseline``):

- ``"zero"``: score × W[k] (the plain explanation; sums to logit_k);
- ``"mean"``: score × (W[k] − mean over classes of W) (sums to logit_k − mean logit, which is all the
  softmax sees);
- a class B: score × (W[k] − W[B]) (sums to logit_k − logit_B: "why k and not B", :func:`why_not`).

Each row also gets ``share``: its contribution over the sum of the absolute contributions, so a
chart can label bars in percent whatever the method's scale::

    frame = relative_contributions(model, x)            # the method's own baseline
    why_not(model, x, "jade disc")                       # predicted vs jade disc, per concept
    intervention_presets(model, train_embeddings, x)     # present / absent / as predicted, per concept
    misclassified(model, embeddings, labels)             # the wrong ones, most confident first
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["BASELINES", "intervention_presets", "misclassified", "relative_contributions", "why_not"]

BASELINES = ("zero", "mean")


def _one_row(model, embeddings: Any) -> np.ndarray:
    x = np.asarray(embeddings.detach().cpu().numpy() if hasattr(embeddings, "detach") else embeddings, dtype=np.float32)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.shape[0] != 1:
        raise ValueError(f"explain one image at a time: got {x.shape[0]} rows")
    return x


def relative_contributions(model, embeddings: Any, class_: int | str | None = None, against: int | str | None = None) -> pd.DataFrame:
    """Per-concept contributions to one image's class ``class_`` (default: the predicted one),
    read against ``against``: ``"zero"``, ``"mean"`` (the average class) or a class name / index;
    None: the method's ``contribution_baseline``.

    Returns one row per concept with a non-zero relative weight, sorted by |contribution|, then
    ``(intercept)`` and (with a residual) ``(residual)`` rows: ``concept``, ``score``, ``weight``
    (W[k] minus the baseline's), ``contribution``, ``share`` (contribution / Σ|contribution|).
    Contributions sum to ``attrs["total"]`` = logit_k − baseline logit. ``attrs`` also holds
    ``class``, ``predicted``, ``against`` (``"zero"``, ``"mean"`` or a class name), ``logit``,
    ``baseline_logit``, ``units`` (the method's score units)."""
    model._check_fitted()
    x = _one_row(model, embeddings)
    against = getattr(model, "contribution_baseline", "zero") if against is None else against
    scores = model.transform(x)[0].astype(np.float64)
    logits = model.decision_function(x)[0].astype(np.float64)
    W, b = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    residual = logits - (W @ scores + b)  # the residual layer's part (0 without one)
    k = int(np.argmax(logits)) if class_ is None else model._class_index(class_)
    if isinstance(against, str) and against in BASELINES:
        base_w = np.zeros_like(W[k]) if against == "zero" else W.mean(0)
        base_b = 0.0 if against == "zero" else float(b.mean())
        base_r = 0.0 if against == "zero" else float(residual.mean())
        base_logit = 0.0 if against == "zero" else float(logits.mean())
        against_name = against
    else:
        j = model._class_index(against)
        base_w, base_b, base_r, base_logit = W[j], float(b[j]), float(residual[j]), float(logits[j])
        against_name = model.class_names_[j]
    weight = W[k] - base_w
    contribution = scores * weight
    order = np.argsort(-np.abs(contribution), kind="stable")
    order = order[np.abs(weight[order]) > 0]
    rows = {
        "concept": [model.concept_names_[j] for j in order] + ["(intercept)"],
        "score": list(scores[order]) + [np.nan],
        "weight": list(weight[order]) + [np.nan],
        "contribution": list(contribution[order]) + [float(b[k]) - base_b],
    }
    if model.has_residual:
        rows["concept"].append("(residual)")
        rows["score"].append(np.nan)
        rows["weight"].append(np.nan)
        rows["contribution"].append(float(residual[k]) - base_r)
    frame = pd.DataFrame(rows)
    total_abs = float(frame["contribution"].abs().sum())
    frame["share"] = frame["contribution"] / total_abs if total_abs > 0 else 0.0
    frame.attrs.update({
        "class": model.class_names_[k], "predicted": model.class_names_[int(np.argmax(logits))], "against": against_name,
        "logit": float(logits[k]), "baseline_logit": base_logit, "total": float(logits[k]) - base_logit,
        "units": getattr(model, "score_units", "concept score"), "method": type(model).display_name,
    })
    return frame


def why_not(model, embeddings: Any, other: int | str, class_: int | str | None = None) -> pd.DataFrame:
    """Why ``class_`` (default: the predicted class) and not ``other``: each concept's score ×
    (W[class_] − W[other]), summing to logit[class_] − logit[other]. Positive rows favour
    ``class_``, negative rows favour ``other``."""
    model._check_fitted()
    x = _one_row(model, embeddings)
    k = int(np.argmax(model.decision_function(x)[0])) if class_ is None else model._class_index(class_)
    if model._class_index(other) == k:
        raise ValueError(f"“{model.class_names_[k]}” against itself: choose another class")
    return relative_contributions(model, x, class_=k, against=other)


def intervention_presets(model, train_embeddings: Any, embeddings: Any, quantiles: tuple[float, float] = (0.05, 0.95)) -> pd.DataFrame:
    """What "absent", "present" and "as predicted" mean for each concept, in the model's own score
    units: the low and high ``quantiles`` of the concept's scores on the training images (Koh et
    al.'s 5th / 95th percentiles by default) and the image's own score.

    Returns a frame indexed by concept with ``absent``, ``present``, ``predicted``, ``low`` and
    ``high`` (the training range, for slider bounds)."""
    low_q, high_q = (float(q) for q in quantiles)
    if not 0.0 <= low_q < high_q <= 1.0:
        raise ValueError(f"quantiles must be two numbers 0 ≤ low < high ≤ 1, got {quantiles}")
    train = model.transform(train_embeddings).astype(np.float64)
    if len(train) == 0:
        raise ValueError("no training images to take the quantiles from")
    current = model.transform(_one_row(model, embeddings))[0].astype(np.float64)
    absent, present = np.quantile(train, [low_q, high_q], axis=0)
    return pd.DataFrame(
        {"absent": absent, "present": present, "predicted": current, "low": train.min(0), "high": train.max(0)},
        index=pd.Index(list(model.concept_names_), name="concept"),
    )


def misclassified(model, embeddings: Any, labels: Any) -> pd.DataFrame:
    """The images the model gets wrong, the most confidently wrong first: ``image`` (row index),
    ``true``, ``predicted``, ``confidence`` (probability of the predicted class), ``true_probability``."""
    model._check_fitted()
    y = model._resolve_classes(labels)[0].numpy()
    proba = model.predict_proba(embeddings)
    if len(proba) != len(y):
        raise ValueError(f"{len(proba)} embeddings but {len(y)} labels")
    predicted = proba.argmax(1)
    wrong = np.flatnonzero(predicted != y)
    names = np.asarray(model.class_names_, dtype=object)
    frame = pd.DataFrame({
        "image": wrong, "true": names[y[wrong]], "predicted": names[predicted[wrong]],
        "confidence": proba[wrong, predicted[wrong]], "true_probability": proba[wrong, y[wrong]],
    })
    return frame.sort_values(["confidence", "image"], ascending=[False, True], kind="stable").reset_index(drop=True)
