"""Discover-then-Name CBM (Rao et al., ECCV 2024): a bias-free sparse linear probe on SAE latents.

Faithful to ``neuroexplicit-saar/Discover-then-Name`` (``scripts/train_linear_probe.py``):

- concept scores = the SAE encoder ReLU(W_e(x − b_pre) + b_e) on **raw** embeddings (all latents,
  dead ones included: the paper does not prune);
- head = ``nn.Linear(n_latents, K, bias=False)`` with PyTorch's default init, trained by Adam on
  CE + λ·mean|W| (``nn.L1Loss`` against zeros: the **mean** over all K·M weights, so λ's scale
  differs from a summed L1), batch 512, 200 epochs, shuffled;
- the training set is split 90/10 at random (seeded) into train / train_val; train_val is only
  logged; **the last epoch is kept** (no early stopping, no model selection);
- defaults ``lr=1e-3``, ``lam=1.0``: the fixed ``probe_config_dict`` for the released RN50 SAE on
  ImageNet / CIFAR-10 / Places365 (the README's Places example uses lr 1e-2, λ 0.1).

The concept bank holds one concept per latent, vector = the latent's unit decoder row, named by
:func:`conceptlab.discovery.name_latents` (names do not change the model; DN-CBM#3). The SAE's
weights are saved with the model, so a loaded DN-CBM needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from conceptlab.cbm.model import ConceptBottleneckModel
from conceptlab.concepts.bank import ConceptBank

__all__ = ["DNCBM", "ProbeHistory", "train_sparse_probe", "coverage"]

_SAE_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")


@dataclass
class ProbeHistory:
    """Per-epoch training loss, train-split accuracy and train_val accuracy of the probe."""

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0


def train_sparse_probe(
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
) -> tuple[torch.Tensor, ProbeHistory]:
    """DN-CBM's probe: returns (W (K, M), history). No bias; CE + λ·mean|W|; last epoch kept."""
    if scores.ndim != 2 or labels.ndim != 1 or len(scores) != len(labels):
        raise ValueError(f"scores must be (N, M) and labels (N,); got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for value, name in ((lam, "lam"), (lr, "lr")):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {value}")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
        probe = torch.nn.Linear(scores.shape[1], int(n_classes), bias=False)
    probe = probe.to(dev)
    optimizer = torch.optim.Adam(probe.parameters(), lr=float(lr))
    criterion = torch.nn.CrossEntropyLoss()
    history = ProbeHistory(n_train=len(train_idx), n_val=n_val)
    for _ in range(int(epochs)):
        probe.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=generator)]
        total = 0.0
        for start in range(0, len(perm), int(batch_size)):
            batch = perm[start : start + int(batch_size)].to(dev)
            optimizer.zero_grad()
            loss = criterion(probe(X[batch]), y[batch]) + float(lam) * probe.weight.abs().mean()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        history.loss.append(total / len(perm))
        with torch.no_grad():
            train_idx_dev = train_idx.to(dev)
            history.train_accuracy.append(float((probe(X[train_idx_dev]).argmax(1) == y[train_idx_dev]).float().mean()))
            if n_val:
                val_idx_dev = val_idx.to(dev)
                history.val_accuracy.append(float((probe(X[val_idx_dev]).argmax(1) == y[val_idx_dev]).float().mean()))
    return probe.weight.detach().cpu().clone(), history


