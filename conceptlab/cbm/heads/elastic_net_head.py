"""Sparse linear heads over concept scores: one estimator, three interchangeable solvers.

``ElasticNetHead(solver=...)``:

- ``"proximal"`` (default): :func:`conceptlab.cbm.elastic_net.fit_elastic_net`, our full-batch
  FISTA in torch; minimises the multinomial (or, with ``loss="ovr"``, one-vs-rest) objective to
  a stated tolerance; CUDA when present.
- ``"sgd"``: sklearn ``SGDClassifier(loss="log_loss", penalty="elasticnet")`` exactly as PCBM's
  ``train_pcbm.py`` calls it (``max_iter=10000``, ``random_state=seed``); one-vs-rest, stochastic.
  It is given the scores in their own precision, as PCBM gives it its float32 projections
  (SGDClassifier keeps float32; a float64 copy would change its path).
- ``"glm-saga"``: the ``glm_saga`` package as LF-CBM calls it (one λ, step 0.1, batch 256,
  zero initialisation); multinomial. Optional dependency (``pip install glm-saga``).

All three use one penalty convention, λ·(α‖W‖₁ + (1−α)/2‖W‖²), intercept unpenalised. A solver
that stops at its iteration limit says so with a ``ConvergenceWarning``, as scikit-learn does.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from conceptlab.cbm.elastic_net import LOSSES, fit_elastic_net
from conceptlab.cbm.heads.base import Head, HeadContext
from conceptlab.utils import default_device, store_params

__all__ = ["ElasticNetHead", "SOLVERS", "fit_sgd", "fit_glm_saga"]

SOLVERS = ("proximal", "sgd", "glm-saga")


def _numpy(value: Any, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def fit_sgd(X, y, lam: float, alpha: float, n_classes: int, seed: int = 42, max_iter: int = 10000) -> tuple[np.ndarray, np.ndarray, dict]:
    """PCBM's head: ``SGDClassifier(loss="log_loss", penalty="elasticnet", alpha=lam, l1_ratio=alpha)``.

    Returns (weight (K, C), bias (K,), info). A binary problem's single row w becomes [−w/2, w/2]
    so that a softmax over the two logits equals the sigmoid SGD fitted. Classes absent from
    ``y`` get weight 0 and bias −30 (SGD never saw them).
    """
    from sklearn.linear_model import SGDClassifier

    model = SGDClassifier(
        loss="log_loss", penalty="elasticnet", alpha=lam, l1_ratio=alpha, max_iter=max_iter, random_state=seed, verbose=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is reported through info
        model.fit(X, y)
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    W = np.zeros((n_classes, X.shape[1]))
    b = np.full(n_classes, -30.0)
    W[model.classes_] = coef
    b[model.classes_] = intercept
    return W, b, {"n_iter": int(model.n_iter_), "converged": int(model.n_iter_) < max_iter}


def fit_glm_saga(
    X,
    y,
    lam: float,
    alpha: float,
    n_classes: int,
    *,
    epochs: int = 1000,
    lr: float = 0.1,
    batch_size: int = 256,
    tol: float = 1e-4,
    seed: int = 42,
    device=None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """LF-CBM's head: ``glm_saga`` at a single λ, zero-initialised.

    LF-CBM passes ``metadata['max_reg']['nongrouped'] = lam`` with ``k=1, epsilon=1``, so GLM-SAGA
    solves at ``lam/alpha``; here we pass ``lam·alpha`` so that it solves at exactly ``lam``.
    """
    try:
        from glm_saga.elasticnet import IndexedTensorDataset, glm_saga
    except ImportError as error:  # pragma: no cover - optional dependency
        raise ImportError("solver='glm-saga' needs the glm-saga package: pip install glm-saga") from error
    from torch.utils.data import DataLoader

    device = default_device(device)
    generator = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    loader = DataLoader(IndexedTensorDataset(Xt, yt), batch_size=batch_size, shuffle=True, generator=generator)
    linear = torch.nn.Linear(Xt.shape[1], n_classes).to(device)
    linear.weight.data.zero_()
    linear.bias.data.zero_()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = glm_saga(
            linear, loader, lr, epochs, alpha, k=1, epsilon=1, do_zero=False, tol=tol,
            metadata={"max_reg": {"nongrouped": lam * alpha}}, n_ex=len(yt), n_classes=n_classes,
        )
    params = out["path"][0]
    return params["weight"].double().numpy(), params["bias"].double().numpy(), {"lam_used": float(params["lam"])}


class ElasticNetHead(Head):
    """Elastic-net logistic regression over concept scores, scikit-learn style.

    Objective (``loss="multinomial"``): mean softmax cross-entropy + lam·(alpha‖W‖₁ +
    (1−alpha)/2‖W‖²_F), intercept unpenalised. ``loss="ovr"`` is PCBM's SGDClassifier objective.

    Args:
        lam: penalty strength λ (sklearn's ``alpha``, PCBM's ``--lam``).
        alpha: L1 ratio (0.99 in PCBM and LF-CBM).
        loss: ``"multinomial"`` or ``"ovr"``; ``solver="sgd"`` is always one-vs-rest and
            ``solver="glm-saga"`` always multinomial.
        solver: ``"proximal"``, ``"sgd"`` or ``"glm-saga"`` (module docstring).
        standardize: z-score the features before fitting (penalty on standardised weights, as in
            LF-CBM); coefficients are always reported for the raw features.
        tol, max_iter: the proximal solver's stopping rule.
        seed: SGD's ``random_state`` / GLM-SAGA's shuffling seed.
        device: where the proximal solver runs (CUDA when present by default).
    """

    def __init__(
        self,
        lam: float = 1e-3,
        alpha: float = 0.99,
        loss: str = "multinomial",
        solver: str = "proximal",
        standardize: bool = False,
        tol: float = 1e-5,
        max_iter: int = 20000,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        store_params(self, locals())

    def fit(self, X, y, n_classes: int | None = None) -> ElasticNetHead:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        # SGDClassifier runs in the precision it is given (PCBM gives it float32 projections)
        keep = self.solver == "sgd" and getattr(X, "dtype", None) in (np.float32, torch.float32)
        X = _numpy(X, np.float32 if keep else np.float64)
        y = _numpy(y, np.int64).reshape(-1)
        K = int(n_classes) if n_classes is not None else int(y.max()) + 1
        start = time.perf_counter()
        mu = X.mean(0)
        sigma = X.std(0)
        sigma = np.where(sigma > 0, sigma, 1.0)
        Xfit = (X - mu) / sigma if self.standardize and self.solver != "proximal" else X
        info: dict[str, Any] = {}
        if self.solver == "proximal":
            fit = fit_elastic_net(
                X, y, self.lam, self.alpha, loss=self.loss, n_classes=K, standardize=self.standardize,
                tol=self.tol, max_iter=self.max_iter, device=self.device,
            )
            W, b = fit.weight.numpy(), fit.bias.numpy()
            info = {"n_iter": fit.n_iter, "converged": fit.converged, "status": fit.status, "objective": fit.objective, "kkt": fit.kkt}
        elif self.solver == "sgd":
            W, b, info = fit_sgd(Xfit, y, self.lam, self.alpha, K, seed=self.seed)
        else:
            W, b, info = fit_glm_saga(Xfit, y, self.lam, self.alpha, K, seed=self.seed, device=self.device)
        if self.solver == "sgd" and not info.get("converged", True):
            warnings.warn(
                f"SGDClassifier stopped at max_iter ({info.get('n_iter')} epochs) before converging (lam={self.lam:g}); "
                "the head may be far from the optimum", ConvergenceWarning, stacklevel=2,
            )
        if self.standardize and self.solver != "proximal":
            W = W / sigma
            b = b - W @ mu
        self.coef_ = np.asarray(W, dtype=np.float64)
        self.intercept_ = np.asarray(b, dtype=np.float64)
        self.n_classes_ = K
        self.fit_info_ = {**info, "time_s": time.perf_counter() - start, "solver": self.solver}
        return self

    def fit_head(self, scores: torch.Tensor, y: torch.Tensor, n_classes: int, context: HeadContext) -> ElasticNetHead:
        """The CBM's head: fit on float64 copies of the scores (float32 ones for ``solver="sgd"``, as
        PCBM), keep float32 weights."""
        self.fit(scores.float().numpy() if self.solver == "sgd" else scores.double().numpy(), y.numpy(), n_classes=n_classes)
        self.weight_ = torch.as_tensor(self.coef_, dtype=torch.float32)
        self.bias_ = torch.as_tensor(self.intercept_, dtype=torch.float32)
        return self

    def info(self) -> dict[str, Any]:
        fit_info = {k: v for k, v in self.fit_info_.items() if isinstance(v, (int, float, str, bool))}
        return {"head": "elastic net", "lam": self.lam, "alpha": self.alpha, "solver": self.solver, "loss": self.loss, "head_info": fit_info}

    def state(self) -> dict[str, Any]:
        return {"fit_info_": {k: v for k, v in getattr(self, "fit_info_", {}).items() if isinstance(v, (int, float, str, bool))}}

    def decision_function(self, X) -> np.ndarray:
        return _numpy(X) @ self.coef_.T + self.intercept_

    def predict(self, X) -> np.ndarray:
        return self.decision_function(X).argmax(1)

    def predict_proba(self, X) -> np.ndarray:
        logits = self.decision_function(X)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)
