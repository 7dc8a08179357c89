"""Discover-then-Name CBM (Rao et al., ECCV 2024): a bias-free sparse linear probe on SAE latents.

Faithful to ``neuroexplicit-saar/Discover-then-Name`` (``scripts/train_linear_probe.py``):

- concept scores = the SAE encoder ReLU(W_e(x − b_pre) + b_e) on **raw** embeddings (all latents,
  dead ones included: the paper does not prune);
- head = a bias-free sparse linear layer (the code's "linear probe"),
  :class:`~conceptlab.cbm.heads.SparseLinearHead`: CE + λ·mean|W|, Adam, batch 512, 200 epochs,
  last epoch kept;
- defaults ``lr=1e-3``, ``lam=1.0``: the fixed ``probe_config_dict`` for the released RN50 SAE on
  ImageNet / CIFAR-10 / Places365 (the README's Places example uses lr 1e-2, λ 0.1).

The concept bank holds one concept per latent, vector = the latent's unit decoder row, named by
:func:`conceptlab.discovery.name_latents` (names do not change the model; DN-CBM#3). The SAE's
is saved with the model (in sae-lens's format), so a loaded DN-CBM needs nothing else.

Recipe: :class:`~conceptlab.cbm.layers.SAEEncoderLayer` + :class:`~conceptlab.cbm.heads.SparseLinearHead`.

Where we depart from the code: :meth:`DNCBM.coverage` counts the concepts needed to reach each
energy level, which is one more than the 0-based position DN-CBM's ``ImageWiseCoverageEnergyPercent``
logs; :func:`conceptlab.metrics.coverage` with ``zero_based=True`` gives the logged numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from sklearn.base import clone

from conceptlab.cbm.heads import SparseLinearHead
from conceptlab.cbm.layers import SAEEncoderLayer
from conceptlab.cbm.model import ConceptBottleneckModel
from conceptlab.concepts.bank import ConceptBank
from conceptlab.registry import register_method
from conceptlab.utils import params_for, store_params

__all__ = ["DNCBM", "coverage"]


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


@register_method("dncbm", description="DN-CBM: bias-free sparse linear head on SAE activations (needs source = \"sae\")")
class DNCBM(ConceptBottleneckModel):
    """Discover-then-Name CBM over a fitted :class:`~conceptlab.discovery.SparseAutoencoder`.

    Build it with :meth:`from_sae` (the usual way), or give a bank of one concept per latent and
    the SAE, or a bank made by the ``sae`` concept source (its provenance names the saved SAE).
    ``fit(embeddings, labels)`` encodes raw embeddings with the SAE and trains the head.

    Args:
        bank: one concept per SAE latent, in latent order (vector = decoder direction).
        sae: the fitted SparseAutoencoder whose encoder gives the concept scores (a fitted input:
            ``sklearn.base.clone`` shares it, it is not refitted).
        class_names: class names in label order.
        lam: λ of the mean-|W| penalty (DN-CBM fixed config: 1.0).
        lr: Adam learning rate of the head (DN-CBM fixed config: 1e-3).
        epochs: head epochs (200).
        batch_size: head batch size (512).
        val_fraction: share of the training rows held out as train_val, logged only (0.1).
        seed: the split, shuffling and the head's init.
        device: None -> CUDA when present.
    """

    display_name = "DN-CBM"
    how_it_predicts = (
        "A **Discover-then-Name CBM** reads the concepts a sparse autoencoder found in the embeddings (each latent named "
        "after its closest vocabulary word) and weighs their non-negative activations with a bias-free sparse linear head: "
        "each class's logit is Σ activation × weight."
    )
    score_units = "SAE activation (≥ 0)"

    bank_kind = "sae"
    artifact_params = ("sae",)

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
        store_params(self, locals())

    def __sklearn_clone__(self) -> DNCBM:
        # the SAE is a fitted input, like a frozen estimator: the clone shares it
        params = {k: clone(v, safe=False) for k, v in self.get_params(deep=False).items() if k != "sae"}
        return type(self)(sae=self.sae, **params)

    @classmethod
    def from_sae(cls, sae: Any, names: Any = None, space: str | None = None, **params: Any) -> DNCBM:
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

    def _make_layer(self) -> SAEEncoderLayer:
        path = self.bank.provenance.get("sae_path") if isinstance(self.bank, ConceptBank) else None
        return SAEEncoderLayer(sae=self.sae, sae_path=path)

    def _make_head(self, n_concepts: int, n_classes: int) -> SparseLinearHead:
        return SparseLinearHead(**params_for(self, SparseLinearHead))

    def _restored(self) -> None:
        self.sae = self.concept_layer_.sae_  # a loaded model carries its SAE

    # -- reading ---------------------------------------------------------------------------------

    @property
    def history_(self):
        self._check_fitted()
        return self.head_.history_

    @property
    def train_val_accuracy_(self) -> float | None:
        history = self.history_
        return history.val_accuracy[-1] if history is not None and history.val_accuracy else None

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
