"""Label-free CBM's concept layer (Oikarinen et al., ICLR 2023): a linear projection of the
backbone's features fitted to CLIP's image-concept similarities with cos³, then standardised.

Faithful to ``Trustworthy-ML-Lab/Label-free-CBM`` (``train_cbm.py``, ``similarity.py``); see
:mod:`conceptlab.cbm.methods.lfcbm` for the whole method and where we depart from the code (for
this layer: validation on a real held-out split, and one model as both scorer and backbone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from conceptlab.concepts.bank import ConceptBank, library_provenance

__all__ = ["ProjectionReport", "cos_cubed_similarity", "fit_projection"]


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
