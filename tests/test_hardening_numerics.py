"""Hardening, class 6: numerics that used to fail silently.

A zero (or overflowing) concept vector is refused when a bank is built, not discovered as NaN
scores later; an elastic-net solve that stops at its iteration limit warns as scikit-learn does;
features whose scale overflows the solver's dtype are an error, not an all-zero head.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from conceptlab.cbm import PCBM
from conceptlab.cbm.elastic_net import fit_elastic_net
from conceptlab.cbm.heads import ElasticNetHead
from conceptlab.concepts import Concept, ConceptBank

pytestmark = pytest.mark.usefixtures("one_thread")


def data(n=300, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    return X, y


@pytest.mark.parametrize("vector", [[0.0, 0.0, 0.0], [3e38, 3e38, 0.0], [1e-30, 0.0, 0.0]])  # zero, overflow, underflow
def test_zero_or_overflowing_concept_vectors_are_refused_when_a_bank_is_built(vector):
    good = Concept("red", [1.0, 0.0, 0.0], "s")
    with pytest.raises(ValueError, match=r"1 concept\(s\) have a vector whose norm is zero or not finite in float32: 'dead'.*divides by zero"):
        ConceptBank([good, Concept("dead", vector, "s")])
    with pytest.raises(ValueError, match="'dead'"):
        ConceptBank.from_tensors(["red", "dead"], [[1.0, 0.0, 0.0], vector], "s")
    ConceptBank([good, Concept("small", [1e-10, 0.0, 0.0], "s")])  # small is fine while its norm is a number


def test_a_zero_vector_can_no_longer_turn_scores_into_nan():
    X, y = data()
    names = [f"c{j}" for j in range(6)]
    vectors = torch.eye(6)
    vectors[4] = 0.0
    with pytest.raises(ValueError, match="'c4'"):
        PCBM(ConceptBank.from_tensors(names, vectors, "s"), ["a", "b", "c"]).fit(X, y)


def test_the_solver_warns_when_it_stops_at_max_iter():
    X, y = data()
    with pytest.warns(ConvergenceWarning, match=r"stopped at max_iter=5 before reaching tol=1e-05"):
        fit = fit_elastic_net(X, y, 1e-4, n_classes=3, max_iter=5)
    assert fit.status == "max_iter"
    bank = ConceptBank.from_tensors([f"c{j}" for j in range(6)], torch.eye(6), "s")
    with pytest.warns(ConvergenceWarning):
        PCBM(bank, ["a", "b", "c"], max_iter=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged solve is silent
        assert fit_elastic_net(X, y, 1e-2, n_classes=3).status == "converged"


def test_sgd_warns_too(monkeypatch):
    import conceptlab.cbm.heads.elastic_net_head as head_module

    original = head_module.fit_sgd
    monkeypatch.setattr(head_module, "fit_sgd", lambda *a, **k: original(*a, **{**k, "max_iter": 1}))
    X, y = data()
    with pytest.warns(ConvergenceWarning, match="SGDClassifier stopped at max_iter"):
        ElasticNetHead(lam=1e-4, solver="sgd").fit(X.numpy(), y.numpy())


def test_features_that_overflow_are_an_error_not_an_all_zero_head():
    X, y = data()
    with pytest.raises(ValueError, match=r"too large for torch.float32 \(largest \|value\| \d\.\d+e\+30\).*overflow.*dtype=torch.float64"):
        fit_elastic_net(X * 1e30, y, 1e-3, n_classes=3)
    fit = fit_elastic_net((X * 1e30).double(), y, 1e-3, n_classes=3, dtype=torch.float64)
    assert fit.status == "converged" and fit.nonzeros > 0


def test_sgd_gets_the_scores_in_their_own_precision_as_pcbm():
    """PCBM hands SGDClassifier float32 projections; a float64 copy would change its path."""
    from sklearn.linear_model import SGDClassifier

    X, y = data(seed=1)
    head = ElasticNetHead(lam=1e-3, alpha=0.99, solver="sgd", seed=42)
    from conceptlab.cbm.heads import HeadContext

    head.fit_head(X, y, 3, HeadContext(X, None, ["a", "b", "c"]))
    official = SGDClassifier(loss="log_loss", penalty="elasticnet", alpha=1e-3, l1_ratio=0.99, max_iter=10000, random_state=42)
    official.fit(X.numpy(), y.numpy())
    assert official.coef_.dtype == np.float32
    np.testing.assert_array_equal(head.coef_, official.coef_.astype(np.float64))
    np.testing.assert_array_equal(head.intercept_, official.intercept_.astype(np.float64))
