"""Concept layers: embeddings (N, d) -> concept scores (N, C), the first half of every CBM.

Each layer is a small scikit-learn-style object: the constructor stores parameters, ``fit`` does
the data-dependent work (choosing or learning concepts) and leaves the concepts it scores against
in ``bank_``; ``scores(X)`` maps a validated float32 tensor to float32 scores.

- :class:`MarginLayer` -- PCBM's margin (c·x + b)/‖c‖;
- :class:`DotLayer` -- x·c (LaBo, V2C-CBM), optionally on L2-normalised images and over the
  concepts LaBo's submodular selection keeps;
- :class:`ProjectionLayer` -- Label-free CBM's learned, standardised projection (``fit`` learns
  it; the bank then holds w/σ and −μ/σ, so the score is x·v + b);
- :class:`SAEEncoderLayer` -- a sparse autoencoder's encoder (Discover-then-Name).

A fitted layer is rebuilt from its bank (and its SAE) by :meth:`ConceptLayer.restore`, which is
how a saved model comes back without refitting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from conceptlab.cbm.projection import ProjectionReport, fit_projection
from conceptlab.cbm.scores import concept_scores
from conceptlab.concepts.bank import ConceptBank
from conceptlab.concepts.selection import SelectionResult, select_from_bank
from conceptlab.discovery.sae import SparseAutoencoder
from conceptlab.utils import store_params

__all__ = ["ConceptLayer", "DotLayer", "MarginLayer", "ProjectionLayer", "SAEEncoderLayer"]


class ConceptLayer(BaseEstimator):
    """Base class: ``fit(bank, X, y, ...)`` -> self with ``bank_``; ``scores(X)`` -> (N, C)."""

    #: a short description of the score, shown by the app and in provenance
    formula: ClassVar[str] = ""

    def fit(self, bank: ConceptBank, X: torch.Tensor, y: torch.Tensor, class_names: list[str], val: Any = None) -> ConceptLayer:
        self.bank_ = bank
        return self

    def restore(self, bank: ConceptBank, state: Mapping[str, Any] | None = None) -> ConceptLayer:
        """Set the fitted state from a saved bank and the layer's saved :meth:`state`."""
        self.bank_ = bank
        return self

    def state(self) -> dict[str, Any]:
        """JSON-safe fitted state beyond the bank (saved with the model)."""
        return {}

    def save_artifacts(self, directory: Path) -> None:
        """Write fitted objects that are neither the bank nor JSON (e.g. an SAE) into ``directory``."""

    def load_artifacts(self, directory: Path) -> None:
        """Read back what :meth:`save_artifacts` wrote."""

    def _check_fitted(self) -> ConceptBank:
        bank = getattr(self, "bank_", None)
        if bank is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet")
        return bank

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What went into the scores, for provenance."""
        return {"layer": type(self).__name__, "formula": self.formula}


class MarginLayer(ConceptLayer):
    """PCBM's concept scores: the signed distance (c·x + b)/‖c‖ to each concept's hyperplane."""

    formula = "(c·x + b) / ‖c‖"

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        return concept_scores(X, self._check_fitted(), "margin")


class DotLayer(ConceptLayer):
    """x·c on raw (or L2-normalised) image embeddings; with ``selection`` (a dict of
    :func:`~conceptlab.concepts.selection.select_from_bank` settings, e.g. ``{"n_per_class": 5}``)
    ``fit`` keeps only the concepts LaBo's submodular selection picks (``selection_``)."""

    formula = "x·c"

    def __init__(self, normalize_images: bool = False, selection: Mapping[str, Any] | None = None) -> None:
        store_params(self, locals())

    def fit(self, bank, X, y, class_names, val=None) -> DotLayer:
        self.selection_: SelectionResult | None = None
        if self.selection:
            bank, self.selection_ = select_from_bank(bank, X, y, class_names, normalize_images=self.normalize_images, **self.selection)
        self.bank_ = bank
        return self

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        bank = self._check_fitted()
        if self.normalize_images:
            X = torch.nn.functional.normalize(X, dim=1)
        return X @ bank.vectors.T

    def info(self) -> dict[str, Any]:
        out = {**super().info(), "normalize_images": self.normalize_images}
        if getattr(self, "selection_", None) is not None:
            out["concept_selection"] = self.selection_.settings
        return out


