"""Concept activation vectors, many at once: one batched linear classifier per (positives, negatives) run.

TCAV needs a CAV for every concept against each of ~100 random sets, plus ~100 random-vs-random
CAVs: thousands of small linear problems. Fitting them one sklearn call at a time costs more in
Python overhead than in arithmetic, so every solver here trains all R runs of a batch together in
torch (tensors ``[R, n, d]``); each run is an independent problem with its own split and shuffle.

Solvers (``method``):

- ``"sgd"`` -- TCAV's reference classifier, ``sklearn.linear_model.SGDClassifier(alpha=0.01,
  max_iter=1000, tol=1e-3)``: the same objective (hinge loss, L2 penalty ``alpha``) and the same
  ``"optimal"`` step schedule ``1 / (alpha (t0 + t))``, but full-batch steps with iterate averaging
  instead of one example at a time: a per-example loop over thousands of runs is Python-bound
  (seconds per concept), a batched step is one matrix product. The held-out accuracy matches
  sklearn's on the same splits (``tests/test_tcav.py``); coefficients are not bitwise sklearn's.
- ``"logistic"`` -- L2-regularised logistic regression (sklearn's ``LogisticRegression()`` defaults,
  C = 1), solved by L-BFGS on all runs at once (their losses are independent, so the joint minimum
  is each run's minimum).
- ``"mean_diff"`` -- FastCAV (captum#1619): mean of the positives minus mean of the negatives.

Each run: both sides truncated to the smaller one's size (TCAV's balancing), a stratified
``test_size`` split (0.33, TCAV's), held-out accuracy reported with the CAV. CAVs point towards the
concept (the positive side) and are unit-normalised by default, so magnitudes compare across CAVs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["CAV_METHODS", "CAVSet", "train_cavs"]

CAV_METHODS = ("sgd", "logistic", "mean_diff")


@dataclass
class CAVSet:
    """R CAVs of one layer: ``vectors`` [R, d] (towards the concept), ``intercepts`` [R],
    held-out ``accuracy`` [R], and the settings that made them."""

    vectors: torch.Tensor
    intercepts: torch.Tensor
    accuracy: torch.Tensor
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __getitem__(self, index) -> CAVSet:
        return CAVSet(self.vectors[index], self.intercepts[index], self.accuracy[index], dict(self.settings))

    @staticmethod
    def concat(sets: list[CAVSet]) -> CAVSet:
        return CAVSet(torch.cat([s.vectors for s in sets]), torch.cat([s.intercepts for s in sets]), torch.cat([s.accuracy for s in sets]), dict(sets[0].settings))


def _as_runs(x: Any, what: str) -> torch.Tensor:
    x = torch.as_tensor(x.detach() if hasattr(x, "detach") else x, dtype=torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{what} must be (n, d) or (runs, n, d), got shape {tuple(x.shape)}")
    if x.shape[1] < 2:
        raise ValueError(f"{what} has {x.shape[1]} examples per run; a CAV needs at least 2 on each side")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return x


def _split(R: int, n: int, test_size: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-run permutations of one class's n examples, cut into (train idx [R, n - t], test idx [R, t])."""
    n_test = min(n - 1, max(1, int(math.ceil(test_size * n))))
    order = torch.argsort(torch.rand(R, n, generator=generator), dim=1)
    return order[:, n_test:], order[:, :n_test]


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` [R, k] of each run of ``x`` [R or 1, n, d] -> [R, k, d]."""
    x = x.expand(idx.shape[0], -1, -1)
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[2]))


def _fit_sgd(X: torch.Tensor, y: torch.Tensor, alpha: float, max_iter: int, tol: float, generator: torch.Generator, n_iter_no_change: int = 5):
    """SGDClassifier's objective -- ``alpha/2 |w|^2 + mean hinge(y (w.x + b))`` -- minimised for all runs at
    once by full-batch subgradient steps with sklearn's "optimal" step ``1 / (alpha (t0 + t))`` and
    iterate averaging; an epoch is one step. Stops when no run's objective improved by ``tol`` (relative
    to the first epoch's) in ``n_iter_no_change`` epochs, or after ``max_iter``.

    Every step adds a combination of the training rows to ``w`` (it starts at 0), so ``w = beta X``
    and the steps run on ``beta`` [R, n] with the Gram matrices ``X X^T`` [R, n, n]: with n examples
    fewer than d features that is d/n times less work per step than touching ``X``."""
    R, n, d = X.shape
    gram = torch.bmm(X, X.transpose(1, 2))
    beta, b = torch.zeros(R, n), torch.zeros(R)
    beta_avg, b_avg = torch.zeros(R, n), torch.zeros(R)
    typw = math.sqrt(1.0 / math.sqrt(alpha))
    t0 = 1.0 / (typw * alpha)  # sklearn: eta0 = typw / max(1, dloss(-typw, 1)) = typw for the hinge

    def scores(beta: torch.Tensor) -> torch.Tensor:
        return torch.bmm(gram, beta[:, :, None])[..., 0]  # X w for w = beta X

    best = torch.full((R,), float("inf"))
    stale = torch.zeros(R, dtype=torch.long)
    scale = None
    for t in range(1, max_iter + 1):
        eta = 1.0 / (alpha * (t0 + t - 1.0))
        margins = y * (scores(beta) + b[:, None])
        coef = torch.where(margins < 1.0, y, torch.zeros_like(y)) / n  # minus the hinge's subgradient per example
        beta = beta * (1.0 - eta * alpha) + eta * coef
        b = b + eta * coef.sum(1)
        beta_avg += (beta - beta_avg) / t
        b_avg += (b - b_avg) / t
        fitted = scores(beta_avg)
        current = 0.5 * alpha * (beta_avg * fitted).sum(1) + torch.clamp(1.0 - y * (fitted + b_avg[:, None]), min=0.0).mean(1)
        scale = current.clone() if scale is None else scale
        improved = current < best - tol * scale
        stale = torch.where(improved, torch.zeros_like(stale), stale + 1)
        best = torch.minimum(best, current)
        if bool((stale >= n_iter_no_change).all()):
            break
    _fit_sgd.last_epochs = t  # for the curious (benchmarks); not part of the result
    return torch.bmm(beta_avg[:, None, :], X)[:, 0], b_avg


def _fit_logistic(X: torch.Tensor, y: torch.Tensor, C: float, max_iter: int):
    R, n, d = X.shape
    X64, y64 = X.double(), y.double()
    w = torch.zeros(R, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(R, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        logits = torch.einsum("rnd,rd->rn", X64, w) + b[:, None]
        loss = torch.nn.functional.softplus(-y64 * logits).sum() * C + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().float(), b.detach().float()


def train_cavs(
    positives: Any,
    negatives: Any,
    method: str = "sgd",
    alpha: float = 0.01,
    C: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-3,
    test_size: float = 0.33,
    normalize: bool = True,
    seed: int = 0,
) -> CAVSet:
    """Train R CAVs at once: positives (n, d) or (R, n, d) against negatives (R, m, d) or (m, d).

    A side given as (n, d) is shared by every run. Returns a :class:`CAVSet` whose ``accuracy``
    is each run's accuracy on its held-out stratified ``test_size`` split.
    """
    if method not in CAV_METHODS:
        raise ValueError(f"method must be one of {CAV_METHODS}, got {method!r}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size}")
    pos, neg = _as_runs(positives, "positives"), _as_runs(negatives, "negatives")
    if pos.shape[2] != neg.shape[2]:
        raise ValueError(f"positives have dimension {pos.shape[2]} but negatives {neg.shape[2]}")
    R = max(pos.shape[0], neg.shape[0])
    if pos.shape[0] not in (1, R) or neg.shape[0] not in (1, R):
        raise ValueError(f"positives have {pos.shape[0]} runs and negatives {neg.shape[0]}; give one or the same number")
    n = min(pos.shape[1], neg.shape[1])  # TCAV truncates both sides to the smaller one
    generator = torch.Generator().manual_seed(int(seed))
    pos_train, pos_test = _split(R, pos.shape[1], test_size, generator)
    neg_train, neg_test = _split(R, neg.shape[1], test_size, generator)
    n_test = min(pos_test.shape[1], neg_test.shape[1], max(1, int(math.ceil(test_size * n))))
    n_train = n - n_test
    X_train = torch.cat([_take(pos, pos_train[:, :n_train]), _take(neg, neg_train[:, :n_train])], dim=1)
    y_train = torch.cat([torch.ones(R, n_train), -torch.ones(R, n_train)], dim=1)
    X_test = torch.cat([_take(pos, pos_test[:, :n_test]), _take(neg, neg_test[:, :n_test])], dim=1)
    y_test = torch.cat([torch.ones(R, n_test), -torch.ones(R, n_test)], dim=1)
    if method == "sgd":
        w, b = _fit_sgd(X_train, y_train, float(alpha), int(max_iter), float(tol), generator)
    elif method == "logistic":
        w, b = _fit_logistic(X_train, y_train, float(C), int(max_iter))
    else:
        mu_pos, mu_neg = X_train[:, :n_train].mean(1), X_train[:, n_train:].mean(1)
        w = mu_pos - mu_neg
        b = -(w * (mu_pos + mu_neg) / 2).sum(1)
    predicted = torch.where(torch.einsum("rnd,rd->rn", X_test, w) + b[:, None] >= 0, 1.0, -1.0)
    accuracy = (predicted == y_test).float().mean(1)
    norm = w.norm(dim=1).clamp_min(1e-12)
    if normalize:
        w, b = w / norm[:, None], b / norm
    settings = {"method": method, "alpha": alpha, "C": C, "max_iter": max_iter, "tol": tol, "test_size": test_size, "normalize": normalize,
                "seed": seed, "n_per_side": n, "n_train_per_side": n_train, "n_test_per_side": n_test}
    return CAVSet(w.contiguous(), b.contiguous(), accuracy, settings)
