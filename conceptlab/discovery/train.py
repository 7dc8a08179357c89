"""SAE training on a cached (N, d) embedding tensor, through sae-lens's own training machinery.

:func:`train_sae` builds a sae-lens training SAE (``StandardTrainingSAE`` or ``TopKTrainingSAE``)
and an ``SAETrainer`` over an iterator of shuffled batches, then drives the trainer one step at a
time through its public seams (``step``, ``maybe_reset_sparsity``, ``set_final_sae_metadata``),
as sae-lens's own ``MultiSAETrainer`` does, so that dead-latent resampling can run between steps.
The optimiser, LR schedule, L1 coefficient schedule, forward pass, losses, dead-latent tracking
and gradient clipping are all sae-lens's.

Discover-then-Name (DN-CBM, ``neuroexplicit-saar/Discover-then-Name``) specifics layered on top,
each switchable (see :class:`TrainSettings`):

- ``init="dncbm"``: the vendored ``sparse_autoencoder`` init -- encoder Kaiming-uniform (ReLU
  gain, fan-in d), encoder bias U(±1/√d), decoder Kaiming-uniform then unit-normalised rows, tied
  pre-bias ``b_dec`` at zero (DN-CBM passes no geometric median). ``init="sae_lens"`` keeps
  sae-lens's (decoder rows at norm ``decoder_init_norm``, encoder = decoderᵀ).
- ``unit_norm_decoder``: the component of each decoder row's gradient parallel to the row is
  removed (a gradient hook) and rows are renormalised after every optimiser step. With unit rows
  sae-lens's standard penalty Σ_k |f_k|·‖W_dec[k]‖ *is* DN-CBM's Σ_k |f_k| (and its gradient on
  W_dec is parallel to the rows, so the projection removes it exactly as in DN-CBM).
- ``mse_reduction="mean"``: DN-CBM's reconstruction loss averages over the d features
  (``L2ReconstructionLoss``); sae-lens sums them. We divide sae-lens's per-element MSE by d.
- Resampling: sae-lens 6.x ships no resampling (its ``dead_feature_window`` only feeds TopK's
  AuxK loss and the logs). We implement Anthropic's "Towards Monosemanticity" procedure as
  DN-CBM runs it: every ``resample_every`` epochs, except during the last such interval, latents
  that did not fire once since the previous resampling get a new direction drawn from inputs with
  probability ∝ (reconstruction loss)²; decoder row = input/‖input‖, encoder row = the same ×
  0.2 × mean norm of live encoder rows, encoder bias 0, and their Adam moments reset.

Deliberate differences from DN-CBM's code, because they are sae-lens's machinery: gradients are
clipped to norm 1.0 (``SAETrainer._train_step`` always does), and Adam is plain ``torch.optim.Adam``
(DN-CBM's ``AdamWithReset`` is the same optimiser plus the state reset we do on resampling).

:func:`train_sae_plain` is the same training in a plain torch loop, written independently; tests
check both give the same weights and ``benchmarks/sae_train.py`` compares their speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from conceptlab.utils import default_device

__all__ = [
    "ARCHITECTURES",
    "TrainSettings",
    "TrainResult",
    "TrainProgress",
    "TrainingCancelled",
    "TensorRows",
    "batch_iterator",
    "build_training_sae",
    "train_sae",
    "train_sae_plain",
    "resample_dead_latents",
]

ARCHITECTURES = ("standard", "topk")
INITS = ("dncbm", "sae_lens")
MSE_REDUCTIONS = ("mean", "sum")


@dataclass
class TrainSettings:
    """Everything :func:`train_sae` needs besides the data (DN-CBM's values are the defaults).

    Attributes:
        d_sae: number of latents (DN-CBM: expansion factor 8 × d).
        architecture: ``"standard"`` (ReLU + L1) or ``"topk"`` (sae-lens TopK with AuxK loss).
        l1: L1 coefficient (standard only; DN-CBM 3e-5).
        k: active latents per input (topk only).
        lr: Adam learning rate, constant (DN-CBM 5e-4; betas 0.9/0.999 as sae-lens's defaults).
        steps: optimiser steps; each sees ``batch_size`` rows.
        batch_size: rows per step (DN-CBM 4096).
        resample_every: steps between resamplings; 0 disables.
        resample_rows: at most this many rows are scored to pick resampling inputs.
        unit_norm_decoder: keep decoder rows at unit norm (DN-CBM).
        mse_reduction: ``"mean"`` over features (DN-CBM) or ``"sum"`` (sae-lens).
        init: ``"dncbm"`` or ``"sae_lens"`` weight initialisation.
        aux_loss_coefficient: TopK's AuxK coefficient (sae-lens default 1.0).
        dead_feature_window: steps without firing after which sae-lens calls a latent dead
            (feeds AuxK); 0 -> ``max(1, resample_every or steps // 10)``.
        seed: seeds initialisation, batch order and resampling.
        device: ``"cpu"``/``"cuda"``; None -> CUDA when present.
        progress: show a tqdm progress bar.
    """

    d_sae: int
    architecture: str = "standard"
    l1: float = 3e-5
    k: int | None = None
    lr: float = 5e-4
    steps: int = 1000
    batch_size: int = 4096
    resample_every: int = 0
    resample_rows: int = 65536
    unit_norm_decoder: bool = True
    mse_reduction: str = "mean"
    init: str = "dncbm"
    aux_loss_coefficient: float = 1.0
    dead_feature_window: int = 0
    seed: int = 49
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.mse_reduction not in MSE_REDUCTIONS:
            raise ValueError(f"mse_reduction must be one of {MSE_REDUCTIONS}, got {self.mse_reduction!r}")
        if int(self.d_sae) < 1:
            raise ValueError(f"d_sae must be positive, got {self.d_sae}")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.architecture == "standard" and not (self.l1 >= 0 and math.isfinite(self.l1)):
            raise ValueError(f"l1 must be a non-negative number, got {self.l1}")
        if self.architecture == "topk":
            if self.k is None or not 1 <= int(self.k) <= int(self.d_sae):
                raise ValueError(f"architecture='topk' needs k in [1, d_sae={self.d_sae}], got k={self.k}")
        if int(self.resample_every) < 0:
            raise ValueError(f"resample_every must be >= 0 steps, got {self.resample_every}")

    @property
    def resolved_device(self) -> str:
        if self.device is not None:
            return str(self.device)
        return str(default_device())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What :func:`train_sae` returns besides the SAE itself."""

    losses: list[float] = field(default_factory=list)  # total loss per step
    mse_losses: list[float] = field(default_factory=list)
    resampled: list[tuple[int, int]] = field(default_factory=list)  # (step, n latents resampled)
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class TrainProgress:
    """Where a training run stands after ``step`` of ``steps`` optimiser steps, ``seconds`` in."""

    step: int
    steps: int
    loss: float
    seconds: float

    @property
    def fraction(self) -> float:
        return self.step / self.steps if self.steps else 1.0

    @property
    def eta_seconds(self) -> float:
        """Seconds left at the pace so far."""
        return self.seconds / self.step * (self.steps - self.step) if self.step else float("nan")


class TrainingCancelled(RuntimeError):
    """Training stopped because its ``cancel`` check said so; the partial SAE is discarded."""

    def __init__(self, step: int, steps: int) -> None:
        super().__init__(f"SAE training cancelled after {step} of {steps} steps; the partial SAE was discarded")
        self.step, self.steps = step, steps


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def batch_iterator(acts: torch.Tensor, batch_size: int, seed: int, device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """Endless full batches of rows of ``acts``, shuffled epoch by epoch.

    A batch that runs past the end of an epoch is completed from the next epoch's permutation,
    so every batch has exactly ``batch_size`` rows (sae-lens counts samples per batch) and every
    row is seen once per epoch. Seeded by its own generator: the global RNG is untouched.
    """
    n = acts.shape[0]
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=generator)
    position = 0
    while True:
        pieces, need = [], batch_size
        while need > 0:
            if position == n:
                order = torch.randperm(n, generator=generator)
                position = 0
            take = min(need, n - position)
            pieces.append(order[position : position + take])
            position += take
            need -= take
        index = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        yield acts[index].to(device, non_blocking=True)


class TensorRows:
    """The rows :func:`train_sae` trains on, when they are one tensor in memory.

    A data source gives ``dim``, endless shuffled ``batches(batch_size, seed, device)`` and
    ``sample(n, generator)`` (candidate inputs for resampling). ``conceptlab.discovery.streaming``
    has the out-of-core source, which streams a store entry through a bounded buffer.
    """

    def __init__(self, acts: torch.Tensor) -> None:
        self.acts = acts

    @property
    def dim(self) -> int:
        return int(self.acts.shape[1])

    def batches(self, batch_size: int, seed: int, device: str | torch.device) -> Iterator[torch.Tensor]:
        return batch_iterator(self.acts, batch_size, seed, device)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.acts[torch.randperm(self.acts.shape[0], generator=generator)[: min(int(n), self.acts.shape[0])]]


# ----------------------------------------------------------------------------------------------
# the sae-lens training SAE
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def _init_dncbm(sae: Any, generator: torch.Generator) -> None:
    """DN-CBM's (vendored ``sparse_autoencoder``) initialisation, written into a sae-lens SAE."""
    d_sae, d_in = sae.cfg.d_sae, sae.cfg.d_in
    gain = math.sqrt(2.0)  # kaiming_uniform_(nonlinearity="relu")
    enc_bound = gain * math.sqrt(3.0 / d_in)  # W_e is (d_sae, d_in): fan-in d_in
    w_enc = torch.empty(d_sae, d_in).uniform_(-enc_bound, enc_bound, generator=generator)
    bias_bound = 1.0 / math.sqrt(d_in)
    b_enc = torch.empty(d_sae).uniform_(-bias_bound, bias_bound, generator=generator)
    dec_bound = gain * math.sqrt(3.0 / d_sae)  # W_d is (d_in, d_sae): fan-in d_sae
    w_dec = torch.empty(d_in, d_sae).uniform_(-dec_bound, dec_bound, generator=generator).T
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sae.W_enc.data.copy_(w_enc.T)  # sae-lens stores W_enc as (d_in, d_sae)
    sae.b_enc.data.copy_(b_enc)
    sae.W_dec.data.copy_(w_dec)
    sae.b_dec.data.zero_()


def build_training_sae(d_in: int, settings: TrainSettings) -> Any:
    """A fresh sae-lens training SAE for ``settings`` (weights initialised, seeded)."""
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

    device = settings.resolved_device
    common = dict(d_in=int(d_in), d_sae=int(settings.d_sae), dtype="float32", device="cpu", apply_b_dec_to_input=True,
                  normalize_activations="none", decoder_init_norm=1.0 if settings.unit_norm_decoder else 0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(settings.seed))
        if settings.architecture == "standard":
            cfg = StandardTrainingSAEConfig(**common, l1_coefficient=float(settings.l1), lp_norm=1.0, l1_warm_up_steps=0)
            sae = StandardTrainingSAE(cfg)
        else:
            cfg = TopKTrainingSAEConfig(**common, k=int(settings.k), aux_loss_coefficient=float(settings.aux_loss_coefficient),
                                        rescale_acts_by_decoder_norm=True)
            sae = TopKTrainingSAE(cfg)
    if settings.init == "dncbm":
        _init_dncbm(sae, torch.Generator().manual_seed(int(settings.seed)))
    if settings.mse_reduction == "mean":
        scale = 1.0 / float(d_in)

        def mean_over_features(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.mse_loss(preds, target, reduction="none") * scale

        sae.mse_loss_fn = mean_over_features  # sae-lens sums this over features, then means over the batch
    return sae.to(device)


class _UnitNormDecoder:
    """Gradient projection + renormalisation of decoder rows, attached to a sae-lens SAE/optimiser."""

    def __init__(self, sae: Any, optimizer: torch.optim.Optimizer) -> None:
        self.sae = sae
        self.handles = [
            sae.W_dec.register_hook(self._project),
            optimizer.register_step_post_hook(lambda *_: self.renormalise()),
        ]
        self.renormalise()

    def _project(self, grad: torch.Tensor) -> torch.Tensor:
        rows = self.sae.W_dec.detach()
        rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return grad - (grad * rows).sum(dim=1, keepdim=True) * rows

    @torch.no_grad()
    def renormalise(self) -> None:
        W = self.sae.W_dec.data
        W.div_(W.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ----------------------------------------------------------------------------------------------
# resampling
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def _per_row_loss(forward: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    return torch.cat([(forward(rows[s : s + chunk]) - rows[s : s + chunk]).pow(2).mean(1) for s in range(0, len(rows), chunk)])


@torch.no_grad()
def resample_dead_latents(
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    W_dec: torch.Tensor,
    dead: torch.Tensor,
    rows: torch.Tensor,
    row_losses: torch.Tensor,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """Anthropic/DN-CBM resampling of the ``dead`` latents, in place; returns how many.

    Shapes follow sae-lens: ``W_enc`` (d_in, d_sae), ``b_enc`` (d_sae,), ``W_dec`` (d_sae, d_in).
    ``rows`` (R, d_in) are candidate inputs and ``row_losses`` (R,) their reconstruction losses.
    """
    index = torch.nonzero(dead, as_tuple=False).flatten()
    if index.numel() == 0:
        return 0
    weights = row_losses.double().pow(2).cpu()
    if not torch.isfinite(weights).all() or float(weights.sum()) <= 0:
        weights = torch.ones_like(weights)
    picked = torch.multinomial(weights, index.numel(), replacement=True, generator=generator)
    inputs = rows[picked].to(W_dec.device, W_dec.dtype)
    directions = inputs / inputs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead.to(W_enc.device)
    live_norm = W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else W_enc.new_tensor(1.0)
    W_dec[index] = directions
    W_enc[:, index] = (directions * 0.2 * live_norm).T
    b_enc[index] = 0.0
    if optimizer is not None:  # AdamWithReset: zero the moments of the resampled latents
        for param, slicer in ((W_enc, (slice(None), index)), (b_enc, (index,)), (W_dec, (index,))):
            state = optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][slicer] = 0.0
    return int(index.numel())


# ----------------------------------------------------------------------------------------------
# training through sae-lens
# ----------------------------------------------------------------------------------------------


def _progress_bar(settings: TrainSettings, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not settings.progress, leave=False, unit="step")


def train_sae(
    acts: Any,
    settings: TrainSettings,
    callback: Callable[[TrainProgress], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
    data_parallel: Any = None,
) -> tuple[Any, TrainResult]:
    """Train a sae-lens training SAE on ``acts`` (N, d) with sae-lens's ``SAETrainer``.

    ``callback`` gets a :class:`TrainProgress` after every step (an app's progress bar, an ETA).
    ``cancel`` is asked before every step (e.g. ``threading.Event().is_set``); when it returns
    True, training stops with :class:`TrainingCancelled` and nothing of the partial SAE is kept.
    ``acts`` may also be a data source like :class:`TensorRows` (``StreamedRows`` streams a store
    entry larger than memory). Returns ``(training_sae, result)``; the SAE's decoder hooks are
    removed before returning.

    ``data_parallel`` (a :class:`~conceptlab.discovery.data_parallel.GradientAveraging`) makes this
    process one replica of a data-parallel run: it trains on its slice of every batch with the
    gradients averaged over the process group; ``result.losses`` are then the global batch's.
    """
    from sae_lens import LoggingConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    device = settings.resolved_device
    source = TensorRows(acts) if isinstance(acts, torch.Tensor) else acts
    sae = build_training_sae(source.dim, settings)
    batch = int(settings.batch_size)
    window = settings.dead_feature_window or max(1, settings.resample_every or settings.steps // 10)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=int(settings.steps) * batch,
        train_batch_size_samples=batch,
        lr=float(settings.lr),
        lr_end=float(settings.lr),  # constant schedule (DN-CBM); sae-lens requires it set
        lr_scheduler_name="constant",
        adam_beta1=0.9,
        adam_beta2=0.999,
        device=device,
        dead_feature_window=int(window),
        feature_sampling_window=int(settings.steps) + 1,  # its window logs only feed wandb
        logger=LoggingConfig(log_to_wandb=False),
    )
    provider = source.batches(batch, settings.seed, device)
    if data_parallel is not None:
        data_parallel.check(batch)
        provider = data_parallel.split(provider)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider)
    constraint = _UnitNormDecoder(sae, trainer.optimizer) if settings.unit_norm_decoder else None
    if data_parallel is not None:
        data_parallel.attach(sae)  # after the decoder's projection hook: the projected gradients are averaged
    resample_generator = torch.Generator().manual_seed(int(settings.seed) + 1)
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=device)
    result = TrainResult()
    last_allowed = int(settings.steps) - int(settings.resample_every)  # none in the last interval
    start = time.perf_counter()
    bar = _progress_bar(settings, int(settings.steps), f"SAE ({settings.architecture}, {sae.cfg.d_sae} latents)")
    try:
        for step in range(1, int(settings.steps) + 1):
            if cancel is not None and cancel():
                raise TrainingCancelled(step - 1, int(settings.steps))
            trainer.maybe_reset_sparsity()
            output = trainer.step(next(provider))
            trainer.n_training_steps += 1
            with torch.no_grad():
                fired |= output.feature_acts.detach().bool().any(0)
            if data_parallel is None:
                result.losses.append(float(output.loss.detach()))
                result.mse_losses.append(float(output.losses["mse_loss"].detach()))
            else:
                loss, mse = data_parallel.after_step(trainer, fired, [output.loss, output.losses["mse_loss"]])
                result.losses.append(loss)
                result.mse_losses.append(mse)
            if settings.resample_every and step % settings.resample_every == 0 and step <= last_allowed:
                n = _resample_training_sae(sae, ~fired, source, settings, resample_generator, trainer.optimizer)
                result.resampled.append((step, n))
                fired.zero_()
            if step % 10 == 0 or step == settings.steps:
                bar.set_postfix(loss=f"{result.losses[-1]:.4g}", refresh=False)
            bar.update(1)
            if callback is not None:
                callback(TrainProgress(step, int(settings.steps), result.losses[-1], time.perf_counter() - start))
        trainer.set_final_sae_metadata()
    finally:
        bar.close()
        if constraint is not None:
            constraint.remove()
        if data_parallel is not None:
            data_parallel.detach()
    result.seconds = time.perf_counter() - start
    result.steps = int(settings.steps)
    result.samples = int(settings.steps) * batch
    sae.eval()
    return sae, result


def _resample_training_sae(sae: Any, dead: torch.Tensor, source: Any, settings: TrainSettings,
                           generator: torch.Generator, optimizer: torch.optim.Optimizer) -> int:
    if not bool(dead.any()):
        return 0
    rows = source.sample(int(settings.resample_rows), generator).to(sae.W_dec.device)
    was_training = sae.training
    sae.eval()
    losses = _per_row_loss(lambda x: sae.decode(sae.encode(x)), rows)
    sae.train(was_training)
    n = resample_dead_latents(sae.W_enc.data, sae.b_enc.data, sae.W_dec.data, dead, rows, losses, generator, optimizer)
    if settings.unit_norm_decoder:
        sae.W_dec.data.div_(sae.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return n


# ----------------------------------------------------------------------------------------------
# the same training as a plain torch loop (reference for tests, baseline for the benchmark)
# ----------------------------------------------------------------------------------------------


def train_sae_plain(acts: torch.Tensor, settings: TrainSettings, init: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], TrainResult]:
    """The standard (ReLU + L1) SAE of :func:`train_sae`, trained by a hand-written torch loop.

    Same parameters (sae-lens layout), loss, Adam, gradient clipping, batches and constraints;
    no sae-lens code runs. ``init`` gives starting weights (``W_enc``, ``b_enc``, ``W_dec``,
    ``b_dec``); by default those of :func:`build_training_sae`. Returns (weights, result).
    """
    if settings.architecture != "standard":
        raise ValueError("train_sae_plain implements the standard architecture only")
    device = settings.resolved_device
    if init is None:
        init = {k: v.detach().clone() for k, v in build_training_sae(acts.shape[1], settings).state_dict().items()}
    W_enc = init["W_enc"].clone().to(device).requires_grad_(True)
    b_enc = init["b_enc"].clone().to(device).requires_grad_(True)
    W_dec = init["W_dec"].clone().to(device).requires_grad_(True)
    b_dec = init["b_dec"].clone().to(device).requires_grad_(True)
    params = [b_dec, W_dec, W_enc, b_enc]  # sae-lens registration order (clipping sums in this order)
    optimizer = torch.optim.Adam(params, lr=settings.lr, betas=(0.9, 0.999))
    provider = batch_iterator(acts, int(settings.batch_size), settings.seed, device)
    generator = torch.Generator().manual_seed(int(settings.seed) + 1)
    fired = torch.zeros(W_dec.shape[0], dtype=torch.bool, device=device)
    last_allowed = int(settings.steps) - int(settings.resample_every)
    result = TrainResult()

    def renormalise() -> None:
        with torch.no_grad():
            W_dec.div_(W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu((x - b_dec) @ W_enc + b_enc)
        return f, f @ W_dec + b_dec

    if settings.unit_norm_decoder:
        renormalise()
    start = time.perf_counter()
    for step in range(1, int(settings.steps) + 1):
        x = next(provider)
        f, x_hat = forward(x)
        squared = (x_hat - x).pow(2)
        mse = (squared.mean(1) if settings.mse_reduction == "mean" else squared.sum(1)).mean()
        l1 = settings.l1 * (f * W_dec.norm(dim=1)).abs().sum(1).mean()
        loss = mse + l1
        loss.backward()
        if settings.unit_norm_decoder:
            with torch.no_grad():
                unit = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
                W_dec.grad -= (W_dec.grad * unit).sum(1, keepdim=True) * unit
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if settings.unit_norm_decoder:
            renormalise()
        with torch.no_grad():
            fired |= (f > 0).any(0)
        result.losses.append(float(loss.detach()))
        result.mse_losses.append(float(mse.detach()))
        if settings.resample_every and step % settings.resample_every == 0 and step <= last_allowed:
            dead = ~fired
            n = 0
            if bool(dead.any()):
                n_rows = min(int(settings.resample_rows), acts.shape[0])
                rows = acts[torch.randperm(acts.shape[0], generator=generator)[:n_rows]].to(device)
                losses = _per_row_loss(lambda r: forward(r)[1], rows)
                n = resample_dead_latents(W_enc.data, b_enc.data, W_dec.data, dead, rows, losses, generator, optimizer)
                if settings.unit_norm_decoder:
                    renormalise()
            result.resampled.append((step, n))
            fired.zero_()
    result.seconds = time.perf_counter() - start
    result.steps = int(settings.steps)
    result.samples = int(settings.steps) * int(settings.batch_size)
    weights = {"W_enc": W_enc.detach(), "b_enc": b_enc.detach(), "W_dec": W_dec.detach(), "b_dec": b_dec.detach()}
    return weights, result
