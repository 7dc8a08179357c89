"""Probes for the language-concept CBMs: shapes_labo.toml and shapes_v2c.toml validate and run."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

from conceptlab.cbm import V2CCBM, LaBo
from conceptlab.cbm.model import ConceptBottleneckModel
from conceptlab.concepts.language import shapesworld_concept_set
from conceptlab.experiments import ProbeConfigError, load_probe, parse_probe, run_probe
from conceptlab.registry import CONCEPT_SOURCES, METHODS

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"train": 600, "val": 200, "test": 200, "shifted": 200}
#: measured at these sizes (seed 0): LaBo 0.905, V2C-CBM 0.900 test accuracy (linear probe 0.93)
BARS = {"shapes_labo": 0.85, "shapes_v2c": 0.85}


# small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def small(name: str, **concepts) -> dict:
    raw = tomllib.loads((ROOT / "probes" / f"{name}.toml").read_text())
    raw["dataset"]["sizes"] = dict(SMALL)
    raw["concepts"].update(concepts)
    return raw


def test_shipped_language_probes_validate():
    labo = load_probe(ROOT / "probes" / "shapes_labo.toml")
    assert labo.method["name"] == "labo" and labo.concepts["source"] == "concept_set"
    assert labo.concepts["filters"] and labo.concepts["select"] and labo.concepts["n_per_class"] == 5
    v2c = load_probe(ROOT / "probes" / "shapes_v2c.toml")
    assert v2c.method["name"] == "v2c" and v2c.concepts["source"] == "v2c" and v2c.concepts["templates"] == ["a photo of a {}."]
    assert METHODS.get("labo") is LaBo and METHODS.get("v2c") is V2CCBM
    assert {"concept_set", "v2c", "text"} <= set(CONCEPT_SOURCES)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("concepts", "n_per_clas", 3, "Did you mean 'n_per_class'"),
        ("concepts", "filters", "yes", "must be a boolean"),
        ("method.params", "epoch", 10, "Did you mean 'epochs'"),
    ],
)
def test_language_probe_errors(section, key, value, message):
    raw = small("shapes_labo")
    table = raw
    for part in section.split("."):
        table = table.setdefault(part, {})
    table[key] = value
    with pytest.raises(ProbeConfigError, match=message):
        parse_probe(raw, source="x.toml")


@pytest.mark.parametrize("name, model_class", [("shapes_labo", LaBo), ("shapes_v2c", V2CCBM)])
def test_language_probe_runs_end_to_end(name, model_class, tmp_path, isolated_home):
    config = parse_probe(small(name), source=f"{name}.toml", name=name)
    result = run_probe(config, out_dir=tmp_path / name, progress=False, log=None)
    assert isinstance(result.model, model_class)
    for file in ("metrics.json", "report.html", "probe.json", "model"):
        assert (tmp_path / name / file).exists()
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["method"] == config.method["name"] and metrics["sizes"]["train"] == 600
    assert metrics["accuracy"]["test"] >= BARS[name], metrics["accuracy"]
    loaded = ConceptBottleneckModel.load(tmp_path / name / "model")
    assert type(loaded) is model_class and loaded.concept_names_ == result.model.concept_names_
    assert (loaded.predict(torch.zeros(3, loaded.bank.dim) + 0.1) == result.model.predict(torch.zeros(3, loaded.bank.dim) + 0.1)).all()
    bank = result.model.bank
    assert all(c.class_links for c in bank)
    if name == "shapes_labo":
        # the selection keeps at most n_per_class per class, from the filtered candidates
        assert len(bank) <= 5 * 12 and not set(bank.names) & set(shapesworld_concept_set().classes)
    else:
        assert all("class_scores" in c.provenance for c in bank)


def test_concept_set_from_a_path_without_filters_or_selection(tmp_path, isolated_home):
    path = shapesworld_concept_set().restrict(["red", "round shape", "green", "blue", "yellow", "purple", "orange", "cyan"]).save(tmp_path / "mine.json")
    raw = small("shapes_labo", path=path.name, filters=False, select=False)
    raw["method"]["params"]["epochs"] = 50
    raw["evaluation"] = {"splits": ["test"], "linear_baseline": False, "editing": {"enabled": False}}
    config = parse_probe(raw, source=str(tmp_path / "p.toml"), name="mine")
    result = run_probe(config, progress=False, log=None, write=False)
    assert sorted(result.model.concept_names_) == sorted(shapesworld_concept_set().restrict(
        ["red", "round shape", "green", "blue", "yellow", "purple", "orange", "cyan"]).unique())
    raw["concepts"]["path"] = "missing.json"
    with pytest.raises(ProbeConfigError, match=r"key 'path': no such file or folder: .*missing\.json"):  # caught before any embedding
        parse_probe(raw, source=str(tmp_path / "p.toml"), name="mine")
