"""Elastic-net logistic regression by full-batch accelerated proximal gradient (FISTA), in torch.

The objective (``loss="multinomial"``, the default) is exactly GLM-SAGA's (LF-CBM) and sklearn
``LogisticRegression(l1_ratio=alpha, C=1/(N·lam))``'s::

    F(W, b) = (1/N) Σ_i CE(softmax(W x_i + b), y_i) + lam·(alpha·‖W‖₁ + (1 − alpha)/2·‖W‖²_F)

with W (K, C), the intercept b unpenalised, and sklearn's ½ on the L2 term. PCBM's code fits
sklearn ``SGDClassifier(loss="log_loss", penalty="elasticnet")``, which is **one-vs-rest**: K
independent binary problems. ``loss="ovr"`` minimises that objective exactly (summed over the K
classes; SGD only approximates it)::

    F_ovr(W, b) = (1/N) Σ_i Σ_k log(1 + exp(−s_ik (w_k·x_i + b_k))) + lam·(alpha‖W‖₁ + (1−alpha)/2‖W‖²)

with s_ik = +1 if y_i = k else −1.

Solver: FISTA with a backtracking line search that also tries longer steps (Scheinberg, Goldfarb
& Bai's momentum correction), O'Donoghue–Candès gradient restart, soft-thresholding as the prox
of the L1 term. Because the intercept is unpenalised, X is centred internally (an exact
reparametrisation, b ← b + W·μ), and each column is scaled to unit variance with the penalty
reweighted to match (an exact diagonal preconditioner; the minimiser is unchanged), which keeps
FISTA's steps sensible when concept scores differ in scale. Logits are linear in the parameters, so the extrapolated point's logits are extrapolated too and an iteration costs
two matrix products. It stops when the composite-gradient mapping is below ``tol`` times the
gradient scale λ_max·α, and reports the KKT residual at the solution. It runs wherever torch
runs, in float32 by default (pass ``dtype=torch.float64`` for tolerances below ~1e-6); the
objective and KKT residual it reports are always evaluated in float64. If rounding stops the
optimality measure from improving before the tolerance is met, it stops ("stalled") instead of
spinning to ``max_iter``. Stopping at ``max_iter`` is a :class:`sklearn.exceptions.ConvergenceWarning`
(as in scikit-learn), and features whose scale overflows the solver's dtype are an error, not an
all-zero head.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning

from conceptlab.utils import default_device

__all__ = [
    "ElasticNetFit",
    "fit_elastic_net",
    "elastic_net_path",
    "elastic_net_objective",
    "kkt_residual",
    "lambda_max",
    "LOSSES",
    "cpu_threads",
]

Loss = Literal["multinomial", "ovr"]
LOSSES = ("multinomial", "ovr")
#: each iteration first tries a step this much longer than the last accepted one
STEP_GROWTH = 1.25


@dataclass
class ElasticNetFit:
    """One solution: weight (K, C) and bias (K,) in the original feature space, plus diagnostics."""

    weight: torch.Tensor
    bias: torch.Tensor
    lam: float
    alpha: float
    loss: str
    n_iter: int
    converged: bool
    status: str  # "converged", "stalled" (rounding stopped progress) or "max_iter"
    objective: float
    kkt: float
    time_s: float
    standardize: bool = False
    history: list[float] = field(default_factory=list, repr=False)

    @property
    def nonzeros(self) -> int:
        return int((self.weight != 0).sum())


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------


#: below this many multiply-adds per matrix product (N·C·K), CPU solves run on one thread: the
#: products are too small to gain from threads, and on a busy machine the thread pool's waits
#: cost far more than the work (``benchmarks/sparse_head.py`` measures both)
SINGLE_THREAD_BELOW = 4_000_000


@contextlib.contextmanager
def cpu_threads(device: torch.device, work: int, num_threads: int | None):
    if device.type != "cpu":
        yield
        return
    wanted = num_threads if num_threads is not None else (1 if work < SINGLE_THREAD_BELOW else None)
    previous = torch.get_num_threads()
    if wanted is None or wanted == previous:
        yield
        return
    torch.set_num_threads(int(wanted))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: iterations without a new low of the optimality measure (rounding noise) after which it stops
STALL_WINDOW = 500


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.float32


def _prepare(X: Any, y: Any, n_classes: int | None, device=None, dtype=None):
    device = default_device(device)
    dtype = dtype or _default_dtype(device)
    X = torch.as_tensor(X.detach() if isinstance(X, torch.Tensor) else np.asarray(X)).to(device=device, dtype=dtype)
    y = torch.as_tensor(y.detach() if isinstance(y, torch.Tensor) else np.asarray(y)).to(device=device).long().reshape(-1)
    if X.ndim != 2:
        raise ValueError(f"X must be (N, C), got shape {tuple(X.shape)}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    if not torch.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values")
    K = int(n_classes) if n_classes is not None else int(y.max()) + 1
    if K < 2:
        raise ValueError(f"need at least 2 classes, got {K}")
    if int(y.min()) < 0 or int(y.max()) >= K:
        raise ValueError(f"labels must lie in [0, {K}), got range [{int(y.min())}, {int(y.max())}]")
    return X, y, K


def _as_f64(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def _targets(y: torch.Tensor, K: int, dtype) -> torch.Tensor:
    """One-hot targets, class-major (K, N): reductions over classes run along dim 0, which is
    several times faster than softmax over a short last dimension."""
    return F.one_hot(y, K).T.to(dtype).contiguous()


# ----------------------------------------------------------------------------------------------
# objective pieces; logits Z and targets Y are class-major (K, N)
# ----------------------------------------------------------------------------------------------


def _loss_and_residual(Z: torch.Tensor, Y: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and the residual R = P − Y (K, N), so that dL/dW = R·X / N."""
    if loss == "multinomial":
        logp = torch.log_softmax(Z, dim=0)
        value = -logp.gather(0, y[None, :]).mean()
        return value, logp.exp_() - Y
    value = (F.softplus(Z) - Y * Z).sum() / Z.shape[1]
    return value, torch.sigmoid(Z) - Y


