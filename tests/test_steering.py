"""Steering vectors on the shipped zoo:facts-gpt2: identity at 0, restoring context manager, parity
with the ``steering-vectors`` package, repeng's PCA against scikit-learn's, artifacts, and the
dose-response on FactsWorld (the target rises, then coherence breaks)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from conceptlab.vectors import (
    SteeringVector,
    build_steering_vector,
    coherent_range,
    dose_response,
    dose_response_figure,
    facts_steering_task,
    from_cav,
    from_concept_vector,
    mean_difference,
    pair_activations,
    pca_direction,
    steer,
)

ROOT = Path(__file__).resolve().parents[1]
# small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm_world():
    from conceptlab import zoo
    from conceptlab.backbones import load
    from conceptlab.zoo.facts_gpt2 import world_of

    folder = zoo.available()["facts-gpt2"]
    if folder is None:
        pytest.skip("zoo:facts-gpt2 is not built")
    return load("zoo:facts-gpt2", device="cpu"), world_of(folder)


@pytest.fixture(scope="module")
def task(lm_world):
    return facts_steering_task(lm_world[1], "colour", "white", seed=0)


def _logits(lm, texts):
    with torch.no_grad():
        return [lm.logits(torch.tensor(ids)) for ids in lm.encode(texts)]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_task_is_built_from_the_truth(lm_world, task):
    _, world = lm_world
    white = {e.name for e in world.entities if e.attributes.get("colour") == "white"}
    assert len(task.pairs) == 5 * len(white)  # every training phrasing of every white entity
    assert all(any(name in pos for name in white) and not any(name in neg for name in white) for pos, neg in task.pairs)
    steered = {e.name for e in world.entities if any(e.name in p for p in task.prompts)}
    in_pairs = {e.name for e in world.entities if any(e.name in neg for _, neg in task.pairs)}
    assert steered and not steered & in_pairs and not steered & white  # held-out entities whose colour is not white
    assert all(t != "white" for t in task.truths) and all("Which is the" in p or "What" in p or "Tell me which" in p for p in task.prompts)


def test_multiplier_zero_is_the_identity_and_the_model_is_restored(lm_world, task):
    lm, _ = lm_world
    vector = mean_difference(lm, task.pairs[:8], layer=1)
    texts = task.prompts[:3] + task.coherence_texts[:2]
    before = _logits(lm, texts)
    with steer(lm, vector, 0.0):
        assert _same(_logits(lm, texts), before)
    with steer(lm, vector, 1.5):
        assert not _same(_logits(lm, texts), before)
    assert _same(_logits(lm, texts), before)
    with pytest.raises(RuntimeError, match="inside"):
        with vector.apply(lm, 4.0):
            assert not _same(_logits(lm, texts), before)
            raise RuntimeError("boom inside the block")
    assert _same(_logits(lm, texts), before)
    assert not any(block._forward_hooks or block._forward_pre_hooks for block in lm.model.transformer.h)


def test_token_scope_steers_only_the_chosen_positions(lm_world, task):
    lm, _ = lm_world
    vector = mean_difference(lm, task.pairs[:8], layer=0)
    ids = torch.tensor(lm.encode(task.prompts[:1])[0])
    with torch.no_grad():
        plain = lm.logits(ids)[0]
        with steer(lm, vector, 3.0, token_scope=5):
            late = lm.logits(ids)[0]
        with steer(lm, vector, 3.0, token_scope="last"):
            last = lm.logits(ids)[0]
    assert torch.equal(late[:5], plain[:5]) and not torch.allclose(late[5:], plain[5:])
    assert torch.equal(last[:-1], plain[:-1]) and not torch.allclose(last[-1], plain[-1])


def test_mean_difference_and_steering_match_the_steering_vectors_package(lm_world, task):
    steering_vectors = pytest.importorskip("steering_vectors")
    lm, _ = lm_world
    pairs = task.pairs[:12]
    for layer in (0, 1):
        ours = mean_difference(lm, pairs, layer=layer)
        theirs = steering_vectors.train_steering_vector(lm.model, lm.tokenizer, pairs, layers=[layer], read_token_index=-1, show_progress=False)
        assert set(theirs.layer_activations) == {layer}
        assert torch.allclose(ours.direction, theirs.layer_activations[layer].float(), atol=1e-5, rtol=0)
        # the same vector applied by both libraries gives the same logits
        texts = task.prompts[:2]
        with steer(lm, ours, 1.3):
            steered = _logits(lm, texts)
        with theirs.apply(lm.model, multiplier=1.3):
            reference = _logits(lm, texts)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(steered, reference))
    # repeng's "pca_center" is the direction steering-vectors' pca_aggregator finds (up to the sign rule)
    pca = pca_direction(lm, pairs, layer=1, method="pca_center")
    theirs = steering_vectors.train_steering_vector(lm.model, lm.tokenizer, pairs, layers=[1], aggregator=steering_vectors.pca_aggregator())
    assert torch.allclose(pca.direction, theirs.layer_activations[1].float(), atol=1e-5, rtol=0)


def test_pca_diff_is_sklearns_pca_of_the_differences_with_repengs_sign(lm_world, task):
    from sklearn.decomposition import PCA

    lm, _ = lm_world
    pairs = task.pairs[:20]
    positive, negative = pair_activations(lm, pairs, layer=0)
    deltas = (positive - negative).double().numpy()
    reference = torch.from_numpy(PCA(n_components=1, whiten=False).fit(deltas).components_[0]).float()
    ours = pca_direction(lm, pairs, layer=0, method="pca_diff")
    assert abs(ours.cosine(reference)) > 1 - 1e-5 and abs(ours.norm - 1) < 1e-5
    projected = (positive - negative) @ ours.direction
    assert (projected > 0).sum() >= (projected < 0).sum()  # repeng: most pairs project higher on the positive side


def test_vectors_from_a_cav_and_a_located_concept_vector(lm_world, task, tmp_path):
    from conceptlab.concepts import Concept

    lm, _ = lm_world
    value = from_concept_vector(lm, 1, 7)
    assert torch.equal(value.direction, lm.value_vector(1, 7)) and value.layer == 1 and value.method == "concept_vector"
    concept = Concept("white", lm.value_vector(0, 3), lm.space, provenance={"kind": "value_vector", "layer": 0, "index": 3})
    assert torch.equal(from_concept_vector(concept, norm=2.0).direction, lm.value_vector(0, 3) * (2.0 / float(lm.value_vector(0, 3).norm())))
    unit = torch.nn.functional.normalize(torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)), dim=0)
    cav = from_cav(unit, "blocks.1.hook_resid_pre", lm=lm, norm=1.6)
    assert (cav.layer, cav.hook) == (1, "hook_resid_pre") and abs(cav.norm - 1.6) < 1e-5 and cav.cosine(unit) > 1 - 1e-6
    assert from_cav(Concept("c", unit, "s", provenance={"layer": 1})).layer == 1
    with pytest.raises(ValueError, match="dimensions"):
        from_cav(torch.ones(lm.d_model + 1), 1, lm=lm)
    with pytest.raises(ValueError, match="which layer"):
        from_cav(unit)
    with pytest.raises(TypeError, match="SteeringVector"):
        with steer(lm, unit, 1.0):
            pass
    # save / load round trip
    vector = mean_difference(lm, task.pairs[:6], layer=1)
    loaded = SteeringVector.load(vector.save(tmp_path / "v"))
    assert torch.equal(loaded.direction, vector.direction) and (loaded.layer, loaded.hook, loaded.method) == (1, "hook_resid_post", "mean_difference")
    assert loaded.provenance["n_pairs"] == 6 and loaded.provenance["spec"] == "zoo:facts-gpt2"
    with pytest.raises(FileNotFoundError, match="steering vector"):
        SteeringVector.load(tmp_path)


def test_dose_response_rises_then_coherence_breaks(lm_world, task):
    lm, _ = lm_world
    vector = build_steering_vector(lm, task, layer=1, method="mean_difference")
    table = dose_response(lm, vector, task, multipliers=[0.0, 1.0, 1.5, 8.0], progress=False)
    rows = table.set_index("multiplier")
    # measured: target rate 0.00 -> 0.48 (x1) -> 0.98 (x1.5) -> 1.00 (x8); NLL 2.41, 2.42, 2.43, 7.99;
    # repeat share 0, 0, 0, 0.94; the unsteered model answers every control question
    assert rows.loc[0.0, "target_rate"] == 0.0 and rows.loc[0.0, "other_accuracy"] == 1.0 and rows.loc[0.0, "repeat_share"] == 0.0
    assert rows.loc[1.5, "target_rate"] >= rows.loc[0.0, "target_rate"] + 0.7
    assert rows.loc[1.5, "nll"] <= rows.loc[0.0, "nll"] + 0.1
    assert rows.loc[8.0, "nll"] >= rows.loc[0.0, "nll"] + 2.0 and rows.loc[8.0, "repeat_share"] >= 0.5
    assert rows.loc[8.0, "exact_rate"] <= 0.1  # "white white white ...": the answer starts right but never ends
    coherent = coherent_range(table)
    assert coherent["low"] is not None and 0 < coherent["low"] <= 1.5 and coherent["high"] == 1.5 and coherent["breaks_at"] == 8.0
    strict = coherent_range(table, min_control_accuracy=0.99)  # control accuracy at x1.5 is 0.84 (measured): the stricter guard stops at x1
    assert strict["high"] == 1.0 and strict["breaks_at"] == 1.5
    figure = dose_response_figure(table, multiplier=1.5, coherent=coherent)
    assert [list(t.y) for t in figure.data if t.name == "repeat share"] == [list(table["repeat_share"])]
    assert len(figure.data) == 5 and any(shape.type == "rect" and shape.x0 == coherent["low"] for shape in figure.layout.shapes)
    # steering away (negative) never produces the target
    away = dose_response(lm, vector, task, multipliers=[-1.0], progress=False)
    assert away["target_rate"].iloc[0] == 0.0


def test_steering_probe_parses_and_runs(tmp_path):
    from conceptlab import zoo
    from conceptlab.experiments import ProbeConfigError, load_probe, parse_any, run_probe

    config = load_probe(ROOT / "probes" / "facts_steering.toml")
    assert config.kind == "steering" and config.steer["value"] == "white" and 0.0 in config.steer["multipliers"]
    raw = tomllib.loads((ROOT / "probes" / "facts_steering.toml").read_text())
    for section, key, value, message in [
        ("steer", "method", "svd", "choose one of"),
        ("steer", "multipliers", [1.0, 2.0], "must include 0"),
        ("steer", "layr", 1, "unknown key"),
        ("coherence", "max_nll_increase", "high", "wrong type"),
    ]:
        bad = {**raw, section: {**raw[section], key: value}}
        with pytest.raises(ProbeConfigError, match=message):
            parse_any(bad, source="x.toml")
    if zoo.available()["facts-gpt2"] is None:
        pytest.skip("zoo:facts-gpt2 is not built")
    with pytest.raises(ProbeConfigError, match="values in this world"):
        run_probe(parse_any({**raw, "steer": {**raw["steer"], "value": "teal"}}, source="x.toml"), out_dir=tmp_path / "bad", progress=False, log=None)
    small = parse_any({**raw, "steer": {**raw["steer"], "multipliers": [0.0, 1.5, 8.0]}}, source="x.toml")
    result = run_probe(small, out_dir=tmp_path / "out", progress=False, log=None)
    c = result.metrics["coherent_range"]
    assert c["best"] == 1.5 and c["best_rate"] > 0.7 and c["breaks_at"] == 8.0
    loaded = SteeringVector.load(tmp_path / "out" / "steering_vector")
    assert torch.equal(loaded.direction, result.vector.direction)
    assert (tmp_path / "out" / "report.html").read_text().count("coherence breaks") >= 1
    assert (tmp_path / "out" / "dose_response.csv").read_text().startswith("multiplier,target_rate")
    assert list(result.examples["steered"]).count("white") >= 6
