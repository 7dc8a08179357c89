"""The activation store: exact results, real caching, kill-and-resume, corruption repair, bookkeeping.

Every test runs a tiny random open_clip CLIP on a few ShapesWorld images and compares the store's
answer with ``backbone.encode_images`` on the same images, or with an uninterrupted clean run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conceptlab.data import ShapesWorld
from conceptlab.store import (
    ActivationStore,
    InsufficientDiskSpaceError,
    StoreCorruptionError,
    StoreIntegrityWarning,
)
from conceptlab.store.extract import encodes_in_workers

REPO = Path(__file__).resolve().parents[1]
N = 64  # images per test world
# 4 shards of 16 rows, 2 batches per shard: resumed or repaired rows must land in the same batches
LAYOUT = {"batch_size": 8, "shard_rows": 16, "num_workers": 0, "progress": False}
SHARD_ROWS = LAYOUT["shard_rows"]
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"layers": [1, 1, 1, 1], "width": 8, "image_size": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _save_tiny_clip(folder: Path, seed: int) -> Path:
    """A random tiny CLIP saved as an open_clip local-dir folder (config JSON + safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CFG)
    folder.mkdir(parents=True)
    config = {
        "model_cfg": TINY_CFG,
        "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    return folder


@pytest.fixture(scope="session")
def store_clip_dir(tmp_path_factory) -> Path:
    return _save_tiny_clip(tmp_path_factory.mktemp("store-clip") / "seed0", seed=0)


@pytest.fixture(scope="session")
def backbone(store_clip_dir):
    from conceptlab.backbones import load

    return load(f"local-dir:{store_clip_dir}", device="cpu")


@pytest.fixture(scope="session")
def other_backbone(tmp_path_factory):
    from conceptlab.backbones import load

    return load(f"local-dir:{_save_tiny_clip(tmp_path_factory.mktemp('store-clip') / 'seed1', seed=1)}", device="cpu")


@pytest.fixture(scope="session")
def world() -> ShapesWorld:
    return ShapesWorld("test", size=N, seed=0)


@pytest.fixture(scope="session")
def reference(backbone, world) -> torch.Tensor:
    """The embeddings computed directly, all images in one call, no store involved."""
    return backbone.encode_images([world[i][0] for i in range(len(world))])


@pytest.fixture(scope="session")
def clean_run(backbone, world, tmp_path_factory) -> tuple[ActivationStore, torch.Tensor]:
    """One uninterrupted store run with the standard layout; tests copy its folder, never change it."""
    store = ActivationStore(tmp_path_factory.mktemp("clean") / "store")
    return store, store.get_or_compute(backbone, world, **LAYOUT)


@pytest.fixture(scope="session")
def clean(clean_run) -> torch.Tensor:
    return clean_run[1]


@pytest.fixture()
def filled(clean_run, tmp_path) -> ActivationStore:
    """A private copy of the clean run's store, to read, damage or delete from."""
    return ActivationStore(shutil.copytree(clean_run[0].root, tmp_path / "filled"))


def count_encoded_rows(monkeypatch, backbone) -> dict:
    """Wrap ``backbone.encode_images`` to count the rows it encodes."""
    counter = {"rows": 0}
    original = backbone.encode_images

    def counting(images):
        counter["rows"] += len(images)
        return original(images)

    monkeypatch.setattr(backbone, "encode_images", counting)
    return counter


def shard(store: ActivationStore, key: str, index: int) -> Path:
    return store.root / key / f"shard-{index:05d}.safetensors"


# -- 1. exact results ---------------------------------------------------------------------------
def test_matches_direct_encoding_in_dataset_order(clean, backbone, reference):
    assert clean.shape == (N, backbone.dim) and clean.dtype == torch.float32
    torch.testing.assert_close(clean, reference, rtol=1e-5, atol=1e-6)
    # the rows differ from each other, so the comparison above also pins their order
    assert not torch.allclose(clean, reference.roll(1, dims=0), atol=1e-3)


def test_indices_give_exactly_that_subset(tmp_path, backbone, world, reference):
    indices = [60, 3, 3, 50, 17, 0]  # unsorted, with a repeat
    acts = ActivationStore(tmp_path).get_or_compute(backbone, world, indices=indices, **LAYOUT)
    torch.testing.assert_close(acts, reference[indices], rtol=1e-5, atol=1e-6)


def test_half_precision_entry(tmp_path, backbone, world, reference):
    acts = ActivationStore(tmp_path).get_or_compute(backbone, world, indices=[5, 1], dtype="float16", **LAYOUT)
    assert acts.dtype == torch.float16
    torch.testing.assert_close(acts, reference[[5, 1]].half())


def test_worker_processes_and_progress_bar(tmp_path, backbone, world, clean, capsys, monkeypatch):
    counter = count_encoded_rows(monkeypatch, backbone)  # counts this process's encoding only
    threads = torch.get_num_threads()
    store = ActivationStore(tmp_path)
    try:
        torch.set_num_threads(2)  # as on a 2-core machine: 2 workers cover the threads, so they encode
        assert encodes_in_workers(backbone, 2) and not encodes_in_workers(backbone, 1)
        acts = store.get_or_compute(backbone, world, **{**LAYOUT, "num_workers": 2, "progress": True})
        assert counter["rows"] == 0  # the one-thread workers were the replicas (EncodingCollate)
        assert world.identity in capsys.readouterr().err  # the bar names the dataset
        torch.testing.assert_close(acts, clean, rtol=1e-5, atol=1e-6)
        torch.set_num_threads(1)  # the same batches at the same thread count: the same bits
        assert torch.equal(acts, ActivationStore(tmp_path / "here").get_or_compute(backbone, world, **LAYOUT))
        torch.set_num_threads(4)  # more threads than workers: the workers only decode, this process encodes
        assert not encodes_in_workers(backbone, 2)
    finally:
        torch.set_num_threads(threads)
    counter["rows"] = 0
    one_worker = ActivationStore(tmp_path / "one-worker").get_or_compute(backbone, world, **{**LAYOUT, "num_workers": 1})
    assert counter["rows"] == N and torch.equal(one_worker, clean)  # one worker only decodes; this process encodes


# -- 2. the second call reads ---------------------------------------------------------------------
def test_second_call_reads_without_encoding(filled, backbone, world, clean, monkeypatch):
    def refuse(images):
        raise AssertionError("the store re-encoded images it already holds")

    monkeypatch.setattr(backbone, "encode_images", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = filled.get_or_compute(backbone, world, **LAYOUT)
        assert torch.equal(again, clean)
        assert torch.equal(filled.get_or_compute(backbone, world, **LAYOUT), clean)


# -- 3. keys ----------------------------------------------------------------------------------------
def test_key_changes_with_everything_that_changes_the_numbers(tmp_path, backbone, other_backbone, world):
    store = ActivationStore(tmp_path)
    key = store.key(backbone, world)
    assert len(key) == 64 and int(key, 16) >= 0
    assert store.key(backbone, ShapesWorld("test", size=N, seed=0)) == key  # same images, new object
    assert store.key(backbone, world, indices=range(N)) == key  # every row in order is "all"
    different = {
        "seed": store.key(backbone, ShapesWorld("test", size=N, seed=1)),
        "weights": store.key(other_backbone, world),
        "indices": store.key(backbone, world, indices=[0, 1, 2]),
        "order": store.key(backbone, world, indices=[1, 0, 2]),
        "dtype": store.key(backbone, world, dtype="float16"),
    }
    assert len({key, *different.values()}) == 1 + len(different), different
    subset = torch.utils.data.Subset(world, [5, 7, 9])
    assert store.key(backbone, subset) == store.key(backbone, world, indices=[5, 7, 9])


# -- 4. kill and resume ---------------------------------------------------------------------------
RESUME_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    os.environ["HF_HUB_OFFLINE"] = "1"
    repo, root, model_dir, n, shard_rows, batch_size, delay = sys.argv[1:]
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore

    class SlowWorld(ShapesWorld):
        # the same images and identity (so the same key), delivered slowly enough to be killed midway
        def __getitem__(self, index):
            time.sleep(float(delay))
            return super().__getitem__(index)

    ActivationStore(root).get_or_compute(
        load(f"local-dir:{model_dir}"), SlowWorld("test", size=int(n), seed=0),
        batch_size=int(batch_size), shard_rows=int(shard_rows), num_workers=0, progress=False,
    )
    """
)


def _finished_shards(manifest: Path) -> int:
    try:
        return len(json.loads(manifest.read_text())["shards"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def test_killed_run_resumes_to_identical_result(tmp_path, backbone, world, clean, store_clip_dir, monkeypatch):
    n_shards = N // SHARD_ROWS
    store = ActivationStore(tmp_path / "store")
    manifest = store.root / store.key(backbone, world) / "manifest.json"
    script = tmp_path / "extract_slowly.py"
    script.write_text(RESUME_SCRIPT)
    log_path = tmp_path / "child.log"
    args = [REPO, store.root, store_clip_dir, N, SHARD_ROWS, LAYOUT["batch_size"], 0.03]
    with log_path.open("w") as log:
        child = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while _finished_shards(manifest) < 1:
                assert child.poll() is None, f"extraction ended before it could be killed:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, "no shard was finished in 120 s"
                time.sleep(0.01)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    done = _finished_shards(manifest)
    assert 1 <= done < n_shards, f"the kill came too late: {done} of {n_shards} shards finished"

    counter = count_encoded_rows(monkeypatch, backbone)
    # a different batch size asked for: the entry keeps its own, so rows get the batches they would
    # have had without the kill (batch size 5 alone gives other low bits for this model)
    resumed = store.get_or_compute(backbone, world, **{**LAYOUT, "batch_size": 5})
    assert counter["rows"] == N - done * SHARD_ROWS  # only the missing shards were computed
    assert torch.equal(resumed, clean)  # bitwise equal to the uninterrupted run (another store root)
    assert _finished_shards(manifest) == n_shards
    assert not list(manifest.parent.glob(".tmp-*"))  # what the killed writer left is cleaned up


# -- 5. corruption ----------------------------------------------------------------------------------
def _flip_last_bytes(path: Path, count: int = 8) -> None:
    data = bytearray(path.read_bytes())
    data[-count:] = bytes(b ^ 0xFF for b in data[-count:])  # the tensor bytes, not the header
    with open(path, "r+b") as handle:
        handle.write(data)


def test_damage_is_reported_recomputed_and_repaired(filled, backbone, world, clean, monkeypatch):
    key = filled.key(backbone, world)
    damages = [
        ("truncated", lambda: os.truncate(shard(filled, key, 1), shard(filled, key, 1).stat().st_size // 2),
         r"shard-00001\.safetensors is truncated", SHARD_ROWS),
        ("bytes flipped", lambda: _flip_last_bytes(shard(filled, key, 2)), r"shard-00002\.safetensors is corrupted", SHARD_ROWS),
        ("deleted", lambda: shard(filled, key, 0).unlink(), r"shard-00000\.safetensors is missing", SHARD_ROWS),
        ("garbage manifest", lambda: (filled.root / key / "manifest.json").write_bytes(b"\x00{garbage"), r"manifest\.json", N),
    ]
    for name, damage, message, rows in damages:
        damage()
        counter = count_encoded_rows(monkeypatch, backbone)
        with pytest.warns(StoreIntegrityWarning, match=message):
            repaired = filled.get_or_compute(backbone, world, **LAYOUT)
        assert counter["rows"] == rows, name
        assert torch.equal(repaired, clean), name
        monkeypatch.undo()
        with warnings.catch_warnings():  # repaired for good: the next read is clean and silent
            warnings.simplefilter("error")
            assert torch.equal(filled.get_or_compute(backbone, world, **LAYOUT), clean), name


def test_stray_shard_file_is_ignored(filled, backbone, world, clean, monkeypatch):
    shard(filled, filled.key(backbone, world), 7).write_bytes(b"not listed in the manifest")
    monkeypatch.setattr(backbone, "encode_images", lambda images: pytest.fail("recomputed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(filled.get_or_compute(backbone, world, **LAYOUT), clean)


def test_verification_is_cached_only_for_settled_files(filled, backbone, world, monkeypatch):
    import conceptlab.store.files as files

    key = filled.key(backbone, world)
    n_shards = N // SHARD_ROWS
    hashed = []
    original = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda path: hashed.append(Path(path).name) or original(path))

    def set_mtimes(ns: int) -> None:
        for index in range(n_shards):
            os.utime(shard(filled, key, index), ns=(ns, ns))

    set_mtimes(time.time_ns() + 60 * 10**9)  # as if just written: a rewrite could keep (mtime, size)
    filled.get_or_compute(backbone, world, **LAYOUT)
    filled.get_or_compute(backbone, world, **LAYOUT)
    assert len(hashed) == 2 * n_shards  # such "racy" files are never trusted from the cache

    set_mtimes(time.time_ns() - 3600 * 10**9)
    hashed.clear()
    filled.get_or_compute(backbone, world, **LAYOUT)
    filled.get_or_compute(backbone, world, **LAYOUT)
    assert len(hashed) == n_shards  # settled files: hashed once per process

    _flip_last_bytes(shard(filled, key, 1))  # a write changes the mtime, so the cache misses
    with pytest.warns(StoreIntegrityWarning, match=r"shard-00001\.safetensors is corrupted"):
        filled.get_or_compute(backbone, world, **LAYOUT)


# -- 6. estimates -----------------------------------------------------------------------------------
def test_estimate_matches_what_a_run_writes(tmp_path, clean_run, backbone, world):
    estimate = ActivationStore(tmp_path).estimate(backbone, world, batch_size=8, shard_rows=16, num_workers=0)
    assert (estimate["rows"], estimate["dim"], estimate["shards"]) == (N, backbone.dim, N // SHARD_ROWS)
    assert estimate["key"] == clean_run[0].key(backbone, world) and estimate["cached"] is False
    written = sum(p.stat().st_size for p in (clean_run[0].root / estimate["key"]).glob("shard-*.safetensors"))
    assert abs(estimate["disk_bytes"] - written) <= 0.05 * written
    params = sum(p.numel() * p.element_size() for p in backbone.model.parameters())
    batch = 8 * 3 * 64 * 64 * 4
    assert estimate["peak_memory_bytes"] >= params + batch + N * backbone.dim * 4
    assert estimate["disk"].endswith("KiB") and estimate["peak_memory"].endswith("MiB")
    assert clean_run[0].estimate(backbone, world)["cached"] is True  # another layout, same key
    default = clean_run[0].estimate(backbone, ShapesWorld("test", size=2000), batch_size=64)
    assert default["shard_rows"] % 64 == 0 and default["shards"] == 1


# -- 7. bookkeeping ---------------------------------------------------------------------------------
def test_entries_open_delete_and_total_bytes(tmp_path, backbone, world, clean):
    store = ActivationStore(tmp_path / "store")
    assert store.entries() == [] and store.total_bytes() == 0
    full = store.key(backbone, world)
    subset = store.key(backbone, world, indices=[4, 2])
    store.get_or_compute(backbone, world, **LAYOUT)
    store.get_or_compute(backbone, world, indices=[4, 2], **LAYOUT)
    entries = {e["key"]: e for e in store.entries()}
    assert set(entries) == {full, subset} and store.contains(full) and store.contains(subset)
    assert entries[full]["rows"] == N and entries[subset]["rows"] == 2
    for entry in entries.values():
        assert entry["complete"] and entry["dim"] == backbone.dim and entry["dtype"] == "float32"
        assert (entry["backbone"], entry["dataset"], entry["capture"]) == (backbone.spec, world.identity, "image")
        assert entry["created"].startswith(time.strftime("%Y", time.gmtime()))
    assert sum(e["bytes"] for e in entries.values()) == store.total_bytes() > N * backbone.dim * 4

    opened = store.open(full)
    assert (len(opened), opened.dim) == (N, backbone.dim)
    bounds = [(start, stop) for start, stop, _ in opened.iter_shards()]
    assert bounds == [(i, i + SHARD_ROWS) for i in range(0, N, SHARD_ROWS)]
    assert torch.equal(opened.load(), clean)

    store.delete(full)
    assert not store.contains(full) and [e["key"] for e in store.entries()] == [subset]
    assert store.total_bytes() == entries[subset]["bytes"]
    with pytest.raises(KeyError):
        store.delete(full)
    with pytest.raises(KeyError):
        store.open(full)
    with pytest.raises(ValueError, match="not a store key"):
        store.delete("../escape")


def test_open_refuses_to_serve_a_damaged_shard(filled, backbone, world):
    key = filled.key(backbone, world)
    _flip_last_bytes(shard(filled, key, 0))
    with pytest.raises(StoreCorruptionError, match=r"shard-00000\.safetensors"):
        filled.open(key).load()


# -- errors -------------------------------------------------------------------------------------
class _EmptyWorld(torch.utils.data.Dataset):
    identity = "empty-world"

    def __len__(self):
        return 0


def test_clear_errors(tmp_path, backbone, world, monkeypatch):
    store = ActivationStore(tmp_path)
    with pytest.raises(ValueError, match="supported captures: image"):
        store.get_or_compute(backbone, world, capture="layer4")
    no_fingerprint = SimpleNamespace(spec="stub", dim=4, preprocess=backbone.preprocess, encode_images=None)
    with pytest.raises(ValueError, match="fingerprint"):
        store.get_or_compute(no_fingerprint, world)
    with pytest.raises(ValueError, match="empty"):
        store.get_or_compute(backbone, _EmptyWorld())
    with pytest.raises(ValueError, match="empty"):
        store.get_or_compute(backbone, world, indices=[])
    with pytest.raises(IndexError, match=rf"\[0, {N}\)"):
        store.get_or_compute(backbone, world, indices=[0, N])
    with pytest.raises(TypeError, match="identity"):
        store.get_or_compute(backbone, torch.utils.data.TensorDataset(torch.zeros(3)))

    no_space = SimpleNamespace(total=10**6, used=10**6 - 100, free=100)
    monkeypatch.setattr("conceptlab.store.store.shutil.disk_usage", lambda path: no_space)
    with pytest.raises(InsufficientDiskSpaceError, match=r"needs .*KiB.* but only 100 B is free"):
        store.get_or_compute(backbone, world, **LAYOUT)
    assert not list(tmp_path.rglob("shard-*")) and store.entries() == []


def test_on_progress_reports_every_computed_row(tmp_path, tiny_backbone):
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore

    dataset = ShapesWorld("test", size=20, seed=5)
    calls = []
    store = ActivationStore(tmp_path / "store")
    store.get_or_compute(tiny_backbone, dataset, batch_size=8, num_workers=0, progress=False,
                         on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(8, 20), (16, 20), (20, 20)]
    calls.clear()
    store.get_or_compute(tiny_backbone, dataset, batch_size=8, num_workers=0, progress=False,
                         on_progress=lambda done, total: calls.append((done, total)))
    assert calls == []  # everything came from disk


def test_batched_preprocessing_gives_the_bits_of_per_image_preprocessing(backbone, world):
    """ImageCollate runs ToTensor + Normalize once per batch; the result must be the per-image pipeline's, bit for bit."""
    from torchvision import transforms

    from conceptlab.store.captures import ImageCollate

    items = [world[i] for i in range(24)]
    per_image = torch.stack([backbone.preprocess(image.convert("RGB")) for image, _ in items])
    collate = ImageCollate(backbone.preprocess)
    assert collate._batch._tail is not None  # open_clip's pipeline takes the batched path
    assert torch.equal(collate(items), per_image)
    # a pipeline without that tail (here: no Normalize) runs per image, as given
    plain = transforms.Compose([transforms.Resize(32), transforms.ToTensor()])
    assert ImageCollate(plain)._batch._tail is None
    assert torch.equal(ImageCollate(plain)(items), torch.stack([plain(image) for image, _ in items]))
