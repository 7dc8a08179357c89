"""Hardening, class 4: the activation store at its edges.

A read-only store serves its complete entries without writing; a delete that wins the race for an
entry's lock does not crash the request queued behind it; a FIFO or absurdly nested JSON in place
of a manifest is reported, never a hang or a RecursionError; a shard changed after its first read
is verified again; shards are sized by time as well as bytes, so a short slow run resumes; a result
that cannot fit in memory is refused before it is allocated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptlab.data import ShapesWorld
from conceptlab.store import (
    ActivationStore,
    InsufficientMemoryError,
    StoreIntegrityWarning,
    StoreUnavailableError,
)
from conceptlab.store.files import entry_lock

N = 48
LAYOUT = {"batch_size": 8, "shard_rows": 16, "num_workers": 0, "progress": False}
REPO = Path(__file__).resolve().parents[1]


class Shrink:
    """A picklable preprocess: the image as 3 channel means."""

    def __call__(self, image):
        return torch.as_tensor(np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(0))

    def __repr__(self) -> str:
        return "Shrink()"


class FakeBackbone:
    """An 'encoder' that is a fixed linear map of the channel means: cheap, deterministic, exact."""

    spec = "fake:linear"
    fingerprint = "fake-linear-v1"
    dim = 4

    def __init__(self, delay: float = 0.0) -> None:
        self.preprocess = Shrink()
        self.delay = delay
        self.rows = 0
        self.weight = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10

    def encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        self.rows += len(batch)
        if self.delay:
            time.sleep(self.delay)
        return batch @ self.weight


@pytest.fixture(scope="module")
def world():
    return ShapesWorld("test", size=N, seed=3)


@pytest.fixture(scope="module")
def expected(world):
    backbone = FakeBackbone()
    return torch.stack([Shrink()(world[i][0]) for i in range(N)]) @ backbone.weight


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


# -- read-only stores ------------------------------------------------------------------------------

CHILD = """
import sys, warnings
sys.path.insert(0, {tests!r})
warnings.simplefilter("error")
import torch
from test_hardening_store import FakeBackbone, LAYOUT
from conceptlab.data import ShapesWorld
from conceptlab.store import ActivationStore, StoreUnavailableError
store = ActivationStore({root!r})
backbone = FakeBackbone()
got = store.get_or_compute(backbone, ShapesWorld("test", size={n}, seed=3), **LAYOUT)
assert backbone.rows == 0, backbone.rows
torch.save(got.clone(), sys.stdout.buffer)
try:
    store.get_or_compute(backbone, ShapesWorld("test", size={n} + 1, seed=3), **LAYOUT)
except StoreUnavailableError as error:
    print("\\nREFUSED:", error, file=sys.stderr)
"""


def _drop_file_capabilities() -> None:
    """In a child of root: drop the capabilities that let root ignore file permissions (from the
    bounding set, so the exec'd Python is a root that read-only modes do stop)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_a_read_only_store_serves_complete_entries_without_writing(world, expected):
    """The store's files and folders are made read-only; the reader (as root, without the
    capabilities that override file modes) gets the stored rows, computes nothing, writes nothing,
    and a request for an entry the store lacks is a clear error."""
    base = Path(tempfile.mkdtemp(prefix="clro-"))
    try:
        os.chmod(base, 0o755)
        store = ActivationStore(base / "store")
        store.get_or_compute(FakeBackbone(), world, **LAYOUT)
        for path in [base / "store", *(base / "store").rglob("*")]:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
        before = snapshot(base / "store")
        code = CHILD.format(tests=str(REPO / "tests"), root=str(base / "store"), n=N)
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HOME": str(base)}
        demote = _drop_file_capabilities if os.getuid() == 0 else None
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=300, preexec_fn=demote, cwd=base)
        assert child.returncode == 0, child.stderr.decode()[-3000:]
        import io

        got = torch.load(io.BytesIO(child.stdout), weights_only=True)
        assert torch.equal(got, expected.to(got.dtype))
        assert "REFUSED: the activation store at" in child.stderr.decode() and "read-only" in child.stderr.decode()
        assert snapshot(base / "store") == before  # not a byte, not an mtime
    finally:
        for path in [base, *base.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base)


