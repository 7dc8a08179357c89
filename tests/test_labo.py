"""LaBo: submodular selection against a from-scratch greedy (and apricot), the association head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conceptlab.cbm import ConceptBottleneckModel, LaBo, association_prior, concept_bank_from_set
from conceptlab.concepts import ConceptBank
from conceptlab.concepts.language import ConceptSet
from conceptlab.concepts.selection import greedy_reference, greedy_select, mi_scores, submodular_select

# small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# selection: a reference written from the paper/code formulas, evaluated from scratch
# ------------------------------------------------------------------------------------------------


def reference_mi(X, y, T, K):
    """LaBo's ``clip_score`` + ``mi_score``, written as loops."""
    M = len(T)
    sim = np.zeros((M, K))
    for c in range(M):
        for k in range(K):
            sim[c, k] = np.mean([T[c] @ x for x in X[y == k]])
    p = sim / (sim.sum(0) * K)
    mi = np.zeros(M)
    for c in range(M):
        pc = p[c].sum()
        mi[c] = sum(p[c, k] * math.log(p[c, k] / (pc / K)) for k in range(K))
    return mi


def reference_objective(features, mi, scale, w2, coverage):
    """F(S) for one class's candidates, straight from the definitions."""
    n = len(features)
    w1 = 0.0 if scale == 0 else 1.0

    def F(S):
        if not S:
            return 0.0
        value = w1 * sum(scale * mi[s] for s in S)
        if coverage == "facility":
            for c in range(n):
                cos = [features[c] @ features[s] / (np.linalg.norm(features[c]) * np.linalg.norm(features[s])) for s in S]
                value += w2 * max(0.0, max(cos))
        else:  # the released code: columns of [scale·mi, features]
            Z = np.hstack([scale * mi[:, None], features])
            value += w2 * sum(max(0.0, max(Z[s, j] for s in S)) for j in range(Z.shape[1]))
        return value

    return F


def random_problem(seed, K=3, n_per_class=(9, 4, 12), d=6, N=90):
    rng = np.random.default_rng(seed)
    T = 0.5 * rng.normal(size=(sum(n_per_class), d)) + 0.8  # some negative entries: cosines below 0 occur
    c2c = np.concatenate([np.full(n, k) for k, n in enumerate(n_per_class)])
    rng.shuffle(c2c)
    y = rng.integers(0, K, N)
    X = 0.5 * rng.normal(size=(N, d)) + 1.0 + 0.8 * np.eye(K, d)[y]
    return X, y, T, c2c


