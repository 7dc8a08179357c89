"""The recipe for ``zoo:shapes-ddpm-distilled``: a 1-4 step student of zoo:shapes-ddpm by latent-consistency distillation.

Which distillation, and why: consistency distillation as in Latent Consistency Models (Luo et al.,
2023), the ``lcm`` row of the distillation paper's model table. It is one training stage (progressive
distillation needs one stage per halving: 25 -> 4 steps is three stages, beyond a 10-minute CPU
budget), the student is sampled by diffusers' own ``LCMScheduler`` (so the recorder reads its
``denoised`` output, as for DMD2/LCM SDXL), and like LCM it distils the *guided* teacher -- the
teacher's classifier-free guidance is baked into the student, which is one reason distilled models
lose diversity.

One training step (all in the VP parameterisation of the teacher's noise schedule):

1. draw real images x0 and their (partly dropped) conditions, an index n on the teacher's
   50-step DDIM grid t_n = (n+1)·20 − 1, and t_prev = max(t_n − 20, 0);
2. noise x0 to x_t; one guided DDIM step of the teacher (guidance ``teacher_guidance``) gives
   x_prev at t_prev;
3. the consistency function f(x, t) = c_skip(t)·x + c_out(t)·x̂0(x, t) (x̂0 from the model's v or ε
   output, as ``LCMScheduler`` reads it), with LCM's boundary
   scalings (σ_data 0.5, timestep scaling 10, as ``LCMScheduler``), of the student at (x_t, t)
   is pulled towards that of the target network (an EMA of the student, decay 0.95) at
   (x_prev, t_prev), with a pseudo-Huber loss.

Where we depart from LCM's code: no guidance-scale embedding (one guidance is baked in, as in
LCM-LoRA); pixel space instead of latents, so the pseudo-Huber constant is iCT's 0.00054·√d
(d = 3·32·32) rather than LCM's latent-space 0.001; the shipped weights are the target (EMA)
network, which sampled slightly cleaner than the online student here.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from conceptlab.utils import atomic_write_text
from conceptlab.zoo.shapes_ddpm import (
    AttributeReader,
    ShapesModel,
    _drop_families,
    _ema_update,
    _lr_at,
    _shapes_clip,
    _training_pool,
    conditional_accuracy,
    load_shapes_model,
    save_shapes_model,
)

__all__ = ["DistillRecipe", "build", "consistency_scalings", "distill_shapes_ddpm"]

SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0  # LCMScheduler's default


@dataclass
class DistillRecipe:
    """Every knob of the distillation; the model card records the values used."""

    teacher: str = "shapes-ddpm"  # a zoo name or a model folder
    steps: int = 800
    batch_size: int = 32
    pool_size: int = 8000
    lr: float = 2e-4
    warmup_steps: int = 20
    solver_steps: int = 50  # the teacher's DDIM grid (LCM's original_inference_steps)
    teacher_guidance: float = 2.0
    target_decay: float = 0.95
    huber_c: float = 0.00054 * (3 * 32 * 32) ** 0.5
    family_dropout: float = 0.5
    null_prob: float = 0.1
    sample_steps: int = 4
    seed: int = 0
    threads: int = 2
    eval_per_value: int = 8


def consistency_scalings(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's boundary scalings (c_skip, c_out) at integer timesteps ``t``."""
    scaled = t.double() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip.float(), c_out.float()


