"""Layer taps: read (and differentiate through) any named layer of a backbone, pooled to one vector.

One interface for three kinds of model, so captures in the store and TCAV gradients share code:

- an image-text backbone (open_clip): layers are module names of ``backbone.model`` under
  ``visual.`` (``visual.layer3``, ``visual.transformer.resblocks.1``); the forward pass is
  ``model.encode_image`` on a preprocessed batch;
- a :class:`~conceptlab.backbones.language_model.LanguageModel`: layers are its hook points
  (``blocks.1.hook_resid_post``, ``blocks.0.hook_mlp_out``, ...); the forward pass gives logits;
- any other backbone with ``model`` (a torch module) and ``forward_tokens(batch)`` (the sentence
  encoder of :mod:`conceptlab.backbones.sentence_encoder`): layers are module names of ``model``.

Pooling turns a layer's activation into one vector per input: ``mean`` (over spatial positions or
over a text's real tokens), ``cls`` (the first token), ``last`` (a text's last real token) or
``flatten`` (everything, what captum's TCAV uses). The gradient that goes with a pooled vector is
the derivative along a perturbation that moves the pooled vector by ``v``: for ``mean`` that adds
``v`` at every position, so its gradient is the *sum* of the per-position gradients; for ``cls`` /
``last`` it is the gradient at that one position; for ``flatten`` the flattened gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

__all__ = ["POOLS", "TokenBatch", "forward_with_tap", "layer_kind", "layer_names", "pool_activation", "pool_gradient"]

POOLS = ("mean", "cls", "last", "flatten")


@dataclass
class TokenBatch:
    """Right-padded token ids of a batch of texts and each text's real length (pads never count)."""

    input_ids: torch.Tensor
    lengths: torch.Tensor

    @property
    def attention_mask(self) -> torch.Tensor:
        positions = torch.arange(self.input_ids.shape[1])[None]
        return (positions < self.lengths[:, None]).long()

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def layer_kind(backbone) -> str:
    """``"language_model"``, ``"image_text"`` or ``"module"`` (a backbone with ``forward_tokens``)."""
    if hasattr(backbone, "hook_names") and hasattr(backbone, "hooks"):
        return "language_model"
    if hasattr(backbone, "encode_images") and hasattr(getattr(backbone, "model", None), "visual"):
        return "image_text"
    if hasattr(backbone, "forward_tokens") and isinstance(getattr(backbone, "model", None), torch.nn.Module):
        return "module"
    raise TypeError(
        f"{type(backbone).__name__} has no layers conceptlab can tap: it needs to be an open_clip image-text "
        "backbone, a LanguageModel (hf:, transformer_lens:, zoo:facts-gpt2) or have `model` and `forward_tokens`"
    )


def layer_names(backbone) -> list[str]:
    """Every layer name of ``backbone`` a capture or TCAV accepts (module names or hook points)."""
    kind = layer_kind(backbone)
    if kind == "language_model":
        return list(backbone.hook_names())
    if kind == "image_text":
        return [f"visual.{name}" for name, _ in backbone.model.visual.named_modules() if name]
    return [name for name, _ in backbone.model.named_modules() if name]


def _check_layer(backbone, layer: str) -> None:
    names = layer_names(backbone)
    if layer not in names:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"{type(backbone).__name__} {getattr(backbone, 'spec', '')!r} has no layer {layer!r}; layers include: {shown}")


def _positions_axis(act: torch.Tensor) -> str:
    """Where the positions are: ``"spatial"`` for (N, C, H, W), ``"sequence"`` for (N, T, D), ``"none"`` for (N, D)."""
    return {4: "spatial", 3: "sequence", 2: "none"}.get(act.ndim, "other")


