"""Discovery runs (SAE + names + settings as one folder, saved atomically) and the ``sae`` concept source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from conceptlab.discovery import DiscoveryRun, LatentNames, SparseAutoencoder, discover, list_runs

pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]

SETTINGS = {"n_latents": 8, "l1": 0.03, "lr": 1e-2, "steps": 30, "batch_size": 64, "seed": 0, "center": True,
            "templates": ["a {} shape"], "top_k": 3}
ROOT = Path(__file__).resolve().parents[1]


def embeddings(d: int, n: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(6, d, generator=g), dim=1)
    codes = (torch.rand(n, 6, generator=g) < 0.2) * (1 + torch.rand(n, 6, generator=g))
    return codes @ atoms + 2.0 + 0.01 * torch.randn(n, d, generator=g)


@pytest.fixture(scope="module")
def vocabulary():
    from conceptlab.discovery import load_vocabulary

    return load_vocabulary()[:40]


@pytest.fixture(scope="module")
def run(tiny_backbone, vocabulary):
    X = embeddings(tiny_backbone.dim)
    return discover(X, tiny_backbone, SETTINGS, vocabulary=vocabulary, provenance={"train_key": "abc"}), X


def assert_same_run(a: DiscoveryRun, b: DiscoveryRun, X: torch.Tensor) -> None:
    assert torch.equal(a.encode(X), b.encode(X))
    pd.testing.assert_frame_equal(a.names.table, b.names.table, check_dtype=False)
    assert a.names.names == b.names.names and torch.equal(a.names.directions, b.names.directions)
    assert a.settings == b.settings and a.provenance == b.provenance and a.renamed == b.renamed


def test_discover_trains_centred_and_names(run, tiny_backbone):
    run, X = run
    assert run.sae.center and run.sae.n_latents == 8 and len(run.names) == 8 and run.n_latents == 8
    assert run.names.templates == ["a {} shape"] and len(run.names.table["candidates"][0]) == 3
    assert run.provenance == {"backbone": tiny_backbone.spec, "train_key": "abc"}
    assert run.sae.provenance_["train_key"] == "abc"
    with pytest.raises(ValueError, match="no_such_key"):
        discover(X, tiny_backbone, {**SETTINGS, "no_such_key": 1})


def test_round_trip_keeps_encodings_names_and_renames(tmp_path, run):
    run, X = run
    renamed = run.rename({2: "my concept"})
    assert renamed.renamed == {2: {"name": "my concept", "auto_name": run.names[2], "by": "analyst"}} and run.renamed == {}
    path = renamed.save(tmp_path / "runs" / "first")
    assert sorted(p.name for p in path.iterdir()) == ["names", "run.json", "sae"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["first"]  # no temporary folder left
    again = DiscoveryRun.load(path)
    assert_same_run(again, renamed, X)
    assert again.names[2] == "my concept" and again.sae.center and torch.equal(again.sae.input_mean_, run.sae.input_mean_)
    run.save(path)  # replacing a run
    assert_same_run(DiscoveryRun.load(path), run, X)
    assert sorted(p.name for p in path.parent.iterdir()) == ["first"]


def test_list_runs_reads_only_run_folders(tmp_path, run):
    run, _ = run
    assert list_runs(tmp_path / "nothing-here") == []
    run.save(tmp_path / "older")
    time.sleep(0.02)
    run.rename({0: "x"}).save(tmp_path / "newer")
    run.sae.save(tmp_path / "probe-sae" / "abc")  # the sae source's cache: not a run
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    found = list_runs(tmp_path)
    assert [(r.name, r.n_latents, r.renamed) for r in found] == [("newer", 8, 1), ("older", 8, 0)]
    assert found[0].path == tmp_path / "newer"


def test_a_failed_save_leaves_the_previous_run_intact(tmp_path, run, monkeypatch):
    run, X = run
    path = run.save(tmp_path / "run")

    def fail(self, directory):
        Path(directory).mkdir(parents=True)
        (Path(directory) / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(LatentNames, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        run.rename({1: "never saved"}).save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    monkeypatch.undo()
    assert_same_run(DiscoveryRun.load(path), run, X)


KILLED_SAVE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from conceptlab.discovery import DiscoveryRun, LatentNames
    path, marker = Path(sys.argv[1]), Path(sys.argv[2])
    run = DiscoveryRun.load(path)
    original = LatentNames.save

    def slow(self, directory):  # write half of the names, then hang until killed
        original(self, directory)
        marker.write_text("half written")
        time.sleep(600)

    LatentNames.save = slow
    run.rename({1: "never saved"}).save(path)
    """
)


def test_a_killed_save_leaves_the_previous_run_intact(tmp_path, run):
    run, X = run
    path = run.save(tmp_path / "runs" / "run")
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path), str(marker)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.time() < deadline, "the child never reached the middle of its save"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    leftovers = [p.name for p in path.parent.iterdir() if p.name != "run"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".run.tmp-")  # the half-written copy, hidden
    assert_same_run(DiscoveryRun.load(path), run, X)
    assert [r.name for r in list_runs(path.parent)] == ["run"]


