"""The elastic-net solver against reference solvers on the same inputs, and its optimality."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conceptlab.cbm.elastic_net import (
    elastic_net_objective,
    elastic_net_path,
    fit_elastic_net,
    kkt_residual,
    lambda_max,
)
from conceptlab.cbm.heads import ElasticNetHead

# small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


#: the tight tolerances below need float64 (the solver's default is float32)
F64 = {"dtype": torch.float64, "device": "cpu"}


def problem(seed=0, N=240, C=8, K=4, scale=True):
    """Scores with uneven scales and offsets (like concept margins) and labels from a sparse rule."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, C))
    if scale:
        X = X * rng.uniform(0.3, 3.0, size=C) + rng.normal(size=C) * 2
    W = rng.normal(size=(K, C)) * (rng.random((K, C)) < 0.4)
    y = np.argmax(X @ W.T + rng.gumbel(size=(N, K)), 1)
    return X, y


def sklearn_reference(X, y, lam, alpha):
    """sklearn's multinomial elastic net: (1-r)/2‖w‖² + r‖w‖₁ + C·Σ loss, i.e. ours with C = 1/(N·λ)."""
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(l1_ratio=alpha, C=1.0 / (len(y) * lam), solver="saga", tol=1e-9, max_iter=200000)
        model.fit(X, y)
    return model.coef_, model.intercept_


@pytest.mark.parametrize("seed, lam, scale", [(0, 3e-2, True), (1, 3e-3, False), (2, 1e-2, True)])
def test_objective_matches_or_beats_sklearn_saga(seed, lam, scale):
    X, y = problem(seed, scale=scale)
    fit = fit_elastic_net(X, y, lam, 0.99, tol=1e-9, **F64)
    W_ref, b_ref = sklearn_reference(X, y, lam, 0.99)
    reference = elastic_net_objective(X, y, W_ref, b_ref, lam, 0.99)
    assert fit.converged
    assert fit.objective <= reference * (1 + 1e-4)
    assert fit.objective == pytest.approx(reference, rel=1e-5)  # same problem, same minimum
    assert fit.nonzeros == int((np.abs(W_ref) > 1e-6).sum())


def test_objective_beats_glm_saga_on_the_same_problem():
    glm = pytest.importorskip("glm_saga")
    from conceptlab.cbm.heads import fit_glm_saga

    X, y = problem(3, N=200, C=6, K=3, scale=False)
    lam = 1e-2
    W, b, _ = fit_glm_saga(X, y, lam, 0.99, 3, epochs=300, device="cpu")
    reference = elastic_net_objective(X, y, W, b, lam, 0.99)
    fit = fit_elastic_net(X, y, lam, 0.99, tol=1e-9, **F64)
    assert glm is not None and fit.objective <= reference * (1 + 1e-4)
    assert fit.objective == pytest.approx(reference, rel=1e-3)  # glm-saga gets close, we get closer


def test_subgradient_optimality_holds_and_detects_a_perturbation():
    X, y = problem(4)
    lam = 5e-3
    fit = fit_elastic_net(X, y, lam, 0.99, tol=1e-10, **F64)
    assert fit.kkt < 1e-7
    assert kkt_residual(X, y, fit.weight, fit.bias, lam, 0.99) == pytest.approx(fit.kkt)
    W = fit.weight.clone()
    zero = (W == 0).nonzero()[0]
    W[zero[0], zero[1]] = 0.05  # move one inactive weight off zero
    assert kkt_residual(X, y, W, fit.bias, lam, 0.99) > 1e-3
    # active weights satisfy the stationarity equation with the sign of w
    assert (fit.weight != 0).sum() > 0 and (fit.weight == 0).sum() > 0


def test_ovr_loss_is_sgdclassifiers_objective_solved_exactly():
    from sklearn.linear_model import LogisticRegression

    X, y = problem(5, K=3, scale=False)
    lam, alpha = 1e-2, 0.99
    fit = fit_elastic_net(X, y, lam, alpha, loss="ovr", tol=1e-10, **F64)
    # one-vs-rest = K independent binary elastic nets; sklearn solves each exactly
    W_ref, b_ref = [], []
    for k in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(l1_ratio=alpha, C=1 / (len(y) * lam), solver="saga", tol=1e-9, max_iter=200000)
            ref.fit(X, (y == k).astype(int))
        W_ref.append(ref.coef_[0])
        b_ref.append(ref.intercept_[0])
    reference = elastic_net_objective(X, y, np.array(W_ref), np.array(b_ref), lam, alpha, loss="ovr")
    assert fit.objective <= reference * (1 + 1e-4)
    np.testing.assert_allclose(fit.weight.numpy(), np.array(W_ref), atol=1e-3)
    # and SGDClassifier (PCBM's head) lands near, never below, that minimum
    sgd = ElasticNetHead(lam=lam, alpha=alpha, solver="sgd").fit(X, y)
    sgd_objective = elastic_net_objective(X, y, sgd.coef_, sgd.intercept_, lam, alpha, loss="ovr")
    assert fit.objective <= sgd_objective + 1e-9