class ProjectionLayer(ConceptLayer):
    """Label-free CBM's concept layer: ``fit`` learns W_c to match CLIP's image-concept cos³
    similarities (early-stopped and filtered on validation embeddings, which ``fit`` requires),
    then standardises; the fitted bank holds w_j/σ_j and −μ_j/σ_j, so the score is x·v + b."""

    formula = "standardised projection x·w/σ − μ/σ"

    def __init__(self, steps: int = 1000, lr: float = 1e-3, interpretability_cutoff: float = 0.45, seed: int = 42) -> None:
        store_params(self, locals())

    def fit(self, bank, X, y, class_names, val=None) -> ProjectionLayer:
        if val is None:
            raise ValueError("Label-free CBM learns its concept layer against validation data: pass val_embeddings and val_labels to fit")
        self.bank_, self.report_ = fit_projection(
            bank, X, val[0], steps=self.steps, lr=self.lr, interpretability_cutoff=self.interpretability_cutoff, seed=self.seed,
        )
        return self

    def restore(self, bank, state=None) -> ProjectionLayer:
        self.bank_ = bank
        self.report_ = ProjectionReport(**state["report_"]) if state and state.get("report_") else None
        return self

    def state(self) -> dict[str, Any]:
        report = getattr(self, "report_", None)
        return {"report_": asdict(report) if report is not None else None}

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        bank = self._check_fitted()
        return X @ bank.vectors.T + bank.biases

    def info(self) -> dict[str, Any]:
        out = super().info()
        report = getattr(self, "report_", None)
        if report is not None:
            out["projection"] = {"best_step": report.best_step, "steps_run": report.steps_run, "removed": report.removed}
        return out


class SAEEncoderLayer(ConceptLayer):
    """A sparse autoencoder's encoder ReLU(W_e(x − b_pre) + b_e): one concept per latent.

    ``sae``: a fitted :class:`~conceptlab.discovery.SparseAutoencoder`; without one, ``fit`` loads
    the SAE saved at ``sae_path`` (the ``sae`` concept source writes it into its bank's provenance).
    """

    formula = "SAE encoder ReLU(W_e(x − b_dec) + b_e)"

    def __init__(self, sae: Any = None, sae_path: str | None = None) -> None:
        store_params(self, locals())

    def fit(self, bank, X, y, class_names, val=None) -> SAEEncoderLayer:
        sae = self.sae
        if sae is None and self.sae_path:
            sae = SparseAutoencoder.load(self.sae_path)
        if sae is None:
            raise ValueError("the SAE encoder layer needs a fitted SparseAutoencoder (sae=...) or a bank built by the sae concept source")
        self.sae_ = _check_sae(sae, bank)
        self.bank_ = bank
        return self

    def save_artifacts(self, directory: Path) -> None:
        self.sae_.save(directory / "sae")

    def load_artifacts(self, directory: Path) -> None:
        self.sae_ = _check_sae(SparseAutoencoder.load(directory / "sae"), self._check_fitted())

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return self.sae_.encode(X)


def _check_sae(sae: Any, bank: ConceptBank) -> Any:
    sae._check_fitted()
    if sae.d_sae_ != len(bank):
        raise ValueError(f"the bank has {len(bank)} concepts but the SAE {sae.d_sae_} latents: one concept per latent")
    if sae.d_in_ != bank.dim:
        raise ValueError(f"the bank's vectors have dimension {bank.dim} but the SAE encodes {sae.d_in_}")
    return sae
