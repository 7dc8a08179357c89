"""Label-free CBM (Oikarinen et al., ICLR 2023): a learned concept layer fitted to CLIP's
image-concept similarities with cos³, standardised, under a sparse elastic-net head.

Faithful to ``Trustworthy-ML-Lab/Label-free-CBM`` (``train_cbm.py``, ``similarity.py``):

- targets P = norm(image) · norm(text concept)ᵀ (N, M);
- W_c = ``nn.Linear(d, M, bias=False)`` (PyTorch's default init) on the backbone features, Adam
  lr 1e-3, up to 1000 full-batch steps (``proj_batch_size`` 50 000 ≥ N here);
- loss = −mean_concepts cos³(P[:, j], (f W_cᵀ)[:, j]): both columns centred over the batch,
  cubed, L2-normalised over samples, dot product (``cos_similarity_cubed_single``);
- every 50 steps the loss on **validation** is checked; training stops at the first check that
  does not improve and the best weights are kept;
- filter 5: concepts whose validation cos³ is ≤ 0.45 (``interpretability_cutoff``) are dropped;
- the projections are standardised with the training mean and std;
- the head is an elastic net with α = 0.99 and λ = 7e-4 (CIFAR-10's flags), LF-CBM's
  mean-CE + λ(α‖W‖₁ + ½(1−α)‖W‖²) objective, here through conceptlab's
  :class:`~conceptlab.cbm.heads.ElasticNetHead` (solver ``"proximal"`` minimises that objective;
  ``"glm-saga"`` runs LF-CBM's own solver).

What we do differently, on purpose: the validation split is a **real held-out split** (LF-CBM#8:
the code early-stops and filters on the test set); the concept scorer and the backbone are the
same model (LF-CBM pairs e.g. a ResNet backbone with a CLIP ViT-B/16 scorer), because conceptlab
methods read one space from the store.

The learned layer is stored as a concept bank of kind ``learned_projection``: concept j has
vector w_j/σ_j and bias −μ_j/σ_j, so its score x·vector + bias is exactly the standardised
projection, and save/load need nothing beyond the bank and the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from conceptlab.cbm.heads import ElasticNetHead
from conceptlab.cbm.model import ConceptBottleneckModel
from conceptlab.concepts.bank import ConceptBank, library_provenance

__all__ = ["LFCBM", "ProjectionReport", "cos_cubed_similarity", "fit_projection"]


def cos_cubed_similarity(targets: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """LF-CBM's per-concept cos³ similarity of two (N, M) matrices, (M,)."""
    a = targets - targets.mean(0, keepdim=True)
    b = outputs - outputs.mean(0, keepdim=True)
    a, b = a**3, b**3
    a = a / a.norm(dim=0, keepdim=True).clamp_min(1e-30)
    b = b / b.norm(dim=0, keepdim=True).clamp_min(1e-30)
    return (a * b).sum(0)


@dataclass
class ProjectionReport:
    """How the projection went: the step kept, the validation losses, per-concept validation cos³,
    and the concepts filter 5 removed (with their cos³)."""

    best_step: int
    steps_run: int
    val_loss: list[float] = field(default_factory=list)
    val_similarity: dict[str, float] = field(default_factory=dict)
    removed: dict[str, float] = field(default_factory=dict)