def test_pure_l2_matches_sklearn_multinomial_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    X, y = problem(6)
    lam = 1e-2
    fit = fit_elastic_net(X, y, lam, alpha=0.0, tol=1e-10, **F64)
    ref = LogisticRegression(l1_ratio=0.0, C=1 / (len(y) * lam), solver="lbfgs", tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(fit.weight.numpy(), ref.coef_, atol=1e-4)
    # intercepts are defined up to a shared shift under softmax
    np.testing.assert_allclose(fit.bias.numpy() - fit.bias.numpy().mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-4)
    assert fit.objective <= elastic_net_objective(X, y, ref.coef_, ref.intercept_, lam, 0.0) + 1e-10
    assert (fit.weight != 0).all()  # no L1, no exact zeros


def test_lambda_max_is_the_zero_threshold():
    X, y = problem(7)
    top = lambda_max(X, y, 0.99)
    above = fit_elastic_net(X, y, top * 1.01, 0.99, **F64)
    below = fit_elastic_net(X, y, top * 0.9, 0.99, **F64)
    huge = fit_elastic_net(X, y, 1e6, 0.99, **F64)
    assert above.nonzeros == 0 and huge.nonzeros == 0 and below.nonzeros > 0
    # with all weights zero the intercept is the log class prior (centred)
    prior = np.bincount(y, minlength=4) / len(y)
    np.testing.assert_allclose(huge.bias.numpy(), np.log(prior) - np.log(prior).mean(), atol=1e-6)


def test_path_uses_warm_starts_and_every_point_is_optimal():
    X, y = problem(8)
    fits = elastic_net_path(X, y, n_lams=8, eps=1e-2, tol=1e-8, **F64)
    lams = [f.lam for f in fits]
    assert lams == sorted(lams, reverse=True)
    assert fits[0].nonzeros == 0 and fits[-1].nonzeros > fits[len(fits) // 2].nonzeros > 0
    for f in fits:
        assert f.kkt < 1e-6
        single = fit_elastic_net(X, y, f.lam, 0.99, tol=1e-8, **F64)
        assert f.objective == pytest.approx(single.objective, rel=1e-7)


def test_standardize_solves_the_problem_on_z_scored_features():
    X, y = problem(9)
    lam = 1e-2
    fit = fit_elastic_net(X, y, lam, 0.99, standardize=True, tol=1e-9, **F64)
    Z = (X - X.mean(0)) / X.std(0)
    manual = fit_elastic_net(Z, y, lam, 0.99, tol=1e-9, **F64)
    # weights come back in the original feature space: W_orig = W_z / σ, same logits
    np.testing.assert_allclose(fit.weight.numpy() * X.std(0), manual.weight.numpy(), atol=1e-6)
    np.testing.assert_allclose(X @ fit.weight.numpy().T + fit.bias.numpy(), Z @ manual.weight.numpy().T + manual.bias.numpy(), atol=1e-5)
    assert fit.objective == pytest.approx(manual.objective, rel=1e-7)


def test_no_intercept_mode():
    X, y = problem(10)
    fit = fit_elastic_net(X, y, 1e-2, 0.99, fit_intercept=False, tol=1e-8, **F64)
    assert torch.equal(fit.bias, torch.zeros(4, dtype=fit.bias.dtype))
    assert kkt_residual(X, y, fit.weight, fit.bias, 1e-2, 0.99, fit_intercept=False) < 1e-6
    assert kkt_residual(X, y, fit.weight, fit.bias, 1e-2, 0.99, fit_intercept=True) > 1e-3  # b = 0 is not optimal


def test_float32_default_precision_is_enough():
    X, y = problem(11)
    default = fit_elastic_net(X, y, 1e-2, 0.99, device="cpu")
    assert default.weight.dtype == torch.float32 and default.status in ("converged", "stalled")
    # a tolerance beyond float32 ends at a float32 fixed point or as "stalled", not at max_iter
    tight = fit_elastic_net(X, y, 1e-2, 0.99, tol=1e-14, max_iter=100000, device="cpu")
    assert tight.status != "max_iter" and tight.n_iter < 20000
    assert tight.objective == pytest.approx(default.objective, rel=1e-5)
    f64 = fit_elastic_net(X, y, 1e-2, 0.99, tol=1e-8, **F64)
    f32 = fit_elastic_net(X, y, 1e-2, 0.99, dtype=torch.float32, device="cpu")
    assert f32.objective <= f64.objective * (1 + 1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    X, y = problem(12)
    cpu = fit_elastic_net(X, y, 1e-2, 0.99, **F64, tol=1e-9)
    gpu = fit_elastic_net(X, y, 1e-2, 0.99, device="cuda", dtype=torch.float64, tol=1e-9)
    assert gpu.objective == pytest.approx(cpu.objective, rel=1e-8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"X": np.full((4, 2), np.nan), "y": [0, 1, 0, 1]}, "NaN"),
        ({"X": np.ones((4, 2)), "y": [0, 1, 2, 5], "n_classes": 3}, r"\[0, 3\)"),
        ({"X": np.ones((4, 2)), "y": [0, 1, 0]}, "4 rows but y has 3"),
        ({"X": np.ones((4, 2)), "y": [0, 1, 0, 1], "alpha": 1.5}, "alpha"),
        ({"X": np.ones((4, 2)), "y": [0, 1, 0, 1], "lam": -1.0}, "lam"),
        ({"X": np.ones((4, 2)), "y": [0, 1, 0, 1], "loss": "hinge"}, "loss"),
    ],
)
def test_bad_inputs_are_clear_errors(kwargs, message):
    args = {"lam": 1e-2, **kwargs}
    with pytest.raises(ValueError, match=message):
        fit_elastic_net(args.pop("X"), args.pop("y"), args.pop("lam"), **args)
