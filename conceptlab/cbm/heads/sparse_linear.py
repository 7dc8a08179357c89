"""Discover-then-Name's head (Rao et al., ECCV 2024): a bias-free sparse linear layer on SAE latents.

Faithful to ``neuroexplicit-saar/Discover-then-Name`` (``scripts/train_linear_probe.py``, where it
is called a linear probe): ``nn.Linear(n_latents, K, bias=False)`` with PyTorch's default init,
trained by Adam on CE + λ·mean|W| (``nn.L1Loss`` against zeros: the **mean** over all K·M
weights, so λ's scale differs from a summed L1), batch 512, 200 epochs, shuffled; the training
set is split 90/10 at random (seeded) into train / train_val, train_val only logged; **the last
epoch is kept** (no early stopping, no model selection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from conceptlab.cbm.heads.base import Head, HeadContext
from conceptlab.utils import default_device, store_params

__all__ = ["HeadHistory", "SparseLinearHead", "train_sparse_head"]


@dataclass
class HeadHistory:
    """Per-epoch training loss, train-split accuracy and train_val accuracy of the sparse linear head."""

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0


def train_sparse_head(
    scores: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    lam: float = 1.0,
    lr: float = 1e-3,
    epochs: int = 200,
    batch_size: int = 512,
    val_fraction: float = 0.1,
    seed: int = 42,
    device: str | None = None,
) -> tuple[torch.Tensor, HeadHistory]:
    """DN-CBM's sparse linear head: returns (W (K, M), history). No bias; CE + λ·mean|W|; last epoch kept."""
    if scores.ndim != 2 or labels.ndim != 1 or len(scores) != len(labels):
        raise ValueError(f"scores must be (N, M) and labels (N,); got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for value, name in ((lam, "lam"), (lr, "lr")):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {value}")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    dev = default_device(device)
    generator = torch.Generator().manual_seed(int(seed))
    n = len(scores)
    order = torch.randperm(n, generator=generator)
    n_val = int(n * float(val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise ValueError("no training rows left after the train_val split")
    X, y = scores.float().to(dev), labels.long().to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        head = torch.nn.Linear(scores.shape[1], int(n_classes), bias=False)
    head = head.to(dev)
    optimizer = torch.optim.Adam(head.parameters(), lr=float(lr))
    criterion = torch.nn.CrossEntropyLoss()
    history = HeadHistory(n_train=len(train_idx), n_val=n_val)
    for _ in range(int(epochs)):
        head.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=generator)]
        total = 0.0
        for start in range(0, len(perm), int(batch_size)):
            batch = perm[start : start + int(batch_size)].to(dev)
            optimizer.zero_grad()
            loss = criterion(head(X[batch]), y[batch]) + float(lam) * head.weight.abs().mean()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        history.loss.append(total / len(perm))
        with torch.no_grad():
            train_idx_dev = train_idx.to(dev)
            history.train_accuracy.append(float((head(X[train_idx_dev]).argmax(1) == y[train_idx_dev]).float().mean()))
            if n_val:
                val_idx_dev = val_idx.to(dev)
                history.val_accuracy.append(float((head(X[val_idx_dev]).argmax(1) == y[val_idx_dev]).float().mean()))
    return head.weight.detach().cpu().clone(), history


class SparseLinearHead(Head):
    """DN-CBM's head (module docstring): ``lam`` of the mean-|W| penalty, Adam ``lr``, ``epochs``,
    ``batch_size``, ``val_fraction`` held out as train_val (logged only), ``seed``, ``device``."""

    def __init__(
        self,
        lam: float = 1.0,
        lr: float = 1e-3,
        epochs: int = 200,
        batch_size: int = 512,
        val_fraction: float = 0.1,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        store_params(self, locals())

    def fit_head(self, scores: torch.Tensor, y: torch.Tensor, n_classes: int, context: HeadContext) -> SparseLinearHead:
        weight, history = train_sparse_head(
            scores, y, n_classes, lam=self.lam, lr=self.lr, epochs=self.epochs, batch_size=self.batch_size,
            val_fraction=self.val_fraction, seed=self.seed, device=self.device,
        )
        self.weight_ = weight.float()
        self.bias_ = torch.zeros(n_classes)  # bias-free by construction
        self.history_ = history
        return self

    def info(self) -> dict[str, Any]:
        return {"head": "sparse linear (DN-CBM)", "loss": "CE + lam * mean|W|", "lam": self.lam, "lr": self.lr, "epochs": self.epochs,
                "batch_size": self.batch_size, "val_fraction": self.val_fraction, "optimizer": "Adam", "bias": False, "selection": "last epoch"}

    def state(self) -> dict[str, Any]:
        history = getattr(self, "history_", None)
        return {"history_": asdict(history) if history is not None else None}

    def restore(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> SparseLinearHead:
        history = state.get("history_")
        self.history_ = HeadHistory(**history) if history else None
        return self
