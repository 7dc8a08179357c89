"""Sampling the zoo diffusion models: ``load_pipeline("zoo:shapes-ddpm")`` -> a pipeline with a diffusers scheduler.

:class:`ShapesPipeline` follows diffusers' pipeline conventions where a recorder or a user looks:
``pipe.scheduler`` is a diffusers scheduler whose ``step`` the loop calls once per timestep,
``pipe._interrupt`` ends sampling early, ``callback_on_step_end(pipe, i, t, {"latents": ...})``
runs after each step, and ``guidance_scale > 1`` turns on classifier-free guidance. Every seed
draws its own initial noise (and its own noise inside stochastic samplers), so an image depends on
its seed only, never on the batch it was drawn in.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from conceptlab.zoo.shapes_ddpm import (
    ShapesModel,
    condition_codes,
    initial_noise,
    load_shapes_model,
    sample_loop,
    tensor_to_images,
)

__all__ = ["SCHEDULERS", "PipelineOutput", "ShapesPipeline", "decode", "load_pipeline", "make_scheduler", "resolve_model"]

#: scheduler names the pipelines and the app accept -> diffusers class name and config overrides
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {"clip_sample": False}),
}


def make_scheduler(name: str, config: Mapping[str, Any]):
    """A fresh diffusers scheduler ``name`` (a key of :data:`SCHEDULERS`) on a model's noise schedule."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")
    class_name, overrides = SCHEDULERS[name]
    klass = getattr(diffusers, class_name)
    return klass.from_config({**dict(config), **overrides})


@dataclass
class PipelineOutput:
    """``images``: PIL images (or the tensor, for ``output_type="pt"``); ``latents``: the final
    latents; ``timesteps``: the timesteps the model ran at."""

    images: Any
    latents: torch.Tensor
    timesteps: list[float]


class ShapesPipeline:
    """A zoo diffusion model plus a scheduler, called like a diffusers pipeline.

    ``pipe("a red circle", seeds=range(8))`` -> :class:`PipelineOutput`. Defaults
    (scheduler, steps, guidance) come from the model card's ``sampler`` block.
    """

    def __init__(self, model: ShapesModel, scheduler=None, name: str = "", num_inference_steps: int | None = None, guidance_scale: float | None = None) -> None:
        sampler = model.card.get("sampler", {})
        self.model = model
        self.name = name or model.card.get("name", "shapes-model")
        self.scheduler_name = sampler.get("name", "ddim")
        self.scheduler = scheduler if scheduler is not None else make_scheduler(self.scheduler_name, model.scheduler_config)
        self.num_inference_steps = int(num_inference_steps or sampler.get("num_inference_steps", 25))
        self.guidance_scale = float(guidance_scale if guidance_scale is not None else sampler.get("guidance_scale", 1.0))
        self._interrupt = False

    def __repr__(self) -> str:
        return f"ShapesPipeline({self.name!r}, {type(self.scheduler).__name__}, steps={self.num_inference_steps}, guidance={self.guidance_scale})"

    @property
    def unet(self):
        return self.model.unet

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def with_scheduler(self, name: str, num_inference_steps: int | None = None) -> ShapesPipeline:
        """The same model with another scheduler (by :data:`SCHEDULERS` name)."""
        pipe = ShapesPipeline(self.model, make_scheduler(name, self.model.scheduler_config), self.name, num_inference_steps or self.num_inference_steps, self.guidance_scale)
        pipe.scheduler_name = name
        return pipe

    def copy(self) -> ShapesPipeline:
        """A pipeline sharing the model with a fresh copy of the scheduler (schedulers are stateful)."""
        pipe = copy.copy(self)
        pipe.scheduler = copy.deepcopy(self.scheduler)
        pipe._interrupt = False
        return pipe

    @torch.no_grad()
    def __call__(
        self,
        condition: str | Mapping[str, str] | None = "a shape",
        seeds: Sequence[int] | int = (0,),
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable[[Any, int, Any, dict], dict | None] | None = None,
        latents: torch.Tensor | None = None,
    ) -> PipelineOutput:
        if output_type not in ("pil", "pt", "latent"):
            raise ValueError(f"output_type must be 'pil', 'pt' or 'latent', got {output_type!r}")
        seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
        if not seeds:
            raise ValueError("no seeds to sample")
        steps = int(num_inference_steps or self.num_inference_steps)
        guidance = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        codes = torch.tensor([condition_codes(condition)] * len(seeds), dtype=torch.long)
        noise = initial_noise(seeds, self.model.sample_shape) if latents is None else latents
        generators = [torch.Generator().manual_seed(s + 7_919) for s in seeds]  # in-loop noise of stochastic samplers
        self._interrupt = False
        ran: list[float] = []

        def after_step(i, t, current):
            ran.append(float(t))
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {"latents": current})

        out = sample_loop(self.model, self.scheduler, codes, noise, steps, guidance, generators, callback=after_step, should_stop=lambda: self._interrupt)
        images = out if output_type != "pil" else tensor_to_images(out)
        return PipelineOutput(images=images, latents=out, timesteps=ran)


def decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images in [-1, 1]: through the pipeline's VAE when it has one (SD-style:
    ``vae.decode(x / scaling_factor (+ shift))``, with SDXL's ``latents_mean/std`` when configured),
    otherwise the latents are the pixels (the zoo models)."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return latents
    config = vae.config
    x = latents.to(next(vae.parameters()).device, next(vae.parameters()).dtype)
    if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(x)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(x)
        x = x * std / config.scaling_factor + mean
    else:
        x = x / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
    with torch.no_grad():
        return vae.decode(x, return_dict=False)[0].float().cpu()


def resolve_model(spec: str | os.PathLike) -> tuple[Path, str]:
    """(folder, name) of ``zoo:NAME``, ``local-dir:PATH`` or a path."""
    text = str(spec)
    if text.startswith("zoo:"):
        from conceptlab.zoo import zoo_path

        return zoo_path(text[4:]), text[4:]
    if text.startswith("local-dir:"):
        text = text[len("local-dir:") :]
    return Path(text), Path(text).name


def load_pipeline(
    spec: str | os.PathLike = "zoo:shapes-ddpm", scheduler: str | None = None, num_inference_steps: int | None = None, guidance_scale: float | None = None
) -> ShapesPipeline:
    """A :class:`ShapesPipeline` for ``zoo:NAME`` or a model folder (``local-dir:PATH`` or a path);
    ``scheduler`` by :data:`SCHEDULERS` name (default: the model card's sampler)."""
    folder, name = resolve_model(spec)
    model = load_shapes_model(folder)
    pipe = ShapesPipeline(model, None, name, num_inference_steps, guidance_scale)
    return pipe.with_scheduler(scheduler, num_inference_steps) if scheduler else pipe
