"""Reading an entry larger than memory: shuffled batches through a bounded buffer, or plain chunks.

>>> rows = ShuffledRows(store.open(key), buffer_rows=262_144, seed=0)
>>> for batch in rows.batches(4096): ...      # endless (4096, dim) float32 batches, shuffled
>>> for chunk in rows.chunks(): ...            # one pass in entry order, chunk by chunk

Shuffling happens at two levels. The entry's rows are cut into chunks of ``chunk_rows`` consecutive
rows (never crossing a shard edge) and every pass visits all chunks of all shards in a new random
order; each chunk is read from its shard through the safetensors memory map (only those rows are
touched, and the map is closed again). The rows then enter a buffer of ``buffer_rows`` rows, and
every batch takes ``batch_size`` rows drawn at random from the whole buffer, whose places the
next rows of the stream fill. A row therefore ends up next to rows from anywhere in the entry,
and what is held in memory is the buffer, one chunk and one batch, whatever the entry's size.

Every shard is checked against the manifest (size and sha256) before the first read, as
``StoredActivations.iter_shards`` does.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from conceptlab.store.manifest import TENSOR_NAME
from conceptlab.store.reader import StoreCorruptionError, StoredActivations, shard_problem

__all__ = ["ShuffledRows", "default_chunk_rows"]


def default_chunk_rows(buffer_rows: int) -> int:
    """Rows read at once: an eighth of the buffer (so a chunk never dominates it), at most 8192."""
    return max(1, min(8192, buffer_rows // 8))


class ShuffledRows:
    """Shuffled batches and sequential chunks of a complete store entry, in bounded memory.

    Args:
        entry: a complete entry (``ActivationStore.open(key)``).
        buffer_rows: rows held for shuffling; memory is about ``buffer_rows * dim * 4`` bytes.
        chunk_rows: consecutive rows read at once (default :func:`default_chunk_rows`).
        seed: seeds the chunk order and the draws from the buffer (its own generator).

    ``rows_read`` counts the rows read from disk so far and ``peak_rows_held`` the most rows held
    at once (buffer + pending chunk), so a caller can check the bound.
    """

    def __init__(self, entry: StoredActivations, buffer_rows: int, chunk_rows: int | None = None, seed: int = 0) -> None:
        if not isinstance(entry, StoredActivations):
            raise TypeError(f"ShuffledRows reads a store entry (ActivationStore.open(key)), got {type(entry).__name__}")
        if int(buffer_rows) < 1:
            raise ValueError(f"buffer_rows must be positive, got {buffer_rows}")
        self.entry = entry
        self.buffer_rows = min(int(buffer_rows), len(entry))
        self.chunk_rows = int(chunk_rows) if chunk_rows is not None else default_chunk_rows(self.buffer_rows)
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rows_read = 0
        self.peak_rows_held = 0
        self._buffer: torch.Tensor | None = None
        self._verified = False
        manifest = entry.manifest
        self._chunks = [
            (manifest.shards[index], begin, min(begin + self.chunk_rows, manifest.shards[index].stop - manifest.shards[index].start))
            for index in range(manifest.n_shards)
            for begin in range(0, manifest.shards[index].stop - manifest.shards[index].start, self.chunk_rows)
        ]

    def __len__(self) -> int:
        return len(self.entry)

    @property
    def dim(self) -> int:
        return self.entry.dim

    def __repr__(self) -> str:
        return f"ShuffledRows({self.entry!r}, buffer_rows={self.buffer_rows}, chunk_rows={self.chunk_rows})"

    # -- reading ----------------------------------------------------------------------------------
    def _verify(self) -> None:
        if self._verified:
            return
        for record in self.entry.manifest.shards.values():
            problem = shard_problem(self.entry.directory, record)
            if problem:
                raise StoreCorruptionError(f"{problem}; run get_or_compute with the backbone to repair it")
        self._verified = True

    def _read(self, record, begin: int, stop: int) -> torch.Tensor:
        """Rows [begin, stop) of one shard (shard-relative), as float32, through the memory map."""
        from safetensors import SafetensorError, safe_open

        path = self.entry.directory / record.file
        try:
            with safe_open(str(path), framework="pt") as handle:
                rows = handle.get_slice(TENSOR_NAME)[begin:stop]
        except (SafetensorError, OSError, KeyError) as error:
            raise StoreCorruptionError(f"shard {path} cannot be read as safetensors: {error}") from error
        if tuple(rows.shape) != (stop - begin, self.dim):
            raise StoreCorruptionError(f"shard {path} gave rows of shape {tuple(rows.shape)}; expected {(stop - begin, self.dim)}")
        self.rows_read += stop - begin
        return rows.float()

    def chunks(self) -> Iterator[torch.Tensor]:
        """One pass over the entry in row order, ``chunk_rows`` rows at a time (float32)."""
        self._verify()
        for record, begin, stop in self._chunks:
            yield self._read(record, begin, stop)

    def _shuffled_rows(self) -> Iterator[torch.Tensor]:
        """Endless chunks, every pass in a new random order of all chunks of all shards."""
        while True:
            for position in torch.randperm(len(self._chunks), generator=self.generator).tolist():
                yield self._read(*self._chunks[position])

    # -- shuffled batches ---------------------------------------------------------------------------
    def batches(self, batch_size: int, device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
        """Endless (batch_size, dim) float32 batches drawn from the shuffle buffer."""
        batch_size = int(batch_size)
        if not 1 <= batch_size <= self.buffer_rows:
            raise ValueError(f"batch_size must be between 1 and the buffer's {self.buffer_rows} rows, got {batch_size}; "
                             "give the stream a larger buffer_rows")
        self._verify()
        stream = self._shuffled_rows()
        buffer = torch.empty(self.buffer_rows, self.dim)
        self._buffer, filled = buffer, 0
        pending, offset = None, 0  # the chunk being fed into the buffer, and how much of it is used

        def feed(slots: torch.Tensor) -> None:
            nonlocal pending, offset
            done = 0
            while done < len(slots):
                if pending is None or offset == len(pending):
                    pending, offset = next(stream), 0
                    self.peak_rows_held = max(self.peak_rows_held, self.buffer_rows + len(pending))
                take = min(len(slots) - done, len(pending) - offset)
                buffer[slots[done : done + take]] = pending[offset : offset + take]
                done, offset = done + take, offset + take

        feed(torch.arange(self.buffer_rows))
        filled = self.buffer_rows
        while True:
            slots = torch.randperm(filled, generator=self.generator)[:batch_size]
            batch = buffer[slots]  # a copy: the slots are refilled below
            feed(slots)
            yield batch.to(device, non_blocking=True)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Up to ``n`` rows drawn from the shuffle buffer (a random sample of the entry), e.g. the
        candidate inputs of dead-latent resampling; before the first batch, read for the purpose."""
        if self._buffer is None:
            rows = []
            for chunk in self._shuffled_rows():
                rows.append(chunk)
                if sum(map(len, rows)) >= min(n, self.buffer_rows):
                    break
            pool = torch.cat(rows)
        else:
            pool = self._buffer
        return pool[torch.randperm(len(pool), generator=generator)[: min(int(n), len(pool))]].clone()
