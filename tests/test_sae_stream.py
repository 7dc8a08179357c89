"""Out-of-core SAE training: the shuffle-buffer reader over a store entry, and ``fit_stream``.

Tolerance of streamed vs in-memory training: the streamed run draws the same rows in another
order (a shuffle buffer instead of one permutation per epoch), which is what changing the seed
changes too. With the settings below, in-memory runs with seeds 0-3 end up to 15 % apart in final
loss (mean of the last 50 steps: 0.182-0.208), while each streamed run lands within 0.65 % of the
in-memory run of its seed (final MSE on the whole entry: within 0.4 %). We assert 5 %: far inside
the seed-to-seed spread, with room for other BLAS builds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from conceptlab.discovery import SparseAutoencoder
from conceptlab.store import ActivationStore
from conceptlab.store.manifest import Manifest
from conceptlab.store.store import write_shard_file
from conceptlab.store.stream import ShuffledRows

STREAM_TOLERANCE = 0.05  # relative difference of final losses; see the module docstring


def synthetic_rows(n: int, dim: int, atoms: int = 48, active: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, dim, generator=generator)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    which = torch.randint(atoms, (n, active), generator=generator)
    weights = torch.rand(n, active, generator=generator) * 2 + 0.5
    return (weights[..., None] * dictionary[which]).sum(1) + 0.05 * torch.randn(n, dim, generator=generator) + 1.0


def write_entry(root: Path, rows: torch.Tensor, shard_rows: int, dtype: str = "float32"):
    """``rows`` as a complete store entry, written as extraction writes one."""
    key = hashlib.sha256(f"synthetic|{tuple(rows.shape)}|{shard_rows}|{dtype}".encode()).hexdigest()
    directory = root / key
    directory.mkdir(parents=True)
    manifest = Manifest(key=key, fields={"dataset": "synthetic"}, backbone_spec="synthetic", rows=len(rows), dim=rows.shape[1],
                        dtype=dtype, shard_rows=shard_rows, batch_size=shard_rows)
    cast = rows.to(getattr(torch, dtype))
    for index in range(manifest.n_shards):
        start, stop = manifest.shard_range(index)
        manifest.shards[index] = write_shard_file(directory, key, index, start, stop, cast[start:stop])
    manifest.save(directory)
    return ActivationStore(root).open(key)


@pytest.fixture(scope="module")
def rows():
    return synthetic_rows(6000, 16)


@pytest.fixture(scope="module")
def entry(tmp_path_factory, rows):
    return write_entry(tmp_path_factory.mktemp("sae-stream"), rows, shard_rows=1000)


def test_chunks_read_the_entry_in_order(entry, rows):
    stream = ShuffledRows(entry, buffer_rows=800, chunk_rows=300)
    assert torch.equal(torch.cat(list(stream.chunks())), rows)
    assert stream.rows_read == len(rows)


def test_batches_draw_every_row_once_per_pass_mixed_across_shards(entry, rows):
    N, B, b = len(rows), 800, 200
    position = {r.numpy().tobytes(): i for i, r in enumerate(rows)}
    stream = ShuffledRows(entry, buffer_rows=B, chunk_rows=100, seed=3)
    batches = stream.batches(b)
    # batch k draws from the first B + (k - 1) * b rows fed: up to batch (N - B) / b + 1 all come
    # from the first pass over the entry, so none may repeat
    drawn = [position[r.numpy().tobytes()] for _ in range((N - B) // b + 1) for r in next(batches)]
    assert len(set(drawn)) == len(drawn) == N - B + b
    # and what was not drawn yet is waiting in the buffer: one pass covers every row
    waiting = {position[r.numpy().tobytes()] for r in stream._buffer}
    assert set(drawn) | waiting == set(range(N))
    assert drawn != sorted(drawn)
    first = drawn[:b]
    assert len({i // 1000 for i in first}) >= 3, "a batch drew from too few shards"
    assert stream.peak_rows_held <= B + 100  # the buffer and one chunk, never more


def test_half_precision_entries_stream_as_float32(tmp_path, rows):
    entry16 = write_entry(tmp_path, rows[:500], shard_rows=200, dtype="float16")
    chunks = torch.cat(list(ShuffledRows(entry16, buffer_rows=100).chunks()))
    assert chunks.dtype == torch.float32 and torch.equal(chunks, rows[:500].half().float())


def test_bad_buffer_sizes_are_clear_errors(entry):
    with pytest.raises(ValueError, match="buffer_rows"):
        ShuffledRows(entry, buffer_rows=0)
    with pytest.raises(ValueError, match="larger buffer_rows"):
        next(ShuffledRows(entry, buffer_rows=64).batches(128))
    with pytest.raises(ValueError, match="smaller than one batch"):
        SparseAutoencoder(batch_size=256, steps=2, progress=False).fit_stream(entry, buffer_rows=100)


def test_entry_that_fits_the_buffer_trains_exactly_as_in_memory(entry, rows, one_thread):
    params = {"expansion": 2, "l1": 3e-4, "lr": 1e-3, "steps": 30, "batch_size": 256, "center": True, "progress": False}
    loaded = SparseAutoencoder(**params).fit(rows)
    streamed = SparseAutoencoder(**params).fit(entry)  # fit() on an entry streams it; the default buffer holds it all
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(loaded.sae_, name), getattr(streamed.sae_, name))
    assert streamed.provenance_["store_key"] == entry.key


def test_streamed_training_reaches_the_in_memory_loss(entry, rows, one_thread):
    params = {"expansion": 2, "l1": 3e-4, "lr": 1e-3, "steps": 300, "batch_size": 128, "center": True, "progress": False,
              "resample_every": 2}
    loaded = SparseAutoencoder(**params).fit(rows)
    streamed = SparseAutoencoder(**params).fit_stream(entry, buffer_rows=1024)  # a sixth of the entry
    assert streamed.provenance_["streamed"]["buffer_rows"] == 1024
    assert streamed.history_.resampled, "resampling (candidates drawn from the buffer) never ran"

    def final(model):
        return sum(model.history_.losses[-50:]) / 50

    assert abs(final(streamed) - final(loaded)) / final(loaded) < STREAM_TOLERANCE
    assert abs(streamed.metrics_.mse - loaded.metrics_.mse) / loaded.metrics_.mse < STREAM_TOLERANCE
    # the streamed metrics (two passes over the shards) are the in-memory definition's
    direct = streamed.evaluate(rows)
    assert streamed.metrics_.mse == pytest.approx(direct.mse, rel=1e-9)
    assert streamed.metrics_.explained_variance == pytest.approx(direct.explained_variance, rel=1e-9)
    assert streamed.metrics_.l0 == pytest.approx(direct.l0, rel=1e-9)
    assert torch.allclose(streamed.input_mean_, rows.double().mean(0).float(), atol=1e-6)
    assert torch.equal(streamed.live_, (streamed.encode(rows) != 0).any(0))