def test_a_save_killed_between_its_two_renames_is_undone(tmp_path, run):
    run, X = run
    path = run.save(tmp_path / "run")
    os.rename(path, tmp_path / ".run.old-1234abcd")  # the old run set aside; the new one never arrived
    assert [r.name for r in list_runs(tmp_path)] == ["run"]  # listing puts it back
    assert_same_run(DiscoveryRun.load(path), run, X)
    os.rename(path, tmp_path / ".run.old-1234abcd")
    assert_same_run(DiscoveryRun.load(path), run, X)  # and so does loading


def test_load_errors_name_the_problem(tmp_path, run):
    run, _ = run
    with pytest.raises(FileNotFoundError, match="no discovery run"):
        DiscoveryRun.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="run.json"):
        DiscoveryRun.load(tmp_path / "empty")
    path = run.save(tmp_path / "run")
    (path / "sae" / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete.*sae_weights"):
        DiscoveryRun.load(path)
    path = run.save(tmp_path / "run")
    (path / "sae" / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt SAE"):
        DiscoveryRun.load(path)
    path = run.save(tmp_path / "run")
    (path / "names" / "directions.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="directions.safetensors"):
        DiscoveryRun.load(path)
    path = run.save(tmp_path / "run")
    (path / "run.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="run.json.*corrupt"):
        DiscoveryRun.load(path)
    (path / "run.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a discovery run"):
        DiscoveryRun.load(path)
    with pytest.raises(FileExistsError, match="not a discovery run"):
        run.save(tmp_path.parent)  # never replaces a folder that is not a run
    with pytest.raises(ValueError, match="names for an SAE"):
        DiscoveryRun(run.sae, LatentNames(run.names.table.iloc[:3], run.names.directions[:3], run.names.vocabulary))


def test_loads_the_first_app_format(tmp_path, run):
    """The app's first runs: an uncentred SAE trained on X − mean, the mean in run.json."""
    run, X = run
    mean = X.mean(0)
    old_sae = SparseAutoencoder(**{k: SETTINGS[k] for k in ("n_latents", "l1", "lr", "steps", "batch_size", "seed")}, progress=False).fit(X - mean)
    folder = tmp_path / "old"
    old_sae.save(folder / "sae")
    run.names.save(folder / "names")
    (folder / "run.json").write_text(json.dumps({
        "format": "conceptlab.discovery-run", "input_mean": mean.tolist(), "backbone": "x", "train_key": "k",
        "n_latents": 8, "l1": 0.03, "steps": 30, "renamed": {},
    }))
    loaded = DiscoveryRun.load(folder)
    assert loaded.sae.center and torch.allclose(loaded.encode(X), old_sae.encode(X - mean), atol=1e-5)
    assert loaded.settings == {"n_latents": 8, "l1": 0.03, "steps": 30, "center": True}
    assert loaded.provenance == {"backbone": "x", "train_key": "k"}
    assert [r.name for r in list_runs(tmp_path)] == ["old"]


# -- the "sae" concept source ----------------------------------------------------------------------


def test_sae_source_is_registered_with_the_recommended_settings():
    from conceptlab.data import SAE_SETTINGS
    from conceptlab.discovery.source import build_sae_bank
    from conceptlab.registry import CONCEPT_SOURCES

    entry = CONCEPT_SOURCES.entry("sae")
    assert entry.obj is build_sae_bank
    assert entry.meta["keys"] == {"split": "train", **SAE_SETTINGS} and SAE_SETTINGS["center"] is True


def test_sae_source_trains_once_and_names_the_bank(isolated_home, tiny_backbone, vocabulary, monkeypatch):
    from conceptlab.discovery import source

    X = embeddings(tiny_backbone.dim)
    context = SimpleNamespace(backbone=tiny_backbone, embeddings={"train": X, "test": X[:50]}, datasets={}, base_dir=isolated_home)
    config = {k: v for k, v in SETTINGS.items()}
    monkeypatch.setattr(source, "discover", lambda *a, **k: discover(*a, **{**k, "vocabulary": vocabulary}))
    bank = source.build_sae_bank(config, context)
    path = Path(bank.provenance["sae_path"])
    assert path.parent == isolated_home / "discovery" / "probe-sae" and (path / "input_mean.safetensors").is_file()
    assert bank.provenance["sae_settings"]["center"] is True and bank.provenance["sae_settings"]["n_latents"] == 8
    sae = SparseAutoencoder.load(path)
    assert len(bank) == 8 and torch.allclose(bank.vectors, sae.decoder_directions)
    assert bank.space == f"{tiny_backbone.spec}#image-embedding"
    stamp = (path / "cfg.json").stat().st_mtime_ns
    again = source.build_sae_bank(config, context)
    assert again.provenance["sae_path"] == str(path) and (path / "cfg.json").stat().st_mtime_ns == stamp  # reused
    assert again.names == bank.names
    with pytest.raises(ValueError, match="split = 'val'.*'test', 'train'"):
        source.build_sae_bank({**config, "split": "val"}, context)
    with pytest.raises(ValueError, match="no_such_key"):
        source.build_sae_bank({**config, "no_such_key": 1}, context)