def coverage(scores: torch.Tensor, weight: torch.Tensor, energies: Sequence[float] = (0.9, 0.95, 0.99), absolute: bool = False) -> pd.DataFrame:
    """DN-CBM's per-image coverage: how many concepts, sorted by contribution W[ŷ]·c(x) to the
    predicted class, reach each ``energy`` share of the total positive (or absolute) contribution.

    Returns one row per image with columns ``predicted`` and ``coverage@{energy}``; an image
    whose relevant total is 0 gets 0.
    """
    logits = scores @ weight.T
    predicted = logits.argmax(1)
    contributions = scores * weight[predicted]
    values = contributions.abs() if absolute else contributions.clamp_min(0)
    ordered = values.sort(dim=1, descending=True).values
    cumulative = ordered.cumsum(1)
    total = cumulative[:, -1:]
    frame = {"predicted": predicted.numpy()}
    for energy in energies:
        reached = cumulative >= float(energy) * total - 1e-12 * total.abs()
        count = reached.float().argmax(1) + 1
        count = torch.where(total.squeeze(1) > 0, count, torch.zeros_like(count))
        frame[f"coverage@{energy}"] = count.numpy()
    return pd.DataFrame(frame)


class DNCBM(ConceptBottleneckModel):
    """Discover-then-Name CBM over a fitted :class:`~conceptlab.discovery.SparseAutoencoder`.

    Build it with :meth:`from_sae` (the usual way) or give a bank of one concept per latent and
    the SAE. ``fit(embeddings, labels)`` encodes raw embeddings with the SAE and trains the probe.

    Args:
        bank: one concept per SAE latent, in latent order (vector = decoder direction).
        sae: the fitted SparseAutoencoder whose encoder gives the concept scores.
        class_names: class names in label order.
        lam: λ of the mean-|W| penalty (DN-CBM fixed config: 1.0).
        lr: Adam learning rate of the probe (DN-CBM fixed config: 1e-3).
        epochs: probe epochs (200).
        batch_size: probe batch size (512).
        val_fraction: share of the training rows held out as train_val, logged only (0.1).
        seed: the split, shuffling and the probe's init.
        device: None -> CUDA when present.
    """

    def __init__(
        self,
        bank: ConceptBank,
        sae: Any = None,
        class_names: Sequence[str] | None = None,
        lam: float = 1.0,
        lr: float = 1e-3,
        epochs: int = 200,
        batch_size: int = 512,
        val_fraction: float = 0.1,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        super().__init__(bank=bank, class_names=class_names, score_mode="margin", seed=seed)
        self.sae = sae
        self.lam = lam
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.device = device

    @classmethod
    def _param_names(cls) -> list[str]:
        # concept scores are always the SAE encoder's: the base class's score_mode is not a parameter here
        return [name for name in super()._param_names() if name != "score_mode"]

    @classmethod
    def from_sae(cls, sae: Any, names: Any = None, space: str | None = None, **params: Any) -> "DNCBM":
        """A DN-CBM whose bank is the SAE's named decoder directions.

        ``names``: a :class:`~conceptlab.discovery.LatentNames` (its unique names), a list of one
        name per latent, or None (``"latent 0"``, ``"latent 1"``, ...).
        """
        sae._check_fitted()
        if names is not None and hasattr(names, "to_bank"):
            if len(names) != sae.d_sae_:
                raise ValueError(f"{len(names)} latent names for an SAE with {sae.d_sae_} latents")
            bank = names.to_bank(space=space)
        else:
            labels = [f"latent {i}" for i in range(sae.d_sae_)] if names is None else [str(n) for n in names]
            if len(labels) != sae.d_sae_:
                raise ValueError(f"{len(labels)} latent names for an SAE with {sae.d_sae_} latents")
            bank = ConceptBank.from_tensors(labels, sae.decoder_directions, space or "sae-input",
                                            provenance=[{"kind": "sae_decoder", "latent": i} for i in range(sae.d_sae_)])
        return cls(bank=bank, sae=sae, **params)

    # -- scores ----------------------------------------------------------------------------------

    def _check_sae(self) -> Any:
        if self.sae is None:
            raise ValueError("DNCBM needs a fitted SparseAutoencoder (sae=...); build it with DNCBM.from_sae(sae, names)")
        self.sae._check_fitted()
        if self.sae.d_sae_ != len(self.bank):
            raise ValueError(f"the bank has {len(self.bank)} concepts but the SAE {self.sae.d_sae_} latents: one concept per latent")
        if self.sae.d_in_ != self.bank.dim:
            raise ValueError(f"the bank's vectors have dimension {self.bank.dim} but the SAE encodes {self.sae.d_in_}")
        return self.sae

    def _compute_scores(self, X: torch.Tensor) -> torch.Tensor:
        return self._check_sae().encode(X)

    # -- fitting ---------------------------------------------------------------------------------

    def _fit(self, X: torch.Tensor, scores: torch.Tensor, y: torch.Tensor) -> None:
        weight, history = train_sparse_probe(
            scores, y, self.n_classes_, lam=self.lam, lr=self.lr, epochs=self.epochs, batch_size=self.batch_size,
            val_fraction=self.val_fraction, seed=self.seed, device=self.device,
        )
        self.weight_ = weight.float()
        self.bias_ = torch.zeros(self.n_classes_)  # bias-free by construction
        self.history_ = history
        self.train_val_accuracy_ = history.val_accuracy[-1] if history.val_accuracy else None

    def _provenance_extra(self) -> dict[str, Any]:
        return {
            "probe": {"loss": "CE + lam * mean|W|", "lam": self.lam, "lr": self.lr, "epochs": self.epochs,
                      "batch_size": self.batch_size, "val_fraction": self.val_fraction, "optimizer": "Adam",
                      "bias": False, "selection": "last epoch"},
            "sae": getattr(self.sae, "provenance_", None),
        }

    # -- reading ---------------------------------------------------------------------------------

    def sparsity(self, tolerances: Sequence[float] = (0.0, 1e-9, 1e-6, 1e-3, 1e-1)) -> dict[str, int]:
        """Weights with |w| ≤ tol, for DN-CBM's logged tolerances; plus concepts with any weight."""
        self._check_fitted()
        W = self.weight_.abs()
        out = {f"zero@{tol:g}": int((W <= tol).sum()) for tol in tolerances}
        out["n_weights"] = int(W.numel())
        out["concepts_used@1e-3"] = int((W > 1e-3).any(0).sum())
        return out

    def coverage(self, embeddings: Any, energies: Sequence[float] = (0.9, 0.95, 0.99), absolute: bool = False) -> pd.DataFrame:
        """Per-image coverage (see :func:`coverage`)."""
        self._check_fitted()
        X = self._check_embeddings(embeddings)
        return coverage(self._compute_scores(X), self.weight_, energies, absolute)

    # -- persistence -----------------------------------------------------------------------------

    def _json_params(self) -> dict[str, Any]:
        from conceptlab.concepts.concept import jsonable

        return jsonable({k: v for k, v in self.get_params().items() if k not in ("bank", "sae")})

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        sae = self._check_sae().sae_
        return {f"sae.{name}": getattr(sae, name).detach().cpu() for name in _SAE_TENSORS}

    def _fitted_state(self) -> dict[str, Any]:
        sae = self._check_sae()
        return {
            "sae_config_": sae.sae_.cfg.to_dict(),
            "train_val_accuracy_": getattr(self, "train_val_accuracy_", None),
            "probe_history_": {"loss": self.history_.loss, "train_accuracy": self.history_.train_accuracy,
                               "val_accuracy": self.history_.val_accuracy} if getattr(self, "history_", None) else None,
        }

    def _load_extra(self, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
        from sae_lens import SAE

        from conceptlab.discovery.sae import SparseAutoencoder

        cfg = dict(self.sae_config_)
        cfg["device"] = "cpu"
        with torch.random.fork_rng(devices=[]):
            sae = SAE.from_dict(cfg)
        sae.load_state_dict({name: tensors[f"sae.{name}"] for name in _SAE_TENSORS})
        self.sae = SparseAutoencoder.from_sae(sae.eval())
        history = getattr(self, "probe_history_", None)
        if history:
            self.history_ = ProbeHistory(loss=history["loss"], train_accuracy=history["train_accuracy"],
                                         val_accuracy=history["val_accuracy"])