def _loss_only(Z: torch.Tensor, Y: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "multinomial":
        return (torch.logsumexp(Z, dim=0) - Z.gather(0, y[None, :]).squeeze(0)).mean()
    return (F.softplus(Z) - Y * Z).sum() / Z.shape[1]


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _check_reg(lam: float, alpha: float) -> None:
    if not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha (the L1 ratio) must lie in [0, 1], got {alpha}")


def elastic_net_objective(X, y, weight, bias, lam: float, alpha: float, loss: Loss = "multinomial", n_classes: int | None = None) -> float:
    """F(W, b) of the module docstring, in float64 on the CPU (for comparing solvers)."""
    _check_loss(loss)
    W, b = _as_f64(weight), _as_f64(bias).reshape(-1)
    X, y, K = _prepare(X, y, n_classes or W.shape[0], "cpu", torch.float64)
    Z = X @ W.T + b
    value = _loss_only(Z.T, _targets(y, K, torch.float64), y, loss)
    penalty = lam * (alpha * W.abs().sum() + 0.5 * (1 - alpha) * (W**2).sum())
    return float(value + penalty)


def kkt_residual(X, y, weight, bias, lam: float, alpha: float, loss: Loss = "multinomial", fit_intercept: bool = True) -> float:
    """Largest violation of the optimality conditions of F at (W, b), in gradient units.

    With G = ∇ of the smooth part (mean loss + lam·(1−alpha)/2·‖W‖²): for W_kj ≠ 0,
    |G_kj + lam·alpha·sign(W_kj)|; for W_kj = 0, max(0, |G_kj| − lam·alpha); for the intercept
    |∂/∂b_k|. Zero at the exact minimiser.
    """
    _check_loss(loss)
    W, b = _as_f64(weight), _as_f64(bias).reshape(-1)
    X, y, K = _prepare(X, y, W.shape[0], "cpu", torch.float64)
    _, R = _loss_and_residual(W @ X.T + b[:, None], _targets(y, K, torch.float64), y, loss)
    N = X.shape[0]
    G = R @ X / N + lam * (1 - alpha) * W
    l1 = lam * alpha
    violation = torch.where(W != 0, (G + l1 * torch.sign(W)).abs(), (G.abs() - l1).clamp(min=0))
    worst = float(violation.max())
    if fit_intercept:
        worst = max(worst, float((R.sum(1) / N).abs().max()))
    return worst


def lambda_max(X, y, alpha: float = 0.99, loss: Loss = "multinomial", n_classes: int | None = None, standardize: bool = False) -> float:
    """The smallest lam at which W = 0 is optimal (intercept fitted): ‖(P₀ − Y)ᵀ X_c‖_∞ / (N·alpha)."""
    _check_loss(loss)
    X, y, K = _prepare(X, y, n_classes, "cpu", torch.float64)
    Xc = X - X.mean(0)
    if standardize:
        Xc = Xc / _safe_std(X)
    Y = _targets(y, K, torch.float64)
    return float((Y - Y.mean(1, keepdim=True)).matmul(Xc).abs().max() / X.shape[0] / max(alpha, 1e-3))


def _safe_std(X: torch.Tensor) -> torch.Tensor:
    std = X.std(0, unbiased=False)
    return torch.where(std > 0, std, torch.ones_like(std))


# ----------------------------------------------------------------------------------------------
# the solver
# ----------------------------------------------------------------------------------------------


class _Problem:
    """Centred, column-scaled data on the device, per-column penalty weights, Lipschitz bound.

    The solver always works on U = W·diag(σ) against (X − μ)/σ (a diagonal preconditioner, which
    keeps FISTA's step sizes sensible when concept scores have very different scales). The
    penalty is rewritten exactly: with ``standardize=False`` it carries column weights 1/σ_j, so
    the minimiser is that of the original problem; with ``standardize=True`` the weights are 1
    and the penalty acts on the standardised weights U.
    """

    def __init__(self, X, y, n_classes, loss, standardize, fit_intercept, device, dtype):
        _check_loss(loss)
        self.X_raw, self.y, self.K = _prepare(X, y, n_classes, device, dtype)
        self.loss, self.standardize, self.fit_intercept = loss, standardize, fit_intercept
        X = self.X_raw
        self.N, self.C = X.shape
        self.mu = X.mean(0) if fit_intercept else torch.zeros_like(X[0])
        scale = (X - self.mu).pow(2).mean(0).sqrt() if fit_intercept else X.pow(2).mean(0).sqrt()
        if not bool(torch.isfinite(scale).all()):
            raise ValueError(
                f"the features are too large for {X.dtype} (largest |value| {float(X.abs().max()):.3g}): their squares "
                "overflow, and the solver would return an all-zero head. Rescale them (e.g. standardise the embeddings) "
                "or solve in float64 (dtype=torch.float64)"
            )
        self.sigma = torch.where(scale > 0, scale, torch.ones_like(scale))
        self.pen = torch.ones_like(self.sigma) if standardize else 1.0 / self.sigma
        self.Xc = (X - self.mu) / self.sigma
        self.Y = _targets(self.y, self.K, X.dtype)
        # Hessian bounds: softmax CE ≼ ½·XᵀX/N (per class block), logistic ≼ ¼·XᵀX/N;
        # centred, the intercept column is orthogonal to the features
        gram_top = float(torch.linalg.eigvalsh(self.Xc.T @ self.Xc / self.N)[-1])
        self.L_loss = (0.5 if loss == "multinomial" else 0.25) * max(gram_top, 1.0 if fit_intercept else 0.0)
        self.grad_scale = float(((self.Y - self.Y.mean(1, keepdim=True)).matmul(self.Xc).abs() / self.pen).max() / self.N)

    def to_internal(self, W: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return W * self.sigma, b + W @ self.mu

    def to_original(self, U: torch.Tensor, b_int: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = U / self.sigma
        return W, b_int - W @ self.mu

    def intercept_only(self) -> torch.Tensor:
        prior = self.Y.mean(1).clamp(min=1e-12)
        if self.loss == "multinomial":
            b = prior.log()
            return b - b.mean()
        return torch.log(prior) - torch.log1p(-prior.clamp(max=1 - 1e-12))


def _soft_threshold(V: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.sign(V) * (V.abs() - threshold).clamp(min=0)


def _solve(problem: _Problem, lam: float, alpha: float, W0: torch.Tensor, b0: torch.Tensor, tol: float, max_iter: int, record: bool):
    """FISTA on the internal parametrisation; returns (U, b, n_iter, status, history)."""
    Xc, Y, y, loss, N = problem.Xc, problem.Y, problem.y, problem.loss, problem.N
    l1 = lam * alpha * problem.pen  # (C,) per-column L1 weights
    l2 = lam * (1 - alpha) * problem.pen**2  # (C,) per-column L2 weights
    fit_b = problem.fit_intercept
    scale = max(problem.grad_scale, lam * alpha, 1e-12)
    threshold_tol = tol * scale
    # near the rounding floor of the dtype, a measure that stops making new lows has stalled
    stall_zone = 1e4 * torch.finfo(Xc.dtype).eps * scale

    def smooth(Z, W):
        value, R = _loss_and_residual(Z, Y, y, loss)
        return value + 0.5 * (l2 * W * W).sum(), R

    x_W, x_b = W0.clone(), b0.clone()
    XcT = Xc.T  # a view: mm handles the transpose without a copy
    x_Z = x_W @ XcT + x_b[:, None]
    y_W, y_b, y_Z = x_W, x_b, x_Z
    step = 1.0 / (problem.L_loss + float(l2.max()))
    step_max = 1e6 * step
    t = 1.0
    history: list[float] = []
    status = "max_iter"
    it = 0
    best, since_best = math.inf, 0
    zero_b = torch.zeros_like(x_b)
    for it in range(1, max_iter + 1):  # noqa: B007 (it is read after the loop)
        f_y, R = smooth(y_Z, y_W)
        g_W = R @ Xc / N + l2 * y_W
        g_b = R.sum(1) / N if fit_b else zero_b
        step_try = min(step * STEP_GROWTH, step_max)
        while True:  # backtracking on the quadratic upper model
            n_W = _soft_threshold(y_W - step_try * g_W, step_try * l1)
            n_b = y_b - step_try * g_b
            d_W, d_b = n_W - y_W, n_b - y_b
            n_Z = n_W @ XcT + n_b[:, None]
            f_n, _ = smooth(n_Z, n_W)
            d_sq = (d_W * d_W).sum() + (d_b * d_b).sum()
            model = f_y + (g_W * d_W).sum() + (g_b * d_b).sum() + d_sq / (2 * step_try)
            if float(f_n - model) <= 1e-12 * abs(float(f_y)) or step_try < 1e-20:
                break
            step_try *= 0.5
        mapping = float(torch.maximum(d_W.abs().max(), d_b.abs().max())) / step_try
        if record:
            history.append(float(f_n + (l1 * n_W.abs()).sum()))
        if mapping < 0.95 * best:  # the optimality measure still makes progress
            best, since_best = mapping, 0
        else:
            since_best += 1
        # FISTA momentum with the step-size correction; gradient restart when it points uphill
        t_next = 0.5 * (1 + math.sqrt(1 + 4 * (step / step_try) * t * t))
        if float((d_W * (n_W - x_W)).sum() + (d_b * (n_b - x_b)).sum()) < 0:
            t, t_next = 1.0, 1.0
        beta = (t - 1) / t_next
        y_W = n_W + beta * (n_W - x_W)
        y_b = n_b + beta * (n_b - x_b)
        y_Z = n_Z + beta * (n_Z - x_Z)
        x_W, x_b, x_Z = n_W, n_b, n_Z
        t, step = t_next, step_try
        if mapping <= threshold_tol:
            status = "converged"
            break
        if since_best >= STALL_WINDOW and best <= stall_zone:
            status = "stalled"
            break
    return x_W, x_b, it, status, history


def fit_elastic_net(
    X,
    y,
    lam: float,
    alpha: float = 0.99,
    *,
    loss: Loss = "multinomial",
    n_classes: int | None = None,
    standardize: bool = False,
    fit_intercept: bool = True,
    tol: float = 1e-5,
    max_iter: int = 20000,
    init: tuple[Any, Any] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    record_history: bool = False,
    num_threads: int | None = None,
    _problem: _Problem | None = None,
) -> ElasticNetFit:
    """Minimise the elastic-net logistic objective (module docstring) for one ``lam``.

    Args:
        X: (N, C) features (concept scores); y: (N,) integer labels in [0, K).
        lam: penalty strength λ (sklearn's ``alpha``; PCBM's ``--lam``).
        alpha: L1 ratio (sklearn's ``l1_ratio``; PCBM's ``--alpha``), 0.99 by default.
        loss: ``"multinomial"`` (softmax cross-entropy, GLM-SAGA's) or ``"ovr"`` (SGDClassifier's).
        standardize: fit on z-scored features (the penalty then acts on standardised weights, as in
            LF-CBM); weights are mapped back to the original features either way.
        fit_intercept: fit an unpenalised bias (PCBM) or none (DN-CBM's probe).
        tol: stop when the composite-gradient mapping is below ``tol`` × max(λ_max·α, λα).
        init: warm start (weight (K, C), bias (K,)) in the original feature space.
        device, dtype: where to solve; CUDA when present; float32 unless ``dtype`` is given.
        num_threads: CPU threads for the solve; by default one for small problems
            (N·C·K < ``SINGLE_THREAD_BELOW``) and torch's setting otherwise. Restored afterwards.
    """
    _check_reg(lam, alpha)
    target = _problem.Xc.device if _problem is not None else torch.device(device) if device is not None else None
    target = target or default_device()
    shape = getattr(X, "shape", None) or np.shape(X)
    work = int(shape[0]) * int(shape[1] if len(shape) > 1 else 1) * int(n_classes or 10)
    with cpu_threads(target, work, num_threads):
        return _fit_elastic_net(X, y, lam, alpha, loss, n_classes, standardize, fit_intercept, tol, max_iter, init, device, dtype, record_history, _problem)


def _fit_elastic_net(X, y, lam, alpha, loss, n_classes, standardize, fit_intercept, tol, max_iter, init, device, dtype, record_history, _problem) -> ElasticNetFit:
    start = time.perf_counter()
    problem = _problem or _Problem(X, y, n_classes, loss, standardize, fit_intercept, device, dtype)
    dev, dt = problem.Xc.device, problem.Xc.dtype
    if init is None:
        W0 = torch.zeros(problem.K, problem.C, device=dev, dtype=dt)
        b0 = problem.intercept_only() if fit_intercept else torch.zeros(problem.K, device=dev, dtype=dt)
    else:
        W_init = torch.as_tensor(np.asarray(init[0].detach().cpu() if isinstance(init[0], torch.Tensor) else init[0])).to(dev, dt)
        b_init = torch.as_tensor(np.asarray(init[1].detach().cpu() if isinstance(init[1], torch.Tensor) else init[1])).to(dev, dt).reshape(-1)
        if W_init.shape != (problem.K, problem.C) or b_init.shape != (problem.K,):
            raise ValueError(f"init must be weight ({problem.K}, {problem.C}) and bias ({problem.K},)")
        W0, b0 = problem.to_internal(W_init, b_init if fit_intercept else torch.zeros_like(b_init))
    W_int, b_int, n_iter, status, history = _solve(problem, lam, alpha, W0, b0, tol, max_iter, record_history)
    if status == "max_iter":
        warnings.warn(
            f"the elastic-net solver stopped at max_iter={max_iter} before reaching tol={tol:g} (lam={lam:g}); "
            "the head may be far from the optimum: raise max_iter, loosen tol, or rescale the features",
            ConvergenceWarning, stacklevel=3,
        )
    if fit_intercept and loss == "multinomial":
        b_int = b_int - b_int.mean()  # softmax is shift invariant in b: report the centred one
    W, b = problem.to_original(W_int, b_int)
    W = torch.where(W == 0, torch.zeros_like(W), W).cpu()  # no negative zeros from the prox
    b = b.cpu()
    X_cpu = problem.X_raw.cpu()
    if standardize:
        # the standardised problem's own objective and KKT, evaluated in its coordinates
        Xs = problem.Xc.cpu()
        objective = elastic_net_objective(Xs, problem.y.cpu(), W_int.cpu(), b_int.cpu(), lam, alpha, loss, problem.K)
        kkt = kkt_residual(Xs, problem.y.cpu(), W_int.cpu(), b_int.cpu(), lam, alpha, loss, fit_intercept)
    else:
        objective = elastic_net_objective(X_cpu, problem.y.cpu(), W, b, lam, alpha, loss, problem.K)
        kkt = kkt_residual(X_cpu, problem.y.cpu(), W, b, lam, alpha, loss, fit_intercept)
    return ElasticNetFit(
        weight=W,
        bias=b,
        lam=float(lam),
        alpha=float(alpha),
        loss=loss,
        n_iter=n_iter,
        converged=status == "converged",
        status=status,
        objective=objective,
        kkt=kkt,
        time_s=time.perf_counter() - start,
        standardize=standardize,
        history=history,
    )


def elastic_net_path(
    X,
    y,
    lams: Sequence[float] | None = None,
    *,
    n_lams: int = 20,
    eps: float = 1e-3,
    alpha: float = 0.99,
    loss: Loss = "multinomial",
    n_classes: int | None = None,
    standardize: bool = False,
    fit_intercept: bool = True,
    tol: float = 1e-5,
    max_iter: int = 20000,
    device=None,
    dtype=None,
    num_threads: int | None = None,
) -> list[ElasticNetFit]:
    """Solutions along a decreasing λ path with warm starts (GLM-SAGA's / glmnet's path).

    By default ``n_lams`` values log-spaced from λ_max (all weights zero) down to ``eps``·λ_max.
    The data are moved to the device once for the whole path.
    """
    target = default_device(device)
    shape = getattr(X, "shape", None) or np.shape(X)
    with cpu_threads(target, int(shape[0]) * int(shape[1]) * int(n_classes or 10), num_threads):
        problem = _Problem(X, y, n_classes, loss, standardize, fit_intercept, device, dtype)
    if lams is None:
        top = lambda_max(problem.X_raw.cpu(), problem.y.cpu(), alpha, loss, problem.K, standardize)
        lams = np.logspace(math.log10(top), math.log10(top * eps), n_lams)
    lams = sorted((float(v) for v in lams), reverse=True)
    fits: list[ElasticNetFit] = []
    init = None
    for lam in lams:
        fit = fit_elastic_net(
            X, y, lam, alpha, loss=loss, n_classes=problem.K, standardize=standardize, fit_intercept=fit_intercept,
            tol=tol, max_iter=max_iter, init=init, num_threads=num_threads, _problem=problem,
        )
        fits.append(fit)
        init = (fit.weight, fit.bias)
    return fits