def test_read_only_errors_say_what_is_missing(world, tmp_path, monkeypatch):
    store = ActivationStore(tmp_path / "store")
    store.get_or_compute(FakeBackbone(), world, **LAYOUT)
    key = store.key(FakeBackbone(), world)
    manifest = store.root / key / "manifest.json"
    import json

    data = json.loads(manifest.read_text())
    data["shards"] = data["shards"][:1]
    manifest.write_text(json.dumps(data))
    import conceptlab.store.store as store_module

    def refuse(directory, create=True, shared=False):
        if not shared:
            raise PermissionError(13, "Permission denied", str(directory / ".lock"))
        return entry_lock(directory, create=False, shared=True)

    monkeypatch.setattr(store_module, "entry_lock", refuse)
    with pytest.raises(StoreUnavailableError, match=r"read-only .* is incomplete \(1/3 shards\)"):
        store.get_or_compute(FakeBackbone(), world, **LAYOUT)
    with pytest.raises(StoreUnavailableError, match="holds no entry for shapesworld-v1:test:n=5:"):
        store.get_or_compute(FakeBackbone(), ShapesWorld("test", size=5), **LAYOUT)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailableError, match="is a file, not a folder"):
        ActivationStore(tmp_path / "file").get_or_compute(FakeBackbone(), world, **LAYOUT)


# -- races -----------------------------------------------------------------------------------------


def test_a_delete_that_wins_the_lock_does_not_crash_the_request_behind_it(world, expected, tmp_path):
    store = ActivationStore(tmp_path / "store")
    store.get_or_compute(FakeBackbone(), world, **LAYOUT)
    directory = store.path(store.key(FakeBackbone(), world))
    results, errors = [], []
    with entry_lock(directory, create=False):  # as delete() holds it
        def request():
            try:
                results.append(store.get_or_compute(FakeBackbone(), world, **LAYOUT))
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        worker = threading.Thread(target=request)
        worker.start()
        time.sleep(0.3)  # the request is now waiting for the lock
        shutil.rmtree(directory)  # what delete() does while holding it
    worker.join(timeout=120)
    assert not worker.is_alive() and not errors, errors
    assert torch.equal(results[0], expected)
    assert store.contains(store.key(FakeBackbone(), world))  # recomputed into a fresh folder, with its lock
    assert (directory / ".lock").is_file()


def test_concurrent_deletes_and_requests_settle(world, expected, tmp_path):
    store = ActivationStore(tmp_path / "store")
    key = store.key(FakeBackbone(), world)
    outcomes = []

    def request():
        outcomes.append(torch.equal(store.get_or_compute(FakeBackbone(), world, **LAYOUT), expected))

    def delete():
        try:
            store.delete(key)
            outcomes.append("deleted")
        except KeyError:
            outcomes.append("gone")

    threads = [threading.Thread(target=f) for f in (request, delete, request, delete, request)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert outcomes.count(True) == 3 and len(outcomes) == 5


# -- what a manifest may be replaced by ------------------------------------------------------------------


def _replace_manifest(store, key, make) -> Path:
    path = store.root / key / "manifest.json"
    path.unlink()
    make(path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "nested", "folder", "huge"])
