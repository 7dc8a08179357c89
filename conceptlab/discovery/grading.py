"""Grading discovered latents against ground-truth concepts (ShapesWorld and any labelled world).

For every live latent: the true concept it tracks best (highest AUROC of its activation against
each binary concept) and whether its name names that concept. For every true concept: the latent
that tracks it best and whether that AUROC clears a threshold.

Name matching: a concept ``"family:value"`` is named by its value word(s), compared after
lower-casing and turning ``-``/``_`` into spaces -- ``"red"`` names ``"color:red"``, ``"top left"``
(or ``"top-left"``) names ``"position:top-left"``. The full ``"family:value"`` string also counts.
The family alone (``"color"``) does not.

- **naming precision**: share of live latents whose name matches their best true concept.
- **recovery**: number of true concepts with at least one latent of AUROC ≥ ``threshold`` (0.9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["GradingReport", "auroc_matrix", "concept_words", "grade_latents", "name_matches", "normalise_name"]


def normalise_name(text: str) -> str:
    """Lower case, ``-``/``_`` to spaces, single spaces."""
    return " ".join(str(text).lower().replace("-", " ").replace("_", " ").split())


def concept_words(concept_name: str) -> str:
    """The value word(s) of ``"family:value"`` (``"position:top-left"`` -> ``"top left"``)."""
    return normalise_name(str(concept_name).split(":", 1)[-1])


def name_matches(name: str | None, concept_name: str) -> bool:
    """Whether a latent's name names the concept (see the module docstring)."""
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return False
    candidate = normalise_name(name)
    return candidate == concept_words(concept_name) or candidate == normalise_name(concept_name)


