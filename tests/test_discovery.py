"""Concept discovery: SAE training through sae-lens, naming, alignment and grading, on planted truths."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conceptlab.discovery import (
    LatentNames,
    SAEMetrics,
    SparseAutoencoder,
    TrainSettings,
    align_concepts,
    auroc_matrix,
    correlation_matrix,
    cosine_matrix,
    embed_vocabulary,
    grade_latents,
    load_vocabulary,
    name_directions,
    name_latents,
    name_matches,
    sae_metrics,
    train_sae,
    train_sae_plain,
)
from conceptlab.discovery.train import resample_dead_latents

# importing sae-lens warns about a transformer-lens module it uses; not ours to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning"),
    # small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
    pytest.mark.usefixtures("one_thread"),
]


def planted_world(seed: int = 0, n: int = 2048, d: int = 16, k: int = 12, p: float = 0.1):
    """x = Σ_k a_k d_k + offset + noise with known unit atoms d_k; returns (X, atoms, codes)."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(k, d, generator=g)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    present = torch.rand(n, k, generator=g) < p
    codes = present * (1 + torch.rand(n, k, generator=g))
    X = codes @ atoms + 0.3 + 0.01 * torch.randn(n, d, generator=g)
    return X, atoms, present


SMALL = dict(n_latents=32, l1=0.03, lr=1e-2, steps=300, batch_size=256, resample_every=5, progress=False)


@pytest.fixture(scope="module")
def world():
    return planted_world()


@pytest.fixture(scope="module")
def fitted(world):
    X, _, _ = world
    return SparseAutoencoder(**SMALL, seed=0).fit(X)


# ------------------------------------------------------------------------------------------------
# SAE training
# ------------------------------------------------------------------------------------------------


def test_sae_recovers_planted_atoms(world, fitted):
    X, atoms, present = world
    best = (atoms @ fitted.decoder_directions.T).max(1).values
    assert best.min() >= 0.9, best
    m = fitted.metrics_
    assert isinstance(m, SAEMetrics)
    assert m.explained_variance > 0.9
    assert m.l0 < 3 * float(present.sum(1).float().mean())  # sparse: near the planted ~1.2 atoms per row
    assert fitted.sae_.__class__.__name__ == "StandardSAE"
    assert fitted.live_.shape == (32,) and int(fitted.live_.sum()) == 32 - m.dead_latents
    assert fitted.settings_.steps == 300 and fitted.settings_.resample_every == round(5 * 2048 / 256)
    assert fitted.provenance_["trainer"] == "sae_lens.SAETrainer" and fitted.provenance_["seed"] == 0


def test_dncbm_defaults_and_unit_norm_decoder(fitted):
    defaults = SparseAutoencoder()
    assert (defaults.expansion, defaults.l1, defaults.lr, defaults.batch_size, defaults.epochs, defaults.seed) == (8, 3e-5, 5e-4, 4096, 200, 49)
    settings = defaults.settings_for(819_200, 1024)
    assert settings.d_sae == 8192 and settings.resample_every == 10 * 200 and settings.steps == 200 * 200
    assert settings.mse_reduction == "mean" and settings.unit_norm_decoder and settings.init == "dncbm"
    assert SparseAutoencoder(architecture="topk", k=4).settings_for(100, 8).resample_every == 0
    norms = fitted.sae_.W_dec.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_training_is_seeded_and_deterministic(world):
    X = world[0][:512]
    params = dict(SMALL, steps=20, batch_size=64)
    a = SparseAutoencoder(**params, seed=1).fit(X)
    b = SparseAutoencoder(**params, seed=1).fit(X)
    c = SparseAutoencoder(**params, seed=2).fit(X)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(a.sae_, name), getattr(b.sae_, name))
    assert not torch.equal(a.sae_.W_dec, c.sae_.W_dec)


def test_training_leaves_global_rng_alone(world):
    before = torch.random.get_rng_state()
    SparseAutoencoder(**dict(SMALL, steps=3, batch_size=64), seed=5).fit(world[0][:256])
    assert torch.equal(before, torch.random.get_rng_state())


