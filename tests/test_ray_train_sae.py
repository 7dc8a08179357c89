"""Data-parallel SAE training on Ray Train gives the one-process SAE up to summation order.

Two workers on a local 2-CPU Ray (conftest's ``ray_cluster``) against ``fit_stream`` in this
process, with the same settings, and the tolerance of ``tests/test_data_parallel_sae.py``.
"""

from __future__ import annotations

import pytest
import torch

from conceptlab.discovery import SparseAutoencoder
from tests.test_data_parallel_sae import RTOL
from tests.test_discovery import planted_world
from tests.test_sae_stream import write_entry


def assert_same_sae(ours: SparseAutoencoder, reference: SparseAutoencoder) -> None:
    for name, value in reference.sae_.state_dict().items():
        other = ours.sae_.state_dict()[name]
        assert float((other - value).abs().max()) <= RTOL * max(1.0, float(value.abs().max())), name
    ours_losses, ref_losses = torch.tensor(ours.history_.losses), torch.tensor(reference.history_.losses)
    assert len(ours_losses) == len(ref_losses)
    assert float(((ours_losses - ref_losses).abs() / ref_losses.abs()).max()) <= RTOL
    assert ours.history_.resampled == reference.history_.resampled
    assert torch.equal(ours.live_, reference.live_)
    assert ours.metrics_.l0 == pytest.approx(reference.metrics_.l0, rel=1e-4)


def test_two_workers_stream_a_store_entry_and_train_the_one_process_sae(ray_cluster, tmp_path):
    """One Ray Train run (start-up costs ~30 s here): a store entry larger than the buffer, centred,
    with resampling, so the mean, the entry's path and the buffer's candidates all reach the workers.
    The data-parallel mechanics of TopK are checked without Ray in tests/test_data_parallel_sae.py."""
    X, _, _ = planted_world(n=1024)
    entry = write_entry(tmp_path / "store", X, shard_rows=256)
    settings = dict(n_latents=64, l1=0.3, lr=1e-2, steps=60, batch_size=128, resample_every=2.5, center=True, progress=False, seed=3)
    reference = SparseAutoencoder(**settings).fit_stream(entry, buffer_rows=384, chunk_rows=64)
    assert reference.provenance_["streamed"] == {"buffer_rows": 384, "chunk_rows": 64}
    assert sum(n for _, n in reference.history_.resampled) > 0  # resampling really happens and must agree
    ours = SparseAutoencoder(**settings).fit_distributed(entry, num_workers=2, buffer_rows=384, chunk_rows=64)
    assert_same_sae(ours, reference)
    assert ours.provenance_["store_key"] == entry.key and ours.provenance_["data_parallel"]["workers"] == 2
    torch.testing.assert_close(ours.input_mean_, reference.input_mean_)


def test_a_batch_that_does_not_split_over_the_workers_is_refused_before_ray_starts():
    with pytest.raises(ValueError, match="multiple of 3"):
        SparseAutoencoder(n_latents=8, steps=2, batch_size=100, progress=False).fit_distributed(planted_world(n=200)[0], num_workers=3)
