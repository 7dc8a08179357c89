"""The step recorder: the diffusion target x̂0 (and x_t) at every sampler step, for any diffusers scheduler.

Gandikota & Bau's DT visualisation decodes, at each step, the model's current estimate of the
clean sample instead of the noisy latent. Pipelines throw that estimate away
(``scheduler.step(...)[0]``), so :class:`StepRecorder` wraps ``scheduler.step`` for the duration of
a ``with`` block: it calls the original **once** with ``return_dict=True``, keeps what it needs and
hands back exactly what the caller asked for (an output object or a tuple). Nothing else about
the pipeline changes, so it works on any pipeline that calls ``self.scheduler.step`` -- the zoo
pipelines, ``StableDiffusionPipeline`` -- and on a bare scheduler in a hand-written loop.

Where x̂0 comes from, per scheduler family (diffusers 0.42):

- ``step(...).denoised`` -- LCM (the consistency output c_skip·x + c_out·x̂0);
- ``step(...).pred_original_sample`` -- DDPM, DDIM, Euler, EulerAncestral, Heun, LMS, KDPM2, TCD, ...;
- ``scheduler.model_outputs[-1]`` right after the step -- DPM-Solver++ and UniPC (``predict_x0``),
  which store the converted data prediction there;
- otherwise the closed form of the scheduler's family (:func:`x0_from`): flow matching
  x̂0 = x_t − σ_t·v̂ (σ_t = ``sigmas[step_index − 1]`` after the step), VP ε/v/sample formulas with
  ᾱ_t, sigma-space x̂0 = x_σ − σ·ε̂.

The model output a pipeline passes to ``step`` is already the classifier-free-guided one, so the
recorded x̂0 is the guided estimate the sampler actually follows. ``stop_at`` ends sampling early
through the pipeline's ``_interrupt`` flag (diffusers' own mechanism).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Frame", "StepRecorder", "find_scheduler", "scheduler_family", "x0_from"]

_VP = {
    "DDPMScheduler", "DDIMScheduler", "DDIMInverseScheduler", "DDIMParallelScheduler", "DDPMParallelScheduler", "PNDMScheduler",
    "LCMScheduler", "TCDScheduler", "DEISMultistepScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
    "UniPCMultistepScheduler", "SASolverScheduler",
}
_SIGMA = {
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DPMSolverSDEScheduler",
}
_FLOW = {"FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler", "FlowMatchLCMScheduler"}
_WHAT = ("x_t", "x0", "model_output")


@dataclass
class Frame:
    """One recorded step: its index in the schedule, the timestep, σ where the scheduler has one
    (its own parameterisation: sigma-space σ, or flow σ), and the tensors asked for."""

    step: int
    timestep: float
    sigma: float | None
    x_t: torch.Tensor | None
    x0: torch.Tensor | None
    model_output: torch.Tensor | None
    source: str  # where x0 came from: denoised | pred_original_sample | model_outputs | formula
    num_steps: int  # the length of the schedule the step belongs to
    scheduler: str
    family: str = "vp"  # the scheduler's parameterisation: vp | sigma | flow

    def x_t_vp(self) -> torch.Tensor | None:
        """x_t on the VP scale (x_σ/√(σ²+1) for sigma-space schedulers), for showing beside x̂0."""
        if self.x_t is None or self.family != "sigma" or self.sigma is None:
            return self.x_t
        return self.x_t / (self.sigma**2 + 1) ** 0.5

    @property
    def share(self) -> float:
        """The share of the schedule done after this step (1.0 at the last step)."""
        return (self.step + 1) / max(1, self.num_steps)


def scheduler_family(scheduler) -> str:
    """``"vp"`` (ᾱ_t parameterisation), ``"sigma"`` (k-diffusion x_σ = x0 + σ·ε) or ``"flow"``
    (x_t = (1−σ)·x0 + σ·noise); unknown classes are told apart by their attributes."""
    name = type(scheduler).__name__
    if name in _FLOW or getattr(scheduler.config, "use_flow_sigmas", False):
        return "flow"
    if name in _VP:
        return "vp"
    if name in _SIGMA:
        return "sigma"
    if hasattr(scheduler, "sigmas") and float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0:
        return "sigma"
    if hasattr(scheduler, "alphas_cumprod"):
        return "vp"
    raise ValueError(f"cannot tell the parameterisation of {name}; pass a scheduler of a known family")


def _as_index(timestep) -> int:
    return int(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)


def x0_from(scheduler, model_output: torch.Tensor, timestep, sample: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """The closed-form x̂0 of a scheduler's family from one model output (no clipping).

    VP: ε → (x − √(1−ᾱ)·ε)/√ᾱ, v → √ᾱ·x − √(1−ᾱ)·v, sample → output (ᾱ at ``timestep``, or from
    ``sigma`` = √((1−ᾱ)/ᾱ) when given, as DPM-Solver keeps it); sigma-space: ε → x − σ·ε,
    v → −σ/√(σ²+1)·v + x/(σ²+1); flow: x − σ·v."""
    family = scheduler_family(scheduler)
    prediction = getattr(scheduler.config, "prediction_type", "epsilon")
    if family == "flow":
        if sigma is None:
            raise ValueError("the flow-matching x̂0 needs σ_t")
        return sample - sigma * model_output
    if family == "sigma":
        if sigma is None:
            raise ValueError("the sigma-space x̂0 needs σ")
        if prediction == "epsilon":
            return sample - sigma * model_output
        if prediction == "v_prediction":
            return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
        if prediction == "sample":
            return model_output
        raise ValueError(f"unknown prediction_type {prediction!r}")
    if sigma is not None:
        alpha_bar = torch.tensor(1.0 / (sigma**2 + 1.0), dtype=torch.float64)
    else:
        alpha_bar = scheduler.alphas_cumprod[_as_index(timestep)].double()
    a, s = float(alpha_bar.sqrt()), float((1 - alpha_bar).sqrt())
    if prediction == "epsilon":
        return (sample - s * model_output) / a
    if prediction == "v_prediction":
        return a * sample - s * model_output
    if prediction == "sample":
        return model_output
    raise ValueError(f"unknown prediction_type {prediction!r}")


def find_scheduler(target) -> Any:
    """The scheduler of a pipeline (``.scheduler``), or ``target`` when it is one."""
    if hasattr(target, "step") and hasattr(target, "set_timesteps"):
        return target
    scheduler = getattr(target, "scheduler", None)
    if scheduler is None or not hasattr(scheduler, "step"):
        raise TypeError(f"{type(target).__name__} is neither a diffusers scheduler nor a pipeline with a .scheduler")
    return scheduler


class StepRecorder:
    """``with StepRecorder(pipe) as rec: pipe(...)`` -> ``rec.frames``, one :class:`Frame` per recorded step.

    Args:
        target: a pipeline (anything with ``.scheduler``), a scheduler, or a list of them (a
            hybrid sampler's two schedulers).
        record_every: record every k-th step (the last step is always recorded when
            ``include_last``).
        record_steps: record exactly these step indices instead.
        what: which tensors to keep: any of ``"x_t"``, ``"x0"``, ``"model_output"``.
        stop_at: after recording step k, stop sampling: the pipeline's ``_interrupt`` is set (its
            remaining iterations are skipped) and ``rec.stopped`` turns True for hand-written loops.
        device: where recorded tensors are kept (``"cpu"`` by default; ``None`` leaves them where
            they are).
    """

    def __init__(
        self,
        target,
        record_every: int = 1,
        record_steps: Iterable[int] | None = None,
        what: Sequence[str] = ("x_t", "x0"),
        stop_at: int | None = None,
        include_last: bool = True,
        device: str | torch.device | None = "cpu",
    ) -> None:
        if int(record_every) < 1:
            raise ValueError(f"record_every must be at least 1, got {record_every}")
        unknown = [w for w in what if w not in _WHAT]
        if unknown:
            raise ValueError(f"unknown recorded tensors {unknown}; choose from {_WHAT}")
        self.targets = list(target) if isinstance(target, list | tuple) else [target]
        self.schedulers = [find_scheduler(t) for t in self.targets]
        self.record_every = int(record_every)
        self.record_steps = None if record_steps is None else {int(s) for s in record_steps}
        self.what = tuple(what)
        self.stop_at = stop_at
        self.include_last = include_last
        self.device = device
        self.frames: list[Frame] = []
        self.calls = 0
        self.stopped = False
        self._saved: list[tuple[Any, bool, Any]] = []

    # -- context manager --------------------------------------------------------------------------
    def __enter__(self) -> StepRecorder:
        if self._saved:
            raise RuntimeError("this StepRecorder is already active")
        for scheduler in self.schedulers:
            had = "step" in vars(scheduler)
            self._saved.append((scheduler, had, vars(scheduler).get("step")))
            scheduler.step = self._wrap(scheduler, scheduler.step)
        return self

    def __exit__(self, *exc) -> None:
        for scheduler, had, previous in reversed(self._saved):
            if had:
                scheduler.step = previous
            else:
                del scheduler.step
        self._saved = []

    def clear(self) -> None:
        self.frames, self.calls, self.stopped = [], 0, False

    # -- recording ----------------------------------------------------------------------------------
    def _index(self, scheduler, timestep) -> int:
        step_index = getattr(scheduler, "step_index", None)
        if step_index is not None:
            return int(step_index)
        timesteps = getattr(scheduler, "timesteps", None)
        if timesteps is not None:
            value = timestep.item() if isinstance(timestep, torch.Tensor) else timestep
            hits = (torch.as_tensor(timesteps) == value).nonzero()
            if len(hits):
                return int(hits[0])
        return self.calls

    def _wanted(self, index: int, num_steps: int) -> bool:
        if self.include_last and index == num_steps - 1:
            return True
        if self.stop_at is not None and index == self.stop_at:
            return True
        if self.record_steps is not None:
            return index in self.record_steps
        return index % self.record_every == 0

    def _keep(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is None:
            return None
        tensor = tensor.detach()
        return tensor.to(self.device, copy=True) if self.device is not None else tensor.clone()

    def _wrap(self, scheduler, original):
        @functools.wraps(original)
        def step(model_output, timestep, sample, *args, **kwargs):
            return_dict = kwargs.pop("return_dict", True)
            index = self._index(scheduler, timestep)
            num_steps = len(getattr(scheduler, "timesteps", None) if getattr(scheduler, "timesteps", None) is not None else [])
            output = original(model_output, timestep, sample, *args, return_dict=True, **kwargs)
            self.calls += 1
            if self._wanted(index, num_steps):
                self.frames.append(self._frame(scheduler, output, model_output, timestep, sample, index, num_steps))
            if self.stop_at is not None and index >= self.stop_at:
                self.stopped = True
                for target in self.targets:
                    if not hasattr(target, "set_timesteps"):  # a pipeline, not a scheduler
                        target._interrupt = True
            return output if return_dict else output.to_tuple()

        return step

    def _sigma_after(self, scheduler) -> float | None:
        sigmas = getattr(scheduler, "sigmas", None)
        step_index = getattr(scheduler, "step_index", None)
        if sigmas is None or step_index is None:
            return None
        return float(sigmas[int(step_index) - 1])

    def _frame(self, scheduler, output, model_output, timestep, sample, index, num_steps) -> Frame:
        sigma = self._sigma_after(scheduler)
        x0, source = None, "formula"
        if "x0" in self.what:
            if getattr(output, "denoised", None) is not None:
                x0, source = output.denoised, "denoised"
            elif getattr(output, "pred_original_sample", None) is not None:
                x0, source = output.pred_original_sample, "pred_original_sample"
            elif _stores_x0(scheduler):
                x0, source = scheduler.model_outputs[-1], "model_outputs"
            else:
                vp_sigma = sigma if scheduler_family(scheduler) != "vp" or hasattr(scheduler, "model_outputs") else None
                x0 = x0_from(scheduler, model_output.float(), timestep, sample.float(), sigma=vp_sigma).to(sample.dtype)
        t = float(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)
        return Frame(
            step=index,
            timestep=t,
            sigma=sigma,
            x_t=self._keep(sample) if "x_t" in self.what else None,
            x0=self._keep(x0),
            model_output=self._keep(model_output) if "model_output" in self.what else None,
            source=source,
            num_steps=num_steps,
            scheduler=type(scheduler).__name__,
            family=scheduler_family(scheduler),
        )

    # -- reading ------------------------------------------------------------------------------------
    def stack(self, what: str = "x0") -> torch.Tensor:
        """(n_frames, *latent shape) of one recorded tensor."""
        tensors = [getattr(f, what) for f in self.frames]
        if not tensors or any(t is None for t in tensors):
            raise ValueError(f"{what!r} was not recorded (what={self.what})")
        return torch.stack(tensors)


def _stores_x0(scheduler) -> bool:
    """True for multistep solvers whose ``model_outputs[-1]`` holds the data prediction."""
    if not getattr(scheduler, "model_outputs", None) or scheduler.model_outputs[-1] is None:
        return False
    config = scheduler.config
    if getattr(config, "algorithm_type", None) in ("dpmsolver++", "sde-dpmsolver++"):
        return True
    return type(scheduler).__name__ == "UniPCMultistepScheduler" and bool(getattr(config, "predict_x0", False))
