"""The CBM contract, run on every method in the registry (as sklearn's check_estimator and
diffusers' tester mixins): a new method file gets these checks without writing them.

On a small synthetic world whose classes are made of concept atoms, each registered method must:
refuse unfitted use; fit and classify well above chance; give probabilities that sum to one;
explain every prediction by contributions that sum to its logit; intervene and prune without
changing itself; come back from save/load with identical predictions; and survive
``sklearn.base.clone`` (an unfitted copy with the same parameters that refits to the same model).
"""

from __future__ import annotations

import importlib.util
import textwrap

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conceptlab.cbm import ConceptBottleneckModel
from conceptlab.concepts import ConceptBank
from conceptlab.registry import METHODS

pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]

CLASSES = ["a", "b", "c"]
D = 16
#: settings that make each built-in method quick on the tiny world; a new method runs with its defaults
FAST = {
    "labo": {"lr": 0.05, "epochs": 30, "val_every": 5, "batch_size": 128, "device": "cpu"},
    "v2c": {"lr": 0.05, "epochs": 30, "val_every": 5, "batch_size": 128, "device": "cpu"},
    "dncbm": {"lr": 1e-2, "epochs": 30, "batch_size": 128, "lam": 0.01, "device": "cpu"},
    "lfcbm": {"proj_steps": 300, "proj_lr": 2e-2, "interpretability_cutoff": 0.1, "lam": 1e-3},
    "pcbm_h": {"residual_epochs": 2},
}


def world(n: int, seed: int):
    """Two concept atoms per class plus shared noise: (X (n, D), labels (n,))."""
    atoms = torch.nn.functional.normalize(torch.randn(2 * len(CLASSES), D, generator=torch.Generator().manual_seed(7)), dim=1)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(CLASSES), (n,), generator=g)
    weights = 1 + torch.rand(n, 2, generator=g)
    X = weights[:, :1] * atoms[2 * y] + weights[:, 1:] * atoms[2 * y + 1] + 0.15 * torch.randn(n, D, generator=g)
    return X, y, atoms


@pytest.fixture(scope="module")
def data():
    X, y, atoms = world(400, 0)
    Xv, yv, _ = world(120, 1)
    Xt, yt, _ = world(200, 2)
    return {"train": (X, y), "val": (Xv, yv), "test": (Xt, yt), "atoms": atoms}


@pytest.fixture(scope="module")
def sae(data):
    from conceptlab.discovery import SparseAutoencoder

    return SparseAutoencoder(n_latents=12, l1=1e-3, steps=150, batch_size=128, lr=1e-2, seed=0, progress=False).fit(data["train"][0])


def bank_for(kind: str, data, sae) -> tuple[ConceptBank, dict]:
    """A bank of the kind a method needs, and the extra constructor arguments that go with it."""
    atoms = data["atoms"]
    names = [f"{c} part {i}" for c in CLASSES for i in range(2)]
    if kind == "sae":
        bank = ConceptBank.from_tensors([f"latent {i}" for i in range(sae.d_sae_)], sae.decoder_directions, "synthetic")
        return bank, {"sae": sae}
    links = [[c] for c in CLASSES for _ in range(2)]
    scores = [{"class_scores": {c: float(2 - i)}} for c in CLASSES for i in range(2)]
    return ConceptBank.from_tensors(names, atoms, "synthetic", class_links=links, provenance=scores), {}


def build(name: str, klass: type, data, sae) -> ConceptBottleneckModel:
    bank, extra = bank_for(klass.bank_kind, data, sae)
    extra = {k: v for k, v in extra.items() if k in klass._get_param_names()}
    return klass(bank=bank, class_names=CLASSES, **extra, **FAST.get(name, {}))


def fit(model: ConceptBottleneckModel, data) -> ConceptBottleneckModel:
    validation = data["val"] if model.needs_validation else ()
    return model.fit(*data["train"], *validation)


