"""``SparseAutoencoder``: a scikit-learn-style estimator around a sae-lens SAE.

>>> sae = SparseAutoencoder(expansion=8, epochs=200).fit(embeddings)   # (N, d) raw embeddings
>>> z = sae.encode(embeddings)                                         # (N, 8d) latents
>>> sae.metrics_                                                       # SAEMetrics on the fit data
>>> sae.save("runs/sae")        # sae-lens's own layout: cfg.json + sae_weights.safetensors
>>> sae_lens.SAE.load_from_disk("runs/sae")                            # loads in sae-lens too

Defaults are Discover-then-Name's (README command + ``MethodOurs`` config): expansion factor 8,
L1 coefficient 3e-5, Adam lr 5e-4, batch 4096, 200 epochs, resampling every 10 epochs, seed 49,
raw (unnormalised) embeddings, unit-norm decoder rows, MSE averaged over features. Training runs
through sae-lens's ``SAETrainer`` (see :mod:`conceptlab.discovery.train`).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from conceptlab.discovery.train import ARCHITECTURES, TrainResult, TrainSettings, train_sae

__all__ = ["SAEMetrics", "SparseAutoencoder", "sae_metrics", "as_activations"]

SAE_CFG_FILE = "cfg.json"  # sae_lens.constants.SAE_CFG_FILENAME
SAE_WEIGHTS_FILE = "sae_weights.safetensors"  # sae_lens.constants.SAE_WEIGHTS_FILENAME
METADATA_KEY = "conceptlab"


def as_activations(value: Any, what: str = "activations", dim: int | None = None, min_rows: int = 1) -> torch.Tensor:
    """A finite (N, d) float32 CPU tensor; clear errors for wrong shapes, NaN and infinities."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu", torch.float32)
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise TypeError(f"{what} must be a tensor or array of numbers, got {type(value).__name__}") from error
    if tensor.ndim == 1 and dim is not None:
        tensor = tensor[None, :]
    if tensor.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, d) matrix, got shape {tuple(tensor.shape)}")
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(f"{what} have dimension {tensor.shape[1]}, but the SAE was built for {dim}")
    if tensor.shape[0] < min_rows:
        raise ValueError(f"{what} need at least {min_rows} row(s), got {tensor.shape[0]}")
    if tensor.shape[1] == 0:
        raise ValueError(f"{what} have zero columns")
    if torch.isnan(tensor).any():
        rows = torch.isnan(tensor).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{what} contain NaN values (rows {rows} ...)")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} contain infinite values")
    return tensor.contiguous()


@dataclass(frozen=True)
class SAEMetrics:
    """Reconstruction and sparsity of an SAE on a set of inputs.

    Attributes:
        n_samples: rows evaluated.
        mse: mean over rows and features of (x − x̂)².
        explained_variance: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ the mean row), sae-lens's definition.
        l0: mean number of non-zero latents per row.
        l1: mean Σ_k |f_k| per row.
        dead_latents: latents that are zero on every row.
        dead_fraction: dead_latents / d_sae.
        d_in, d_sae: dimensions.
    """

    n_samples: int
    mse: float
    explained_variance: float
    l0: float
    l1: float
    dead_latents: int
    dead_fraction: float
    d_in: int
    d_sae: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"MSE {self.mse:.4g} | explained variance {self.explained_variance:.3f} | L0 {self.l0:.2f} | "
            f"dead {self.dead_latents}/{self.d_sae} ({100 * self.dead_fraction:.1f}%) on {self.n_samples} rows"
        )


def sae_metrics(x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor) -> SAEMetrics:
    """:class:`SAEMetrics` from inputs (N, d), reconstructions (N, d) and latents (N, M), in float64."""
    if x.shape != x_hat.shape or x.ndim != 2 or z.ndim != 2 or z.shape[0] != x.shape[0]:
        raise ValueError(f"shapes do not fit: x {tuple(x.shape)}, x_hat {tuple(x_hat.shape)}, z {tuple(z.shape)}")
    x, x_hat, z = x.double(), x_hat.double(), z.double()
    residual = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    active = z != 0
    dead = int((~active.any(0)).sum())
    return SAEMetrics(
        n_samples=int(x.shape[0]),
        mse=float(residual / x.numel()),
        explained_variance=float(1.0 - residual / total) if total > 0 else float("nan"),
        l0=float(active.sum(1).double().mean()),
        l1=float(z.abs().sum(1).mean()),
        dead_latents=dead,
        dead_fraction=dead / z.shape[1],
        d_in=int(x.shape[1]),
        d_sae=int(z.shape[1]),
    )