def fit_projection(
    text_bank: ConceptBank,
    embeddings: Any,
    val_embeddings: Any,
    steps: int = 1000,
    lr: float = 1e-3,
    check_every: int = 50,
    interpretability_cutoff: float = 0.45,
    seed: int = 42,
) -> tuple[ConceptBank, ProjectionReport]:
    """Train W_c on (embeddings → CLIP similarities to ``text_bank``), early-stopped on validation;
    returns the standardised learned-projection bank of the concepts that pass filter 5."""
    X = torch.as_tensor(np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings, dtype=np.float32))
    Xv = torch.as_tensor(np.asarray(val_embeddings.detach().cpu() if isinstance(val_embeddings, torch.Tensor) else val_embeddings, dtype=np.float32))
    if X.ndim != 2 or Xv.ndim != 2 or X.shape[1] != text_bank.dim or Xv.shape[1] != text_bank.dim:
        raise ValueError(f"embeddings must be (N, {text_bank.dim}) like the text bank; got {tuple(X.shape)} and {tuple(Xv.shape)}")
    T = torch.nn.functional.normalize(text_bank.vectors, dim=1)
    P = torch.nn.functional.normalize(X, dim=1) @ T.T
    Pv = torch.nn.functional.normalize(Xv, dim=1) @ T.T
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        layer = torch.nn.Linear(X.shape[1], len(text_bank), bias=False)
    optimizer = torch.optim.Adam(layer.parameters(), lr=float(lr))
    best_weights, best_loss, best_step, history = layer.weight.detach().clone(), float("inf"), 0, []
    step = 0
    for step in range(int(steps)):
        loss = -cos_cubed_similarity(P, layer(X)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % int(check_every) == 0 or step == int(steps) - 1:
            with torch.no_grad():
                val_loss = float(-cos_cubed_similarity(Pv, layer(Xv)).mean())
            history.append(val_loss)
            if step == 0 or val_loss < best_loss:
                best_loss, best_step, best_weights = val_loss, step, layer.weight.detach().clone()
            else:
                break
    with torch.no_grad():
        val_sim = cos_cubed_similarity(Pv, Xv @ best_weights.T)
        train_proj = X @ best_weights.T
    keep = (val_sim > float(interpretability_cutoff)).nonzero().flatten().tolist()
    names = text_bank.names
    report = ProjectionReport(
        best_step=int(best_step), steps_run=int(step) + 1, val_loss=history,
        val_similarity={n: float(s) for n, s in zip(names, val_sim.tolist())},
        removed={names[j]: float(val_sim[j]) for j in range(len(names)) if j not in set(keep)},
    )
    if not keep:
        raise ValueError(f"no concept passes the interpretability cut-off {interpretability_cutoff} (best validation cos³ {float(val_sim.max()):.3f})")
    mean, std = train_proj.mean(0), train_proj.std(0).clamp_min(1e-12)
    vectors = best_weights[keep] / std[keep, None]
    biases = -(mean[keep] / std[keep])
    provenance = [
        {"kind": "learned_projection", "source_concept": names[j], "val_cos3": float(val_sim[j]), "train_mean": float(mean[j]), "train_std": float(std[j])}
        for j in keep
    ]
    bank = ConceptBank.from_tensors(
        [names[j] for j in keep], vectors, text_bank.space, biases, provenance=provenance,
        class_links=[text_bank[j].class_links for j in keep],
        bank_provenance=library_provenance(seed=seed, builder="lfcbm.fit_projection", steps=steps, lr=lr, best_step=best_step, cutoff=interpretability_cutoff),
    )
    return bank, report


class LFCBM(ConceptBottleneckModel):
    """Label-free CBM: standardised learned concept scores and a sparse elastic-net head.

    Build it with :meth:`from_text_bank` (which fits the projection); ``fit`` then trains the head.
    The bank must be a learned-projection bank: scores are x·vector + bias (the standardised
    projections), not PCBM's margin.

    Args:
        bank: from :func:`fit_projection`.
        class_names: class names in label order.
        lam: λ (LF-CBM CIFAR-10: 7e-4; CUB 2e-4; Places 3e-4; ImageNet 1e-4).
        alpha: L1 ratio (0.99).
        solver: ``"proximal"`` (default) or ``"glm-saga"`` (see :class:`~conceptlab.cbm.heads.ElasticNetHead`).
        tol, max_iter: the proximal solver's stopping rule.
        seed, device: as elsewhere.
    """

    def __init__(
        self,
        bank: ConceptBank,
        class_names: Sequence[str] | None = None,
        lam: float = 7e-4,
        alpha: float = 0.99,
        solver: str = "proximal",
        tol: float = 1e-5,
        max_iter: int = 20000,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        super().__init__(bank=bank, class_names=class_names, score_mode="dot", seed=seed)
        self.lam = lam
        self.alpha = alpha
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.device = device

    @classmethod
    def _param_names(cls) -> list[str]:
        return [name for name in super()._param_names() if name != "score_mode"]

    @classmethod
    def from_text_bank(
        cls,
        text_bank: ConceptBank,
        embeddings: Any,
        val_embeddings: Any,
        proj_steps: int = 1000,
        proj_lr: float = 1e-3,
        interpretability_cutoff: float = 0.45,
        **params: Any,
    ) -> "LFCBM":
        """Fit the projection (early-stopped and filtered on ``val_embeddings``) and return an
        unfitted LF-CBM over it; the :class:`ProjectionReport` is ``model.projection_``."""
        bank, report = fit_projection(
            text_bank, embeddings, val_embeddings, steps=proj_steps, lr=proj_lr,
            interpretability_cutoff=interpretability_cutoff, seed=params.get("seed", 42),
        )
        model = cls(bank=bank, **params)
        model.projection_ = report
        return model

    def _compute_scores(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.bank.vectors.T + self.bank.biases

    def _fit(self, X: torch.Tensor, scores: torch.Tensor, y: torch.Tensor) -> None:
        head = ElasticNetHead(
            lam=self.lam, alpha=self.alpha, loss="multinomial", solver=self.solver, standardize=False,
            tol=self.tol, max_iter=self.max_iter, seed=self.seed, device=self.device,
        ).fit(scores.double().numpy(), y.numpy(), n_classes=self.n_classes_)
        self.weight_ = torch.as_tensor(head.coef_, dtype=torch.float32)
        self.bias_ = torch.as_tensor(head.intercept_, dtype=torch.float32)
        self.head_info_ = {k: v for k, v in head.fit_info_.items() if isinstance(v, (int, float, str, bool))}

    def _provenance_extra(self) -> dict[str, Any]:
        report = getattr(self, "projection_", None)
        extra = {"lam": self.lam, "alpha": self.alpha, "solver": self.solver, "head_info": self.head_info_}
        if report is not None:
            extra["projection"] = {"best_step": report.best_step, "steps_run": report.steps_run, "removed": report.removed}
        return extra

    def _fitted_state(self) -> dict[str, Any]:
        return {"head_info_": self.head_info_}