def _view(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _x0_eps(output: torch.Tensor, x: torch.Tensor, abar: torch.Tensor, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂0, ε̂) from a model output in the VP parameterisation (ε or v prediction)."""
    a, s = _view(abar.sqrt()), _view((1 - abar).sqrt())
    if prediction == "v_prediction":
        return a * x - s * output, a * output + s * x
    if prediction == "epsilon":
        return (x - s * output) / a, output
    raise ValueError(f"cannot distil a {prediction!r} model (epsilon or v_prediction)")


def _consistency(model: nn.ModuleList, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, abar: torch.Tensor, prediction: str) -> torch.Tensor:
    output = model[0](x, t, class_labels=model[1](cond)).sample
    c_skip, c_out = consistency_scalings(t)
    return _view(c_skip) * x + _view(c_out) * _x0_eps(output, x, abar, prediction)[0]


def _teacher_folder(teacher: str) -> Path:
    """A zoo name (``shapes-ddpm``) or a model folder."""
    from conceptlab.zoo.catalog import ZOO, zoo_path

    if teacher in ZOO:
        return zoo_path(teacher)
    if not Path(teacher).is_dir():
        raise FileNotFoundError(f"no teacher model at {teacher!r}: give a zoo name ({', '.join(sorted(ZOO))}) or a model folder")
    return Path(teacher)


def distill_shapes_ddpm(out_dir: str | os.PathLike, recipe: DistillRecipe | None = None, progress: bool = True, evaluate: bool = True) -> dict:
    """Distil the teacher into a few-step student, save it in ``out_dir``, return its card."""
    from diffusers import DDPMScheduler, LCMScheduler

    recipe = recipe or DistillRecipe()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    started = time.time()
    try:
        teacher_dir = _teacher_folder(recipe.teacher)
        teacher = load_shapes_model(teacher_dir)
        teacher.unet.requires_grad_(False)
        teacher.conditioner.requires_grad_(False)
        torch.manual_seed(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        images, all_codes = _training_pool(recipe.pool_size, recipe.seed, progress)
        abar_all = DDPMScheduler.from_config(teacher.scheduler_config).alphas_cumprod
        k = teacher.scheduler_config.get("num_train_timesteps", 1000) // recipe.solver_steps
        grid = torch.arange(1, recipe.solver_steps + 1) * k - 1
        prediction = teacher.scheduler_config.get("prediction_type", "epsilon")

        student = nn.ModuleList([copy.deepcopy(teacher.unet), copy.deepcopy(teacher.conditioner)]).train().requires_grad_(True)
        target = copy.deepcopy(student).eval().requires_grad_(False)
        optimizer = torch.optim.AdamW(student.parameters(), lr=recipe.lr, weight_decay=0.0)
        losses = []
        bar = tqdm(range(recipe.steps), desc="distilling zoo:shapes-ddpm-distilled", disable=not progress)
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, recipe.lr, recipe.warmup_steps, recipe.steps)
            idx = torch.randint(len(images), (recipe.batch_size,), generator=generator)
            x0 = images[idx]
            cond = _drop_families(all_codes[idx], generator, recipe.family_dropout, recipe.null_prob)
            n = torch.randint(0, recipe.solver_steps, (recipe.batch_size,), generator=generator)
            t, t_prev = grid[n], (grid[n] - k).clamp(min=0)
            noise = torch.randn(x0.shape, generator=generator)
            abar_t, abar_prev = abar_all[t], abar_all[t_prev]
            x_t = _view(abar_t.sqrt()) * x0 + _view((1 - abar_t).sqrt()) * noise
            with torch.no_grad():
                x0_teacher, eps = _x0_eps(teacher.predict(x_t, t, cond, recipe.teacher_guidance), x_t, abar_t, prediction)
                x_prev = _view(abar_prev.sqrt()) * x0_teacher + _view((1 - abar_prev).sqrt()) * eps
                goal = _consistency(target, x_prev, t_prev, cond, abar_prev, prediction)
            pred = _consistency(student, x_t, t, cond, abar_t, prediction)
            loss = (((pred - goal) ** 2).mean(dim=(1, 2, 3)) + recipe.huber_c**2).sqrt().sub(recipe.huber_c).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            _ema_update(target, student, recipe.target_decay)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        train_seconds = time.time() - started
        lcm_config = {**teacher.scheduler_config, "original_inference_steps": recipe.solver_steps, "timestep_scaling": TIMESTEP_SCALING, "clip_sample": False}
        card: dict[str, Any] = {
            "name": "shapes-ddpm-distilled",
            "method": "latent consistency distillation (LCM-style) of the guided teacher",
            "teacher": str(recipe.teacher),
            "teacher_card": {k: teacher.card.get(k) for k in ("name", "train_seconds", "final_loss")},
            "recipe": asdict(recipe),
            "train_seconds": round(train_seconds, 1),
            "torch_threads": recipe.threads,
            "final_loss": round(float(np.mean(losses[-50:])), 5),
            "loss_curve": [round(v, 5) for v in losses[:: max(1, len(losses) // 50)]],
            "sampler": {"name": "lcm", "num_inference_steps": recipe.sample_steps, "guidance_scale": 1.0},
        }
        model = ShapesModel(target[0], target[1], dict(LCMScheduler.from_config(lcm_config).config), card).eval()
        out = save_shapes_model(model, out_dir)
        if evaluate:
            model = load_shapes_model(out)
            reader = AttributeReader.load(teacher_dir, _shapes_clip())
            scheduler = LCMScheduler.from_config(model.scheduler_config)
            card["conditional_accuracy"] = {
                "probe": conditional_accuracy(model, reader, scheduler, recipe.sample_steps, 1.0, recipe.eval_per_value, mode="probe", progress=progress)
            }
            card["eval_seconds"] = round(time.time() - started - train_seconds, 1)
            atomic_write_text(out / "model_card.json", json.dumps(card, indent=2))
        return card
    finally:
        torch.set_num_threads(previous_threads)


def build(out_dir: str | os.PathLike, progress: bool = True, evaluate: bool = True, **recipe_overrides) -> dict:
    """The zoo's entry point (``conceptlab zoo build shapes-ddpm-distilled``; needs zoo:shapes-ddpm):
    :func:`distill_shapes_ddpm` with :class:`DistillRecipe` ``(**recipe_overrides)``."""
    return distill_shapes_ddpm(out_dir, DistillRecipe(**recipe_overrides), progress=progress, evaluate=evaluate)