def test_sae_lens_path_equals_plain_torch_loop():
    """The sae-lens trainer path and an independent plain loop give the same weights, resampling included."""
    X, _, _ = planted_world(n=1024)
    settings = TrainSettings(d_sae=64, steps=60, batch_size=128, progress=False, l1=0.1, lr=1e-2, resample_every=20, seed=3)
    sae, result = train_sae(X, settings)
    weights, plain = train_sae_plain(X, settings)
    assert result.resampled == plain.resampled and sum(n for _, n in result.resampled) > 0
    for name, value in weights.items():
        assert torch.allclose(sae.state_dict()[name], value, atol=1e-6), name
    np.testing.assert_allclose(result.losses, plain.losses, rtol=1e-5)


def test_metrics_equal_hand_computation():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    x_hat = torch.tensor([[1.0, 0.0], [0.0, 0.5], [1.0, 1.0], [0.0, 0.0]])
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    m = sae_metrics(x, x_hat, z)
    # residual Σ(x−x̂)² = 0.25 over 8 entries; Σ(x−x̄)² = 8 × 0.25 = 2
    assert m.mse == pytest.approx(0.25 / 8)
    assert m.explained_variance == pytest.approx(1 - 0.25 / 2)
    assert m.l0 == pytest.approx(3 / 4)
    assert m.l1 == pytest.approx(6 / 4)
    assert (m.dead_latents, m.dead_fraction, m.n_samples, m.d_in, m.d_sae) == (1, pytest.approx(1 / 3), 4, 2, 3)


