"""The Ray extraction engine writes exactly the single-process store entry, also after a killed
actor or an interrupted run; the CLI's ``--engine ray``; and a clear error when ray is missing.

The Ray tests share one local Ray (conftest's ``ray_cluster``: 2 CPUs, so one actor, as Ray Data
keeps a CPU) and skip when ray is not installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from conceptlab.data import ShapesWorld
from conceptlab.store import ActivationStore
from conceptlab.store.manifest import MANIFEST_NAME, Manifest, shard_name

N, BATCH, SHARD_ROWS = 192, 32, 64  # three shards of two batches


class _Wrapped(torch.utils.data.Dataset):
    """The same images (same identity, so the same store key) with a fault at one row."""

    def __init__(self, base, row: int, marker: Path) -> None:
        self.base, self.row, self.marker = base, row, marker

    @property
    def identity(self) -> str:
        return self.base.identity

    def __len__(self) -> int:
        return len(self.base)


class KillsOnce(_Wrapped):
    """The first process to read ``row`` dies on the spot (a worker killed mid-run); later reads work."""

    def __getitem__(self, index):
        if index == self.row and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        return self.base[index]


class FailsAt(_Wrapped):
    """Reading ``row`` raises (the run stops with an error); ``marker`` records that it did."""

    def __getitem__(self, index):
        if index == self.row:
            self.marker.touch()
            raise RuntimeError(f"injected failure at row {index}")
        return self.base[index]


@pytest.fixture(scope="module")
def dataset():
    return ShapesWorld("test", size=N, seed=0, resolution=32)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_backbone, dataset):
    """The single-process entry (its store root and key)."""
    root = tmp_path_factory.mktemp("single-process")
    store = ActivationStore(root)
    store.get_or_compute(tiny_backbone, dataset, batch_size=BATCH, shard_rows=SHARD_ROWS, num_workers=0, progress=False)
    return root, store.key(tiny_backbone, dataset)


def assert_same_entry(root: Path, reference) -> None:
    """Same key, same manifest layout and shard records, same shard files byte for byte."""
    ref_root, key = reference
    ours, theirs = Manifest.load(root / key / MANIFEST_NAME), Manifest.load(ref_root / key / MANIFEST_NAME)
    assert ours.complete and theirs.complete
    assert (ours.key, ours.fields, ours.rows, ours.dim, ours.dtype) == (theirs.key, theirs.fields, theirs.rows, theirs.dim, theirs.dtype)
    assert ours.shards == theirs.shards  # ranges, sizes and sha256 of every shard
    for index in range(ours.n_shards):
        assert (root / key / shard_name(index)).read_bytes() == (ref_root / key / shard_name(index)).read_bytes()
    assert torch.equal(ActivationStore(root).open(key).load(), ActivationStore(ref_root).open(key).load())
    assert not [p.name for p in (root / key).iterdir() if p.name.startswith(".tmp-")]


def test_killed_actor_is_restarted_and_the_entry_is_exactly_the_single_process_one(ray_cluster, tmp_path, tiny_backbone, dataset, reference):
    from conceptlab.store import ray_extract

    marker = tmp_path / "killed"
    dying = KillsOnce(dataset, row=SHARD_ROWS + 5, marker=marker)  # inside the second shard
    store = ActivationStore(tmp_path / "store")
    entry = ray_extract(store, tiny_backbone, dying, batch_size=BATCH, shard_rows=SHARD_ROWS, progress=False)
    assert marker.exists(), "the actor was never killed: the test did not test anything"
    assert entry.key == reference[1]
    assert_same_entry(tmp_path / "store", reference)
    # the single-process store reads the Ray entry as its own: nothing is computed again
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / entry.key).iterdir()}
    acts = store.get_or_compute(tiny_backbone, dataset, batch_size=BATCH, num_workers=0, progress=False)
    assert torch.equal(acts, entry.load())
    # and a second Ray run finds the entry complete: no actor starts, no file is touched
    ray_extract(store, tiny_backbone, dataset, batch_size=BATCH, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / entry.key).iterdir()} == before


def test_interrupted_run_resumes_from_its_finished_shards_through_the_cli(ray_cluster, tmp_path, tiny_clip_dir, tiny_backbone, dataset,
                                                                          reference, capsys):
    from conceptlab.cli import main
    from conceptlab.store import ray_extract

    store = ActivationStore(tmp_path / "store")
    marker = tmp_path / "failed"
    with pytest.raises(Exception, match="injected failure"):
        ray_extract(store, tiny_backbone, FailsAt(dataset, row=2 * SHARD_ROWS + 3, marker=marker), batch_size=BATCH,
                    shard_rows=SHARD_ROWS, progress=False)
    assert marker.exists()
    directory = tmp_path / "store" / reference[1]
    finished = {p.name: p.stat().st_ino for p in directory.glob("shard-*")}
    assert shard_name(0) in finished  # the first shard was done before the third failed
    # say the driver was killed before its one merge: the manifest lists nothing, the shard files remain
    manifest = Manifest.load(directory / MANIFEST_NAME)
    manifest.shards.clear()
    manifest.save(directory)
    spec = f"shapesworld:test?size={N}&seed=0&resolution=32"
    code = main(["embed", "--backbone", f"local-dir:{tiny_clip_dir}", "--data", spec, "--batch-size", str(BATCH),
                 "--store", str(tmp_path / "store"), "--engine", "ray", "--num-actors", "1"])
    assert code == 0, capsys.readouterr().err
    assert f"under key {reference[1]}" in capsys.readouterr().out
    assert_same_entry(tmp_path / "store", reference)
    kept = {name: ino for name, ino in finished.items() if (directory / name).stat().st_ino == ino}
    assert kept == finished, "finished shards were computed again instead of adopted"


def test_pool_that_would_take_every_cpu_is_refused(ray_cluster, tmp_path, tiny_backbone, dataset):
    from conceptlab.store import ray_extract

    with pytest.raises(ValueError, match="ray#44687"):
        ray_extract(ActivationStore(tmp_path), tiny_backbone, dataset, num_actors=2, progress=False)


# -- without ray ----------------------------------------------------------------------------------------
def test_missing_ray_names_the_extra(monkeypatch):
    from conceptlab.store.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"conceptlab\[distributed\]"):
        import_ray()


def test_cli_ray_flags_need_the_ray_engine(tmp_path, capsys):
    from conceptlab.cli import main

    assert main(["embed", "--store", str(tmp_path), "--address", "auto"]) == 2
    assert "--engine ray" in capsys.readouterr().err


def test_shard_files_do_not_depend_on_the_writing_process():
    """The store writes its own safetensors header (sorted keys, no map whose order changes from
    process to process), so the same rows give the same bytes and sha256 on any process."""
    from safetensors.torch import load

    from conceptlab.store.store import shard_bytes

    tensor = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    data = shard_bytes("ab" * 32, 0, 3, tensor)
    header = ('{"__metadata__":{"key":"' + "ab" * 32 + '","start":"0","stop":"3"},'
              '"activations":{"data_offsets":[0,24],"dtype":"F32","shape":[3,2]}}')
    header += " " * (-len(header) % 8)
    assert data == len(header).to_bytes(8, "little") + header.encode() + tensor.numpy().tobytes()
    assert torch.equal(load(data)["activations"], tensor)
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(load(shard_bytes("ab" * 32, 0, 3, tensor.to(dtype)))["activations"], tensor.to(dtype))
