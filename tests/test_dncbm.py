"""DN-CBM: a bias-free sparse linear head on SAE latents, on a synthetic world whose classes follow a rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab.cbm import DNCBM, ConceptBottleneckModel
from conceptlab.cbm.heads import train_sparse_head
from conceptlab.cbm.methods.dncbm import coverage
from conceptlab.discovery import SparseAutoencoder, name_directions

# importing sae-lens warns about a transformer-lens module it uses; not ours to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning"),
    # small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
    pytest.mark.usefixtures("one_thread"),
]


def rule_world(n: int, seed: int, d: int = 16, n_classes: int = 4, n_nuisance: int = 8):
    """Each image holds exactly one class atom (its label) and a few nuisance atoms."""
    atoms = torch.randn(n_classes + n_nuisance, d, generator=torch.Generator().manual_seed(123))
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    codes = torch.zeros(n, n_classes + n_nuisance)
    codes[torch.arange(n), labels] = 1 + torch.rand(n, generator=g)
    codes[:, n_classes:] = (torch.rand(n, n_nuisance, generator=g) < 0.15) * (1 + torch.rand(n, n_nuisance, generator=g))
    X = codes @ atoms + 0.3 + 0.01 * torch.randn(n, d, generator=g)
    return X, labels, atoms


@pytest.fixture(scope="module")
def world():
    X, y, atoms = rule_world(1600, seed=0)
    X_test, y_test, _ = rule_world(400, seed=1)
    sae = SparseAutoencoder(n_latents=24, l1=0.03, lr=1e-2, steps=250, batch_size=256, resample_every=5, progress=False, seed=0).fit(X)
    return X, y, X_test, y_test, atoms, sae


@pytest.fixture(scope="module")
def model(world):
    X, y, _, _, _, sae = world
    return DNCBM.from_sae(sae, lam=0.01, lr=1e-2, epochs=30, batch_size=256, class_names=["a", "b", "c", "d"]).fit(X, y)


def test_head_reaches_high_accuracy_and_is_bias_free(world, model):
    _, _, X_test, y_test, _, sae = world
    assert isinstance(model, ConceptBottleneckModel)
    assert model.score(X_test, y_test) >= 0.9
    assert torch.equal(model.bias_, torch.zeros(4))
    assert np.allclose(model.decision_from_scores(np.zeros((2, sae.d_sae_))), 0.0)  # no intercept anywhere
    scores = sae.encode(X_test[:5]).numpy()
    assert np.allclose(model.transform(X_test[:5]), scores)
    assert np.allclose(model.decision_function(X_test[:5]), scores @ model.coef_.T, atol=1e-5)
    assert model.history_.n_val == 160 and len(model.history_.val_accuracy) == 30  # 90/10 split, logged every epoch
    assert model.provenance_["bias"] is False and model.provenance_["selection"] == "last epoch"


def test_explanations_sum_to_the_logit(world, model):
    X_test = world[2]
    frame = model.explain(X_test[:1])
    logit = frame.attrs["logit"]
    assert frame["contribution"].sum() == pytest.approx(logit, abs=1e-4)
    assert frame.query("concept == '(intercept)'")["contribution"].item() == 0.0


def test_save_load_round_trip(tmp_path, world, model):
    X_test = world[2]
    model.save(tmp_path / "dncbm")
    loaded = ConceptBottleneckModel.load(tmp_path / "dncbm")
    assert isinstance(loaded, DNCBM) and loaded.get_params()["lam"] == 0.01
    assert np.allclose(loaded.decision_function(X_test), model.decision_function(X_test))
    assert torch.allclose(loaded.sae.encode(X_test), model.sae.encode(X_test))
    assert loaded.bank.names == model.bank.names
    assert loaded.history_.val_accuracy == model.history_.val_accuracy


def test_named_bank_intervention_and_sparsity(world):
    X, y, X_test, _, atoms, sae = world
    vocabulary = ["class0", "class1", "class2", "class3"] + [f"nuisance{i}" for i in range(8)]
    names = name_directions(sae.decoder_directions, atoms, vocabulary)
    model = DNCBM.from_sae(sae, names, lam=0.01, lr=1e-2, epochs=30, batch_size=256).fit(X, y)
    assert model.bank[0].kind == "sae_decoder" and set(names.names) <= set(vocabulary)
    named = {n for n in model.bank.names if n.startswith("class")}
    assert {"class0", "class1", "class2", "class3"} <= named
    # zeroing the latent named for class 2 removes the evidence for class 2
    images = X_test[world[3] == 2][:20]
    before = model.predict(images)
    after = model.intervene(images, zero=[n for n in model.bank.names if n.split(" #")[0] == "class2"]).predictions
    assert (before == 2).mean() > 0.9 and (after == 2).mean() < 0.5
    sparsity = model.sparsity()
    assert sparsity["n_weights"] == 4 * sae.d_sae_ and sparsity["zero@0.1"] > 0
    cov = model.coverage(X_test[:10])
    assert list(cov.columns) == ["predicted", "coverage@0.9", "coverage@0.95", "coverage@0.99"]
    assert (cov["coverage@0.9"] <= cov["coverage@0.99"]).all() and (cov["coverage@0.9"] >= 1).all()


def test_probe_penalty_is_the_mean_absolute_weight():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(200, 6, generator=g)
    labels = (scores[:, 0] > scores[:, 1]).long()
    light, _ = train_sparse_head(scores, labels, 2, lam=0.0, lr=0.05, epochs=20, batch_size=50, seed=0)
    heavy, history = train_sparse_head(scores, labels, 2, lam=5.0, lr=0.05, epochs=20, batch_size=50, seed=0)
    assert heavy.abs().mean() < 0.5 * light.abs().mean()
    assert history.n_train == 180 and history.n_val == 20
    # the first step's loss is CE + λ·mean|W| of PyTorch's default init, seeded like the probe's
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        init = torch.nn.Linear(6, 2, bias=False).weight
    again, _ = train_sparse_head(scores, labels, 2, lam=5.0, lr=0.0, epochs=1, batch_size=500, val_fraction=0.0, seed=0)
    assert torch.equal(again, init.detach())


def test_coverage_counts_concepts_to_reach_the_energy():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    weight = torch.tensor([[4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])  # contributions 4, 3, 2, 1 of 10
    frame = coverage(scores, weight, energies=(0.4, 0.7, 0.9, 1.0))
    assert frame.iloc[0].tolist() == [0, 1, 2, 3, 4]


def test_errors(world, model):
    X, y, _, _, _, sae = world
    with pytest.raises(ValueError, match="needs a fitted SparseAutoencoder"):
        DNCBM(bank=model.bank).fit(X, y)
    with pytest.raises(ValueError, match="latent names"):
        DNCBM.from_sae(sae, ["only", "two"])
    bad = X.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.predict(bad)
    with pytest.raises(ValueError, match="dimension"):
        model.predict(torch.randn(3, 5))
    with pytest.raises(ValueError, match="val_fraction"):
        train_sparse_head(torch.rand(10, 3), torch.zeros(10, dtype=torch.long), 2, val_fraction=1.0)
