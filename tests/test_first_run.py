"""The first run (`conceptlab demo`, `make app`): the port is checked before any work, it embeds
exactly what the pages and probes read, reports progress to Home, and store entries can be deleted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conceptlab import cli
from conceptlab.data import ShapesWorld, app_requests
from conceptlab.experiments import load_probe, precompute_plan, probe_datasets, read_status, run_plan
from conceptlab.experiments.precompute import STATUS_NAME, PrecomputeItem
from conceptlab.store import ActivationStore

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "probes" / "shapes_pcbm.toml"


def run_cli(*args, home, timeout=120):
    env = {**os.environ, "CONCEPTLAB_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "conceptlab.cli", *args], capture_output=True, text=True, env=env, timeout=timeout)
    return result, time.monotonic() - started


@pytest.fixture()
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_port_out_of_range_is_a_usage_error_not_a_traceback(tmp_path):
    result, _ = run_cli("demo", "--port", "99999", home=tmp_path)
    assert result.returncode == 2
    assert "99999 is not a port number (1-65535)" in result.stderr and "Traceback" not in result.stderr


def test_busy_port_is_refused_before_any_work(tmp_path, busy_port):
    result, _ = run_cli("demo", "--port", str(busy_port), home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"port {busy_port} is in use" in result.stderr
    assert not (tmp_path / "store").exists()  # nothing was embedded first


def test_busy_default_port_is_replaced_by_a_free_one(monkeypatch, busy_port, capsys):
    monkeypatch.setattr(cli, "DEFAULT_PORT", busy_port)
    port = cli.choose_port(None)
    assert port != busy_port and cli.port_is_free(port)
    assert f"port {busy_port} is in use; serving on {port} instead" in capsys.readouterr().out
    assert cli.choose_port(port) == port  # a free port asked for is kept


def test_plan_is_exactly_what_pages_and_probes_read(monkeypatch):
    env = {"CONCEPTLAB_CBM_SIZES": "300:100", "CONCEPTLAB_DISCOVERY_TRAIN": "400"}
    plan = precompute_plan("zoo:shapes-clip", [PROBE, PROBE], environ=env)
    app = [ShapesWorld(split, size=size, seed=seed).identity for split, size, seed in app_requests(env)]
    probe = [d.identity for d in probe_datasets(load_probe(PROBE)).values()]
    assert [item.dataset.identity for item in plan] == list(dict.fromkeys(app + probe))
    assert app[0] == ShapesWorld("test", size=500, seed=0).identity  # the Embeddings page's, first
    assert {"train:n=300", "train:n=400", "val:n=100", "shifted:n=100"} <= {":".join(i.split(":")[1:3]) for i in app}
    # the seed re-runs add their own datasets only when asked
    reruns = precompute_plan("zoo:shapes-clip", [ROOT / "probes" / "shapes_labo.toml"], environ=env, seed_reruns=True)
    seeds = {item.dataset.seed for item in reruns}
    assert seeds == {0, *load_probe(ROOT / "probes" / "shapes_labo.toml").seeds}


def test_run_plan_fills_the_store_reports_status_and_resumes(tmp_path, tiny_clip_dir, one_thread):
    store = ActivationStore(tmp_path / "store")
    spec = f"local-dir:{tiny_clip_dir}"
    items = [PrecomputeItem(spec, ShapesWorld("test", size=20), "app"), PrecomputeItem(spec, ShapesWorld("val", size=12), "probe x")]
    status = run_plan(items, store, progress=False, num_workers=0)
    assert status["state"] == "finished" and [i["state"] for i in status["items"]] == ["computed", "computed"]
    read = read_status(store)
    assert read["done_rows"] == read["total_rows"] == 32 and not read["alive"]
    assert len(store.entries()) == 2
    again = run_plan(items, store, progress=False, num_workers=0)
    assert [i["state"] for i in again["items"]] == ["stored", "stored"]
    # a run stopped between entries says so, keeps what it finished, and is not "alive"
    store.delete(store.entries()[0]["key"])
    stopped = run_plan(items, store, progress=False, should_stop=lambda: True, num_workers=0)
    assert stopped["state"] == "stopped" and read_status(store)["alive"] is False


def test_read_status_ignores_a_corrupt_file_and_sees_a_dead_writer(tmp_path):
    store = ActivationStore(tmp_path / "store")
    store.root.mkdir(parents=True)
    (store.root / STATUS_NAME).write_text("{not json")
    assert read_status(store) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    status = {"pid": int(dead), "state": "running", "started": 0, "updated": 0, "items": [{"label": "x", "rows": 10, "done": 3}]}
    (store.root / STATUS_NAME).write_text(json.dumps(status))
    assert read_status(store)["alive"] is False
    status["pid"] = os.getpid()
    (store.root / STATUS_NAME).write_text(json.dumps(status))
    assert read_status(store)["alive"] is True and read_status(store)["done_rows"] == 3


def test_store_ls_and_rm_by_prefix(tmp_path, tiny_clip_dir):
    from conceptlab.backbones import load

    store = ActivationStore(tmp_path / "conceptlab-home" / "store")
    backbone = load(f"local-dir:{tiny_clip_dir}")
    keep, drop = (store.key(backbone, ShapesWorld(split, size=8)) for split in ("test", "val"))
    for split in ("test", "val"):
        store.get_or_compute(backbone, ShapesWorld(split, size=8), progress=False, num_workers=0)
    home = tmp_path / "conceptlab-home"
    listed, _ = run_cli("store", "ls", home=home)
    assert listed.returncode == 0 and "2 entries" in listed.stdout and keep[:12] in listed.stdout and drop[:12] in listed.stdout
    unknown, _ = run_cli("store", "rm", drop[:8], "ffffffffffff" if not keep.startswith("ffff") else "000000000000", home=home)
    assert unknown.returncode == 3 and "no entry whose key starts with" in unknown.stderr
    assert store.contains(drop)  # one bad key: nothing is deleted
    bad, _ = run_cli("store", "rm", "zz", home=home)
    assert bad.returncode == 3 and "not a store key" in bad.stderr
    removed, _ = run_cli("store", "rm", drop[:8], home=home)
    assert removed.returncode == 0 and f"deleted {drop[:12]}" in removed.stdout
    assert not store.contains(drop) and store.contains(keep)
