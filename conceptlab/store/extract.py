"""Extraction: run a capture over the missing shards of an entry, batch by batch.

Batches are planned per shard: each shard starts a new batch and no batch crosses a shard edge.
So which rows share a batch depends only on (shard_rows, batch_size), never on which shards were
already done; a resumed run puts every row in the same batch as an uninterrupted one, and since a
row's activation can depend (in the last bits) on its batch, the results are bitwise identical.
The other thing the last bits can depend on is the number of torch threads that encode: on the
CPU, workers that encode themselves (:class:`EncodingCollate`) use one thread each, so resume with
the same ``num_workers`` (and threads) for the same bits; another layout changes them only as
another thread count would (~1e-7 relative).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

__all__ = [
    "DEFAULT_SHARD_BYTES", "DEFAULT_SHARD_SECONDS", "EncodingCollate", "default_num_workers", "default_shard_rows", "encodes_in_workers",
    "on_gpu", "plan_batches", "run_shards",
]

#: target size of one shard file
DEFAULT_SHARD_BYTES = 64 * 1024 * 1024
#: at most about this long to compute one shard (the store times one batch before a new entry):
#: an interrupted run loses at most this much work
DEFAULT_SHARD_SECONDS = 30.0


def default_num_workers() -> int:
    return min(2, os.cpu_count() or 1)


def on_gpu(backbone) -> bool:
    """Whether ``backbone`` runs on a CUDA device (its batches are then pinned and encoded here)."""
    return str(getattr(backbone, "device", "cpu")).startswith("cuda")


def encodes_in_workers(backbone, num_workers: int) -> bool:
    """Whether the workers should be the backbone replicas (:class:`EncodingCollate`): on the CPU,
    when there are at least as many workers as this process has torch threads, so one-thread
    replicas use every thread the model would have used here. (Replicas keep one thread: GNU
    OpenMP can hang in a forked worker that opens a parallel region after this process did.)"""
    return not on_gpu(backbone) and int(num_workers) >= max(2, torch.get_num_threads())


class EncodingCollate:
    """Collate *and* encode a batch inside a DataLoader worker, which is then a backbone replica.

    ``num_workers`` one-thread replicas read, preprocess and encode whole batches side by side,
    and this process only gathers the activations. On a few cores this beats one process whose
    multi-threaded model competes with decoding workers for the same cores (a model thread that
    loses its core stalls the others at every parallel region). The batches are the planned ones
    either way.
    """

    def __init__(self, capture, backbone) -> None:
        self.capture, self.backbone = capture, backbone
        self._collate = capture.collate(backbone)

    def __call__(self, items) -> torch.Tensor:
        return self.capture.encode(self.backbone, self._collate(items))  # DataLoader runs every worker with 1 thread


def default_shard_rows(dim: int, itemsize: int, batch_size: int, target_bytes: int = DEFAULT_SHARD_BYTES) -> int:
    """Rows per shard: about ``target_bytes`` of data, rounded down to a multiple of ``batch_size``."""
    rows = target_bytes // (dim * itemsize)
    return max(batch_size, rows // batch_size * batch_size)


def plan_batches(shards: list[tuple[int, int, int]], batch_size: int) -> list[tuple[int, int, int]]:
    """(shard index, start row, stop row) of every batch, given (index, start, stop) of shards."""
    return [
        (index, begin, min(begin + batch_size, stop))
        for index, start, stop in shards
        for begin in range(start, stop, batch_size)
    ]


class _PlannedBatches(torch.utils.data.Sampler):
    """The planned batches as lists of dataset indices, made lazily (a plan can have millions of rows)."""

    def __init__(self, plan: list[tuple[int, int, int]], rows: np.ndarray | None) -> None:
        self.plan, self.rows = plan, rows

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[list[int]]:
        for _, begin, stop in self.plan:
            yield list(range(begin, stop)) if self.rows is None else self.rows[begin:stop].tolist()


def run_shards(
    capture,
    backbone,
    dataset,
    rows: np.ndarray | None,
    shards: list[tuple[int, int, int]],
    batch_size: int,
    dim: int,
    dtype: torch.dtype,
    num_workers: int,
    on_batch: Callable[[int], None] = lambda n: None,
    pin_memory: bool = False,
    encode_in_workers: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (shard index, (stop - start, dim) tensor) for each of ``shards``, in order.

    ``rows`` maps entry rows to dataset indices (None: the identity). Preprocessing runs in
    ``num_workers`` DataLoader worker processes (0: in this process); encoding runs here, or, with
    ``encode_in_workers`` (CPU backbones, see :func:`encodes_in_workers`), in the one-thread
    workers too (:class:`EncodingCollate`). ``pin_memory`` puts batches in page-locked memory
    (faster copies to a GPU).
    """
    plan = plan_batches(shards, batch_size)
    if not plan:
        return
    replicas = bool(encode_in_workers) and num_workers > 0
    loader = DataLoader(
        dataset,
        batch_sampler=_PlannedBatches(plan, rows),
        collate_fn=EncodingCollate(capture, backbone) if replicas else capture.collate(backbone),
        num_workers=num_workers,
        pin_memory=pin_memory and not replicas,
    )
    bounds = {index: (start, stop) for index, start, stop in shards}
    buffer, current = None, None
    for (index, begin, stop), inputs in zip(plan, loader, strict=True):
        if index != current:
            start, end = bounds[index]
            buffer, current = torch.empty(end - start, dim, dtype=dtype), index
        activations = inputs if replicas else capture.encode(backbone, inputs)
        if tuple(activations.shape) != (stop - begin, dim):
            raise RuntimeError(
                f"capture {capture.name!r} returned shape {tuple(activations.shape)} for a batch "
                f"of {stop - begin} rows; expected ({stop - begin}, {dim})"
            )
        buffer[begin - start : stop - start] = activations.to(dtype)
        on_batch(stop - begin)
        if stop == end:
            yield index, buffer