@pytest.mark.parametrize("coverage", ["facility", "labo-code"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_equals_reference_greedy(coverage, seed):
    X, y, T, c2c = random_problem(seed)
    sim = T @ np.stack([X[y == k].mean(0) for k in range(3)]).T
    assert sim.min() > 0  # the inputs keep LaBo's p(c, y) a distribution without shifting
    mi_ref = reference_mi(X, y, T, 3)
    mi, shift = mi_scores(sim)
    assert shift == 0 and np.allclose(mi, mi_ref, rtol=1e-10, atol=1e-15)
    for scale, w2 in [(1e7, 5.0), (1e7, 0.1), (0.0, 1.0), (1e4, 0.0)]:
        result = submodular_select(X, y, T, c2c, n_per_class=5, mi_scale=scale, coverage_weight=w2, coverage=coverage)
        for k in range(3):
            candidates = np.flatnonzero(c2c == k)
            if len(candidates) <= 5:  # a small class keeps all its candidates, in order
                assert result.per_class[k] == candidates.tolist()
                continue
            local, _ = greedy_reference(reference_objective(T[candidates], mi_ref[candidates], scale, w2, coverage), len(candidates), 5)
            assert result.per_class[k] == candidates[local].tolist(), (scale, w2, k)
        assert (c2c[result.indices] == result.concept2cls).all()
        assert result.indices.tolist() == [j for k in range(3) for j in result.per_class[k]]


def test_greedy_core_on_random_matrices():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n, m, k = rng.integers(5, 30), rng.integers(1, 40), rng.integers(1, 8)
        G = rng.normal(size=(n, m))
        modular = rng.normal(size=n) * rng.choice([0.0, 0.1, 10.0])
        w = rng.choice([0.0, 0.5, 3.0])

        def F(S, modular=modular, w=w, G=G):
            return float(sum(modular[s] for s in S) + w * np.maximum(G[list(S)].max(0), 0).sum()) if S else 0.0

        chosen, gains = greedy_select(modular, G, w, k)
        ref, ref_gains = greedy_reference(F, n, k)
        assert chosen == ref and np.allclose(gains, ref_gains)


def test_ties_go_to_the_lowest_index():
    G = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # items 0 and 2 are identical
    assert greedy_select(np.zeros(3), G, 1.0, 3)[0] == [0, 1, 2]
    assert greedy_select(np.ones(4), np.zeros((4, 1)), 1.0, 2)[0] == [0, 1]


def test_selection_options_and_mi_shift():
    X, y, T, c2c = random_problem(3)
    result = submodular_select(X, y, T, c2c, num_concepts=10)  # ceil(10 / 3) = 4 per class
    assert result.settings["k"] == 4 and [len(v) for v in result.per_class.values()] == [4, 4, 4]
    assert len(result.table) == 12 and set(result.table.columns) >= {"class", "concept", "gain", "mi"}
    with pytest.warns(UserWarning, match="shifted"):
        shifted = submodular_select(X - 5.0, y, T, c2c, n_per_class=3)
    assert shifted.settings["sim_shift"] > 0
    with pytest.raises(ValueError, match="positive"):
        mi_scores(-np.ones((3, 2)), shift=False)
    with pytest.raises(ValueError, match="coverage"):
        submodular_select(X, y, T, c2c, coverage="cosine")


def test_labo_code_matches_apricot_as_labo_calls_it():
    apricot = pytest.importorskip("apricot", reason="apricot-select is optional (benchmarks/labo_select.py)")
    rng = np.random.default_rng(11)
    for _ in range(2):  # apricot compiles its numba kernels on every fit: keep this short
        n, d, k = 30, 6, 8
        features = rng.random((n, d))  # non-negative: unpatched apricot refuses negative inputs (LaBo#1)
        mi = rng.random(n) * 1e-6
        scale, w2 = 1e7, 5.0
        mixture = apricot.MixtureSelection(
            k, functions=[apricot.CustomSelection(k, lambda Z: Z[:, 0].sum()), apricot.FacilityLocationSelection(k, metric="cosine")],
            weights=np.array([1.0, w2]), optimizer="naive", verbose=False,
        ).fit(np.hstack([scale * mi[:, None], features]))
        G = np.hstack([scale * mi[:, None], features])
        assert greedy_select(scale * mi, G, w2, k)[0] == mixture.ranking.tolist()


# ------------------------------------------------------------------------------------------------
# the LaBo model
# ------------------------------------------------------------------------------------------------

CLASSES = ["ruby", "jade", "azure", "sun"]


def labo_world(n: int, seed: int, d: int = 12):
    """Class k's images carry atom k; candidates: per class 2 true atoms-ish and 2 generic ones."""
    atoms = torch.nn.functional.normalize(torch.randn(len(CLASSES) + 2, d, generator=torch.Generator().manual_seed(99)), dim=1)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(CLASSES), (n,), generator=g)
    X = 2.0 * atoms[y] + 0.4 * torch.randn(n, d, generator=g) + 3.0 * atoms[-1]  # a shared offset keeps dot products positive
    return X, y, atoms


def candidate_bank(atoms):
    names, vectors, links = [], [], []
    for k, cls in enumerate(CLASSES):
        for i, (w, noise) in enumerate([(1.0, 0.1), (0.9, 0.3)]):
            names.append(f"{cls} true {i}")
            vectors.append(w * atoms[k] + noise * atoms[-2] + atoms[-1])
            links.append([cls])
        for i in range(2):
            names.append(f"{cls} generic {i}")
            vectors.append(atoms[-1] + 0.05 * (i + 1) * atoms[-2])
            links.append([cls])
    return ConceptBank.from_tensors(names, torch.stack(vectors), "synthetic", class_links=links, provenance={"kind": "text"})


@pytest.fixture(scope="module")
def fitted():
    X, y, atoms = labo_world(800, 0)
    Xv, yv, _ = labo_world(200, 1)
    model = LaBo(
        candidate_bank(atoms), CLASSES, n_per_class=2, coverage_weight=0.1, lr=0.05, epochs=40, val_every=5, batch_size=128, device="cpu"
    )
    return model.fit(X, y, Xv, yv), (X, y, Xv, yv)


def test_selection_keeps_discriminative_concepts(fitted):
    model, _ = fitted
    assert sorted(model.concept_names_) == sorted(f"{c} true {i}" for c in CLASSES for i in range(2))
    assert model.selection_.settings["k"] == 2


def test_labo_head_is_100_softmax_of_the_association(fitted):
    model, (X, y, Xv, yv) = fitted
    Xt, yt, _ = labo_world(300, 2)
    assert isinstance(model, ConceptBottleneckModel) and model.score(Xt, yt) > 0.95
    A = model.asso_
    assert torch.allclose(model.weight_, 100 * torch.softmax(A, dim=-1)) and torch.equal(model.bias_, torch.zeros(4))
    assert torch.allclose(model.weight_.sum(1), torch.full((4,), 100.0))
    E = model.bank_.vectors
    logits = 100 * (Xt[:5] @ E.T) @ torch.softmax(A, dim=-1).T
    assert np.allclose(model.decision_function(Xt[:5]), logits.numpy(), rtol=1e-4, atol=1e-3)
    assert np.allclose(model.transform(Xt[:5]), (Xt[:5] @ E.T).numpy(), atol=1e-5)  # raw dot products
    # the language prior: 1 on each concept's own class
    expected = torch.zeros(4, 8)
    for j, name in enumerate(model.concept_names_):
        expected[CLASSES.index(name.split()[0]), j] = 1.0
    assert torch.equal(model.prior_, expected)


def test_model_selection_on_validation(fitted):
    model, (X, y, Xv, yv) = fitted
    history = model.history_
    assert history["epoch"] == list(range(5, 41, 5))
    best = max(history["val_accuracy"])
    assert model.best_val_accuracy_ == best
    assert model.best_epoch_ == history["epoch"][history["val_accuracy"].index(best)]  # the first epoch that reached it
    assert model.score(Xv, yv) == pytest.approx(best, abs=1e-6)  # the kept A is that epoch's
    assert model.validation_ == "given" and model.provenance_["selection"] == "best validation accuracy"
    # without validation data: a seeded share of the training rows is held out
    held = LaBo(model.bank_, CLASSES, lr=0.05, epochs=10, val_every=5, batch_size=128, device="cpu").fit(X, y)
    assert held.validation_.startswith("0.1") and len(held.history_["epoch"]) == 2
    with pytest.raises(ValueError, match="both"):
        LaBo(model.bank_, CLASSES).fit(X, y, Xv)


def test_explain_prune_intervene_save_load(fitted, tmp_path):
    model, (X, y, Xv, yv) = fitted
    x = Xv[:1]
    frame = model.explain(x)
    assert frame["contribution"].sum() == pytest.approx(float(model.decision_function(x)[0].max()), rel=1e-4)
    top = model.top_concepts(2)
    assert len(top) == 8 and (top.groupby("class")["weight"].max() > 1 / 8).all()
    name = model.concept_names_[0]
    pruned = model.prune(name)
    assert (pruned.coef_[:, 0] == 0).all() and (model.coef_[:, 0] != 0).all()
    zeroed = model.intervene(x, zero=[name])
    assert zeroed.scores[0, 0] == 0
    path = model.save(tmp_path / "labo")
    loaded = ConceptBottleneckModel.load(path)
    assert type(loaded) is LaBo and loaded.get_params()["lr"] == 0.05
    assert torch.equal(loaded.asso_, model.asso_) and torch.equal(loaded.prior_, model.prior_)
    assert np.array_equal(loaded.predict(Xv), model.predict(Xv))
    assert loaded.best_epoch_ == model.best_epoch_ and loaded.history_ == model.history_


def test_association_prior_variants():
    bank = ConceptBank.from_tensors(
        ["a", "b", "c"], torch.eye(3), "s", class_links=[["x"], ["y", "x"], ["y"]],
        provenance=[{"class_scores": {"x": 4.0}}, {"class_scores": {"y": 2.0, "x": 1.0}}, {"class_scores": {"y": 8.0}}],
    )
    assert association_prior(bank, ["x", "y"], "first").tolist() == [[1, 0, 0], [0, 1, 1]]
    assert association_prior(bank, ["x", "y"], "all").tolist() == [[1, 1, 0], [0, 1, 1]]
    assert association_prior(bank, ["x", "y"], "frequency").tolist() == [[1.0, 0.25, 0.0], [0.0, 0.25, 1.0]]
    assert association_prior(bank, ["x", "y"], "none").abs().sum() == 0
    with pytest.raises(KeyError, match="unknown class"):
        association_prior(bank, ["x", "z"], "first")


def test_concept_bank_from_set_keeps_raw_text_embeddings(tiny_backbone):
    cs = ConceptSet({"ruby disc": ["red", "round shape"], "jade spire": ["green", "red"]})
    bank = concept_bank_from_set(tiny_backbone, cs)
    assert bank.names == ["red", "round shape", "green"]
    assert [c.class_links for c in bank] == [["ruby disc", "jade spire"], ["ruby disc"], ["jade spire"]]
    raw = tiny_backbone.encode_texts(["red", "round shape", "green"]).float()
    assert torch.allclose(bank.vectors, raw, atol=1e-6) and not torch.allclose(bank.norms, torch.ones(3))
    unit = concept_bank_from_set(tiny_backbone, cs, normalize=True)
    assert torch.allclose(unit.norms, torch.ones(3), atol=1e-5)
    assert bank.space == "local-dir:" + str(tiny_backbone.spec).split(":", 1)[1] + "#image-embedding"


# ------------------------------------------------------------------------------------------------
# Label-free CBM (bonus): cos³ projection early-stopped on validation, filter 5, standardised scores
# ------------------------------------------------------------------------------------------------


def test_lfcbm_projection_standardisation_and_head(tmp_path):
    from conceptlab.cbm import LFCBM, cos_cubed_similarity

    X, y, atoms = labo_world(600, 3)
    Xv, yv, _ = labo_world(200, 4)
    Xt, yt, _ = labo_world(300, 5)
    text = candidate_bank(atoms)
    model = LFCBM(text, CLASSES, proj_steps=3000, proj_lr=2e-2, interpretability_cutoff=0.8, lam=1e-3).fit(X, y, Xv, yv)
    report = model.projection_
    # early stopping: a check every 50 steps; it stopped at the first check that did not improve and kept the best
    assert report.steps_run < 3000 and len(report.val_loss) == report.steps_run // 50 + 1
    assert report.val_loss[:-1] == sorted(report.val_loss[:-1], reverse=True) and report.val_loss[-1] >= report.val_loss[-2]
    assert report.best_step == 50 * (len(report.val_loss) - 2)
    # filter 5 on validation cos³: the generic concepts (shared offset only) go, the class concepts stay
    assert set(report.removed) == {n for n, s in report.val_similarity.items() if s <= 0.8}
    assert set(report.removed) == {f"{c} generic {i}" for c in CLASSES for i in range(2)}
    assert model.bank_.names == [n for n in text.names if n not in report.removed] and all(c.kind == "learned_projection" for c in model.bank_)
    # the bank's affine scores are the standardised projections
    S = model.transform(X)
    assert np.allclose(S.mean(0), 0, atol=1e-4) and np.allclose(S.std(0, ddof=1), 1, atol=1e-4)
    P = torch.nn.functional.normalize(Xv, dim=1) @ torch.nn.functional.normalize(text.vectors, dim=1).T
    keep = [text.names.index(n) for n in model.bank_.names]
    sims = cos_cubed_similarity(P[:, keep], torch.as_tensor(model.transform(Xv)))
    assert np.allclose(sims.numpy(), [report.val_similarity[n] for n in model.bank_.names], atol=1e-4)  # standardising keeps cos³
    assert model.score(Xt, yt) > 0.9
    with pytest.raises(ValueError, match="validation data"):
        LFCBM(text, CLASSES).fit(X, y)
    loaded = ConceptBottleneckModel.load(model.save(tmp_path / "lfcbm"))
    assert type(loaded) is LFCBM and np.array_equal(loaded.predict(Xt), model.predict(Xt))
