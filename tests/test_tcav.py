"""CAV / TCAV: layer captures in the store, batched CAVs, significance, captum parity, ShapesWorld grading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab.backbones.layer_taps import forward_with_tap, layer_names, pool_activation
from conceptlab.data import ShapesWorld, TextSet
from conceptlab.store import ActivationStore, get_capture
from conceptlab.vectors import (
    TCAV,
    class_prompts,
    class_truth,
    grade,
    layer_gradients,
    significance_test,
    tcav_scores,
    token_logprob,
    train_cavs,
    zero_shot_logit,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def shapes_clip():
    from conceptlab.backbones import load

    return load("zoo:shapes-clip", device="cpu")


@pytest.fixture(scope="module")
def facts_lm():
    from conceptlab.backbones import load

    return load("zoo:facts-gpt2", device="cpu")


# -- layer captures ------------------------------------------------------------------------------


def test_capture_names_parse_and_reject():
    capture = get_capture("image:visual.layer3@mean")
    assert (capture.layer, capture.pool) == ("visual.layer3", "mean")
    assert get_capture("text:blocks.1.hook_resid_post@last").pool == "last"
    with pytest.raises(ValueError, match="POOL one of"):
        get_capture("image:visual.layer3@median")
    with pytest.raises(ValueError, match="unknown capture"):
        get_capture("audio")


def test_image_layer_capture_matches_a_forward_hook_and_is_keyed_by_layer(shapes_clip, tmp_path):
    store = ActivationStore(tmp_path / "store")
    world = ShapesWorld("test", size=24, seed=3)
    acts = store.get_or_compute(shapes_clip, world, capture="image:visual.layer3@mean", batch_size=8, num_workers=0, progress=False)
    images = torch.stack([shapes_clip.preprocess(world.image(i).convert("RGB")) for i in range(len(world))])
    raw, _, _ = forward_with_tap(shapes_clip, "visual.layer3", images)
    assert raw.shape == (24, 512, 4, 4)
    torch.testing.assert_close(acts, raw.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
    keys = {store.key(shapes_clip, world, capture=c) for c in ("image", "image:visual.layer3@mean", "image:visual.layer3@flatten", "image:visual.layer4@mean")}
    assert len(keys) == 4  # the capture (layer and pooling) is part of the key
    assert store.contains(store.key(shapes_clip, world, capture="image:visual.layer3@mean"))
    again = store.get_or_compute(shapes_clip, world, capture="image:visual.layer3@mean", progress=False)
    assert torch.equal(again, acts)
    with pytest.raises(ValueError, match="no layer"):
        store.get_or_compute(shapes_clip, world, capture="image:visual.layer9@mean", progress=False)


def test_text_layer_capture_pools_real_tokens_only(facts_lm, tmp_path):
    texts = ["Alice lives in Paris .", "Bob likes cats", "the capital of Oria is Velm and it is large"]
    store = ActivationStore(tmp_path / "store")
    name = "blocks.1.hook_resid_post"
    assert name in layer_names(facts_lm)
    for pool in ("last", "mean"):
        got = store.get_or_compute(facts_lm, TextSet(texts, "demo"), capture=f"text:{name}@{pool}", batch_size=3, num_workers=0, progress=False)
        for i, text in enumerate(texts):  # each text alone, unpadded
            ids = torch.tensor([facts_lm.encode([text])[0]])
            _, cache = facts_lm.run_with_cache(ids, [name])
            expected = cache[name][0, -1] if pool == "last" else cache[name][0].mean(0)
            torch.testing.assert_close(got[i], expected, rtol=1e-4, atol=1e-5)
    changed = TextSet([*texts[:2], "Bob likes dogs"], "demo")
    assert store.key(facts_lm, changed, capture=f"text:{name}@last") != store.key(facts_lm, TextSet(texts, "demo"), capture=f"text:{name}@last")


# -- CAVs ----------------------------------------------------------------------------------------


def _two_clouds(R: int, n: int, d: int, shift: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    pos = torch.randn(n, d, generator=g) + shift * direction
    neg = torch.randn(R, n, d, generator=g)
    return pos, neg, direction


@pytest.mark.parametrize("method", ["sgd", "logistic", "mean_diff"])
def test_cavs_find_the_concept_direction(method):
    pos, neg, direction = _two_clouds(R=8, n=80, d=16, shift=4.0)
    cavs = train_cavs(pos, neg, method=method)
    assert cavs.vectors.shape == (8, 16)
    assert float(cavs.accuracy.min()) >= 0.9
    cosine = cavs.vectors @ direction
    assert float(cosine.min()) > 0.8  # unit CAVs pointing towards the concept
    torch.testing.assert_close(cavs.vectors.norm(dim=1), torch.ones(8))


def test_batched_sgd_matches_sklearn_sgd_in_accuracy():
    from sklearn.linear_model import SGDClassifier

    pos, neg, _ = _two_clouds(R=12, n=60, d=32, shift=1.5, seed=1)
    ours = train_cavs(pos, neg, method="sgd", seed=0)
    theirs = []
    rng = np.random.default_rng(0)
    for r in range(12):  # TCAV's reference: SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3), stratified 33 % test split
        X = np.concatenate([pos.numpy(), neg[r].numpy()])
        y = np.r_[np.ones(60), np.zeros(60)]
        order = np.r_[rng.permutation(60), 60 + rng.permutation(60)]
        test = np.r_[order[:20], order[60:80]]
        train = np.setdiff1d(np.arange(120), test)
        model = SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=r).fit(X[train], y[train])
        theirs.append(model.score(X[test], y[test]))
    assert abs(float(ours.accuracy.mean()) - float(np.mean(theirs))) < 0.06


def test_cav_inputs_are_checked():
    with pytest.raises(ValueError, match="method"):
        train_cavs(torch.zeros(4, 2), torch.zeros(4, 2), method="svm2")
    with pytest.raises(ValueError, match="dimension"):
        train_cavs(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        train_cavs(torch.full((4, 2), float("nan")), torch.zeros(4, 2))


# -- significance ----------------------------------------------------------------------------------


def test_significance_matches_scipy_and_corrects():
    from scipy import stats

    rng = np.random.default_rng(0)
    concept, random = rng.normal(0.62, 0.05, 50), rng.normal(0.5, 0.05, 50)
    verdict = significance_test(concept, random, alpha=0.05, n_tests=10)
    assert verdict.p_value == pytest.approx(stats.ttest_ind(concept, random).pvalue, rel=1e-12)
    assert verdict.significant and verdict.direction == 1 and verdict.alpha_used == pytest.approx(0.005)
    assert verdict.ci_low < verdict.difference < verdict.ci_high and verdict.ci_low > 0
    pooled = np.sqrt((np.var(concept, ddof=1) + np.var(random, ddof=1)) / 2)
    assert verdict.effect_size == pytest.approx((concept.mean() - random.mean()) / pooled)
    # p = 0.01 passes alone and fails once ten concepts are tested
    a, b = rng.normal(0.0, 1.0, 30), rng.normal(0.0, 1.0, 30)
    shift = 0.0
    while stats.ttest_ind(a + shift, b).pvalue > 0.01:
        shift += 0.01
    assert significance_test(a + shift, b, n_tests=1).significant
    assert not significance_test(a + shift, b, n_tests=10).significant
    assert significance_test(a + shift, b, n_tests=10, correction="none").significant


def test_tcav_scores_definitions():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 0.5], [2.0, -3.0]])
    cav = torch.tensor([[1.0, 0.0]])
    scores = tcav_scores(grads, cav)
    assert scores["sign_count"].item() == pytest.approx(2 / 3)
    assert scores["magnitude"].item() == pytest.approx((1 - 1 + 2) / 3)
    assert scores["magnitude_ratio"].item() == pytest.approx(3 / 4)


# -- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_lm_token_logprob_gradient_is_the_directional_derivative(facts_lm, pool):
    texts = ["Alice lives in", "the capital of Oria is"]
    hook = "blocks.0.hook_resid_post"
    token = facts_lm.tokenizer.eos_token_id or 0
    result = layer_gradients(facts_lm, hook, texts, token_logprob(token), pool=pool)
    v = torch.nn.functional.normalize(torch.randn(facts_lm.d_model, generator=torch.Generator().manual_seed(0)), dim=0)
    eps = 1e-3
    for i, text in enumerate(texts):
        ids = torch.tensor([facts_lm.encode([text])[0]])

        def value(step: float, ids=ids) -> float:
            def shift(act):
                act = act.clone()
                if pool == "last":
                    act[:, -1] += step * v
                else:
                    act += step * v
                return act

            with facts_lm.hooks([(hook, shift)]), torch.no_grad():
                logits = facts_lm.logits(ids)
            return float(torch.log_softmax(logits[0, -1].double(), -1)[token])

        numeric = (value(eps) - value(-eps)) / (2 * eps)
        assert float(result.grads[i] @ v) == pytest.approx(numeric, rel=2e-2, abs=1e-4)


# -- captum parity ---------------------------------------------------------------------------------


class _ZeroShotHead(torch.nn.Module):
    """The image tower and fixed class prompts as one model captum can call: images -> class logits."""

    def __init__(self, backbone, prompts):
        super().__init__()
        self.visual = backbone.model.visual
        with torch.no_grad():
            self.register_buffer("text", torch.nn.functional.normalize(backbone.encode_texts(prompts), dim=-1))
        self.scale = float(backbone.model.logit_scale.detach().exp())

    def forward(self, images):
        return self.scale * torch.nn.functional.normalize(self.visual(images), dim=-1) @ self.text.T


def test_sign_count_and_magnitude_match_captum(shapes_clip, tmp_path):
    from captum.concept import TCAV as CaptumTCAV
    from captum.concept import Concept
    from captum.concept._utils.classifier import Classifier

    world = ShapesWorld("test", size=40, seed=5)
    images = torch.stack([shapes_clip.preprocess(world.image(i).convert("RGB")) for i in range(len(world))])
    prompts = ["a red circle", "a blue square", "a green triangle"]
    layer = "visual.layer4"
    # CAVs on the flattened layer (what captum uses): red images vs the rest, trained by us
    acts = pool_activation(forward_with_tap(shapes_clip, layer, images)[0], "flatten")
    red = torch.as_tensor(world.attributes["color"].to_numpy() == "red")
    cavs = train_cavs(acts[red], acts[~red][None], method="sgd", normalize=False, test_size=0.34)
    weights = torch.cat([cavs.vectors, -cavs.vectors])  # concept 0 = the CAV, concept 1 = its opposite

    class FixedCAVs(Classifier):
        def __init__(self):
            pass

        def train_and_eval(self, dataloader, **kwargs):
            return {"accs": torch.tensor(1.0)}

        def weights(self):
            return weights

        def classes(self):
            return [0, 1]

    loader = torch.utils.data.DataLoader(images[:8], batch_size=8)
    concepts = [Concept(0, "red", loader), Concept(1, "other", loader)]
    captum = CaptumTCAV(_ZeroShotHead(shapes_clip, prompts).eval(), layers=[layer], classifier=FixedCAVs(), save_path=str(tmp_path / "cav"))
    inputs = images[:20]
    for k, prompt in enumerate(prompts):
        theirs = captum.interpret(inputs, [concepts], target=k)["0-1"][layer]
        ours_grads = layer_gradients(shapes_clip, layer, inputs, zero_shot_logit(shapes_clip, prompt, scale=captum.model.scale), pool="flatten").grads
        ours = tcav_scores(ours_grads, weights)
        torch.testing.assert_close(ours["sign_count"], theirs["sign_count"].float(), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours["magnitude"], theirs["magnitude"].float(), rtol=1e-5, atol=1e-5)


# -- TCAV on ShapesWorld -------------------------------------------------------------------------


def test_class_prompts_and_truth_follow_the_rules():
    assert class_prompts("ruby disc") == ["a red circle"]
    assert sorted(class_prompts("sun cross")) == ["a orange cross", "a yellow cross"]
    assert class_truth(["violet tile"])["violet tile"] == {"shape:square", "shape:circle", "color:purple", "fill:solid"}


def test_grade_counts_directional_significance():
    import pandas as pd

    decisions = pd.DataFrame([
        {"target": "a", "concept": "x", "significant": True, "direction": 1},
        {"target": "a", "concept": "y", "significant": True, "direction": -1},  # significant but lowering: not a positive call
        {"target": "a", "concept": "z", "significant": True, "direction": 1},
    ])
    result = grade(decisions, {"a": {"x", "y"}}, ["x", "y", "z", "w"])
    assert (result["tp"], result["fp"], result["fn"], result["tn"]) == (1, 1, 1, 1)
    assert result["precision"] == 0.5 and result["recall"] == 0.5 and result["false_positive_rate"] == 0.5


def test_tcav_estimator_contract():
    from sklearn.base import clone

    tcav = TCAV(n_random=5, method="mean_diff")
    assert clone(tcav).get_params() == tcav.get_params()
    with pytest.raises(RuntimeError, match="not fitted"):
        tcav.test({"t": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="n_random"):
        TCAV(n_random=1).fit({"c": torch.zeros(4, 2)}, torch.zeros(10, 2))


@pytest.mark.slow
def test_shapes_tcav_defaults_have_fewer_false_positives_than_uncorrected_or_single_runs(shapes_clip, tmp_path_factory):
    from conceptlab.vectors import shapes_tcav_study

    store = ActivationStore(tmp_path_factory.mktemp("tcav-store"))
    concepts = ["shape:circle", "shape:square", "shape:star", "color:red", "color:blue", "color:yellow", "color:orange", "fill:striped", "background:white"]
    study = shapes_tcav_study(shapes_clip, layer="visual.layer4", classes=["ruby disc", "azure block", "sun star"], concepts=concepts, n_examples=40,
                              world_size=600, n_random_pool=300, n_inputs=12, n_random=20, store=store)
    grading = study.grading.set_index(["procedure", "score"])
    default = grading.loc[("default (N runs, t-test, Bonferroni)", "sign_count")]
    uncorrected = grading.loc[("N runs, t-test, uncorrected", "sign_count")]
    single = grading.loc[("single CAV, no random runs (binomial)", "sign_count")]
    assert default["fp"] <= uncorrected["fp"]  # Bonferroni only removes calls made on the same runs
    assert default["false_positive_rate"] < single["false_positive_rate"]
    assert default["recall"] >= 0.7  # 7 rule concepts among the 27 (class, concept) pairs
    gated = grading.loc[(f"default + effect size |d| >= {study.settings['effect_gate']:g}", "sign_count")]
    assert gated["fp"] <= default["fp"] and gated["tp"] <= default["tp"]  # the gate only removes calls
    # every verdict carries p, effect size and a confidence interval that contains the difference of means
    table = study.result.table
    assert ((table["ci_low"] <= table["difference"]) & (table["difference"] <= table["ci_high"])).all()
    assert set(study.tcav.accuracy_["concept"]) == {*concepts, "random"}


def test_tcav_probe_file_parses_and_rejects_bad_settings():
    from pathlib import Path

    from conceptlab.experiments import ProbeConfigError, load_probe
    from conceptlab.registry import PROBE_KINDS

    config = load_probe(Path(__file__).resolve().parents[1] / "probes" / "shapes_tcav.toml")
    assert config.kind == "tcav" and config.tcav["layer"] == "visual.layer4" and config.tcav["n_random"] >= max(config.tcav["stability"])
    probe = PROBE_KINDS.get("tcav")
    with pytest.raises(ProbeConfigError, match="pool"):
        probe.parse({"kind": "tcav", "name": "x", "tcav": {"pool": "median"}})
    with pytest.raises(ProbeConfigError, match="raise n_random"):
        probe.parse({"kind": "tcav", "name": "x", "tcav": {"n_random": 20, "stability": [10, 50]}})
    with pytest.raises(ProbeConfigError, match="unknown"):
        probe.parse({"kind": "tcav", "name": "x", "tcav": {"concepts": ["color:pink"]}})
    with pytest.raises(ProbeConfigError, match="effect_gate"):
        probe.parse({"kind": "tcav", "name": "x", "tcav": {"effect_gate": -1.0}})


@pytest.mark.slow
def test_minilm_cavs_and_tcav_on_real_weights(tmp_path):
    from conceptlab.backbones.sentence_encoder import load_minilm
    from conceptlab.vectors.tcav_text import minilm_cav_accuracy, minilm_tcav

    minilm = load_minilm()
    store = ActivationStore(tmp_path / "store")
    accuracy = minilm_cav_accuracy(minilm, layers=["0.model.encoder.layer.4"], n_random=5, store=store).set_index("concept")["accuracy"]
    assert accuracy["positive sentiment"] >= 0.85 and accuracy["sports"] >= 0.85
    result = minilm_tcav(minilm, layer="0.model.encoder.layer.4", n_random=10, store=store)
    table = result.table[result.table["score"] == "sign_count"].set_index("concept")
    assert bool(table.loc["positive vs negative sentiment", "significant"]) and table.loc["positive vs negative sentiment", "direction"] == 1
    assert not (bool(table.loc["sports", "significant"]) and table.loc["sports", "direction"] == 1)


def test_an_effect_size_gate_keeps_only_large_differences():
    """min_effect_size drops exactly the significant calls whose |d| is below it; 0 is the plain t-test."""
    generator = torch.Generator().manual_seed(0)
    d = 8
    pool = torch.randn(300, d, generator=generator)
    direction = torch.eye(d)[0]
    concepts = {"along": torch.randn(40, d, generator=generator) + 3 * direction,
                "weak": torch.randn(40, d, generator=generator) + 0.6 * direction + 0.6 * torch.eye(d)[1],
                "across": torch.randn(40, d, generator=generator) + 3 * torch.eye(d)[2]}
    grads = {"target": 0.3 * torch.randn(30, d, generator=generator) + direction}
    plain = TCAV(n_random=30, method="mean_diff").fit(concepts, pool).test(grads).table
    called = plain[plain["significant"]]
    assert len(called) >= 2 and not plain["below_min_effect"].any()
    sizes = sorted(called["effect_size"].abs())
    gate = (sizes[0] + sizes[-1]) / 2  # between the weakest and the strongest call
    gated = TCAV(n_random=30, method="mean_diff", min_effect_size=gate).fit(concepts, pool).test(grads).table
    assert (gated[["concept", "score", "p_value", "effect_size"]].values == plain[["concept", "score", "p_value", "effect_size"]].values).all()
    expected = plain["significant"] & (plain["effect_size"].abs() >= gate)
    assert (gated["significant"] == expected).all() and 0 < expected.sum() < len(called)
    assert (gated["below_min_effect"] == (plain["effect_size"].abs() < gate)).all()
    with pytest.raises(ValueError, match="min_effect_size"):
        TCAV(n_random=3, min_effect_size=-1).fit(concepts, pool)
