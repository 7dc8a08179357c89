"""A residual on the raw embedding beside any concept head: PCBM-h (Yuksekgonul et al., ICLR 2023).

``train_pcbm_h.py``: a residual ``nn.Linear(d, K)`` (PyTorch's default init) trained with the
concept head frozen on logits = head(scores) + residual(x): Adam, lr 0.01, 20 epochs, batch 64,
shuffled, loss = CE + 0.001·mean(W_r²) (bias unpenalised); the last epoch is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from conceptlab.cbm.elastic_net import cpu_threads
from conceptlab.cbm.heads.base import Head, HeadContext
from conceptlab.utils import store_params

__all__ = ["ResidualHead", "train_residual"]


def train_residual(
    X: torch.Tensor,
    concept_logits: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    lr: float = 0.01,
    epochs: int = 20,
    batch_size: int = 64,
    l2: float = 0.001,
    seed: int = 42,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """PCBM-h's residual next to frozen ``concept_logits`` (N, K): returns (W_r, b_r, epoch losses)."""
    # mini-batch steps on (64, d) tensors: one CPU thread is fastest (see elastic_net.cpu_threads)
    with cpu_threads(torch.device("cpu"), int(batch_size) * X.shape[1] * n_classes, None):
        generator = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            residual = torch.nn.Linear(X.shape[1], n_classes)  # PyTorch's default init, as PCBM-h
        concept_logits = concept_logits.detach()
        optimizer = torch.optim.Adam(residual.parameters(), lr=lr)
        criterion = torch.nn.CrossEntropyLoss()
        n = len(X)
        losses = []
        for _ in range(int(epochs)):
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, int(batch_size)):
                batch = order[start : start + int(batch_size)]
                optimizer.zero_grad()
                out = concept_logits[batch] + residual(X[batch])
                loss = criterion(out, y[batch]) + l2 * (residual.weight**2).mean()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            losses.append(total / n)
    return residual.weight.detach().clone(), residual.bias.detach().clone(), losses


class ResidualHead(Head):
    """``head`` fitted on the concept scores, then a residual linear layer on the raw embedding
    trained with that head frozen (PCBM-h; module docstring for the defaults)."""

    def __init__(self, head: Head, lr: float = 0.01, epochs: int = 20, batch_size: int = 64, l2: float = 0.001, seed: int = 42) -> None:
        store_params(self, locals())

    def fit_head(self, scores: torch.Tensor, y: torch.Tensor, n_classes: int, context: HeadContext) -> ResidualHead:
        inner = self.head.fit_head(scores, y, n_classes, context)
        self.weight_, self.bias_ = inner.weight_, inner.bias_
        self.fit_residual(context.embeddings, scores @ self.weight_.T + self.bias_, y, n_classes)
        return self

    def fit_residual(self, X: torch.Tensor, concept_logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> ResidualHead:
        """Train only the residual next to the given (frozen) concept logits."""
        self.residual_weight_, self.residual_bias_, self.residual_losses_ = train_residual(
            X, concept_logits, y, n_classes, lr=self.lr, epochs=self.epochs, batch_size=self.batch_size, l2=self.l2, seed=self.seed,
        )
        return self

    def residual_info(self) -> dict[str, Any]:
        return {"optimizer": "Adam", "lr": self.lr, "epochs": self.epochs, "batch_size": self.batch_size, "l2_penalty": self.l2, "selection": "last epoch"}

    def info(self) -> dict[str, Any]:
        return {**self.head.info(), "residual": self.residual_info()}

    def state(self) -> dict[str, Any]:
        return {"inner": self.head.state(), "residual_losses_": getattr(self, "residual_losses_", [])}

    def restore(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> ResidualHead:
        self.head.restore(dict(state.get("inner") or {}), tensors)
        self.residual_losses_ = list(state.get("residual_losses_") or [])
        return self