def check_contract(name: str, klass: type, data, sae, tmp_path) -> None:
    model = build(name, klass, data, sae)
    Xt, yt = data["test"]
    with pytest.raises(NotFittedError):
        model.predict(Xt)
    assert fit(model, data) is model and model.is_fitted
    assert model.method_name() == name and name in METHODS
    # classifies, with probabilities
    predictions, proba, logits = model.predict(Xt), model.predict_proba(Xt), model.decision_function(Xt)
    assert predictions.shape == (len(Xt),) and proba.shape == logits.shape == (len(Xt), len(CLASSES))
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5) and np.array_equal(predictions, logits.argmax(1))
    assert model.score(Xt, yt) >= 0.8, f"{name} reaches only {model.score(Xt, yt):.2f} on an easy world"
    scores = model.transform(Xt)
    assert scores.shape == (len(Xt), len(model.concept_names_)) == (len(Xt), len(model.bank_))
    # explanations sum to the explained logit
    frame = model.explain(Xt[:1])
    assert frame["contribution"].sum() == pytest.approx(float(logits[0].max()), rel=1e-4, abs=1e-4)
    # interventions are pure and go through the head
    concept = model.concept_names_[0]
    before = model.coef_.copy()
    edited = model.intervene(Xt[:4], set={concept: 3.0})
    assert np.allclose(edited.scores[:, 0], 3.0)
    assert np.allclose(edited.logits, model.decision_from_scores(edited.scores, Xt[:4]), atol=1e-5)
    pruned = model.prune(concept)
    assert (pruned.coef_[:, 0] == 0).all() and np.array_equal(model.coef_, before)
    # save -> load -> the same predictions, the same class
    loaded = ConceptBottleneckModel.load(model.save(tmp_path / name))
    assert type(loaded) is klass and loaded.concept_names_ == model.concept_names_
    assert np.array_equal(loaded.predict(Xt), predictions) and np.allclose(loaded.decision_function(Xt), logits, atol=1e-5)
    # clone: unfitted, same parameters, refits to the same model
    twin = clone(model)
    assert not twin.is_fitted and twin.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    assert np.array_equal(fit(twin, data).predict(Xt), predictions)


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_every_registered_method_keeps_the_contract(name, data, sae, tmp_path):
    check_contract(name, METHODS.get(name), data, sae, tmp_path)


TOY_METHOD = '''
"""A toy CBM method in one file: dot scores and a nearest-class-mean head."""

import torch

from conceptlab.cbm import ConceptBottleneckModel, DotLayer, Head
from conceptlab.registry import register_method


class ClassMeanHead(Head):
    def fit_head(self, scores, y, n_classes, context):
        means = torch.stack([scores[y == k].mean(0) for k in range(n_classes)])
        self.weight_ = means
        self.bias_ = -0.5 * (means**2).sum(1)
        return self


@register_method("toy_class_mean", description="a toy method added as one file")
class ToyClassMean(ConceptBottleneckModel):
    """Dot scores and a nearest-class-mean head."""

    def __init__(self, bank, class_names=None, seed=42):
        super().__init__(bank=bank, class_names=class_names, seed=seed)

    def _make_layer(self):
        return DotLayer()

    def _make_head(self, n_concepts, n_classes):
        return ClassMeanHead()
'''


def test_a_method_added_as_one_file_is_everywhere(tmp_path, data, sae):
    """Adding one file registers the method: the probe runner, the app's picker and load() see it,
    and it passes the contract."""
    from workbench.cbm import page_methods

    from conceptlab.experiments import method_params, parse_probe

    path = tmp_path / "toy_method.py"
    path.write_text(textwrap.dedent(TOY_METHOD))
    spec = importlib.util.spec_from_file_location("toy_method", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        klass = METHODS.get("toy_class_mean")
        assert klass is module.ToyClassMean
        probe = {
            "name": "toy", "backbone": {"spec": "zoo:shapes-clip"}, "dataset": {"sizes": {"train": 50, "val": 20, "test": 20, "shifted": 20}},
            "concepts": {"source": "text"}, "method": {"name": "toy_class_mean", "params": {"seed": 3}},
        }
        assert parse_probe(probe).method == {"name": "toy_class_mean", "params": {"seed": 3}} and method_params(klass) == {"seed": 42}
        assert page_methods()["ToyClassMean"] is klass
        check_contract("toy_class_mean", klass, data, sae, tmp_path)
    finally:
        METHODS.unregister("toy_class_mean")
