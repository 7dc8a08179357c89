"""LaBo's head (Yang et al., CVPR 2023): a class-concept association matrix A (K, C) trained from
a language prior; logits = logit_scale · s(x) · softmax(A, dim=-1)ᵀ, so W = logit_scale·softmax(A), b = 0.

Faithful to ``YueYANG1996/LaBo`` (``models/asso_opt/asso_opt.py``): loss = cross-entropy only,
Adam, batch 512, validation every ``val_every`` epochs (and after the last), the **best-validation**
A kept (a later tie does not replace it); without validation data ``val_fraction`` of the training
rows is held out, seeded (LaBo ships its own validation split instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from conceptlab.cbm.heads.base import Head, HeadContext
from conceptlab.concepts.bank import ConceptBank, unknown_name
from conceptlab.utils import default_device, store_params

__all__ = ["AssociationHead", "PRIORS", "association_prior"]

PRIORS = ("first", "all", "frequency", "none")


def association_prior(bank: ConceptBank, class_names: Sequence[str], prior: str = "first", init_val: float = 1.0) -> torch.Tensor:
    """The initial association matrix A₀ (K, C) from the bank's class links.

    - ``"first"`` (LaBo): A₀[first linked class, j] = init_val;
    - ``"all"``: every linked class gets init_val;
    - ``"frequency"`` (our V2C concept prior): every linked class k gets
      init_val · score_k(j) / max_j' score_k(j'), the scores being V2C's token counts;
    - ``"none"``: zeros (a uniform softmax).
    """
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    names = [str(c) for c in class_names]
    index = {n: i for i, n in enumerate(names)}
    A = torch.zeros(len(names), len(bank))
    if prior == "none":
        return A
    unlinked = [c.name for c in bank if not c.class_links]
    if unlinked:
        raise ValueError(f"prior {prior!r} needs every concept linked to a class; {len(unlinked)} are not, e.g. {unlinked[:3]}")
    for j, concept in enumerate(bank):
        links = concept.class_links[:1] if prior == "first" else concept.class_links
        for cls in links:
            if cls not in index:
                raise unknown_name(cls, names, "class")
            if prior == "frequency":
                scores = concept.provenance.get("class_scores") or {}
                if cls not in scores:
                    raise ValueError(f"prior 'frequency' needs class_scores in the provenance of concept {concept.name!r} (build the bank from a V2C concept set)")
                A[index[cls], j] = float(scores[cls])
            else:
                A[index[cls], j] = init_val
    if prior == "frequency":
        top = A.max(1, keepdim=True).values
        A = torch.where(top > 0, A / top.clamp_min(1e-30), A) * init_val
    return A


class AssociationHead(Head):
    """LaBo's association head (module docstring); ``prior`` as in :func:`association_prior`."""

    def __init__(
        self,
        lr: float = 1e-4,
        batch_size: int = 512,
        epochs: int = 5000,
        val_every: int = 10,
        patience: int | None = None,
        logit_scale: float = 100.0,
        init_val: float = 1.0,
        prior: str = "first",
        val_fraction: float = 0.1,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        store_params(self, locals())

    def _check_params(self) -> None:
        for value, name in ((self.lr, "lr"), (self.logit_scale, "logit_scale")):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if int(self.epochs) < 1 or int(self.batch_size) < 1 or int(self.val_every) < 1:
            raise ValueError("epochs, batch_size and val_every must be positive")

    def fit_head(self, scores: torch.Tensor, y: torch.Tensor, n_classes: int, context: HeadContext) -> AssociationHead:
        self._check_params()
        generator = torch.Generator().manual_seed(int(self.seed))
        if context.val is not None:
            train_scores, train_y = scores, y
            val_scores, val_y = context.val
            held_out = "given"
        elif self.val_fraction and float(self.val_fraction) > 0:
            order = torch.randperm(len(y), generator=generator)
            n_val = max(1, int(len(y) * float(self.val_fraction)))
            if n_val >= len(y):
                raise ValueError("val_fraction leaves no training rows")
            val_idx, train_idx = order[:n_val], order[n_val:]
            train_scores, train_y, val_scores, val_y = scores[train_idx], y[train_idx], scores[val_idx], y[val_idx]
            held_out = f"{float(self.val_fraction):g} of the training rows"
        else:
            train_scores, train_y, val_scores, val_y = scores, y, None, None
            held_out = "none (last epoch kept)"
        prior = association_prior(context.bank, context.class_names, self.prior, self.init_val)
        dev = default_device(self.device)
        S, Y = train_scores.to(dev), train_y.to(dev)
        A = torch.nn.Parameter(prior.clone().to(dev))
        optimizer = torch.optim.Adam([A], lr=float(self.lr))
        scale = float(self.logit_scale)
        best_A, best_acc, best_epoch, stale = A.detach().clone(), -1.0, 0, 0
        history: dict[str, list] = {"epoch": [], "train_loss": [], "val_accuracy": []}
        n, bs = len(Y), int(self.batch_size)
        for epoch in range(1, int(self.epochs) + 1):
            perm = torch.randperm(n, generator=generator).to(dev)
            total = 0.0
            for start in range(0, n, bs):
                batch = perm[start : start + bs]
                logits = scale * (S[batch] @ torch.softmax(A, dim=-1).T)
                loss = torch.nn.functional.cross_entropy(logits, Y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            if val_scores is not None and (epoch % int(self.val_every) == 0 or epoch == int(self.epochs)):
                with torch.no_grad():
                    pred = (val_scores.to(dev) @ torch.softmax(A, dim=-1).T).argmax(1)
                    acc = float((pred == val_y.to(dev)).float().mean())
                history["epoch"].append(epoch)
                history["train_loss"].append(total / n)
                history["val_accuracy"].append(acc)
                if acc > best_acc:  # strictly better, as ModelCheckpoint
                    best_A, best_acc, best_epoch, stale = A.detach().clone(), acc, epoch, 0
                else:
                    stale += 1
                    if self.patience is not None and stale >= int(self.patience):
                        break
        if val_scores is None:
            best_A, best_epoch = A.detach().clone(), epoch
        self.asso_ = best_A.cpu()
        self.prior_ = prior
        self.weight_ = (scale * torch.softmax(self.asso_, dim=-1)).float()
        self.bias_ = torch.zeros(n_classes)
        self.best_epoch_ = int(best_epoch)
        self.best_val_accuracy_ = None if val_scores is None else float(best_acc)
        self.epochs_run_ = int(epoch)
        self.history_ = history
        self.validation_ = held_out
        return self

    def info(self) -> dict[str, Any]:
        return {
            "head": "logit_scale * softmax(A, dim=-1) over concepts, b = 0", "prior": self.prior, "init_val": self.init_val,
            "optimizer": "Adam", "lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs, "val_every": self.val_every,
            "selection": "best validation accuracy", "validation": self.validation_,
        }

    def state(self) -> dict[str, Any]:
        return {
            "best_epoch_": self.best_epoch_, "best_val_accuracy_": self.best_val_accuracy_, "epochs_run_": self.epochs_run_,
            "history_": self.history_, "validation_": self.validation_,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"asso": self.asso_, "prior": self.prior_}

    def restore(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> AssociationHead:
        super().restore(state, tensors)
        self.asso_ = tensors["asso"].float()
        self.prior_ = tensors["prior"].float()
        return self