def test_fitted_metrics_equal_numpy_recomputation(world, fitted):
    X = world[0].numpy().astype(np.float64)
    W_enc, b_enc, W_dec, b_dec = (getattr(fitted.sae_, n).detach().numpy().astype(np.float64) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    z = np.maximum((X - b_dec) @ W_enc + b_enc, 0)
    x_hat = z @ W_dec + b_dec
    m = fitted.metrics_
    assert m.mse == pytest.approx(((X - x_hat) ** 2).mean(), rel=1e-4)
    assert m.explained_variance == pytest.approx(1 - ((X - x_hat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum(), rel=1e-4)
    assert m.l0 == pytest.approx((z > 0).sum(1).mean(), rel=1e-3)
    assert m.dead_latents == int((~(z > 0).any(0)).sum())


def test_checkpoint_loads_with_sae_lens_and_encodes_the_same(tmp_path, world, fitted):
    from sae_lens import SAE, StandardSAE

    X = world[0][:300]
    fitted.save(tmp_path / "sae")
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    theirs = SAE.load_from_disk(str(tmp_path / "sae"))
    assert isinstance(theirs, StandardSAE)
    with torch.no_grad():
        assert torch.allclose(theirs.encode(X), fitted.encode(X))
        assert torch.allclose(theirs(X), fitted.reconstruct(X))
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == "standard" and cfg["metadata"]["conceptlab"]["params"]["l1"] == 0.03
    ours = SparseAutoencoder.load(tmp_path / "sae")
    assert torch.allclose(ours.encode(X), fitted.encode(X))
    assert ours.metrics_ == fitted.metrics_ and torch.equal(ours.live_, fitted.live_)
    assert ours.get_params() == fitted.get_params() and ours.provenance_ == fitted.provenance_


def test_topk_architecture(tmp_path, world):
    from sae_lens import SAE, TopKSAE

    X, atoms, _ = world
    sae = SparseAutoencoder(architecture="topk", k=2, n_latents=32, lr=1e-2, steps=300, batch_size=256, progress=False, seed=0).fit(X)
    assert (sae.encode(X) > 0).sum(1).max() <= 2
    assert (atoms @ sae.decoder_directions.T).max(1).values.min() >= 0.9
    sae.save(tmp_path / "topk")
    theirs = SAE.load_from_disk(str(tmp_path / "topk"))
    assert isinstance(theirs, TopKSAE) and theirs.cfg.k == 2
    with torch.no_grad():
        assert torch.allclose(theirs.encode(X[:100]), sae.encode(X[:100]))


def test_resampling_follows_the_anthropic_recipe():
    d_in, d_sae = 4, 5
    W_enc = torch.arange(d_in * d_sae, dtype=torch.float32).reshape(d_in, d_sae) / 10
    b_enc = torch.ones(d_sae)
    W_dec = torch.ones(d_sae, d_in)
    dead = torch.tensor([False, True, False, False, True])
    rows = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    losses = torch.tensor([1.0, 0.0])  # only the first row can be drawn
    params = [W_enc, b_enc, W_dec]
    optimizer = torch.optim.Adam([torch.nn.Parameter(p) for p in params])
    for p in params:  # fake Adam moments keyed by the tensors we pass
        optimizer.state[p] = {"exp_avg": torch.ones_like(p), "exp_avg_sq": torch.ones_like(p)}
    live_norm = W_enc[:, ~dead].norm(dim=0).mean()
    n = resample_dead_latents(W_enc, b_enc, W_dec, dead, rows, losses, torch.Generator().manual_seed(0), optimizer)
    assert n == 2
    unit = torch.tensor([0.6, 0.8, 0.0, 0.0])
    for k in (1, 4):
        assert torch.allclose(W_dec[k], unit)
        assert torch.allclose(W_enc[:, k], unit * 0.2 * live_norm)
        assert b_enc[k] == 0
        assert optimizer.state[W_dec]["exp_avg"][k].abs().sum() == 0 and optimizer.state[b_enc]["exp_avg_sq"][k] == 0
    assert torch.equal(W_dec[0], torch.ones(d_in)) and optimizer.state[W_dec]["exp_avg"][0].sum() == d_in


def test_centred_sae_takes_raw_inputs_and_equals_training_on_centred_ones(tmp_path, world):
    """center=True = fitting on X − mean and subtracting the mean before encoding (adding it after
    decoding); the folder loads back with its mean, in sae-lens too, and gives raw-input encodings."""
    from sae_lens import SAE

    X = world[0][:512] + 3.0  # far from the origin, so centring matters
    params = dict(SMALL, steps=40, batch_size=128, seed=0)
    centred = SparseAutoencoder(**params, center=True).fit(X)
    mean = X.double().mean(0).float()
    by_hand = SparseAutoencoder(**params).fit(X - mean)
    assert torch.allclose(centred.input_mean_, mean) and by_hand.input_mean_ is None
    assert torch.allclose(centred.encode(X), by_hand.encode(X - mean), atol=1e-5)
    assert torch.allclose(centred.reconstruct(X), by_hand.reconstruct(X - mean) + mean, atol=1e-5)
    assert torch.allclose(centred.decode(centred.encode(X)), centred.reconstruct(X))
    np.testing.assert_allclose(centred.transform(X), by_hand.transform(X - mean), atol=1e-5)
    assert centred.evaluate(X).explained_variance == pytest.approx(by_hand.evaluate(X - mean).explained_variance, abs=1e-5)
    assert torch.equal(centred.decoder_directions, by_hand.decoder_directions)
    centred.save(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["cfg.json", "input_mean.safetensors", "sae_weights.safetensors"]
    assert json.loads((tmp_path / "c" / "cfg.json").read_text())["metadata"]["conceptlab"]["params"]["center"] is True
    again = SparseAutoencoder.load(tmp_path / "c")
    assert again.center and torch.equal(again.input_mean_, centred.input_mean_)
    assert torch.equal(again.encode(X), centred.encode(X))
    with torch.no_grad():
        assert torch.allclose(SAE.load_from_disk(str(tmp_path / "c")).encode(X), centred.encode(X))
    by_hand.save(tmp_path / "c")  # an uncentred SAE saved over it leaves no stale mean behind
    assert not (tmp_path / "c" / "input_mean.safetensors").exists() and SparseAutoencoder.load(tmp_path / "c").input_mean_ is None
    (tmp_path / "c" / "input_mean.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="input_mean"):
        SparseAutoencoder.load(tmp_path / "c")


def test_sklearn_clone_and_params():
    from sklearn.base import BaseEstimator, clone

    sae = SparseAutoencoder(n_latents=12, l1=0.5, center=True, progress=False)
    assert isinstance(sae, BaseEstimator)
    twin = clone(sae)
    assert twin is not sae and twin.get_params() == sae.get_params() and not twin.is_fitted
    assert set(sae.get_params()) == {"expansion", "n_latents", "architecture", "l1", "k", "lr", "epochs", "steps", "batch_size",
                                     "resample_every", "unit_norm_decoder", "mse_reduction", "init", "center", "seed", "device",
                                     "progress"}
    assert sae.set_params(l1=0.1) is sae and sae.l1 == 0.1
    with pytest.raises(ValueError, match="no_such"):
        sae.set_params(no_such=1)
    fitted = SparseAutoencoder(**dict(SMALL, steps=5, batch_size=64)).fit(planted_world(n=128)[0])
    assert not clone(fitted).is_fitted and "fitted" in repr(fitted)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(10), "2-D"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), "infinite"),
        (torch.randn(1, 4), "at least 2"),
        ("not numbers", "tensor or array"),
    ],
)
def test_fit_rejects_bad_input(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SparseAutoencoder(**SMALL).fit(bad)


def test_bad_parameters_and_unfitted_use(fitted):
    from sklearn.exceptions import NotFittedError

    X = torch.randn(8, 4)
    with pytest.raises(ValueError, match="architecture"):
        SparseAutoencoder(architecture="gated").fit(X)
    with pytest.raises(ValueError, match="k in"):
        SparseAutoencoder(architecture="topk", steps=1, progress=False).fit(X)
    with pytest.raises(NotFittedError):
        SparseAutoencoder().encode(X)
    with pytest.raises(ValueError, match="dimension 4, but the SAE was built for 16"):
        fitted.encode(X)
    with pytest.raises(ValueError, match="dimension"):
        fitted.decode(torch.randn(3, 7))
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        SparseAutoencoder.load("/nonexistent/sae")


# ------------------------------------------------------------------------------------------------
# naming
# ------------------------------------------------------------------------------------------------


def synthetic_vocabulary(d: int = 16, v: int = 40, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    words = [f"word{i}" for i in range(v)]
    emb = torch.randn(v, d, generator=g)
    return words, emb / emb.norm(dim=1, keepdim=True)


def test_naming_returns_the_planted_name_with_a_margin():
    words, emb = synthetic_vocabulary()
    planted = [3, 17, 29]
    g = torch.Generator().manual_seed(2)
    directions = emb[planted] * 2.0 + 0.05 * torch.randn(3, 16, generator=g)  # norm does not matter
    names = name_directions(directions, emb, words, top_k=3)
    assert names.names == [words[i] for i in planted]
    cos = torch.nn.functional.normalize(directions, dim=1) @ emb.T
    top2 = cos.topk(2, dim=1).values
    np.testing.assert_allclose(names.table["score"], top2[:, 0], rtol=1e-5)
    np.testing.assert_allclose(names.table["margin"], top2[:, 0] - top2[:, 1], rtol=1e-4)
    assert (names.table["margin"] > 0.3).all()
    assert names.table["candidates"].map(len).tolist() == [3, 3, 3]
    assert names.table["runner_up"].tolist() == [c[1] for c in names.table["candidates"]]


def test_naming_with_a_tiny_clip_with_and_without_templates(tiny_backbone):
    words = ["red", "blue", "circle", "striped", "top left", "dog"]
    for templates in (None, ["a {} shape", "a photo of a {}."]):
        emb = embed_vocabulary(tiny_backbone, words, templates)
        assert emb.shape == (6, tiny_backbone.dim)
        assert torch.allclose(emb.norm(dim=1), torch.ones(6), atol=1e-5)
        directions = emb[[4, 0]] + 0.01 * torch.randn(2, tiny_backbone.dim, generator=torch.Generator().manual_seed(0))
        names = name_directions(directions, emb, words, templates=templates)
        assert names.names == ["top left", "red"] and names.templates == templates


def test_name_latents_names_every_latent_of_a_fitted_sae(tiny_backbone):
    X, _, _ = planted_world(n=256, d=tiny_backbone.dim, k=6)
    sae = SparseAutoencoder(n_latents=8, l1=0.03, lr=1e-2, steps=10, batch_size=64, progress=False).fit(X)
    vocabulary = load_vocabulary()
    assert len(vocabulary) >= 300 and {"red", "top left", "striped", "beige", "bottom right"} <= set(vocabulary)
    names = name_latents(sae, tiny_backbone, vocabulary[:60], top_k=4)
    assert len(names) == 8 and set(names.names) <= set(vocabulary[:60])
    assert names.table["live"].tolist() == sae.live_.tolist()
    assert names.provenance["backbone"] == tiny_backbone.spec and names.provenance["sae"]["trainer"] == "sae_lens.SAETrainer"
    bank = names.to_bank()
    assert bank.space == f"{tiny_backbone.spec}#image-embedding" and len(bank) == 8
    assert torch.allclose(bank.vectors, sae.decoder_directions)


def test_rename_records_provenance_and_round_trips(tmp_path):
    from conceptlab.concepts import ConceptBank

    words, emb = synthetic_vocabulary()
    directions = emb[[5, 5, 9]] + 0.01 * torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    names = name_directions(directions, emb, words, provenance={"space": "toy"})
    assert names.names == ["word5", "word5", "word9"]
    renamed = names.rename(2, "stripes", note="top images are striped")
    assert names.names[2] == "word9" and renamed.names[2] == "stripes"  # the original is unchanged
    row = renamed.table.iloc[2]
    assert (row["auto_name"], bool(row["renamed"]), row["renamed_by"], row["note"]) == ("word9", True, "analyst", "top images are striped")
    bank = renamed.to_bank()
    assert bank.space == "toy"
    unique = bank.names
    assert unique[2] == "stripes" and sorted(unique[:2]) == sorted(["word5", f"word5 #{1 - int(np.argmax(names.table['score'][:2]))}"])
    assert bank[2].provenance["auto_name"] == "word9" and bank[2].provenance["renamed_by"] == "analyst"
    assert bank[0].kind == "sae_decoder"
    renamed.save(tmp_path / "names")
    again = LatentNames.load(tmp_path / "names")
    pd.testing.assert_frame_equal(again.table, renamed.table, check_dtype=False)
    assert torch.equal(again.directions, renamed.directions) and again.vocabulary == words
    bank.save(tmp_path / "bank")
    assert ConceptBank.load(tmp_path / "bank") == bank


def test_naming_errors():
    words, emb = synthetic_vocabulary()
    with pytest.raises(ValueError, match="vocabulary is empty"):
        name_directions(torch.randn(2, 16), emb[:0], [])
    with pytest.raises(ValueError, match="same space"):
        name_directions(torch.randn(2, 8), emb, words)
    with pytest.raises(ValueError, match="NaN"):
        name_directions(torch.full((2, 16), float("nan")), emb, words)
    with pytest.raises(ValueError, match="repeats"):
        name_directions(torch.randn(2, 16), emb[:2], ["a", "a"])
    with pytest.raises(ValueError, match="40 vocabulary embeddings for 39 words"):
        name_directions(torch.randn(2, 16), emb, words[:39])
    names = name_directions(torch.randn(2, 16), emb, words)
    with pytest.raises(IndexError):
        names.rename(5, "x")
    with pytest.raises(ValueError, match="non-empty"):
        names.rename(0, "  ")


# ------------------------------------------------------------------------------------------------
# alignment
# ------------------------------------------------------------------------------------------------


def test_alignment_finds_permuted_copies():
    g = torch.Generator().manual_seed(4)
    A = torch.randn(10, 8, generator=g)
    perm = torch.randperm(10, generator=g)
    B = A[perm] * 3 + 0.01 * torch.randn(10, 8, generator=g)
    SA = torch.rand(500, 10, generator=g)
    SB = SA[:, perm] * 2 + 1
    inverse = torch.argsort(perm).tolist()  # A's concept i sits at position inverse[i] in B
    frame = align_concepts(A, B, SA, SB, names_b=[f"b{j}" for j in range(10)])
    assert list(frame.columns) == ["a", "a_name", "b", "b_name", "rank", "cosine", "correlation"]
    assert frame["b"].tolist() == inverse and frame.attrs["by"] == "cosine"
    assert (frame["cosine"] > 0.99).all() and np.allclose(frame["correlation"], 1.0)
    by_corr = align_concepts(scores_a=SA, scores_b=SB, top=2)
    assert by_corr.query("rank == 1")["b"].tolist() == inverse and by_corr["cosine"].isna().all()
    assert len(by_corr) == 20
    one = align_concepts(A, B, one_to_one=True)
    assert one["b"].tolist() == inverse


def test_alignment_accepts_banks_and_reports_dead_columns():
    from conceptlab.concepts import ConceptBank

    A = torch.eye(3)
    bank = ConceptBank.from_tensors(["x", "y", "z"], torch.eye(3)[[2, 0, 1]], "toy")
    frame = align_concepts(A, bank)
    assert frame["b_name"].tolist() == ["y", "z", "x"]
    scores = torch.rand(50, 3, generator=torch.Generator().manual_seed(0))
    scores[:, 1] = 0.0  # a dead latent
    corr = correlation_matrix(scores, scores)
    assert np.isnan(corr[1]).all() and np.allclose(np.diag(corr)[[0, 2]], 1.0)
    assert np.allclose(cosine_matrix(A, A), np.eye(3))
    with pytest.raises(ValueError, match="same images"):
        correlation_matrix(torch.rand(5, 2), torch.rand(6, 2))
    with pytest.raises(ValueError, match="one space"):
        cosine_matrix(torch.rand(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="needs directions"):
        align_concepts()


# ------------------------------------------------------------------------------------------------
# grading
# ------------------------------------------------------------------------------------------------


def test_auroc_matrix_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = np.round(rng.random((200, 4)) * 3) * (rng.random((200, 4)) < 0.5)  # many ties and zeros
    labels = rng.random((200, 3)) < 0.3
    auc = auroc_matrix(scores, labels)
    for m in range(4):
        for c in range(3):
            assert auc[m, c] == pytest.approx(roc_auc_score(labels[:, c], scores[:, m]))
    assert np.isnan(auroc_matrix(scores, np.zeros((200, 1), bool))).all()


def test_name_matching_rule():
    assert name_matches("red", "color:red") and name_matches("Top Left", "position:top-left")
    assert name_matches("top-left", "position:top-left") and name_matches("color:red", "color:red")
    assert not name_matches("color", "color:red") and not name_matches("reddish", "color:red")
    assert not name_matches(None, "color:red") and not name_matches("top", "position:top-left")


def test_grading_on_a_planted_world():
    rng = np.random.default_rng(1)
    concept_names = ["color:red", "position:top-left", "shape:circle", "fill:striped"]
    Y = rng.random((400, 4)) < 0.4
    Z = np.zeros((400, 5))
    Z[:, 0] = Y[:, 0] * rng.uniform(1, 2, 400)  # tracks red
    Z[:, 1] = Y[:, 1] * rng.uniform(1, 2, 400) + 0.05 * rng.random(400)  # tracks top-left
    Z[:, 2] = rng.random(400)  # noise
    Z[:, 3] = Y[:, 3] * rng.uniform(1, 2, 400)  # tracks striped, misnamed
    names = ["red", "top left", "blue", "dots", "dead"]  # latent 4 never fires
    report = grade_latents(Z, Y, concept_names, names)
    assert report.n_live == 4 and report.n_latents == 5
    assert report.latents["best_concept"].tolist()[:2] == ["color:red", "position:top-left"]
    assert report.latents["best_concept"].tolist()[3] == "fill:striped"
    assert report.latents["name_matches"].tolist() == [True, True, False, False]
    assert report.naming_precision == pytest.approx(2 / 4)
    assert report.recovery == 3 and report.recovery_fraction == pytest.approx(3 / 4)
    recovered = report.concepts.set_index("concept")["recovered"]
    assert recovered.to_dict() == {"color:red": True, "position:top-left": True, "shape:circle": False, "fill:striped": True}
    assert report.summary()["n_named_correctly"] == 2
    np.testing.assert_allclose(report.latents["firing"], (Z[:, :4] != 0).mean(0))
    np.testing.assert_allclose(report.latents["mean_activation"][[0, 3]], [Z[Y[:, 0], 0].mean(), Z[Y[:, 3], 3].mean()])
    with pytest.raises(ValueError, match="names for"):
        grade_latents(Z, Y, concept_names, names[:3])
    with pytest.raises(ValueError, match="concept rows"):
        grade_latents(Z[:10], Y, concept_names)
