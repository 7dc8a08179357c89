"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab import metrics
from conceptlab.cbm import ConceptBottleneckModel, DotLayer, Head
from conceptlab.concepts import Concept, ConceptBank


def test_accuracy_from_labels_logits_and_tensors():
    y = [0, 1, 2, 2]
    assert metrics.accuracy(y, [0, 1, 1, 2]) == 0.75
    logits = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 0], [0, 0, 5]])
    assert metrics.accuracy(y, logits) == 0.75
    assert metrics.accuracy(torch.tensor(y), torch.tensor(logits)) == 0.75
    with pytest.raises(ValueError, match="4 labels but 3"):
        metrics.accuracy(y, [0, 1, 2])


def test_top_k_accuracy():
    scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    y = [1, 1, 2]
    assert metrics.top_k_accuracy(y, scores, k=1) == 0.0
    assert metrics.top_k_accuracy(y, scores, k=2) == pytest.approx(2 / 3)  # row 0 and row 1
    assert metrics.top_k_accuracy(y, scores, k=5) == 1.0  # k is capped at the number of classes


def test_per_class_accuracy_with_an_absent_class():
    series = metrics.per_class_accuracy([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], class_names=["a", "b", "c"])
    assert series["a"] == 0.5 and series["b"] == pytest.approx(2 / 3) and np.isnan(series["c"])


def test_sparsity_counts():
    W = np.array([[0.0, 1e-6, 2.0, 0.0], [0.0, 0.0, -3.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    s = metrics.sparsity(W)
    assert s == {
        "nonzeros": 3,
        "total": 12,
        "fraction_nonzero": 0.25,
        "nec": 1.0,
        "nonzeros_per_class": [1, 2, 0],
        "concepts_used": 2,
    }
    assert metrics.sparsity(W, tol=1e-7)["nonzeros"] == 4


def test_coverage_counts_concepts_to_reach_the_energy():
    # one class; contributions = scores * weights
    W = np.array([[1.0, 1.0, 1.0, 1.0, 1.0]])
    S = np.array(
        [
            [5.0, 3.0, 2.0, 0.0, -4.0],  # positive: 5,3,2 of 10 -> 90% needs 3; absolute: 14 -> 12.6 needs 4
            [0.0, 0.0, 10.0, 0.0, 0.0],  # one concept carries it all
            [-1.0, -2.0, 0.0, 0.0, 0.0],  # no positive evidence
        ]
    )
    np.testing.assert_array_equal(metrics.coverage(S, W, 0.9), [3, 1, 0])
    np.testing.assert_array_equal(metrics.coverage(S, W, 0.9, zero_based=True), [2, 0, 0])  # DN-CBM's numbers
    np.testing.assert_array_equal(metrics.coverage(S, W, 0.9, mode="absolute"), [4, 1, 2])
    np.testing.assert_array_equal(metrics.coverage(S, W, 0.5), [1, 1, 0])
    # the class is the predicted one unless given
    W2 = np.array([[1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(metrics.coverage(S[:1], W2, 0.99), [3])  # class 1 wins: 10 vs 5
    np.testing.assert_array_equal(metrics.coverage(S[:1], W2, 0.99, classes=[0]), [1])


def test_concept_auroc_against_hand_values():
    scores = np.array([[0.1, 1.0], [0.4, 2.0], [0.35, 3.0], [0.8, 4.0]])
    truth = np.array([[0, 1], [0, 1], [1, 1], [1, 1]], bool)
    aurocs = metrics.concept_auroc(scores, truth, names=["a", "b"])
    assert aurocs["a"] == 0.75 and np.isnan(aurocs["b"])  # constant truth -> NaN
    assert aurocs.mean() == 0.75  # NaN skipped
    # matching by name, in another order, with a truth column the scores lack
    by_name = metrics.concept_auroc(scores, truth[:, ::-1], names=["a", "b"], truth_names=["b", "a"])
    assert by_name["a"] == 0.75
    partial = metrics.concept_auroc(scores, truth[:, :1], names=["a", "b"], truth_names=["a"])
    assert list(partial.index) == ["a"]


def test_true_value_map():
    scores = np.array([[1.0, 5.0], [3.0, 7.0], [10.0, 0.0]])
    truth = np.array([[1, 0], [1, 0], [0, 0]], bool)
    pos, neg = metrics.true_value_map(scores, truth)
    np.testing.assert_allclose(pos, [2.0, 4.0])  # concept 1 has no positives -> overall mean
    np.testing.assert_allclose(neg, [10.0, 4.0])


class _FixedHead(Head):
    def fit_head(self, scores, y, n_classes, context):
        self.weight_ = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
        self.bias_ = torch.zeros(2)
        return self


class _Fixed(ConceptBottleneckModel):
    """Two concepts, two classes, dot scores: class 0 when concept a > concept b."""

    def _make_layer(self):
        return DotLayer()

    def _make_head(self, n_concepts, n_classes):
        return _FixedHead()


def test_intervention_curve_on_a_hand_model():
    bank = ConceptBank([Concept("a", [1.0, 0.0], "s"), Concept("b", [0.0, 1.0], "s")])
    model = _Fixed(bank, ["A", "B"]).fit(np.eye(2), [0, 1])
    model.weight_[0, 1] = -3.0  # concept b matters more: it is intervened on first
    model.weight_[1, 1] = 3.0
    # truth: class A has a and not b; the scores are wrong for rows 1 and 2
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.9], [0.0, 1.0]], dtype=np.float32)
    labels = [0, 0, 0, 1]
    truth = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], bool)
    curve = metrics.intervention_curve(model, X, labels, truth, values=([1.0, 1.0], [0.0, 0.0]))
    assert curve["k"].tolist() == [0, 1, 2]
    assert curve["concept"].isna().tolist() == [True, False, False] and curve["concept"].tolist()[1:] == ["b", "a"]
    assert curve["accuracy"].tolist() == [0.5, 1.0, 1.0]
    assert curve["accuracy"].iloc[0] == model.score(X, labels)
    # with mean scores of a training set as the true values
    train_scores = np.array([[2.0, -1.0], [-1.0, 2.0]])
    train_truth = np.array([[1, 0], [0, 1]], bool)
    curve = metrics.intervention_curve(model, X, labels, truth, train_scores=train_scores, train_truth=train_truth, ks=[0, 2])
    assert curve["accuracy"].tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="train_scores"):
        metrics.intervention_curve(model, X, labels, truth)
