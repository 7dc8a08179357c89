"""Probes: the TOML format's validation, a real run through the CLI, and the method registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conceptlab.data import shapesworld_text_prompts
from conceptlab.experiments import ProbeConfigError, load_probe, parse_probe, run_probe
from conceptlab.registry import METHODS, RegistryError, register_method

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"train": 120, "val": 40, "test": 40, "shifted": 40}


def base(**overrides) -> dict:
    probe = {
        "name": "t",
        "backbone": {"spec": "zoo:shapes-clip"},
        "dataset": {"sizes": dict(SIZES)},
        "concepts": {"source": "text"},
        "method": {"name": "pcbm"},
    }
    for path, value in overrides.items():
        *parents, key = path.split(".")
        table = probe
        for parent in parents:
            table = table.setdefault(parent, {})
        if value is DELETE:
            del table[key]
        else:
            table[key] = value
    return probe


DELETE = object()


def write(tmp_path: Path, text: str, name: str = "probe.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- the format -------------------------------------------------------------------------------


def test_shipped_probes_validate():
    for name, method in (("shapes_pcbm", "pcbm"), ("shapes_pcbm_h", "pcbm_h")):
        config = load_probe(ROOT / "probes" / f"{name}.toml")
        assert config.name == name and config.method["name"] == method
        assert config.backbone["spec"] == "zoo:shapes-clip" and config.concepts["source"] == "text"
        assert config.needed_splits == ["train", "val", "test", "shifted"] and config.editing.enabled
    assert load_probe(ROOT / "probes" / "shapes_pcbm_h.toml").method["params"]["residual_lr"] == 0.001


def test_defaults_fill_in():
    config = parse_probe(base(), source="x.toml")
    assert config.evaluation["splits"] == ["val", "test", "shifted"] and config.evaluation["linear_baseline"]
    assert config.concepts == {"source": "text", "set": "shapesworld", "path": "", "names": None, "prompts": None, "templates": None}
    assert config.editing.suggest == 4 and config.dataset["spurious_strength"] == 0.9
    assert config.method == {"name": "pcbm", "params": {}}
    assert json.loads(json.dumps(config.to_dict()))["evaluation"]["editing"]["enabled"] is True


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"colour": 1}, r"top level: unknown key 'colour'"),
        ({"method.name": "pcbn"}, r"\[method\]: unknown method 'pcbn'. Did you mean 'pcbm'.*Known methods: dncbm, labo, lfcbm, pcbm, pcbm_h"),
        ({"method.params": {"lamda": 0.1}}, r"\[method.params\] of pcbm: unknown key 'lamda'. Did you mean 'lam'"),
        ({"method.params": {"lam_scale": "big"}}, r"key 'lam_scale' must be a number, got a string 'big'"),
        ({"method.params": {"residual_lr": 0.1}}, r"unknown key 'residual_lr'"),  # PCBM has no residual
        ({"method": DELETE}, r"top level: missing required key 'method'"),
        ({"method.name": DELETE}, r"\[method\]: missing required key 'name'"),
        ({"backbone.spec": "clip:RN50"}, r"\[backbone\]: spec: unknown backbone scheme 'clip'"),
        ({"backbone.spec": "zoo:imagenet-clip"}, r"unknown zoo model 'imagenet-clip'.*the zoo has: .*shapes-clip"),
        ({"backbone.spec": DELETE}, r"\[backbone\]: missing required key 'spec'"),
        ({"backbone.gpu": True}, r"\[backbone\]: unknown key 'gpu'"),
        ({"dataset.sizes": {"val": 10}}, r"missing required key 'train'"),
        ({"dataset.sizes": {"train": 10, "holdout": 5}}, r"unknown split 'holdout'"),
        ({"dataset.sizes": {"train": 0}}, r"train must be a positive integer"),
        ({"dataset.name": "cub"}, r"unknown dataset 'cub'"),
        ({"dataset.seed": "zero"}, r"key 'seed' must be an integer"),
        ({"concepts.source": "llm"}, r"unknown concept source 'llm'; known sources: bank, cav, concept_set, sae, text, v2c"),
        ({"concepts.source": DELETE}, r"missing required key 'source'"),
        ({"concepts.set": "cub"}, r"unknown text concept set 'cub'"),
        ({"concepts.templates": ["a photo"]}, r"every template must contain"),
        ({"concepts.source": "bank"}, r"\[concepts\]: missing required key 'path'"),
        ({"concepts.n_samples": 10}, r"\[concepts\]: unknown key 'n_samples'"),  # a CAV key on a text source
        ({"evaluation.splits": ["val", "ood"]}, r"unknown split 'ood'"),
        ({"evaluation.concept_auroc": "dev"}, r"must be a split .* or false"),
        ({"evaluation.editing.suggest": 0}, r"suggest must be at least 1"),
        ({"evaluation.editing.color": 1}, r"\[evaluation.editing\]: unknown key 'color'"),
        ({"dataset.sizes": {"train": 10, "val": 5, "test": 5}}, r"uses split\(s\) shifted but gives no size"),
        ({"name": "a/b"}, r"must be a non-empty folder name"),
        ({"backbone": "zoo:shapes-clip"}, r"\[backbone\]: must be a table"),
    ],
)
def test_bad_probes_are_clear_errors(overrides, message):
    with pytest.raises(ProbeConfigError, match=message) as info:
        parse_probe(base(**overrides), source="bad.toml")
    assert str(info.value).startswith("bad.toml: ")


def test_file_level_errors(tmp_path):
    with pytest.raises(ProbeConfigError, match="no probe file at"):
        load_probe(tmp_path / "missing.toml")
    broken = write(tmp_path, "name = 'x'\n[backbone\nspec = 1\n")
    with pytest.raises(ProbeConfigError, match=r"probe.toml: not valid TOML"):
        load_probe(broken)
    unnamed = write(tmp_path, """
        [backbone]
        spec = "zoo:shapes-clip"
        [dataset]
        sizes = { train = 10, shifted = 10, val = 10, test = 10 }
        [concepts]
        source = "cav"
        [method]
        name = "pcbm_h"
        params = { residual_epochs = 3 }
    """, name="my_probe.toml")
    config = load_probe(unnamed)
    assert config.name == "my_probe" and config.method["params"] == {"residual_epochs": 3}
    assert config.concepts["n_samples"] == 50 and config.concepts["split"] == "train"


def test_cli_reports_bad_probe_without_traceback(tmp_path):
    bad = write(tmp_path, """
        name = "x"
        [backbone]
        spec = "zoo:shapes-clip"
        [dataset]
        sizes = { train = 10 }
        [concepts]
        source = "text"
        [method]
        name = "lab0"
    """)
    env = {**os.environ, "CONCEPTLAB_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for command in (["probe", "validate", str(bad)], ["probe", "run", str(bad)]):
        result = subprocess.run([sys.executable, "-m", "conceptlab.cli", *command], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "unknown method 'lab0'" in result.stderr and "Known methods: dncbm, labo, lfcbm, pcbm, pcbm_h, sequential_pcbm, v2c" in result.stderr
        assert "Traceback" not in result.stderr


def test_registry_accepts_new_methods():
    from conceptlab.cbm import PCBM

    class TinyPCBM(PCBM):
        def __init__(self, bank, class_names=None, lam=None, width: int = 3):
            super().__init__(bank, class_names, lam=lam)
            self.width = width

    register_method("tiny_pcbm", TinyPCBM, description="a test method")
    try:
        with pytest.raises(RegistryError, match="already registered"):
            register_method("tiny_pcbm", PCBM)
        config = parse_probe(base(**{"method.name": "tiny_pcbm", "method.params": {"width": 5, "lam": 0.1}}))
        assert config.method["params"] == {"width": 5, "lam": 0.1}
        assert METHODS.get("tiny_pcbm")(None, **config.method["params"]).width == 5
        with pytest.raises(ProbeConfigError, match="key 'width' must be an integer"):
            parse_probe(base(**{"method.name": "tiny_pcbm", "method.params": {"width": 2.5}}))
        with pytest.raises(ProbeConfigError, match="unknown key 'lam_scale'"):  # only what its constructor takes
            parse_probe(base(**{"method.name": "tiny_pcbm", "method.params": {"lam_scale": 1.0}}))
    finally:
        METHODS.unregister("tiny_pcbm")


def test_text_prompts_are_the_zoo_captions():
    prompts = shapesworld_text_prompts()
    assert len(prompts) == 25
    assert prompts["color:red"] == "a red shape" and prompts["shape:circle"] == "a circle"
    assert prompts["background:white"] == "a shape on a white background"
    assert prompts["position:top-left"] == "a shape at the top left" and prompts["fill:striped"] == "a striped shape"


# -- running ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_clip_dir):
    """``conceptlab probe run`` on the tiny CLIP, as a user runs it (a subprocess)."""
    work = tmp_path_factory.mktemp("probe-run")
    probe = write(work, f"""
        name = "tiny_pcbm_h"
        description = "a test"
        [backbone]
        spec = "local-dir:{tiny_clip_dir}"
        [dataset]
        seed = 3
        sizes = {{ train = {SIZES['train']}, val = {SIZES['val']}, test = {SIZES['test']}, shifted = {SIZES['shifted']} }}
        [concepts]
        source = "text"
        [method]
        name = "pcbm_h"
        params = {{ lam = 0.0001, residual_epochs = 2 }}
        [evaluation.editing]
        concepts = ["background:white", "background:black"]
    """)
    env = {**os.environ, "CONCEPTLAB_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = work / "out"
    result = subprocess.run(
        [sys.executable, "-m", "conceptlab.cli", "probe", "run", str(probe), "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300, cwd=work,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "stdout": result.stdout, "probe": probe, "home": work / "home"}


def test_probe_run_writes_model_metrics_and_report(tiny_run):
    from conceptlab.backbones import load
    from conceptlab.cbm import ConceptBottleneckModel, PCBMHybrid
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore

    out = tiny_run["out"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model", "model_edited", "probe.json", "report.html"]
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "pcbm_h" and metrics["model_class"] == "PCBMHybrid" and metrics["n_concepts"] == 25
    assert set(metrics["accuracy"]) == {"train", "val", "test", "shifted"}
    assert metrics["sizes"] == SIZES
    assert set(metrics["linear_baseline"]["accuracy"]) == set(metrics["accuracy"])
    assert len(metrics["concept_auroc"]["per_concept"]) == 25 and metrics["concept_auroc"]["split"] == "test"
    assert metrics["intervention"]["curve"][0] == {"k": 0, "accuracy": metrics["accuracy"]["test"], "concept": None}
    assert metrics["editing"]["pruned"] == ["background:white", "background:black"] and metrics["editing"]["suggested"] == []
    assert set(metrics["per_class_accuracy"]["test"]) == set(ShapesWorld("test", size=1).class_names)

    # the saved model is the one that was measured: reload it and re-score the test split
    model = ConceptBottleneckModel.load(out / "model")
    assert isinstance(model, PCBMHybrid) and model.has_residual
    backbone = load(json.loads((out / "probe.json").read_text())["backbone"]["spec"], device="cpu")
    test = ShapesWorld("test", size=SIZES["test"], seed=3)
    embeddings = ActivationStore(tiny_run["home"] / "store").get_or_compute(backbone, test, progress=False)
    assert model.score(embeddings, test.labels) == pytest.approx(metrics["accuracy"]["test"])
    edited = ConceptBottleneckModel.load(out / "model_edited")
    assert edited.edits_[-1]["concepts"] == ["background:white", "background:black"]
    assert (edited.weights_frame()[["background:white", "background:black"]] == 0).all().all()

    report = (out / "report.html").read_text()
    assert report.count("Plotly.newPlot") == 5  # weights, per class, AUROC, intervention, editing
    assert report.count("<script type=\"text/javascript\">/**") <= 1  # plotly.js inlined once: it opens offline
    for title in ("Concept weights", "Accuracy per class", "Concept quality", "Interventions", "Model editing", "linear baseline"):
        assert title in report
    assert "tiny_pcbm_h" in tiny_run["stdout"] or "report:" in tiny_run["stdout"]


def test_probe_with_a_saved_bank_and_cavs(tiny_run, tmp_path):
    """``bank`` reads a saved ConceptBank (path relative to the probe file); ``cav`` learns CAVs."""
    from conceptlab.cbm import ConceptBottleneckModel
    from conceptlab.store import ActivationStore

    ConceptBottleneckModel.load(tiny_run["out"] / "model").bank.subset(["color:red", "shape:circle"]).save(tmp_path / "banks" / "two")
    spec = json.loads((tiny_run["out"] / "probe.json").read_text())["backbone"]["spec"]
    common = f"""
        [backbone]
        spec = "{spec}"
        [dataset]
        seed = 3
        sizes = {{ train = {SIZES['train']}, test = {SIZES['test']} }}
        [method]
        name = "pcbm"
        params = {{ lam = 0.0001 }}
        [evaluation]
        splits = ["test"]
        linear_baseline = false
        [evaluation.editing]
        enabled = false
    """
    store = ActivationStore(tiny_run["home"] / "store")
    bank_probe = write(tmp_path, common + '[concepts]\nsource = "bank"\npath = "banks/two"\n', name="bank.toml")
    result = run_probe(bank_probe, out_dir=tmp_path / "bank-out", store=store, progress=False, log=None)
    assert result.model.concept_names_ == ["color:red", "shape:circle"]
    assert set(result.metrics["concept_auroc"]["per_concept"]) == {"color:red", "shape:circle"}
    assert "editing" not in result.metrics and (tmp_path / "bank-out" / "report.html").is_file()

    cav_probe = write(tmp_path, common + '[concepts]\nsource = "cav"\nnames = ["color:red", "fill:solid"]\nn_samples = 10\nC = [0.1, 1.0]\n', name="cav.toml")
    result = run_probe(cav_probe, store=store, progress=False, log=None, write=False)
    assert result.out_dir is None and result.model.bank[0].kind == "cav"
    assert [c.provenance["n_samples"] for c in result.model.bank] == [10, 10]
    assert np.isfinite(result.metrics["accuracy"]["test"])