def _valid_mask(act: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    positions = torch.arange(act.shape[1], device=act.device)[None]
    if lengths is None:
        return torch.ones(act.shape[0], act.shape[1], dtype=act.dtype, device=act.device)
    return (positions < lengths.to(act.device)[:, None]).to(act.dtype)


def _reduce(tensor: torch.Tensor, pool: str, lengths: torch.Tensor | None, mean: bool) -> torch.Tensor:
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    axis = _positions_axis(tensor)
    if pool == "flatten" or axis == "none":
        return tensor.reshape(tensor.shape[0], -1)
    if axis == "spatial":
        if pool != "mean":
            raise ValueError(f"a convolutional layer's activation (N, C, H, W) pools by 'mean' or 'flatten', not {pool!r}")
        reduced = tensor.sum(dim=(2, 3))
        return reduced / (tensor.shape[2] * tensor.shape[3]) if mean else reduced
    if axis != "sequence":
        raise ValueError(f"cannot pool an activation of shape {tuple(tensor.shape)}; use pool='flatten'")
    if pool == "cls":
        return tensor[:, 0]
    if pool == "last":
        last = (lengths - 1) if lengths is not None else torch.full((tensor.shape[0],), tensor.shape[1] - 1)
        return tensor[torch.arange(tensor.shape[0]), last.to(tensor.device)]
    mask = _valid_mask(tensor, lengths)[..., None]
    reduced = (tensor * mask).sum(1)
    return reduced / mask.sum(1).clamp_min(1) if mean else reduced


def pool_activation(act: torch.Tensor, pool: str = "mean", lengths: torch.Tensor | None = None) -> torch.Tensor:
    """(N, d) pooled activation of a layer output (see the module docstring for the pools)."""
    return _reduce(act, pool, lengths, mean=True)


def pool_gradient(grad: torch.Tensor, pool: str = "mean", lengths: torch.Tensor | None = None) -> torch.Tensor:
    """(N, d) gradient with respect to the pooled activation, for a perturbation of the pooled vector
    applied at every pooled position (so ``mean`` sums the per-position gradients)."""
    return _reduce(grad, pool, lengths, mean=False)


def _module_hook(root: torch.nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor | None]):
    module = root.get_submodule(name)

    def hook(module, args, output):
        tensor = output[0] if isinstance(output, tuple) else output
        new = fn(tensor)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return module.register_forward_hook(hook)


@contextlib.contextmanager
def _tapped(backbone, layer: str, fn) -> Iterator[None]:
    kind = layer_kind(backbone)
    if kind == "language_model":
        with backbone.hooks([(layer, fn)]):
            yield
        return
    handle = _module_hook(backbone.model, layer, fn)  # image towers and sentence encoders: module names of ``model``
    try:
        yield
    finally:
        handle.remove()


def _forward(backbone, batch):
    kind = layer_kind(backbone)
    if kind == "language_model":
        return backbone.logits(batch.input_ids)
    if kind == "image_text":
        return backbone.model.encode_image(batch.to(backbone.device))
    return backbone.forward_tokens(batch)


def forward_with_tap(backbone, layer: str, batch, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, object]:
    """Run ``batch`` through ``backbone`` and return (layer activation, leaf or None, model output).

    With ``grad=True`` the layer's output is replaced by a detached copy that requires grad, so
    ``torch.autograd.grad(f(output), leaf)`` is the gradient of anything computed from the output
    with respect to that layer (the model's own parameters get no gradient). Without it the pass
    runs under ``no_grad`` and the activation is returned as recorded.
    """
    _check_layer(backbone, layer)
    held: dict[str, torch.Tensor] = {}

    def record(act: torch.Tensor):
        if grad:
            leaf = act.detach().requires_grad_(True)
            held["act"] = leaf
            return leaf
        held["act"] = act.detach()
        return None

    context = contextlib.nullcontext() if grad else torch.no_grad()
    with context, torch.enable_grad() if grad else contextlib.nullcontext(), _tapped(backbone, layer, record):
        output = _forward(backbone, batch)
    if "act" not in held:
        raise RuntimeError(f"layer {layer!r} did not run in the forward pass of {type(backbone).__name__}")
    return held["act"], (held["act"] if grad else None), output
