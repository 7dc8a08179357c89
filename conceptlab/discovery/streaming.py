"""Out-of-core SAE training: batches streamed from a store entry through a bounded shuffle buffer.

>>> entry = ActivationStore().open(key)                     # any size, on disk
>>> sae = SparseAutoencoder(expansion=8).fit(entry)         # streams when the entry is larger than the buffer
>>> sae = SparseAutoencoder().fit_stream(entry, buffer_rows=262_144)

Memory is bounded by the buffer (``buffer_rows * dim * 4`` bytes, default about 1 GiB), a chunk
and a batch, not by the entry: every pass (the mean of ``center=True``, training, the final
metrics) reads the shards through :class:`conceptlab.store.stream.ShuffledRows`. An entry that
fits in the buffer is simply loaded and trained on exactly as ``fit(tensor)`` would (the same
SAE, bit for bit).

Against the in-memory run with the same settings, the streamed run sees the rows in another order
(a buffer of random draws instead of an exact permutation per epoch; resampling draws its
candidates from the buffer), so its SAE differs by what a different shuffling seed changes: the
tests and ``benchmarks/sae_stream.py`` compare the final loss within the spread of in-memory runs
over seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from conceptlab.store.reader import StoredActivations
from conceptlab.store.stream import ShuffledRows

__all__ = ["DEFAULT_BUFFER_BYTES", "StreamedRows", "default_buffer_rows", "entry_mean", "evaluate_entry", "finish_entry_fit", "fit_entry"]

#: the shuffle buffer's default size
DEFAULT_BUFFER_BYTES = 1 << 30


def default_buffer_rows(dim: int, batch_size: int) -> int:
    """Rows in a buffer of ``DEFAULT_BUFFER_BYTES`` float32, and at least 8 batches."""
    return max(8 * int(batch_size), DEFAULT_BUFFER_BYTES // (4 * int(dim)))


class StreamedRows:
    """A :func:`~conceptlab.discovery.train.train_sae` data source over a store entry (minus ``mean``)."""

    def __init__(self, rows: ShuffledRows, mean: torch.Tensor | None = None) -> None:
        self.rows, self.mean = rows, mean

    @property
    def dim(self) -> int:
        return self.rows.dim

    def batches(self, batch_size: int, seed: int, device: str | torch.device) -> Iterator[torch.Tensor]:
        # the order is seeded by the ShuffledRows (built with the same seed); ``seed`` is part of the protocol
        mean = None if self.mean is None else self.mean.to(device)
        for batch in self.rows.batches(batch_size, device):
            yield batch if mean is None else batch - mean

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        rows = self.rows.sample(n, generator)
        return rows if self.mean is None else rows - self.mean


def entry_mean(rows: ShuffledRows) -> torch.Tensor:
    """The (dim,) mean row of the entry, summed in float64 chunk by chunk."""
    total = torch.zeros(rows.dim, dtype=torch.float64)
    for chunk in rows.chunks():
        total += chunk.double().sum(0)
    return (total / len(rows)).float()


@torch.no_grad()
def evaluate_entry(model: Any, rows: ShuffledRows) -> tuple[Any, torch.Tensor]:
    """(:class:`~conceptlab.discovery.sae.SAEMetrics`, live latents) of a fitted SAE on a whole
    entry, in two streamed passes (the mean row, then everything else), with ``sae_metrics``'s
    definitions."""
    from conceptlab.discovery.sae import SAEMetrics

    mean = entry_mean(rows).double()
    residual = total = l0 = l1 = 0.0
    active = None
    for chunk in rows.chunks():
        z = model.encode(chunk)
        x_hat = model.decode(z)
        x, z64 = chunk.double(), z.double()
        residual += float((x - x_hat.double()).pow(2).sum())
        total += float((x - mean).pow(2).sum())
        fired = z != 0
        l0 += float(fired.sum())
        l1 += float(z64.abs().sum())
        active = fired.any(0) if active is None else active | fired.any(0)
    n, d, m = len(rows), rows.dim, int(active.numel())
    dead = int((~active).sum())
    metrics = SAEMetrics(
        n_samples=n, mse=residual / (n * d), explained_variance=1.0 - residual / total if total > 0 else float("nan"),
        l0=l0 / n, l1=l1 / n, dead_latents=dead, dead_fraction=dead / m, d_in=d, d_sae=m,
    )
    return metrics, active


def fit_entry(
    model: Any, entry: StoredActivations, buffer_rows: int | None = None, chunk_rows: int | None = None,
    provenance: dict[str, Any] | None = None, callback: Callable[[Any], Any] | None = None, cancel: Callable[[], bool] | None = None,
) -> Any:
    """Fit ``model`` (a ``SparseAutoencoder``) on a store entry, streaming it when it is larger
    than ``buffer_rows`` (default :func:`default_buffer_rows`). Returns the model."""
    from conceptlab.discovery.train import train_sae

    if not isinstance(entry, StoredActivations):
        raise TypeError(f"fit_stream reads a store entry (ActivationStore.open(key)), got {type(entry).__name__}")
    n, dim = len(entry), entry.dim
    settings = model.settings_for(n, dim)
    buffer_rows = int(buffer_rows) if buffer_rows is not None else default_buffer_rows(dim, settings.batch_size)
    extra = {"store_key": entry.key, **(provenance or {})}
    if buffer_rows >= n:  # it fits: load it and train exactly as on the tensor
        return model.fit(entry.load(), provenance=extra, callback=callback, cancel=cancel)
    if buffer_rows < settings.batch_size:
        raise ValueError(f"buffer_rows={buffer_rows} is smaller than one batch ({settings.batch_size} rows); the buffer must hold "
                         "several batches (8 or more keeps batches well mixed)")
    rows = ShuffledRows(entry, buffer_rows, chunk_rows, seed=settings.seed)
    mean = entry_mean(rows) if model.center else None
    training_sae, result = train_sae(StreamedRows(rows, mean), settings, callback=callback, cancel=cancel)
    return finish_entry_fit(model, training_sae, result, settings, mean, rows, extra)


def finish_entry_fit(model: Any, training_sae: Any, result: Any, settings: Any, mean: torch.Tensor | None, rows: ShuffledRows,
                     extra: dict[str, Any]) -> Any:
    """``model`` fitted from a training SAE trained on the entry behind ``rows``: state, metrics
    over the whole entry (streamed), provenance."""
    import sae_lens

    from conceptlab.concepts.bank import library_provenance
    from conceptlab.discovery.sae import _set_fitted

    _set_fitted(model, training_sae, result, settings, mean)
    model.metrics_, model.live_ = evaluate_entry(model, rows)
    n, dim = len(rows), rows.dim
    model.provenance_ = library_provenance(
        seed=settings.seed, kind="sae", trainer="sae_lens.SAETrainer", sae_lens_version=sae_lens.__version__,
        torch_version=torch.__version__, data_rows=n, data_dim=dim, streamed={"buffer_rows": rows.buffer_rows, "chunk_rows": rows.chunk_rows},
        steps=result.steps, seconds=round(result.seconds, 3), resampled=[list(r) for r in result.resampled], **extra,
    )
    return model
