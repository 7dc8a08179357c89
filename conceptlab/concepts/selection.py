"""LaBo's concept selection: the code's MI score mixed with a coverage term, greedy, per class.

Faithful to ``YueYANG1996/LaBo`` ``models/select_concept/select_algo.py``:

- Sim(c, y) = mean over training images x of class y of c·x (raw, unnormalised features by
  default: ``use_img_norm = use_txt_norm = False``) -- ``clip_score``;
- p(c, y) = Sim(c, y) / (Σ_c' Sim(c', y) · K), over **all** candidates; p(c) = Σ_y p(c, y);
  mi(c) = Σ_y p(c, y) · log(p(c, y) / (p(c)/K)) -- ``mi_score`` (the paper's discriminability
  is the entropy of p(y|c); the code weights it by p(c) and shifts it by log K; we follow the code);
- for each class y, among the candidates linked to y only (``concept2cls == y``), greedily pick
  k = ceil(num_concepts / K) concepts maximising

      F(S) = w₁ · Σ_{c∈S} scale · mi(c) + w₂ · Coverage(S),   w₁ = 1 (0 when scale = 0);

  a class with ≤ k candidates keeps them all, in candidate order; the greedy step takes the
  largest gain, ties to the lowest index (apricot's ``NaiveGreedy``: ``lexsort((arange, -gains))``).

Coverage, ``coverage=``:

- ``"facility"`` (default): facility location Σ_{c∈C_y} max(0, max_{s∈S} cos(c, s)) over the
  class's candidates -- what the paper describes and what LaBo asks apricot for with
  ``FacilityLocationSelection(metric='cosine')``;
- ``"labo-code"``: what the released code actually computes. Wrapped in ``MixtureSelection`` (whose
  ``metric`` defaults to ``'ignore'``), facility location is told its input is ``precomputed``,
  so it reads the augmented matrix Z = [scale·mi, features] (n × (1 + d)) as similarities:
  Coverage(S) = Σ_j max(0, max_{s∈S} Z[s, j]), a sum over feature *columns*. The patched apricot
  (LaBo#1) is needed only because Z holds negative values.

Implemented natively (numpy, incremental gains, O(k·n·m) per class); :func:`greedy_reference`
is the textbook greedy that re-evaluates F from scratch, for tests and benchmarks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "SelectionResult",
    "clip_scores",
    "mi_scores",
    "coverage_matrix",
    "greedy_select",
    "greedy_reference",
    "labo_objective",
    "select_from_bank",
    "submodular_select",
    "COVERAGES",
]

COVERAGES = ("facility", "labo-code")


def _np(value: Any, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def clip_scores(image_embeddings: Any, labels: Any, concept_vectors: Any, n_classes: int | None = None) -> np.ndarray:
    """Sim(c, y): mean dot product of each concept with the images of each class, (M, K).

    A class without images gets NaN (LaBo would divide by zero)."""
    X, T = _np(image_embeddings), _np(concept_vectors)
    y = _np(labels, np.int64).reshape(-1)
    if X.ndim != 2 or T.ndim != 2 or X.shape[1] != T.shape[1]:
        raise ValueError(f"image embeddings {X.shape} and concept vectors {T.shape} must be (N, d) and (M, d)")
    if len(y) != len(X):
        raise ValueError(f"{len(X)} image embeddings but {len(y)} labels")
    K = int(n_classes) if n_classes is not None else int(y.max()) + 1
    counts = np.bincount(y, minlength=K).astype(np.float64)
    sums = np.zeros((K, X.shape[1]))
    np.add.at(sums, y, X)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    return T @ means.T  # mean_x (c·x) = c·mean(x)


def mi_scores(sim: Any, shift: bool = True) -> tuple[np.ndarray, float]:
    """LaBo's ``mi_score`` from Sim (M, K): returns (mi (M,), the shift applied).

    p(c, y) must be a distribution, so Sim must be positive; LaBo's CLIP ViT-L/14 dot products are.
    When some Sim ≤ 0 (small or untrained encoders) and ``shift`` is True, every Sim is shifted by
    the same amount so the smallest becomes 1e-6 of the range (a warning says so); with
    ``shift=False`` that raises.
    """
    S = _np(sim)
    if S.ndim != 2 or not np.isfinite(S).all():
        raise ValueError("Sim must be a finite (M, K) matrix (does every class have training images?)")
    offset = 0.0
    if S.min() <= 0:
        if not shift:
            raise ValueError("LaBo's MI needs positive concept-class similarities; some are <= 0")
        span = float(S.max() - S.min()) or 1.0
        offset = float(-S.min() + 1e-6 * span)
        warnings.warn(f"concept-class similarities reach {S.min():.4g} <= 0; shifted by {offset:.4g} so LaBo's p(c, y) is a distribution", stacklevel=2)
        S = S + offset
    K = S.shape[1]
    p = S / (S.sum(0, keepdims=True) * K)
    pc = p.sum(1, keepdims=True)
    mi = (p * np.log(p / (pc / K))).sum(1)
    return mi, offset


def coverage_matrix(features: Any, mi: Any, scale: float, coverage: str = "facility") -> np.ndarray:
    """The matrix G whose column maxima make Coverage(S) = Σ_j max(0, max_{s∈S} G[s, j]).

    ``"facility"``: cosine similarities among the candidates (n, n); ``"labo-code"``: the augmented
    [scale·mi, features] (n, 1 + d).
    """
    F = _np(features)
    if coverage == "facility":
        unit = F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)
        return unit @ unit.T
    if coverage == "labo-code":
        return np.hstack([scale * _np(mi).reshape(-1, 1), F])
    raise ValueError(f"coverage must be one of {COVERAGES}, got {coverage!r}")


def labo_objective(mi: Any, G: Any, scale: float, coverage_weight: float) -> Callable[[Sequence[int]], float]:
    """F(S) = w₁·Σ_{s∈S} scale·mi(s) + w₂·Σ_j max(0, max_{s∈S} G[s, j]), evaluated from scratch."""
    mi, G = _np(mi), _np(G)
    w1 = 0.0 if scale == 0 else 1.0

    def F(subset: Sequence[int]) -> float:
        idx = list(subset)
        if not idx:
            return 0.0
        modular = w1 * float(np.sum(scale * mi[idx]))
        cover = float(np.maximum(G[idx].max(0), 0.0).sum())
        return modular + coverage_weight * cover

    return F


def _first_max(gain: np.ndarray, rtol: float) -> int:
    """Index of the largest gain; gains within ``rtol`` of it (relative to the largest magnitude)
    count as ties and go to the lowest index."""
    finite = gain[np.isfinite(gain)]
    top = float(finite.max())
    tol = rtol * max(float(np.abs(finite).max()), 1e-300)
    return int(np.flatnonzero(gain >= top - tol)[0])


def greedy_reference(objective: Callable[[Sequence[int]], float], n: int, k: int, rtol: float = 1e-9) -> tuple[list[int], list[float]]:
    """The textbook greedy: k times, add the item of largest F(S ∪ {i}) − F(S), evaluating F from
    scratch for every candidate (ties, within ``rtol``: lowest i)."""
    chosen: list[int] = []
    gains: list[float] = []
    current = objective(chosen)
    for _ in range(min(k, n)):
        gain = np.full(n, -np.inf)
        for i in range(n):
            if i not in chosen:
                gain[i] = objective(chosen + [i]) - current
        best = _first_max(gain, rtol)
        chosen.append(best)
        gains.append(float(gain[best]))
        current = objective(chosen)
    return chosen, gains


def greedy_select(modular: Any, G: Any, coverage_weight: float, k: int, rtol: float = 1e-9) -> tuple[list[int], list[float]]:
    """Greedy maximisation of Σ_{s∈S} modular(s) + w·Σ_j max(0, max_{s∈S} G[s, j]), incremental.

    Each step costs one (n × m) pass: gain_i = modular_i + w·Σ_j (max(G_ij, best_j) − best_j).
    Ties go to the lowest index, as in apricot's naive greedy; gains within ``rtol`` (relative)
    of the best count as ties, so that rounding does not decide between exactly tied items
    (facility location ties often: two mutual nearest neighbours gain the same).
    """
    modular, G = _np(modular).reshape(-1), _np(G)
    n = len(modular)
    if G.shape[0] != n:
        raise ValueError(f"G has {G.shape[0]} rows for {n} items")
    best = np.zeros(G.shape[1])
    available = np.ones(n, dtype=bool)
    chosen: list[int] = []
    gains: list[float] = []
    for _ in range(min(int(k), n)):
        if coverage_weight != 0:
            cover = (np.maximum(G, best) - best).sum(1)
            gain = modular + coverage_weight * cover
        else:
            gain = modular.copy()
        gain[~available] = -np.inf
        i = _first_max(gain, rtol)
        chosen.append(i)
        gains.append(float(gain[i]))
        available[i] = False
        best = np.maximum(best, G[i])
    return chosen, gains


@dataclass
class SelectionResult:
    """What :func:`submodular_select` chose.

    ``indices`` are positions in the candidate list, class by class (in class order), each class
    in greedy order; ``concept2cls`` the class index of each selected concept. ``per_class`` maps a
    class index to its selected indices; ``table`` has one row per selected concept.
    """

    indices: np.ndarray
    concept2cls: np.ndarray
    per_class: dict[int, list[int]]
    mi: np.ndarray
    table: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"SelectionResult({len(self)} concepts over {len(self.per_class)} classes, coverage={self.settings.get('coverage')!r})"


def submodular_select(
    image_embeddings: Any,
    labels: Any,
    concept_vectors: Any,
    concept2cls: Any,
    n_per_class: int | None = 50,
    num_concepts: int | None = None,
    mi_scale: float = 1e7,
    coverage_weight: float = 5.0,
    coverage: str = "facility",
    n_classes: int | None = None,
    names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> SelectionResult:
    """LaBo's ``submodular_select`` (see the module docstring).

    Args:
        image_embeddings, labels: the training images (raw embeddings) and their classes.
        concept_vectors: (M, d) text embeddings of all candidates (raw: LaBo's default).
        concept2cls: (M,) class index of each candidate (LaBo: the first class that lists it).
        n_per_class: k; or give ``num_concepts`` and k = ceil(num_concepts / K) as in the code.
        mi_scale, coverage_weight: ``submodular_weights = [scale, w₂]`` (CIFAR-10: [1e7, 5];
            CUB and HAM10000: [1e7, 0.1]; CIFAR-100: [1e7, 0]; ImageNet: [1e8, 0]).
        coverage: ``"facility"`` or ``"labo-code"``.
        names, class_names: for the result's table.
    """
    if coverage not in COVERAGES:
        raise ValueError(f"coverage must be one of {COVERAGES}, got {coverage!r}")
    T = _np(concept_vectors)
    c2c = _np(concept2cls, np.int64).reshape(-1)
    if len(c2c) != len(T):
        raise ValueError(f"{len(c2c)} class links for {len(T)} concept vectors")
    y = _np(labels, np.int64).reshape(-1)
    K = int(n_classes) if n_classes is not None else int(max(y.max(), c2c.max())) + 1
    if num_concepts is not None:
        k = int(math.ceil(int(num_concepts) / K))
    elif n_per_class is not None:
        k = int(n_per_class)
    else:
        raise ValueError("give n_per_class or num_concepts")
    if k < 1:
        raise ValueError(f"the number of concepts per class must be >= 1, got {k}")
    sim = clip_scores(image_embeddings, y, T, K)
    mi, offset = mi_scores(sim)
    w1 = 0.0 if mi_scale == 0 else 1.0
    per_class: dict[int, list[int]] = {}
    rows = []
    for cls in range(K):
        candidates = np.flatnonzero(c2c == cls)
        if len(candidates) == 0:
            continue
        if len(candidates) <= k:
            local, gains = list(range(len(candidates))), [float("nan")] * len(candidates)
        else:
            G = coverage_matrix(T[candidates], mi[candidates], mi_scale, coverage)
            local, gains = greedy_select(w1 * mi_scale * mi[candidates], G, coverage_weight, k)
        chosen = [int(candidates[i]) for i in local]
        per_class[cls] = chosen
        for rank, (j, gain) in enumerate(zip(chosen, gains)):
            rows.append({
                "class": class_names[cls] if class_names is not None else cls, "rank": rank, "index": j,
                "concept": names[j] if names is not None else j, "gain": gain, "mi": float(mi[j]),
            })
    indices = np.array([j for cls in sorted(per_class) for j in per_class[cls]], dtype=np.int64)
    return SelectionResult(
        indices=indices,
        concept2cls=c2c[indices],
        per_class=per_class,
        mi=mi,
        table=pd.DataFrame(rows, columns=["class", "rank", "index", "concept", "gain", "mi"]),
        settings={"k": k, "mi_scale": mi_scale, "coverage_weight": coverage_weight, "coverage": coverage, "sim_shift": offset, "n_candidates": int(len(T))},
    )


def select_from_bank(
    bank: Any,
    embeddings: Any,
    labels: Any,
    class_names: Sequence[str],
    normalize_images: bool = False,
    **settings: Any,
) -> tuple[Any, SelectionResult]:
    """LaBo's selection over a bank of class-linked candidates: ``(selected bank, result)``.

    Each candidate competes within the first class it is linked to (LaBo's dedupe); the training
    images are used as given, or L2-normalised with ``normalize_images`` (LaBo's ``use_img_norm``).
    ``settings`` are :func:`submodular_select`'s (``n_per_class``, ``num_concepts``, ``mi_scale``,
    ``coverage_weight``, ``coverage``). The one selection pipeline of LaBo models, declarative
    runs and the app.
    """
    from conceptlab.concepts.bank import unknown_name

    class_names = [str(c) for c in class_names]
    index = {n: i for i, n in enumerate(class_names)}
    missing = [c.name for c in bank if not c.class_links]
    if missing:
        raise ValueError(f"LaBo selection needs every candidate linked to a class; unlinked: {missing[:3]}")
    bad = [c.class_links[0] for c in bank if c.class_links[0] not in index]
    if bad:
        raise unknown_name(bad[0], class_names, "class")
    concept2cls = np.array([index[c.class_links[0]] for c in bank])
    X = torch.as_tensor(_np(embeddings, np.float32))
    if normalize_images:
        X = torch.nn.functional.normalize(X, dim=1)
    result = submodular_select(
        X, labels, bank.vectors, concept2cls, n_classes=len(class_names), names=bank.names, class_names=class_names, **settings
    )
    return bank.subset(result.indices.tolist()), result
