"""Data-parallel SAE training: W processes each take 1/W of every batch and average their gradients.

:func:`~conceptlab.discovery.train.train_sae` given a :class:`GradientAveraging` trains one
replica of the SAE per process of a ``torch.distributed`` process group (gloo on CPUs, NCCL on
GPUs; :mod:`conceptlab.discovery.ray_train` starts one with Ray Train). Every process draws the
same global batch the one-process run would draw (same seeded source) and keeps its contiguous
1/W of it; after each backward pass the gradients are all-reduced to their mean, which is the
gradient of the global batch's mean loss (every term of the loss -- MSE, L1, TopK's AuxK -- is a
mean over rows). Gradient clipping, Adam, the unit-norm decoder and resampling then run on
identical numbers in every process, so the replicas stay identical.

What else must agree between processes is synchronised after every step: which latents fired
(resampling picks dead latents from it) and sae-lens's ``n_forward_passes_since_fired`` (TopK's
AuxK loss reads its dead-latent mask from it): a latent fired in the global batch when it fired in
any slice, so the counters are combined with a minimum.

The result is the one-process SAE up to floating-point summation order: a mean over B rows is
computed as W means over B/W rows, then averaged. Those last-bit differences pass through Adam
(which divides by running gradient magnitudes) and grow slowly with the steps; the tests compare
the weights and losses of both runs with the tolerance stated there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["GradientAveraging", "check_batch_split"]


def check_batch_split(batch_size: int, world_size: int) -> None:
    """Refuse a batch that does not split into ``world_size`` equal slices (unequal slices would
    make the averaged gradient another than the batch's)."""
    if int(batch_size) % int(world_size):
        raise ValueError(f"batch_size={batch_size} does not split evenly over {world_size} processes; "
                         f"use a multiple of {world_size} (equal slices keep the averaged gradient the batch's)")


class GradientAveraging:
    """The calls :func:`~conceptlab.discovery.train.train_sae` makes to train data-parallel.

    Args:
        rank, world_size: this process's place in the default ``torch.distributed`` process
            group (default: read from the initialised group).
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None) -> None:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("data-parallel SAE training needs an initialised torch.distributed process group "
                               "(conceptlab.discovery.ray_train starts one with Ray Train)")
        self.dist = dist
        self.rank = dist.get_rank() if rank is None else int(rank)
        self.world_size = dist.get_world_size() if world_size is None else int(world_size)
        self._handles: list[Any] = []

    def check(self, batch_size: int) -> None:
        check_batch_split(batch_size, self.world_size)

    def split(self, batches: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        """This process's contiguous slice of every global batch."""
        for batch in batches:
            per = len(batch) // self.world_size
            yield batch[self.rank * per : (self.rank + 1) * per]

    def attach(self, sae: torch.nn.Module) -> None:
        """Average the gradients over the processes once backward has made all of them: one
        all-reduce of every gradient flattened together (as DDP's buckets), before clipping."""
        self._parameters = [p for p in sae.parameters() if p.requires_grad]
        self._ready = 0
        for parameter in self._parameters:
            self._handles.append(parameter.register_post_accumulate_grad_hook(self._count))

    def _count(self, _parameter: torch.Tensor) -> None:
        self._ready += 1
        if self._ready < len(self._parameters):
            return
        self._ready = 0
        grads = [p.grad for p in self._parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.dist.all_reduce(flat, op=self.dist.ReduceOp.SUM)
        flat.div_(self.world_size)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    @torch.no_grad()
    def after_step(self, trainer: Any, fired: torch.Tensor, losses: list[torch.Tensor]) -> list[float]:
        """Make the firing record of every process that of the global batch (in place) and return
        the global batch's ``losses`` (the mean over the processes of their slices' losses)."""
        counters = trainer.n_forward_passes_since_fired
        # one MIN for both: a latent fired in the global batch when it fired in any slice
        state = torch.cat([counters.reshape(-1).to(torch.float64), (~fired).to(torch.float64)])
        self.dist.all_reduce(state, op=self.dist.ReduceOp.MIN)
        counters.copy_(state[: counters.numel()].view_as(counters).to(counters.dtype))
        fired.copy_(state[counters.numel() :] == 0)
        total = torch.stack([loss.detach().reshape(()).to(torch.float64) for loss in losses])
        self.dist.all_reduce(total, op=self.dist.ReduceOp.SUM)
        return (total / self.world_size).tolist()

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
