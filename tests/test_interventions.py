"""Intervenable CBMs: calibrated concept probabilities, a sequential PCBM, interventions by policy.

The world is ShapesWorld's attribute rows drawn as embeddings: one orthonormal direction per true
concept plus noise (as in test_editing), so concept scores are informative but imperfect, and a
bank of those directions gives PCBM margins. Sizes are small; the full study on zoo:shapes-clip is
in data_cards/shapesworld_cbm_results.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from conceptlab.cbm import PCBM, ConceptBottleneckModel, ElasticNetHead, HeadContext
from conceptlab.cbm.calibration import CalibratedLayer, ConceptCalibrator, align_concept_labels, platt_scaling
from conceptlab.cbm.heads.intervention_aware import InterventionAwareHead
from conceptlab.cbm.interventions import (
    fit_calibrator,
    intervene_with_truth,
    intervention_curves,
    intervention_order,
    intervention_space,
    intervention_summary,
)
from conceptlab.cbm.methods.sequential import SequentialPCBM
from conceptlab.concepts import ConceptBank
from conceptlab.data import ShapesWorld

D, NOISE = 40, 0.8

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(D, D)))[0][:25].astype(np.float32)
    data = {}
    for i, (split, size) in enumerate((("train", 1500), ("test", 400))):
        ds = ShapesWorld(split, size=size, seed=0)
        noise = np.random.default_rng(i + 1).normal(size=(size, D)).astype(np.float32)
        X = 2 * ds.concepts.astype(np.float32) @ directions + NOISE * noise
        data[split] = (X, ds.labels, pd.DataFrame(ds.concepts, columns=ds.concept_names))
    bank = ConceptBank.from_tensors(ds.concept_names, directions, "synthetic#image-embedding", provenance={"kind": "text"})
    X, y, truth = data["train"]
    sequential = SequentialPCBM(bank, ds.class_names).fit(X, y, concept_labels=truth)
    pcbm = PCBM(bank, ds.class_names).fit(X, y)
    return {"data": data, "bank": bank, "sequential": sequential, "pcbm": pcbm, "class_names": ds.class_names}


# -- calibration ------------------------------------------------------------------------------------


def test_platt_scaling_recovers_a_known_sigmoid():
    rng = np.random.default_rng(3)
    s = rng.normal(0, 2, size=20000)
    truth = rng.random(len(s)) < 1 / (1 + np.exp(-(1.5 * s - 0.5)))
    a, b = platt_scaling(s, truth)
    assert a == pytest.approx(1.5, rel=0.06) and b == pytest.approx(-0.5, abs=0.06)


def test_calibrator_falls_back_to_koh_percentiles_without_labels():
    scores = np.random.default_rng(0).normal(size=(500, 3)) * [1.0, 5.0, 0.1]
    labels = np.full((500, 3), np.nan)
    labels[:, 0] = scores[:, 0] > 0  # only the first concept has labels
    cal = ConceptCalibrator().fit(scores, labels)
    assert cal.calibrated_.tolist() == [True, False, False] and not cal.is_calibrated
    # uncalibrated concepts: the 5th / 95th training percentiles map to 0.05 / 0.95 ...
    p = cal.predict_proba(np.stack([cal.low_, cal.high_]))
    assert np.allclose(p[:, 1:], [[0.05, 0.05], [0.95, 0.95]])
    # ... and are the true values in score space (Koh et al.); probabilities: 1/0 where calibrated
    assert np.allclose(cal.true_scores()[0], np.percentile(scores, 95, axis=0))
    present, absent = cal.true_probabilities()
    assert np.allclose(present, [1.0, 0.95, 0.95]) and np.allclose(absent, [0.0, 0.05, 0.05])
    # the torch map is the numpy one, and the state round-trips
    assert np.allclose(cal.probabilities(torch.tensor(scores, dtype=torch.float32)).numpy(), cal.predict_proba(scores), atol=1e-6)
    again = ConceptCalibrator.from_state(cal.state())
    assert np.allclose(again.predict_proba(scores), cal.predict_proba(scores)) and again.calibrated_.tolist() == cal.calibrated_.tolist()


def test_concept_labels_are_aligned_by_name():
    frame = pd.DataFrame({"b": [1, 0], "a": [0, 1], "extra": [1, 1]})
    assert np.array_equal(align_concept_labels(frame, ["a", "b", "c"])[:, :2], [[0, 1], [1, 0]])
    assert np.isnan(align_concept_labels(frame, ["a", "b", "c"])[:, 2]).all()
    with pytest.raises(ValueError, match="must be 0/1"):
        align_concept_labels({"a": [0.5, 1]}, ["a"])
    with pytest.raises(ValueError, match="in the concepts' order"):
        align_concept_labels(np.zeros((2, 3)), ["a", "b"])


# -- the sequential PCBM ------------------------------------------------------------------------------


def test_sequential_pcbm_is_calibrated_and_round_trips(world, tmp_path):
    model, (X, y, truth) = world["sequential"], world["data"]["test"]
    assert isinstance(model.concept_layer_, CalibratedLayer) and model.calibrator_.is_calibrated
    assert model.provenance_["layer"]["calibrated_concepts"] == 25 and model.provenance_["concept_labels"] == 25
    assert model.provenance_["augmented_rows"] == 2 * 1500  # two corrected copies of the training set
    p = model.transform(X)
    assert p.min() >= 0 and p.max() <= 1
    # calibrated: among images given probability ~0.8-0.95, about that share have the concept
    band = (p > 0.8) & (p < 0.95)
    assert truth.to_numpy()[band].mean() == pytest.approx(p[band].mean(), abs=0.08)
    assert model.score(X, y) > 0.85
    loaded = ConceptBottleneckModel.load(model.save(tmp_path / "seq"))
    assert type(loaded) is SequentialPCBM and np.allclose(loaded.transform(X), p, atol=1e-6)
    assert np.array_equal(loaded.predict(X), model.predict(X)) and loaded.calibrator_.is_calibrated
    # clone + refit without concept labels: Koh's fallback, and the provenance says so
    twin = clone(model).fit(world["data"]["train"][0], world["data"]["train"][1])
    assert not twin.calibrator_.is_calibrated and "percentiles" in twin.provenance_["layer"]["fallback"]


def test_intervention_aware_head_without_copies_is_the_inner_head(world):
    X, y, truth = world["data"]["train"]
    scores = torch.tensor(X[:, :5])
    labels = torch.tensor(y)
    context = HeadContext(torch.tensor(X), None, world["class_names"], concept_labels=truth.to_numpy()[:, :5].astype(float))
    plain = ElasticNetHead(lam=1e-3).fit_head(scores, labels, 12, context)
    aware = InterventionAwareHead(ElasticNetHead(lam=1e-3), copies=0).fit_head(scores, labels, 12, context)
    assert torch.equal(plain.weight_, aware.weight_) and aware.augmented_rows_ == 0


# -- interventions ---------------------------------------------------------------------------------------


def test_all_true_concepts_fix_the_sequential_model_and_every_policy_rises(world):
    model, (X, y, truth) = world["sequential"], world["data"]["test"]
    curves = intervention_curves(model, X, y, truth, n_random=3, n_boot=200)
    assert curves.attrs["kind"] == "probability" and set(curves["policy"]) == {"random", "weight", "uncertainty"}
    summary = intervention_summary(curves, target=0.99)
    assert np.allclose(summary["k=0"], model.score(X, y))
    assert (summary["all"] >= 0.99).all(), summary  # every concept true: the class rules decide
    assert (summary["largest drop"] <= 0.01).all(), summary  # the curves rise (at most 4 images of 400 back)
    assert summary.loc["uncertainty", "mean over k"] > summary.loc["random", "mean over k"]
    assert (curves["low"] <= curves["accuracy"]).all() and (curves["accuracy"] <= curves["high"]).all()
    assert curves.loc[curves["policy"] == "random", "sd"].iloc[5] > 0  # three random orders differ


def test_raw_score_models_need_a_calibrator_and_get_percentile_values(world):
    model, (X, _, truth) = world["pcbm"], world["data"]["test"]
    with pytest.raises(ValueError, match="fit_calibrator"):
        intervention_space(model, X)
    calibrator = fit_calibrator(model, world["data"]["train"][0], world["data"]["train"][2])
    space = intervention_space(model, X, calibrator)
    assert space.kind == "score" and np.allclose(space.present, calibrator.high_)
    out = intervene_with_truth(model, X, truth, k=25, policy="weight", calibrator=calibrator)
    T = truth[model.concept_names_].to_numpy()
    assert np.allclose(out["scores"], np.where(T, calibrator.high_, calibrator.low_), atol=1e-5) and out["intervened"].all()
    # "correct" only touches the concepts on the wrong side of 0.5
    corrected = intervene_with_truth(model, X, truth, k=25, calibrator=calibrator, mode="correct")
    wrong = (space.probabilities > 0.5) != T
    assert np.array_equal(corrected["intervened"], wrong)


def test_policies_order_concepts_as_documented(world):
    model, X = world["sequential"], world["data"]["test"][0]
    space = intervention_space(model, X[:20])
    known = np.ones(25, dtype=bool)
    known[3] = False
    rank = intervention_order(model, space, "uncertainty", known)
    first = rank.argmin(1)
    closeness = np.abs(space.probabilities - 0.5)
    closeness[:, 3] = np.inf
    assert np.array_equal(first, closeness.argmin(1))
    assert (rank[:, 3] == 25).all()  # no label: never intervened on
    weight_rank = intervention_order(model, space, "weight")
    assert (weight_rank[0] == weight_rank[1]).all() and weight_rank[0].argmin() == np.abs(model.coef_).sum(0).argmax()
    with pytest.raises(ValueError, match="policy"):
        intervention_order(model, space, "psychic")
