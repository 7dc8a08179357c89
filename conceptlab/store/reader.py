"""Reading finished shards: integrity checks first, then memory-mapped safetensors loads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from conceptlab.store.files import file_digest
from conceptlab.store.keys import torch_dtype
from conceptlab.store.manifest import TENSOR_NAME, Manifest, ShardRecord

__all__ = ["StoreCorruptionError", "StoredActivations", "read_shard", "shard_problem"]


class StoreCorruptionError(RuntimeError):
    """A stored shard does not match its manifest and there is no backbone here to recompute it."""


def shard_problem(directory: Path, record: ShardRecord) -> str | None:
    """Why the shard file cannot be trusted, or None when its size and sha256 match the manifest."""
    path = directory / record.file
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return f"shard {path} is missing"
    if stat.st_size != record.bytes:
        kind = "truncated" if stat.st_size < record.bytes else "larger than recorded"
        return f"shard {path} is {kind} ({stat.st_size} bytes; the manifest says {record.bytes})"
    if file_digest(path, stat) != record.sha256:
        return f"shard {path} is corrupted (its sha256 does not match the manifest)"
    return None


def read_shard(directory: Path, record: ShardRecord, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Load one verified shard through a memory map; a wrong name, shape or dtype is an error."""
    path = directory / record.file
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensor = handle.get_tensor(TENSOR_NAME)
    except (SafetensorError, OSError, KeyError) as error:
        raise StoreCorruptionError(f"shard {path} cannot be read as safetensors: {error}") from error
    expected = (record.stop - record.start, dim)
    if tuple(tensor.shape) != expected or tensor.dtype != dtype:
        raise StoreCorruptionError(
            f"shard {path} holds {tuple(tensor.shape)} {tensor.dtype}; expected {expected} {dtype}"
        )
    return tensor


class StoredActivations:
    """A complete entry, read shard by shard: for data too big to load at once.

    ``len(acts)`` rows of ``acts.dim`` columns; ``iter_shards()`` yields ``(start, stop, tensor)``
    with every shard checked against the manifest first; ``load()`` concatenates all of them.
    """

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.directory = Path(directory)
        self.manifest = manifest

    @property
    def key(self) -> str:
        return self.manifest.key

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.manifest.dtype)

    def __len__(self) -> int:
        return self.manifest.rows

    def __repr__(self) -> str:
        return f"StoredActivations({self.key[:12]}..., rows={len(self)}, dim={self.dim}, dtype={self.manifest.dtype})"

    def iter_shards(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        for index in range(self.manifest.n_shards):
            record = self.manifest.shards[index]
            problem = shard_problem(self.directory, record)
            if problem:
                raise StoreCorruptionError(f"{problem}; run get_or_compute with the backbone to repair it")
            yield record.start, record.stop, read_shard(self.directory, record, self.dim, self.dtype)

    def load(self) -> torch.Tensor:
        result = torch.empty(len(self), self.dim, dtype=self.dtype)
        for start, stop, tensor in self.iter_shards():
            result[start:stop] = tensor
        return result
