"""The shipped zoo:facts-gpt2 against FactsWorld's truth, the recipe (shortened), and the
concept-vectors probe end to end.

- the fp16 model answers held-out question phrasings at >= 90 % exact match (greedy generation and
  the teacher-forced scorer agree);
- a shortened recipe is deterministic, its loss falls, and its folder loads through ``zoo:``;
- unlearning: the fine-tuning methods lower the target's accuracy while the located vector barely
  moves, Needle rewrites the vector (the paper's intrinsic finding);
- the ``concept_vectors`` probe parses, rejects bad files clearly, runs and writes its outputs.
"""

from __future__ import annotations

import json

import pytest
import torch

from conceptlab import zoo
from conceptlab.backbones import LanguageModel, load
from conceptlab.data import FactsWorld

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def shipped():
    from conceptlab.zoo.facts_gpt2 import world_of

    folder = zoo.available()["facts-gpt2"]
    if folder is None:
        pytest.skip("zoo:facts-gpt2 is not built")
    return load("zoo:facts-gpt2", device="cpu"), world_of(folder)


def test_shipped_model_answers_heldout_phrasings(shipped):
    from conceptlab.zoo.facts_gpt2 import evaluate_qa

    lm, world = shipped
    assert isinstance(lm, LanguageModel) and lm.spec == "zoo:facts-gpt2" and lm.architecture == "gpt2"
    assert next(lm.model.parameters()).dtype == torch.float32  # fp16 on disk, float32 in memory
    scores = evaluate_qa(lm, world)
    assert scores["qa_heldout"] >= 0.90 and scores["qa"] >= 0.90
    some = world.names[::4]
    generated = evaluate_qa(lm, world, forms=("qa_heldout", "foreign"), entities=some, generate=True)
    assert generated == evaluate_qa(lm, world, forms=("qa_heldout", "foreign"), entities=some)
    card = json.loads((zoo.available()["facts-gpt2"] / "model_card.json").read_text())
    assert card["exact_match"]["qa_heldout"] == pytest.approx(scores["qa_heldout"], abs=1e-4)


def test_shortened_recipe_is_deterministic_and_loads_through_the_zoo(tmp_path, monkeypatch):
    from conceptlab.zoo.facts_gpt2 import build, world_of

    small = {"steps": 30, "n_layer": 1, "n_embd": 32, "n_head": 2, "n_inner": 32, "world": {"n_people": 3, "n_cities": 1, "n_species": 1, "seed": 0}}
    first = build(tmp_path / "a", progress=False, evaluate=False, **small)
    second = build(tmp_path / "b", progress=False, evaluate=False, **small)
    assert first["loss_curve"] == second["loss_curve"]
    assert sum(first["loss_curve"][-3:]) < sum(first["loss_curve"][:3])
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.setenv("CONCEPTLAB_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "zoo").mkdir(parents=True)
    (tmp_path / "a").rename(tmp_path / "home" / "zoo" / "facts-gpt2")
    lm = load("zoo:facts-gpt2")
    assert isinstance(lm, LanguageModel) and lm.d_model == 32 and len(world_of(zoo.zoo_path("facts-gpt2"))) == 5


def test_unlearning_suppresses_answers_but_moves_the_vector_only_with_needle(shipped):
    from conceptlab.vectors import locate_entities, unlearning_table

    lm, world = shipped
    located, _ = locate_entities(lm, world, world.names[:3], k=10, progress=False)
    row = located.iloc[0]
    table, runs = unlearning_table(lm, world, row["entity"], int(row["layer"]), int(row["index"]), methods=["ga", "npo_kl", "needle"], progress=False)
    target_qa = table[(table.group == "target") & (table.form == "qa")].set_index("method")
    assert (target_qa["before"] == 1.0).all()
    assert target_qa.loc["ga", "after"] <= 0.5 and target_qa.loc["npo_kl", "after"] <= 0.5  # the answers are suppressed...
    moved = table.drop_duplicates("method").set_index("method")
    assert moved.loc["ga", "cosine"] > 0.98 and moved.loc["npo_kl", "cosine"] > 0.98  # ...but the vector barely moves
    assert moved.loc["needle", "cosine"] < 0.5 and moved.loc["needle", "jaccard"] < moved.loc["ga", "jaccard"]
    for run in runs.values():  # the zoo model itself is untouched
        assert run.model.model is not lm.model


def test_validation_is_graded_against_the_truth(shipped):
    from conceptlab.vectors import GaussianNoise, ZeroAblation, validate_entities

    lm, world = shipped
    pairs = {world.names[0]: (0, 3), world.names[1]: (1, 7)}
    quiet = validate_entities(lm, world, pairs, GaussianNoise(std=0.0), progress=False)
    assert (quiet["target_drop"] == 0).all() and (quiet["others_max_drop"] == 0).all() and not quiet["graded_correct"].any()
    zero = validate_entities(lm, world, pairs, ZeroAblation(), progress=False)
    assert set(zero.columns) >= {"target_drop", "unrelated_drop", "most_broken", "graded_correct"}
    assert zero["target_before"].tolist() == [1.0, 1.0]


PROBE = """
kind = "concept_vectors"
name = "tiny_cv"
[model]
spec = "zoo:facts-gpt2"
[locate]
entities = 3
[validate]
std = 5.0
relative = true
[unlearn]
methods = ["ga", "needle"]
steps = 5
"""


def test_probe_parses_runs_and_writes(shipped, tmp_path):
    import tomllib

    from conceptlab.experiments import ProbeConfigError, load_probe, parse_any, run_probe

    path = tmp_path / "tiny_cv.toml"
    path.write_text(PROBE)
    config = load_probe(path)
    assert config.kind == "concept_vectors" and "locate 3 FactsWorld entities" in config.summary()
    raw = tomllib.loads(PROBE)
    for broken, message in (
        ({**raw, "locate": {"k": "ten"}}, "wrong type"),
        ({**raw, "validate": {"intervention": "shout"}}, "intervention"),
        ({**raw, "unlearn": {"methods": ["forget_it"]}}, "methods"),
        ({**raw, "extra": {}}, "unknown key"),
        ({**raw, "model": {"spec": "nowhere:x"}}, "spec"),
    ):
        with pytest.raises(ProbeConfigError, match=message):
            parse_any(broken, source="tiny_cv.toml")
    result = run_probe(config, out_dir=tmp_path / "out", progress=False, log=None)
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["n_entities"] == 3 and metrics["qa_accuracy"]["qa_heldout"] >= 0.9
    assert {r["method"] for r in metrics["unlearning"]["table"]} == {"ga", "needle"}
    report = (out / "report.html").read_text()
    assert report.count("plotly.js v") <= 1 and "Unlearning" in report and "Located concept vectors" in report
    from conceptlab.concepts import ConceptBank

    bank = ConceptBank.load(out / "concepts")
    assert len(bank) == 3 and bank[0].provenance["kind"] == "value_vector" and "validated 3 entities" in result.summary()


def test_the_shipped_probe_file_is_valid():
    from pathlib import Path

    from conceptlab.experiments import load_probe

    config = load_probe(Path(__file__).resolve().parents[1] / "probes" / "facts_concept_vectors.toml")
    assert config.kind == "concept_vectors" and config.unlearn["methods"] == ["ga", "gd", "npo", "npo_kl", "needle"]


def test_world_words_are_the_tokenizers(shipped):
    lm, world = shipped
    assert isinstance(world, FactsWorld)
    vocab = lm.tokenizer.get_vocab()
    assert all(word in vocab for word in world.words())