class SparseAutoencoder:
    """Sparse autoencoder on cached embeddings, trained with sae-lens.

    Args:
        expansion: latents per input dimension (ignored when ``n_latents`` is given).
        n_latents: number of latents, overriding ``expansion``.
        architecture: ``"standard"`` (ReLU + L1, DN-CBM) or ``"topk"`` (sae-lens TopK + AuxK).
        l1: L1 coefficient for ``"standard"``.
        k: active latents per input for ``"topk"``.
        lr: Adam learning rate (constant).
        epochs: passes over the data; converted to ``ceil(epochs · N / batch_size)`` steps.
        steps: optimiser steps, overriding ``epochs``.
        batch_size: rows per step (capped at N).
        resample_every: epochs between dead-latent resamplings; ``None`` -> 10 for
            ``"standard"`` (DN-CBM), off for ``"topk"`` (its AuxK loss revives latents); 0 = off.
        unit_norm_decoder: keep decoder rows at unit norm (DN-CBM).
        mse_reduction: ``"mean"`` over features (DN-CBM) or ``"sum"`` (sae-lens); ``None`` ->
            ``"mean"`` for standard, ``"sum"`` for topk (sae-lens's own TopK loss).
        init: ``"dncbm"`` or ``"sae_lens"`` initialisation.
        seed: seeds everything random in ``fit`` (DN-CBM 49); training is deterministic on CPU.
        device: None -> CUDA when present.
        progress: show a progress bar while training.

    Attributes (after ``fit``): ``sae_`` (the sae-lens inference SAE: ``StandardSAE`` or
    ``TopKSAE``), ``metrics_`` (:class:`SAEMetrics` on the fit data), ``live_`` (bool (M,): fired
    on the fit data), ``history_`` (per-step losses, resampling events, timing), ``n_steps_``,
    ``provenance_``.
    """

    def __init__(
        self,
        expansion: int = 8,
        n_latents: int | None = None,
        architecture: str = "standard",
        l1: float = 3e-5,
        k: int | None = None,
        lr: float = 5e-4,
        epochs: float = 200,
        steps: int | None = None,
        batch_size: int = 4096,
        resample_every: float | None = None,
        unit_norm_decoder: bool = True,
        mse_reduction: str | None = None,
        init: str = "dncbm",
        seed: int = 49,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        self.expansion = expansion
        self.n_latents = n_latents
        self.architecture = architecture
        self.l1 = l1
        self.k = k
        self.lr = lr
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.resample_every = resample_every
        self.unit_norm_decoder = unit_norm_decoder
        self.mse_reduction = mse_reduction
        self.init = init
        self.seed = seed
        self.device = device
        self.progress = progress

    _PARAMS = ("expansion", "n_latents", "architecture", "l1", "k", "lr", "epochs", "steps", "batch_size", "resample_every",
               "unit_norm_decoder", "mse_reduction", "init", "seed", "device", "progress")

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> "SparseAutoencoder":
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"SparseAutoencoder has no parameter {name!r}; parameters: {', '.join(self._PARAMS)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"SparseAutoencoder({shown}) [{'fitted' if self.is_fitted else 'not fitted'}]"

    # ------------------------------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------------------------------

    def settings_for(self, n_rows: int, d_in: int) -> TrainSettings:
        """The resolved :class:`TrainSettings` ``fit`` would use for an (n_rows, d_in) input."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.n_latents is not None:
            d_sae = int(self.n_latents)
        else:
            if not (isinstance(self.expansion, (int, float)) and self.expansion > 0):
                raise ValueError(f"expansion must be positive, got {self.expansion!r}")
            d_sae = int(round(self.expansion * d_in))
        if d_sae < 1:
            raise ValueError(f"the SAE needs at least one latent, got {d_sae}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        batch = min(int(self.batch_size), int(n_rows))
        per_epoch = n_rows / batch  # steps per epoch
        if self.steps is not None:
            steps = int(self.steps)
        else:
            if not (self.epochs > 0 and math.isfinite(self.epochs)):
                raise ValueError(f"epochs must be positive, got {self.epochs!r}")
            steps = max(1, math.ceil(self.epochs * per_epoch))
        resample = self.resample_every
        if resample is None:
            resample = 10 if self.architecture == "standard" else 0
        if resample < 0:
            raise ValueError(f"resample_every must be >= 0 epochs, got {resample}")
        resample_steps = max(1, round(resample * per_epoch)) if resample else 0
        mse_reduction = self.mse_reduction or ("mean" if self.architecture == "standard" else "sum")
        return TrainSettings(
            d_sae=d_sae, architecture=self.architecture, l1=float(self.l1), k=self.k, lr=float(self.lr), steps=steps,
            batch_size=batch, resample_every=resample_steps, unit_norm_decoder=bool(self.unit_norm_decoder),
            mse_reduction=mse_reduction, init=self.init, seed=int(self.seed), device=self.device, progress=bool(self.progress),
        )

    def fit(self, acts: Any, y: Any = None, provenance: dict[str, Any] | None = None) -> "SparseAutoencoder":
        """Train on raw embeddings ``acts`` (N, d); ``y`` is ignored. Returns self.

        ``provenance`` (e.g. the activation-store key and backbone spec) is recorded with the run.
        """
        X = as_activations(acts, "activations", min_rows=2)
        settings = self.settings_for(X.shape[0], X.shape[1])
        training_sae, result = train_sae(X, settings)
        self.sae_ = _inference_sae(training_sae)
        self.settings_ = settings
        self.history_ = result
        self.n_steps_ = result.steps
        self.d_in_ = int(X.shape[1])
        self.d_sae_ = int(settings.d_sae)
        self.metrics_ = self.evaluate(X)
        self.live_ = self._firing(X)
        self.provenance_ = _provenance(self, settings, X, result, provenance)
        return self

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "sae_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("this SparseAutoencoder is not fitted yet; call fit(acts) or load(dir) first")

    def _device(self) -> torch.device:
        return self.sae_.W_dec.device

    @torch.no_grad()
    def encode(self, acts: Any, batch_size: int = 8192) -> torch.Tensor:
        """Latent activations (N, M) of raw embeddings (N, d) -- DN-CBM's concept strengths."""
        self._check_fitted()
        X = as_activations(acts, "activations", dim=self.sae_.cfg.d_in)
        out = [self.sae_.encode(X[s : s + batch_size].to(self._device())).cpu() for s in range(0, len(X), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, z: Any, batch_size: int = 8192) -> torch.Tensor:
        """Reconstructions (N, d) of latent activations (N, M)."""
        self._check_fitted()
        Z = as_activations(z, "latent activations", dim=self.sae_.cfg.d_sae)
        out = [self.sae_.decode(Z[s : s + batch_size].to(self._device())).cpu() for s in range(0, len(Z), batch_size)]
        return torch.cat(out)

    def transform(self, acts: Any) -> np.ndarray:
        """``encode`` as numpy (scikit-learn's transformer method)."""
        return self.encode(acts).numpy()

    def reconstruct(self, acts: Any) -> torch.Tensor:
        return self.decode(self.encode(acts))

    def evaluate(self, acts: Any) -> SAEMetrics:
        """:class:`SAEMetrics` of this SAE on ``acts``."""
        self._check_fitted()
        X = as_activations(acts, "activations", dim=self.sae_.cfg.d_in)
        z = self.encode(X)
        return sae_metrics(X, self.decode(z), z)

    def _firing(self, X: torch.Tensor) -> torch.Tensor:
        return (self.encode(X) != 0).any(0)

    @property
    def decoder_directions(self) -> torch.Tensor:
        """(M, d) decoder rows, L2-normalised: the direction each latent writes (what naming uses)."""
        self._check_fitted()
        W = self.sae_.W_dec.detach().cpu().float()
        return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @property
    def encoder_directions(self) -> torch.Tensor:
        """(M, d) encoder rows (sae-lens's ``W_enc`` transposed)."""
        self._check_fitted()
        return self.sae_.W_enc.detach().cpu().float().T.contiguous()

    # ------------------------------------------------------------------------------------------
    # persistence: sae-lens's own format
    # ------------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` (sae-lens's ``save_model`` layout).

        conceptlab's parameters, metrics and provenance ride in the config's free-form
        ``metadata["conceptlab"]`` block, so ``sae_lens.SAE.load_from_disk`` reads the folder
        as is. Files are written to a temporary folder and moved into place.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.sae_.cfg.metadata[METADATA_KEY] = self._metadata()
        tmp = Path(tempfile.mkdtemp(prefix=".sae-", dir=directory))
        try:
            self.sae_.save_model(tmp)
            for name in (SAE_WEIGHTS_FILE, SAE_CFG_FILE):  # config last: a folder with a config is complete
                os.replace(tmp / name, directory / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    def _metadata(self) -> dict[str, Any]:
        from conceptlab.concepts.concept import jsonable

        return jsonable({
            "format": "conceptlab.SparseAutoencoder",
            "params": self.get_params(),
            "settings": self.settings_.to_dict() if getattr(self, "settings_", None) is not None else None,
            "metrics": self.metrics_.to_dict() if getattr(self, "metrics_", None) is not None else None,
            "live": self.live_.int().tolist() if getattr(self, "live_", None) is not None else None,
            "provenance": getattr(self, "provenance_", None),
        })

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> "SparseAutoencoder":
        """Load a folder in sae-lens's format (written by :meth:`save` or by sae-lens itself)."""
        from sae_lens import SAE

        directory = Path(directory)
        if not (directory / SAE_CFG_FILE).is_file() or not (directory / SAE_WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{directory} is not a saved SAE: it needs {SAE_CFG_FILE} and {SAE_WEIGHTS_FILE}")
        sae = SAE.load_from_disk(str(directory), device=device)
        return cls.from_sae(sae)

    @classmethod
    def from_sae(cls, sae: Any) -> "SparseAutoencoder":
        """Wrap any sae-lens SAE (e.g. one loaded from the hub on a machine that has it)."""
        meta = sae.cfg.metadata.get(METADATA_KEY) or {}
        params = dict(meta.get("params") or {})
        model = cls(**{k: v for k, v in params.items() if k in cls._PARAMS})
        if not params:
            model.architecture = sae.cfg.architecture()
            model.n_latents = int(sae.cfg.d_sae)
            model.k = getattr(sae.cfg, "k", None)
        model.sae_ = sae.eval()
        model.d_in_ = int(sae.cfg.d_in)
        model.d_sae_ = int(sae.cfg.d_sae)
        settings = meta.get("settings")
        model.settings_ = TrainSettings(**settings) if settings else None
        model.metrics_ = SAEMetrics(**meta["metrics"]) if meta.get("metrics") else None
        model.live_ = torch.tensor(meta["live"], dtype=torch.bool) if meta.get("live") else None
        model.provenance_ = meta.get("provenance") or {"source": "sae-lens SAE without conceptlab metadata"}
        model.history_ = TrainResult()
        model.n_steps_ = settings["steps"] if settings else None
        return model


def _inference_sae(training_sae: Any) -> Any:
    """The sae-lens inference SAE (StandardSAE/TopKSAE) holding a training SAE's weights."""
    from sae_lens import SAE

    cfg = training_sae.cfg.get_inference_sae_cfg_dict()
    cfg["device"] = str(training_sae.W_dec.device)
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten; keep the global RNG untouched
        sae = SAE.from_dict(cfg)
    state = training_sae.state_dict()
    training_sae.process_state_dict_for_saving_inference(state)
    sae.load_state_dict(state)
    return sae.eval()


def _provenance(model: SparseAutoencoder, settings: TrainSettings, X: torch.Tensor, result: TrainResult,
                extra: dict[str, Any] | None) -> dict[str, Any]:
    import hashlib

    import sae_lens

    from conceptlab.concepts.bank import library_provenance

    digest = hashlib.sha256(X.numpy().tobytes()).hexdigest()[:32]
    return library_provenance(
        seed=settings.seed, kind="sae", trainer="sae_lens.SAETrainer", sae_lens_version=sae_lens.__version__,
        torch_version=torch.__version__, data_rows=int(X.shape[0]), data_dim=int(X.shape[1]), data_sha256=digest,
        steps=result.steps, seconds=round(result.seconds, 3), resampled=[list(r) for r in result.resampled],
        **(extra or {}),
    )
