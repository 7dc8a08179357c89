"""Unlearning traces: fine-tune a concept away, then see whether its concept vector moved.

ConceptVectors' claim: gradient-based unlearning (GA, GD, NPO, NPO-KL) changes the model's
answers but barely moves the concept vector -- the knowledge is suppressed, not removed -- while
Needle, which edits only that vector, removes it. This module runs those methods (loss callables,
swappable) on a :class:`LanguageModel` and measures the intrinsic diff of a vector before/after.

Losses (``forget.py``; NLL is the per-sequence token **sum** where NPO uses it, the token mean
for GA/GD as the Hugging Face loss is):

| name | loss |
|---|---|
| ``ga`` | ``-NLL(forget)`` |
| ``gd`` | ``-NLL(forget) + 1.5 * NLL(retain)`` (1.5 hard-coded there, ``retain_coeff`` here) |
| ``npo`` | ``-(2/beta) * log sigmoid(beta * (NLL_theta(forget) - NLL_ref(forget)))``, beta 0.1 |
| ``npo_kl`` | ``npo_coeff * NPO + kl_coeff * KL(ref || theta)`` on retain logits |
| ``needle`` | ``ga`` on one value vector only: N(0, 0.1^2) noise added to it first, then a gradient mask |

Intrinsic diff (:func:`intrinsic_diff`): cosine and L2 distance of the vector before/after, and
the Jaccard similarity of its top-k projected tokens, the "after" projected with the model after
unlearning (``forget.py``'s convention).

Where we depart from the official defaults (lr 5e-5, 10 epochs, batch 1 x 16 accumulation,
paged AdamW, bf16, warm-up of one epoch; Needle lr 2e-1 with the run script's batch 4 x 8): a
tiny model has no use for paged optimisers or bf16, so plain AdamW in float32 with a fixed step
count, no warm-up, and learning rates scaled to the tiny LM (see :data:`DEFAULTS`); Needle's
weight decay is applied to its column only (the official code decays the whole matrix while only
the column has gradients).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from conceptlab.backbones import LanguageModel

__all__ = [
    "DEFAULTS",
    "LOSSES",
    "METHODS",
    "UnlearningRun",
    "grad_ascent",
    "grad_diff",
    "intrinsic_diff",
    "npo",
    "npo_kl",
    "unlearn",
]


@dataclass
class Batch:
    """Right-padded token ids with a mask of the scored positions (targets, i.e. ids[:, 1:])."""

    ids: torch.Tensor
    mask: torch.Tensor


def _encode(lm: LanguageModel, texts: Sequence[str]) -> list[list[int]]:
    eos = lm.tokenizer.eos_token_id
    return [ids + ([eos] if eos is not None else []) for ids in lm.encode(texts)]


def _batch(sequences: Sequence[Sequence[int]], pad: int) -> Batch:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width - 1))
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq))
        mask[row, : len(seq) - 1] = 1
    return Batch(ids, mask)


def _token_nll(lm: LanguageModel, batch: Batch) -> torch.Tensor:
    """[batch, pos-1] NLL of every next token (right padding under a causal mask needs no attention mask)."""
    logits = lm.logits(batch.ids)[:, :-1].float()
    target = batch.ids[:, 1:].to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none").view(target.shape) * batch.mask.to(logits.device)


def _mean_nll(lm: LanguageModel, batch: Batch) -> torch.Tensor:
    return _token_nll(lm, batch).sum() / batch.mask.sum().clamp_min(1)


def _sum_nll(lm: LanguageModel, batch: Batch) -> torch.Tensor:
    return _token_nll(lm, batch).sum(dim=1)


@dataclass
class LossContext:
    """What a loss callable sees: the model being trained, the frozen reference, the batches and settings."""

    lm: LanguageModel
    ref: LanguageModel
    forget: Batch
    retain: Batch
    beta: float = 0.1
    retain_coeff: float = 1.5
    npo_coeff: float = 1.0
    kl_coeff: float = 1.0


def grad_ascent(ctx: LossContext) -> torch.Tensor:
    """``-NLL(forget)``."""
    return -_mean_nll(ctx.lm, ctx.forget)


def grad_diff(ctx: LossContext) -> torch.Tensor:
    """``-NLL(forget) + retain_coeff * NLL(retain)``."""
    return -_mean_nll(ctx.lm, ctx.forget) + ctx.retain_coeff * _mean_nll(ctx.lm, ctx.retain)


def _npo_term(ctx: LossContext) -> torch.Tensor:
    with torch.no_grad():
        ref = _sum_nll(ctx.ref, ctx.forget)
    return (-2.0 / ctx.beta * F.logsigmoid(ctx.beta * (_sum_nll(ctx.lm, ctx.forget) - ref))).mean()


def npo(ctx: LossContext) -> torch.Tensor:
    """``-(2/beta) log sigmoid(beta (NLL_theta - NLL_ref))`` on the forget batch."""
    return _npo_term(ctx)


def npo_kl(ctx: LossContext) -> torch.Tensor:
    """``npo_coeff * NPO + kl_coeff * KL(ref || theta)`` on the retain batch's next-token distributions."""
    logp = torch.log_softmax(ctx.lm.logits(ctx.retain.ids)[:, :-1].float(), dim=-1)
    with torch.no_grad():
        ref = torch.log_softmax(ctx.ref.logits(ctx.retain.ids)[:, :-1].float(), dim=-1)
    kl = (torch.exp(ref) * (ref - logp)).sum(-1)
    kl = (kl * ctx.retain.mask).sum() / ctx.retain.mask.sum().clamp_min(1)
    return ctx.npo_coeff * _npo_term(ctx) + ctx.kl_coeff * kl