def test_a_bad_manifest_is_reported_and_recomputed_never_a_hang(world, expected, tmp_path, kind, monkeypatch):
    store = ActivationStore(tmp_path / "store")
    store.get_or_compute(FakeBackbone(), world, **LAYOUT)
    key = store.key(FakeBackbone(), world)
    makers = {
        "fifo": os.mkfifo,
        "nested": lambda p: p.write_text("[" * 200_000 + "]" * 200_000),
        "folder": lambda p: p.mkdir(),
        "huge": lambda p: p.write_bytes(b" " * 2048),
    }
    if kind == "huge":
        monkeypatch.setenv("CONCEPTLAB_LIMIT_JSON_BYTES", "1024")
    _replace_manifest(store, key, makers[kind])
    assert store.contains(key) is False
    listed = next(e for e in store.entries() if e["key"] == key)
    assert "error" in listed
    with pytest.raises(ValueError):
        store.open(key)
    if kind == "folder":
        shutil.rmtree(store.root / key / "manifest.json")
        makers["nested"](store.root / key / "manifest.json")
    monkeypatch.delenv("CONCEPTLAB_LIMIT_JSON_BYTES", raising=False)
    backbone = FakeBackbone()
    with pytest.warns(StoreIntegrityWarning, match="recomputing the whole entry"):
        got = store.get_or_compute(backbone, world, **LAYOUT)
    assert torch.equal(got, expected) and backbone.rows == N
    assert store.contains(key)


# -- the in-process checksum cache ------------------------------------------------------------------


def test_a_shard_changed_after_its_first_read_is_verified_again(world, expected, tmp_path):
    store = ActivationStore(tmp_path / "store")
    store.get_or_compute(FakeBackbone(), world, **LAYOUT)
    shard = store.root / store.key(FakeBackbone(), world) / "shard-00001.safetensors"
    old = time.time_ns() - 3600 * 10**9
    os.utime(shard, ns=(old, old))  # settled: its digest is cached from now on
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.get_or_compute(FakeBackbone(), world, **LAYOUT)
        store.get_or_compute(FakeBackbone(), world, **LAYOUT)
    data = bytearray(shard.read_bytes())
    data[-2] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(old, old))  # same size, same mtime as when it was cached
    backbone = FakeBackbone()
    with pytest.warns(StoreIntegrityWarning, match=r"shard-00001\.safetensors is corrupted"):
        got = store.get_or_compute(backbone, world, **LAYOUT)
    assert torch.equal(got, expected) and backbone.rows == 16


# -- shard size by time, resume of short slow runs -------------------------------------------------------


def test_shards_are_sized_by_time_so_a_short_slow_run_resumes(world, expected, tmp_path, monkeypatch):
    import conceptlab.store.store as store_module

    monkeypatch.setattr(store_module, "DEFAULT_SHARD_SECONDS", 0.25)
    slow = FakeBackbone(delay=0.1)  # ~80 rows/s: a 0.25 s shard holds 16 rows (two batches of 8)
    store = ActivationStore(tmp_path / "store")
    estimate = store.estimate(slow, world, batch_size=8)
    assert estimate["shards"] == 1  # bytes alone: one shard for 48 rows

    calls = {"n": 0}
    original = slow.encode_images

    def interrupted(batch):
        calls["n"] += 1
        if calls["n"] == 5:  # the timing batch, then two shards' worth, then Ctrl-C
            raise KeyboardInterrupt
        return original(batch)

    monkeypatch.setattr(slow, "encode_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.get_or_compute(slow, world, batch_size=8, num_workers=0, progress=False)
    from conceptlab.store.manifest import Manifest

    manifest = Manifest.load(store.root / estimate["key"] / "manifest.json")
    assert manifest.shard_rows % 8 == 0 and manifest.shard_rows <= 24  # by time, not by bytes
    assert 1 <= len(manifest.shards) < manifest.n_shards
    resumed = FakeBackbone()
    got = store.get_or_compute(resumed, world, batch_size=8, num_workers=0, progress=False)
    assert torch.equal(got, expected)
    assert resumed.rows == N - manifest.shard_rows * len(manifest.shards)  # only what was not finished


def test_a_result_that_cannot_fit_in_memory_is_refused_first(world, tmp_path, monkeypatch):
    import conceptlab.store.store as store_module

    monkeypatch.setattr(store_module, "_available_memory", lambda: 100)
    backbone = FakeBackbone()
    with pytest.raises(InsufficientMemoryError, match=r"take 768 B in memory, but only 100 B is available"):
        ActivationStore(tmp_path / "store").get_or_compute(backbone, world, **LAYOUT)
    assert backbone.rows == 0 and not (tmp_path / "store").exists()
