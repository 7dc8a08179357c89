"""Concept activation vectors: a linear SVM per concept, PCBM's protocol.

PCBM (``concepts/concept_utils.py``): for each concept, the first ``n_samples`` positive and
negative activations train ``sklearn.svm.SVC(kernel="linear", C=C)``, the rest validate it; the
CAV is ``svm.coef_`` and its bias ``svm.intercept_``; train/val accuracy and margin statistics of
the training margins are kept. PCBM writes one bank per C and leaves the choice to the user; here
every C of the sweep is fitted and the one with the best validation accuracy is kept (ties go to
the earliest C in the sweep), with the whole sweep recorded in the concept's metrics.

Where we depart from the code: :func:`cavs_from_labels` samples each concept's rows with one numpy
``default_rng(seed)`` serving all concepts in order; PCBM's ``data/concept_loaders.py`` draws them
with its own loaders and the legacy global ``np.random`` state, so the same seed picks different
rows (the protocol -- 2·n_samples per side, without replacement unless too few -- is the same).
The rows drawn are kept in each concept's provenance, so a run can be replayed exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conceptlab.concepts.bank import ConceptBank, library_provenance
from conceptlab.concepts.concept import Concept

__all__ = ["learn_cavs", "cavs_from_labels", "margin_statistics", "DEFAULT_C"]

#: the C sweep of PCBM's README examples
DEFAULT_C = (0.001, 0.01, 0.1, 1.0, 10.0)


def _as_matrix(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{what} must be an (n, d) matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return matrix


def margin_statistics(margins: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """PCBM's ``margin_info`` of a CAV's signed margins on its training set."""
    margins = np.asarray(margins, dtype=np.float64).reshape(-1)
    positive, negative = margins[margins > 0], margins[margins < 0]

    def stat(fn, values):
        return float(fn(values)) if values.size else float("nan")

    return {
        "max": float(margins.max()),
        "min": float(margins.min()),
        "pos_mean": stat(np.mean, positive),
        "pos_std": stat(np.std, positive),
        "neg_mean": stat(np.mean, negative),
        "neg_std": stat(np.std, negative),
        "q_90": float(np.quantile(margins, 0.9)),
        "q_10": float(np.quantile(margins, 0.1)),
        "pos_count": int(np.sum(labels == 1)),
        "neg_count": int(np.sum(labels == 0)),
    }


def _fit_svm(X_train, y_train, C: float, solver: str):
    from sklearn.svm import SVC, LinearSVC

    if solver == "svc":
        model = SVC(C=C, kernel="linear")
    elif solver == "linear_svc":
        model = LinearSVC(C=C, max_iter=20000)
    else:
        raise ValueError(f"solver must be 'svc' (PCBM) or 'linear_svc', got {solver!r}")
    model.fit(X_train, y_train)
    return model


def learn_cavs(
    pos_neg: Mapping[str, tuple[Any, Any]],
    C: Sequence[float] = DEFAULT_C,
    n_samples: int = 50,
    seed: int = 1,
    space: str = "unspecified",
    solver: str = "svc",
    class_links: Mapping[str, Sequence[str]] | None = None,
) -> ConceptBank:
    """Learn one CAV per concept from positive and negative activations.

    Args:
        pos_neg: concept name -> (positive activations (P, d), negative activations (Q, d)).
            The first ``n_samples`` rows of each side train the SVM, the rest validate it; each
            side needs more than ``n_samples`` rows (PCBM draws 2·n_samples).
        C: the SVM regularisation sweep; the C with the best validation accuracy is kept.
        n_samples: training examples per side.
        seed: recorded in provenance (sampling happens in :func:`cavs_from_labels`).
        space: the space the activations live in (e.g. ``image_embedding_space(spec)``).
        solver: ``"svc"`` (``SVC(kernel="linear")``, as PCBM) or ``"linear_svc"``.

    Returns a bank whose concepts carry ``metrics``: chosen ``C``, ``train_acc``, ``val_acc``,
    PCBM's ``margin`` statistics and the full ``sweep``.
    """
    if not pos_neg:
        raise ValueError("learn_cavs needs at least one concept")
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    Cs = [float(c) for c in C]
    if not Cs or any(c <= 0 for c in Cs):
        raise ValueError(f"C must be a non-empty list of positive numbers, got {C!r}")
    concepts, dim = [], None
    for name, pair in pos_neg.items():
        try:
            pos_raw, neg_raw = pair
        except (TypeError, ValueError):
            raise ValueError(f"pos_neg[{name!r}] must be a pair (positives, negatives)") from None
        pos = _as_matrix(pos_raw, f"positives of {name!r}")
        neg = _as_matrix(neg_raw, f"negatives of {name!r}")
        if pos.shape[1] != neg.shape[1] or (dim is not None and pos.shape[1] != dim):
            raise ValueError(f"activations of {name!r} have dimension {pos.shape[1]}/{neg.shape[1]}, expected {dim or pos.shape[1]}")
        dim = pos.shape[1]
        if len(pos) <= n_samples or len(neg) <= n_samples:
            raise ValueError(
                f"concept {name!r} has {len(pos)} positives and {len(neg)} negatives; with n_samples={n_samples} "
                f"each side needs more than {n_samples} (the first {n_samples} train, the rest validate)"
            )
        X_train = np.concatenate([pos[:n_samples], neg[:n_samples]])
        y_train = np.concatenate([np.ones(n_samples), np.zeros(n_samples)])
        X_val = np.concatenate([pos[n_samples:], neg[n_samples:]])
        y_val = np.concatenate([np.ones(len(pos) - n_samples), np.zeros(len(neg) - n_samples)])
        sweep, best = [], None
        for c in Cs:
            svm = _fit_svm(X_train, y_train, c, solver)
            entry = {"C": c, "train_acc": float(svm.score(X_train, y_train)), "val_acc": float(svm.score(X_val, y_val))}
            sweep.append(entry)
            if best is None or entry["val_acc"] > best[0]["val_acc"]:
                best = (entry, svm)
        entry, svm = best
        coef = np.asarray(svm.coef_, dtype=np.float64).reshape(-1)
        intercept = float(np.asarray(svm.intercept_).reshape(-1)[0])
        train_margins = (X_train @ coef + intercept) / np.linalg.norm(coef)
        concepts.append(
            Concept(
                name=name,
                vector=coef.astype(np.float32),
                space=space,
                bias=intercept,
                class_links=list((class_links or {}).get(name, [])),
                provenance={
                    "kind": "cav",
                    "solver": "sklearn.svm.SVC(kernel='linear')" if solver == "svc" else "sklearn.svm.LinearSVC",
                    "C": entry["C"],
                    "n_samples": n_samples,
                    "seed": seed,
                    "n_pos": len(pos),
                    "n_neg": len(neg),
                },
                metrics={
                    "C": entry["C"],
                    "train_acc": entry["train_acc"],
                    "val_acc": entry["val_acc"],
                    "margin": margin_statistics(train_margins, y_train),
                    "sweep": sweep,
                },
            )
        )
    return ConceptBank(concepts, provenance=library_provenance(seed=seed, builder="learn_cavs", C=Cs, n_samples=n_samples))


def cavs_from_labels(
    acts: Any,
    concept_matrix: Any,
    names: Sequence[str],
    n_samples: int = 50,
    seed: int = 1,
    C: Sequence[float] = DEFAULT_C,
    space: str = "unspecified",
    solver: str = "svc",
) -> ConceptBank:
    """CAVs from activations and a boolean ground-truth matrix (N, C), PCBM's sampling.

    For each concept, ``2·n_samples`` positives (rows where the concept is true) and as many
    negatives (rows where it is false) are drawn without replacement, or with replacement when a
    side has too few rows (PCBM's fallback; recorded in provenance). One generator seeded by
    ``seed`` serves all concepts in order. The sampled row indices are kept in provenance.
    """
    X = _as_matrix(acts, "acts")
    truth = np.asarray(concept_matrix.detach().cpu() if hasattr(concept_matrix, "detach") else concept_matrix)
    if truth.ndim != 2 or truth.shape[0] != X.shape[0]:
        raise ValueError(f"concept_matrix must be (N, C) with N={X.shape[0]} rows, got shape {truth.shape}")
    names = list(names)
    if len(names) != truth.shape[1]:
        raise ValueError(f"{len(names)} names for {truth.shape[1]} concept columns")
    truth = truth.astype(bool)
    rng = np.random.default_rng(seed)
    pos_neg, rows = {}, {}
    for j, name in enumerate(names):
        pos_idx, neg_idx = np.flatnonzero(truth[:, j]), np.flatnonzero(~truth[:, j])
        if len(pos_idx) == 0 or len(neg_idx) == 0:
            raise ValueError(f"concept {name!r} has {len(pos_idx)} positive and {len(neg_idx)} negative rows; a CAV needs both")
        want = 2 * n_samples
        pos_pick = rng.choice(pos_idx, size=want, replace=len(pos_idx) < want)
        neg_pick = rng.choice(neg_idx, size=want, replace=len(neg_idx) < want)
        pos_neg[name] = (X[pos_pick], X[neg_pick])
        rows[name] = (pos_pick, neg_pick, len(pos_idx) < want or len(neg_idx) < want)
    bank = learn_cavs(pos_neg, C=C, n_samples=n_samples, seed=seed, space=space, solver=solver)
    concepts = []
    for concept in bank:
        pos_pick, neg_pick, replaced = rows[concept.name]
        concepts.append(
            Concept(
                name=concept.name,
                vector=concept.vector,
                space=concept.space,
                bias=concept.bias,
                provenance={**concept.provenance, "with_replacement": replaced, "positive_rows": pos_pick, "negative_rows": neg_pick},
                metrics=concept.metrics,
            )
        )
    return ConceptBank(concepts, provenance={**bank.provenance, "builder": "cavs_from_labels"})