#: loss name -> callable(LossContext) -> scalar loss
LOSSES: dict[str, Callable[[LossContext], torch.Tensor]] = {"ga": grad_ascent, "gd": grad_diff, "npo": npo, "npo_kl": npo_kl}

#: method -> (loss, what trains: "full" or "needle")
METHODS: dict[str, tuple[str, str]] = {"ga": ("ga", "full"), "gd": ("gd", "full"), "npo": ("npo", "full"), "npo_kl": ("npo_kl", "full"), "needle": ("ga", "needle")}

#: per-method settings scaled to the tiny FactsWorld LM (the official ones are for 7B models)
DEFAULTS: dict[str, dict[str, Any]] = {
    "ga": {"lr": 2e-4, "steps": 30},
    "gd": {"lr": 2e-4, "steps": 30},
    "npo": {"lr": 2e-4, "steps": 30},
    "npo_kl": {"lr": 2e-4, "steps": 30},
    "needle": {"lr": 1e-2, "steps": 30},
}


@dataclass
class UnlearningRun:
    """The model after unlearning (a copy: the original is untouched) and the run's record."""

    method: str
    model: LanguageModel
    losses: list[float]
    params: dict[str, Any] = field(default_factory=dict)


def unlearn(
    lm: LanguageModel,
    forget: Sequence[str],
    retain: Sequence[str] = (),
    method: str = "npo_kl",
    loss: Callable[[LossContext], torch.Tensor] | None = None,
    target: tuple[int, int] | None = None,
    steps: int | None = None,
    lr: float | None = None,
    batch_size: int = 4,
    beta: float = 0.1,
    retain_coeff: float = 1.5,
    npo_coeff: float = 1.0,
    kl_coeff: float = 1.0,
    weight_decay: float = 0.01,
    noise_std: float = 0.1,
    seed: int = 999,
    progress: bool = True,
) -> UnlearningRun:
    """Unlearn the ``forget`` texts from a copy of ``lm``.

    Args:
        method: ``"ga"``, ``"gd"``, ``"npo"``, ``"npo_kl"`` (all parameters train) or ``"needle"``
            (only value vector ``target = (layer, index)`` trains, after ``N(0, noise_std^2)`` noise).
        loss: a callable ``loss(LossContext) -> scalar`` to use instead of the method's.
        retain: texts for the retain terms (GD, NPO-KL); cycled to the forget set's length.
        steps / lr: default per method from :data:`DEFAULTS`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown unlearning method {method!r}; known: {', '.join(METHODS)}")
    if not forget:
        raise ValueError("unlearn needs at least one forget text")
    loss_name, trains = METHODS[method]
    loss_fn = loss or LOSSES[loss_name]
    if trains == "needle" and target is None:
        raise ValueError("Needle edits one concept vector: pass target=(layer, index)")
    if loss_name in ("gd", "npo_kl") and loss is None and not retain:
        raise ValueError(f"{method} needs retain texts")
    steps = int(DEFAULTS[method]["steps"] if steps is None else steps)
    lr = float(DEFAULTS[method]["lr"] if lr is None else lr)
    # right padding is never attended to (causal mask) nor scored; EOS (not the pad id) spares transformers' padding warning
    pad = lm.tokenizer.eos_token_id if lm.tokenizer.eos_token_id is not None else (lm.tokenizer.pad_token_id or 0)
    forget_ids, retain_ids = _encode(lm, forget), _encode(lm, retain) if retain else []
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = lm.clone()
    ref = lm
    model.model.train(False)  # no dropout: the tiny LM trains without it
    for p in model.model.parameters():
        p.requires_grad_(trains == "full")
    column = None
    if trains == "needle":
        layer, index = target
        weight, orientation = model.value_parameter(layer)
        weight.requires_grad_(True)
        mask = torch.zeros_like(weight)
        if orientation == "row":
            mask[index] = 1
        else:
            mask[:, index] = 1
        noise = torch.randn(model.d_model, generator=generator) * noise_std
        with torch.no_grad():
            (weight.data[index] if orientation == "row" else weight.data[:, index]).add_(noise.to(weight.device, weight.dtype))
        weight.register_hook(lambda grad: grad * mask)
        column = (weight, orientation, index)
        parameters = [weight]
        optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    else:
        parameters = [p for p in model.model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    for _ in tqdm(range(steps), desc=f"unlearning ({method})", disable=not progress):
        chosen = torch.randint(len(forget_ids), (batch_size,), generator=generator).tolist()
        forget_batch = _batch([forget_ids[i] for i in chosen], pad)
        if retain_ids:
            picked = torch.randint(len(retain_ids), (batch_size,), generator=generator).tolist()
            retain_batch = _batch([retain_ids[i] for i in picked], pad)
        else:
            retain_batch = forget_batch
        ctx = LossContext(model, ref, forget_batch, retain_batch, beta=beta, retain_coeff=retain_coeff, npo_coeff=npo_coeff, kl_coeff=kl_coeff)
        value = loss_fn(ctx)
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        if column is not None and weight_decay:
            weight, orientation, index = column
            with torch.no_grad():
                view = weight.data[index] if orientation == "row" else weight.data[:, index]
                view.mul_(1 - lr * weight_decay)
        losses.append(float(value.detach()))
    for p in model.model.parameters():
        p.requires_grad_(False)
    model.model.eval()
    params = {
        "method": method, "loss": getattr(loss_fn, "__name__", "custom"), "trains": trains, "target": list(target) if target else None,
        "steps": steps, "lr": lr, "batch_size": batch_size, "beta": beta, "retain_coeff": retain_coeff, "npo_coeff": npo_coeff,
        "kl_coeff": kl_coeff, "weight_decay": weight_decay, "noise_std": noise_std if trains == "needle" else None, "seed": seed,
        "n_forget": len(forget), "n_retain": len(retain),
    }
    return UnlearningRun(method, model, losses, params)


@torch.no_grad()
def intrinsic_diff(before: LanguageModel, after: LanguageModel, layer: int, index: int, k: int = 200, projection: str = "raw") -> dict[str, float]:
    """Cosine, L2 distance and top-``k`` Jaccard of value vector (``layer``, ``index``) before/after.

    ``T(v)`` is projected with ``before``'s unembedding, ``T'(v')`` with ``after``'s."""
    v, w = before.value_vector(layer, index), after.value_vector(layer, index)
    cosine = float(F.cosine_similarity(v[None], w[None]).clamp(max=1.0))
    k = min(k, before.d_vocab)
    top_before = set(before.project(v[None], projection)[0].topk(k).indices.tolist())
    top_after = set(after.project(w[None], projection)[0].topk(k).indices.tolist())
    jaccard = len(top_before & top_after) / len(top_before | top_after)
    return {"cosine": cosine, "l2": float((v - w).norm()), "jaccard": jaccard, "k": k, "projection": projection}
