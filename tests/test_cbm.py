"""The shared CBM core and PCBM / PCBM-h on a synthetic world whose classes are rules over known concepts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from conceptlab.cbm import PCBM, ConceptBottleneckModel, DotLayer, Head, PCBMHybrid, pcbm_lambda
from conceptlab.concepts import Concept, ConceptBank, UnknownNameError
from conceptlab.data import CLASS_RULES, ShapesWorld

D = 40


# small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def embed(split, size, noise=1.0):
    """Synthetic "image embeddings" of ShapesWorld rows: an offset, one orthonormal direction per
    true concept (scaled by 2), Gaussian noise. The text-like bank holds those directions."""
    ds = ShapesWorld(split, size=size, seed=0)
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    directions = Q[: len(ds.concept_names)].astype(np.float32)
    offset = rng.normal(size=D).astype(np.float32)
    noise_rng = np.random.default_rng({"train": 1, "val": 2, "test": 3, "shifted": 4}[split])
    X = 2 * offset + 2 * ds.concepts.astype(np.float32) @ directions + noise * noise_rng.normal(size=(size, D)).astype(np.float32)
    return X, ds.labels, ds.concepts, directions, ds


@pytest.fixture(scope="module")
def world():
    Xtr, ytr, Ttr, directions, ds = embed("train", 3000)
    Xte, yte, Tte, _, _ = embed("test", 1000)
    bank = ConceptBank.from_tensors(ds.concept_names, directions, "synthetic#image-embedding", provenance={"kind": "text"})
    return {"Xtr": Xtr, "ytr": ytr, "Ttr": Ttr, "Xte": Xte, "yte": yte, "Tte": Tte, "bank": bank, "classes": ds.class_names, "directions": directions}


@pytest.fixture(scope="module")
def pcbm(world):
    return PCBM(world["bank"], world["classes"]).fit(world["Xtr"], world["ytr"])


# -- PCBM ----------------------------------------------------------------------------------------


def test_pcbm_is_accurate_and_its_largest_weights_are_the_rule_concepts(pcbm, world):
    assert pcbm.score(world["Xte"], world["yte"]) >= 0.78  # noisy concepts; chance is 1/12
    assert pcbm.lam_ == pytest.approx(pcbm_lambda(25, 12)) == 2 / 300
    weights = pcbm.weights_frame()
    for name, (rule, _) in CLASS_RULES.items():
        allowed = {f"{family}:{value}" for family, values in rule.items() for value in values}
        assert weights.loc[name].idxmax() in allowed, name
    assert pcbm.head_info_["converged"] and pcbm.head_info_["kkt"] < 1e-4
    assert (pcbm.coef_ == 0).mean() > 0.5  # sparse


def test_transform_is_the_margin_and_predict_agrees_with_logits(pcbm, world):
    X = world["Xte"][:50]
    d = world["directions"]
    np.testing.assert_allclose(pcbm.transform(X), X @ d.T / np.linalg.norm(d, axis=1), rtol=1e-4, atol=1e-4)
    logits = pcbm.decision_function(X)
    np.testing.assert_allclose(logits, pcbm.transform(X) @ pcbm.coef_.T + pcbm.intercept_, rtol=1e-4, atol=1e-4)
    assert (pcbm.predict(X) == logits.argmax(1)).all()
    np.testing.assert_allclose(pcbm.predict_proba(X).sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(pcbm.decision_from_scores(pcbm.transform(X)), logits, atol=1e-5)


def test_sgd_solver_is_the_official_head(world):
    model = PCBM(world["bank"], world["classes"], solver="sgd", loss="ovr").fit(world["Xtr"], world["ytr"])
    assert model.score(world["Xte"], world["yte"]) >= 0.75


def test_labels_as_class_names(world, pcbm):
    names = np.array(world["classes"])[world["ytr"]]
    model = PCBM(world["bank"], world["classes"]).fit(world["Xtr"], names)
    np.testing.assert_allclose(model.coef_, pcbm.coef_, atol=1e-6)


# -- PCBM-h --------------------------------------------------------------------------------------


def test_pcbm_h_beats_pcbm_when_concepts_are_incomplete(world):
    colourless = world["bank"].subset([n for n in world["bank"].names if not n.startswith("color:")])
    plain = PCBM(colourless, world["classes"]).fit(world["Xtr"], world["ytr"])
    hybrid = PCBMHybrid.from_pcbm(plain).fit_residual(world["Xtr"], world["ytr"])
    acc_plain, acc_hybrid = plain.score(world["Xte"], world["yte"]), hybrid.score(world["Xte"], world["yte"])
    assert acc_hybrid >= acc_plain + 0.05, (acc_plain, acc_hybrid)
    assert torch.equal(hybrid.weight_, plain.weight_)  # the concept head stays frozen
    assert hybrid.residual_weight_.shape == (12, D) and plain.residual_weight_ is None
    assert hybrid.residual_losses_[-1] < hybrid.residual_losses_[0]


def test_pcbm_h_fit_trains_both_parts_deterministically(world, pcbm):
    a = PCBMHybrid(world["bank"], world["classes"], residual_epochs=1).fit(world["Xtr"], world["ytr"])
    b = PCBMHybrid(world["bank"], world["classes"], residual_epochs=1).fit(world["Xtr"], world["ytr"])
    assert torch.equal(a.residual_weight_, b.residual_weight_)
    np.testing.assert_allclose(a.coef_, pcbm.coef_, atol=1e-6)  # the same concept head as PCBM

    def train_ce(model):
        proba = model.predict_proba(world["Xtr"])
        return -np.log(proba[np.arange(len(proba)), world["ytr"]]).mean()

    # the official recipe (20 epochs) fits what the concept head leaves over. (With complete
    # concepts and isotropic noise this cannot help on test; the residual starts from PyTorch's
    # random init, so after one epoch it still costs a little.)
    full = PCBMHybrid.from_pcbm(pcbm).fit_residual(world["Xtr"], world["ytr"])
    assert train_ce(full) < train_ce(pcbm) - 0.02
    assert full.score(world["Xte"], world["yte"]) >= pcbm.score(world["Xte"], world["yte"]) - 0.05
    frame = a.explain(world["Xte"][:1])
    assert frame["concept"].iloc[-1] == "(residual)"
    assert frame["contribution"].sum() == pytest.approx(a.decision_function(world["Xte"][:1])[0].max(), abs=1e-4)


# -- explain / intervene / prune ----------------------------------------------------------------


def test_explain_sums_to_the_logit_and_is_sorted(pcbm, world):
    X = world["Xte"][:1]
    frame = pcbm.explain(X)
    logits = pcbm.decision_function(X)[0]
    k = int(logits.argmax())
    assert frame.attrs["class"] == frame.attrs["predicted"] == world["classes"][k]
    assert frame["contribution"].sum() == pytest.approx(logits[k], abs=1e-4)
    concepts = frame[frame["concept"] != "(intercept)"]
    assert list(concepts["contribution"].abs()) == sorted(concepts["contribution"].abs(), reverse=True)
    np.testing.assert_allclose(concepts["contribution"], concepts["score"] * concepts["weight"], rtol=1e-5, atol=1e-6)
    other = pcbm.explain(X, class_="jade spire", top=3)
    assert set(other["class"]) == {"jade spire"} and len(other) == 4
    batch = pcbm.explain(world["Xte"][:3])
    assert sorted(batch["sample"].unique()) == [0, 1, 2] and len(batch) == 3 * 26


def test_intervene_moves_the_prediction_the_expected_way(pcbm, world):
    ruby = world["classes"].index("ruby disc")
    rows = np.flatnonzero((world["yte"] == ruby) & (pcbm.predict(world["Xte"]) == ruby))[:20]
    X = world["Xte"][rows]
    before = pcbm.predict_proba(X)[:, ruby]
    coef_before = pcbm.coef_.copy()
    low = pcbm.intervene(X, set={"color:red": -3.0})
    assert (low.proba[:, ruby] < before).all()
    assert (low.scores[:, pcbm.concept_names_.index("color:red")] == -3.0).all()
    high = pcbm.intervene(X, set={"color:red": np.full(len(rows), 6.0, dtype=np.float32)})
    assert (high.proba[:, ruby] >= low.proba[:, ruby]).all()
    zeroed = pcbm.intervene(X, zero=["color:red", "shape:circle"])
    assert (zeroed.predictions != ruby).mean() > 0.5
    # pure: the model and its predictions are unchanged
    np.testing.assert_array_equal(pcbm.coef_, coef_before)
    np.testing.assert_allclose(pcbm.predict_proba(X)[:, ruby], before)
    with pytest.raises(UnknownNameError, match="color:red"):
        pcbm.intervene(X, set={"colour:red": 1.0})
    with pytest.raises(ValueError, match="one value per row"):
        pcbm.intervene(X, set={"color:red": [1.0, 2.0]})


def test_prune_zeroes_weights_in_a_copy(pcbm):
    before = pcbm.coef_.copy()
    pruned = pcbm.prune(["background:white", "color:red"], classes=["ruby disc", "azure block"])
    W = pruned.coef_
    rows = [pcbm.class_names_.index(c) for c in ["ruby disc", "azure block"]]
    cols = [pcbm.concept_names_.index(c) for c in ["background:white", "color:red"]]
    assert (W[np.ix_(rows, cols)] == 0).all()
    mask = np.ones_like(W, bool)
    mask[np.ix_(rows, cols)] = False
    np.testing.assert_array_equal(W[mask], before[mask])  # nothing else moved
    np.testing.assert_array_equal(pcbm.coef_, before)  # original unchanged
    assert pcbm.edits_ == [] and pruned.edits_[0]["op"] == "prune" and pruned.edits_[0]["renormalize"] is False
    everywhere = pcbm.prune("color:red")
    assert (everywhere.coef_[:, pcbm.concept_names_.index("color:red")] == 0).all()


def test_prune_renormalize_keeps_each_edited_rows_l1_norm(pcbm):
    before = pcbm.coef_.copy()
    edited = pcbm.prune("shape:circle", classes=["ruby disc", "jade disc"], renormalize=True)
    W = edited.coef_
    for name in ["ruby disc", "jade disc"]:
        k = pcbm.class_names_.index(name)
        assert W[k, pcbm.concept_names_.index("shape:circle")] == 0
        assert np.abs(W[k]).sum() == pytest.approx(np.abs(before[k]).sum(), rel=1e-5)
        assert np.abs(W[k]).sum() > 0 and not np.allclose(W[k], before[k])
        # the surviving weights are scaled by one common factor
        keep = before[k] != 0
        keep[pcbm.concept_names_.index("shape:circle")] = False
        ratios = W[k, keep] / before[k, keep]
        np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)
        assert ratios[0] > 1
    untouched = pcbm.class_names_.index("sun star")
    np.testing.assert_array_equal(W[untouched], before[untouched])


def test_prune_unknown_concept_lists_near_matches(pcbm):
    with pytest.raises(UnknownNameError, match=r"Did you mean: 'background:white'") as info:
        pcbm.prune("background:whit")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownNameError, match="unknown class"):
        pcbm.prune("color:red", classes=["ruby disk!"])


# -- save / load ---------------------------------------------------------------------------------


def test_save_load_gives_identical_predictions(pcbm, world, tmp_path):
    edited = pcbm.prune("background:white", renormalize=True)
    edited.save(tmp_path / "pcbm")
    assert sorted(p.name for p in (tmp_path / "pcbm").iterdir()) == ["bank", "config.json", "model.safetensors"]
    loaded = ConceptBottleneckModel.load(tmp_path / "pcbm")
    assert type(loaded) is PCBM and loaded.edits_ == edited.edits_ and loaded.lam_ == edited.lam_
    assert np.array_equal(loaded.decision_function(world["Xte"]), edited.decision_function(world["Xte"]))
    assert loaded.get_params().keys() == edited.get_params().keys() and loaded.bank == edited.bank
    config = json.loads((tmp_path / "pcbm" / "config.json").read_text())
    assert config["provenance"]["library_version"] and config["provenance"]["seed"] == 42
    hybrid = PCBMHybrid.from_pcbm(pcbm, residual_epochs=1).fit_residual(world["Xtr"][:500], world["ytr"][:500])
    hybrid.save(tmp_path / "hybrid")
    again = PCBM.load(tmp_path / "hybrid")
    assert type(again) is PCBMHybrid and again.residual_epochs == 1
    assert np.array_equal(again.predict_proba(world["Xte"]), hybrid.predict_proba(world["Xte"]))
    with pytest.raises(TypeError, match="not a PCBMHybrid"):
        PCBMHybrid.load(tmp_path / "pcbm")


def test_load_errors(pcbm, tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved model"):
        PCBM.load(tmp_path / "nothing")
    folder = pcbm.save(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        PCBM.load(folder)
    (folder / "config.json").write_text("[]")
    with pytest.raises(ValueError, match="config.json"):
        PCBM.load(folder)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_inputs_are_clear_errors(world, pcbm):
    bank, classes = world["bank"], world["classes"]
    X, y = world["Xtr"][:100], world["ytr"][:100]
    with pytest.raises(ValueError, match="dimension 39 but the concept bank"):
        PCBM(bank, classes).fit(X[:, :39], y)
    with pytest.raises(ValueError, match="dimension 41"):
        pcbm.predict(np.ones((2, 41)))
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PCBM(bank, classes).fit(bad, y)
    with pytest.raises(ValueError, match="NaN"):
        pcbm.predict(bad)
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        PCBM(bank, classes).fit(X, np.where(y == 0, 12, y))
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        PCBM(bank, classes).fit(X, np.where(y == 0, -1, y))
    with pytest.raises(ValueError, match="100 embeddings but 99 labels"):
        PCBM(bank, classes).fit(X, y[:99])
    with pytest.raises(ValueError, match="empty"):
        PCBM([], classes).fit(X, y)
    with pytest.raises(ValueError, match="at least one concept"):
        PCBM(ConceptBank([]), classes)
    with pytest.raises(NotFittedError):
        PCBM(bank, classes).predict(X)
    with pytest.raises(ValueError, match="solver"):
        PCBM(bank, classes, solver="adam").fit(X, y)


def test_estimator_contract(world):
    model = PCBM(world["bank"], world["classes"], lam=1e-3)
    assert not model.is_fitted and not hasattr(model, "weight_")
    assert model.get_params()["lam"] == 1e-3 and model.set_params(lam=2e-3) is model and model.lam == 2e-3
    with pytest.raises(ValueError, match="Invalid parameter 'lr'"):
        model.set_params(lr=1)
    assert model.fit(world["Xtr"][:400], world["ytr"][:400]) is model and model.lam_ == 2e-3
    assert "PCBM(" in repr(model) and "fitted" in repr(model)


def test_dot_scores_and_a_custom_subclass():
    class FixedHead(Head):
        def fit_head(self, scores, y, n_classes, context):
            self.weight_ = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
            self.bias_ = torch.zeros(2)
            return self

    class Fixed(ConceptBottleneckModel):
        """A minimal subclass: dot scores and a fixed head, to check the base class is generic."""

        def _make_layer(self):
            return DotLayer()

        def _make_head(self, n_concepts, n_classes):
            return FixedHead()

    bank = ConceptBank([Concept("a", [2.0, 0.0], "s", bias=1.0), Concept("b", [0.0, 1.0], "s")])
    model = Fixed(bank, ["A", "B"]).fit(np.eye(2), [0, 1])
    np.testing.assert_allclose(model.transform([[1.0, 3.0]]), [[2.0, 3.0]])  # dot: no bias, no norm
    assert model.predict([[1.0, 3.0]]).tolist() == [1]
    assert model.intervene([[1.0, 3.0]], set={"a": 10.0}).predictions.tolist() == [0]