def auroc_matrix(scores: Any, labels: Any) -> np.ndarray:
    """(M, C) AUROC of each score column (N, M) against each binary label column (N, C).

    Rank-based (Mann-Whitney U with average ranks for ties), equal to
    ``sklearn.metrics.roc_auc_score`` column by column. A label column that is all 0 or all 1 has
    no AUROC: NaN.
    """
    from scipy.stats import rankdata

    S = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    Y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    if S.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"scores must be (N, M) and labels (N, C); got {S.shape} and {Y.shape}")
    if S.shape[0] != Y.shape[0]:
        raise ValueError(f"{S.shape[0]} score rows but {Y.shape[0]} label rows")
    if not np.isfinite(S).all():
        raise ValueError("scores contain NaN or infinite values")
    if Y.dtype != bool:
        if not np.isin(Y, (0, 1)).all():
            raise ValueError("labels must be binary (bool or 0/1)")
        Y = Y.astype(bool)
    ranks = rankdata(S, axis=0)  # (N, M), average ranks for ties
    Yf = Y.astype(np.float64)
    n_pos = Yf.sum(0)  # (C,)
    n_neg = Y.shape[0] - n_pos
    rank_sum = ranks.T @ Yf  # (M, C): sum of positives' ranks
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[:, (n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


@dataclass
class GradingReport:
    """Result of :func:`grade_latents`.

    ``latents``: one row per live latent -- ``latent``, ``name``, ``best_concept``, ``auroc``,
    ``name_matches``, ``named_concept`` (the concept its name names, if any),
    ``named_concept_auroc``, ``firing`` (share of the grading rows where it is non-zero) and
    ``mean_activation`` (its mean over those rows). ``concepts``: one row per true concept -- ``concept``,
    ``best_latent``, ``best_latent_name``, ``auroc``, ``recovered``, ``named_by`` (live latents
    whose name names it).
    """

    latents: pd.DataFrame
    concepts: pd.DataFrame
    n_latents: int
    n_live: int
    naming_precision: float
    recovery: int
    n_concepts: int
    threshold: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recovery_fraction(self) -> float:
        return self.recovery / self.n_concepts if self.n_concepts else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "n_latents": self.n_latents, "n_live": self.n_live, "naming_precision": self.naming_precision,
            "n_named_correctly": int(self.latents["name_matches"].sum()) if len(self.latents) else 0,
            "recovery": self.recovery, "n_concepts": self.n_concepts, "recovery_fraction": self.recovery_fraction,
            "threshold": self.threshold, "mean_best_auroc": float(self.latents["auroc"].mean()) if len(self.latents) else float("nan"),
            **self.extra,
        }

    def __str__(self) -> str:
        return (f"{self.n_live}/{self.n_latents} live latents; naming precision {self.naming_precision:.3f}; "
                f"recovered {self.recovery}/{self.n_concepts} concepts at AUROC ≥ {self.threshold}")


def grade_latents(
    latent_acts: Any,
    concepts: Any,
    concept_names: Sequence[str],
    names: Any = None,
    threshold: float = 0.9,
    live: Any = None,
) -> GradingReport:
    """Grade latents (N, M) against true binary concepts (N, C).

    Args:
        latent_acts: latent activations on the grading images (e.g. ``sae.encode(test_embeddings)``).
        concepts: (N, C) bool ground truth (``ShapesWorld.concepts``); C = 0 (a dataset without
            annotations) lists the live latents ungraded (AUROC and precision NaN, recovery 0).
        concept_names: C names ``"family:value"`` (``ShapesWorld.concept_names``).
        names: latent names -- a :class:`~conceptlab.discovery.LatentNames`, a list of M
            strings, or None (naming precision is then NaN).
        threshold: AUROC a latent needs for its concept to count as recovered.
        live: (M,) bool; by default the latents non-zero on at least one grading image.
    """
    Z = latent_acts.detach().cpu().numpy() if isinstance(latent_acts, torch.Tensor) else np.asarray(latent_acts, dtype=np.float64)
    Y = np.asarray(concepts)
    concept_names = [str(c) for c in concept_names]
    if Z.ndim != 2:
        raise ValueError(f"latent activations must be (N, M), got shape {Z.shape}")
    if Y.ndim != 2 or Y.shape[1] != len(concept_names):
        raise ValueError(f"concepts must be (N, {len(concept_names)}) to match concept_names, got shape {Y.shape}")
    if Z.shape[0] != Y.shape[0]:
        raise ValueError(f"{Z.shape[0]} activation rows but {Y.shape[0]} concept rows")
    n_latents = Z.shape[1]
    if names is None:
        latent_names: list[str | None] = [None] * n_latents
    elif hasattr(names, "names") and hasattr(names, "table"):
        latent_names = list(names.names)
    else:
        latent_names = [None if n is None else str(n) for n in names]
    if len(latent_names) != n_latents:
        raise ValueError(f"{len(latent_names)} names for {n_latents} latents")
    live_mask = (Z != 0).any(0) if live is None else np.asarray(live, dtype=bool)
    if live_mask.shape != (n_latents,):
        raise ValueError(f"live must be a boolean vector of length {n_latents}")
    auc = auroc_matrix(Z, Y)
    auc_search = np.where(np.isnan(auc), -np.inf, auc)
    live_index = np.flatnonzero(live_mask)
    fires = Z != 0
    n_firing = fires.sum(0)
    firing = n_firing / max(Z.shape[0], 1)
    mean_activation = np.where(n_firing > 0, np.where(fires, Z, 0).sum(0) / np.maximum(n_firing, 1), 0.0)
    rows = []
    for m in live_index:
        name = latent_names[m]
        if not concept_names:  # a dataset without annotations: the latents are listed, not graded
            rows.append({"latent": int(m), "name": name, "best_concept": None, "auroc": float("nan"), "name_matches": False,
                         "named_concept": None, "named_concept_auroc": float("nan"),
                         "firing": float(firing[m]), "mean_activation": float(mean_activation[m])})
            continue
        best = int(np.argmax(auc_search[m]))
        named = [c for c, cname in enumerate(concept_names) if name_matches(name, cname)]
        rows.append({
            "latent": int(m), "name": name, "best_concept": concept_names[best], "auroc": float(auc[m, best]),
            "name_matches": bool(name_matches(name, concept_names[best])),
            "named_concept": concept_names[named[0]] if named else None,
            "named_concept_auroc": float(auc[m, named[0]]) if named else float("nan"),
            "firing": float(firing[m]), "mean_activation": float(mean_activation[m]),
        })
    latents = pd.DataFrame(rows, columns=["latent", "name", "best_concept", "auroc", "name_matches", "named_concept",
                                          "named_concept_auroc", "firing", "mean_activation"])
    concept_rows = []
    for c, cname in enumerate(concept_names):
        if len(live_index):
            column = auc_search[live_index, c]
            j = int(np.argmax(column))
            best_latent, best_auc = int(live_index[j]), float(auc[live_index[j], c])
        else:
            best_latent, best_auc = None, float("nan")
        concept_rows.append({
            "concept": cname, "best_latent": best_latent,
            "best_latent_name": latent_names[best_latent] if best_latent is not None else None,
            "auroc": best_auc, "recovered": bool(best_auc >= threshold) if np.isfinite(best_auc) else False,
            "named_by": [int(m) for m in live_index if name_matches(latent_names[m], cname)],
        })
    concepts_frame = pd.DataFrame(concept_rows, columns=["concept", "best_latent", "best_latent_name", "auroc", "recovered", "named_by"])
    graded = names is not None and len(latents) and concept_names
    precision = float(latents["name_matches"].mean()) if graded else float("nan")
    return GradingReport(
        latents=latents, concepts=concepts_frame, n_latents=n_latents, n_live=int(live_mask.sum()),
        naming_precision=precision, recovery=int(concepts_frame["recovered"].sum()), n_concepts=len(concept_names),
        threshold=float(threshold),
    )
