"""``SparseAutoencoder``: a scikit-learn-style estimator around a sae-lens SAE.

>>> sae = SparseAutoencoder(expansion=8, epochs=200).fit(embeddings)   # (N, d) raw embeddings
>>> z = sae.encode(embeddings)                                         # (N, 8d) latents
>>> sae.metrics_                                                       # SAEMetrics on the fit data
>>> sae.save("runs/sae")        # sae-lens's own layout: cfg.json + sae_weights.safetensors
>>> sae_lens.SAE.load_from_disk("runs/sae")                            # loads in sae-lens too
>>> SparseAutoencoder(center=True).fit(embeddings)     # trained on embeddings minus their mean

``center=True`` trains on the inputs minus their mean (``input_mean_``) and folds that mean into
sae-lens's pre-encoder bias ``b_dec`` (``apply_b_dec_to_input``): every method, and sae-lens
itself loading the saved folder, then takes and returns *raw* embeddings. The mean is also saved
on its own (``input_mean.safetensors``) so a reloaded model reports it.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from conceptlab.discovery.train import ARCHITECTURES, TrainProgress, TrainResult, TrainSettings, train_sae
from conceptlab.utils import as_matrix

__all__ = ["SAEMetrics", "SparseAutoencoder", "sae_metrics", "as_activations"]

SAE_CFG_FILE = "cfg.json"  # sae_lens.constants.SAE_CFG_FILENAME
SAE_WEIGHTS_FILE = "sae_weights.safetensors"  # sae_lens.constants.SAE_WEIGHTS_FILENAME
INPUT_MEAN_FILE = "input_mean.safetensors"  # conceptlab's: the centring mean of a center=True SAE
METADATA_KEY = "conceptlab"


def as_activations(value: Any, what: str = "activations", dim: int | None = None, min_rows: int = 1) -> torch.Tensor:
    """:func:`conceptlab.utils.as_matrix` in the SAE's terms: a 1-D value is one row only when
    ``dim`` is given, and a wrong width names the SAE."""
    tensor = as_matrix(value, what, min_rows=min_rows, single_row=dim is not None)
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(f"{what} have dimension {tensor.shape[1]}, but the SAE was built for {dim}")
    return tensor


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


class SparseAutoencoder(BaseEstimator):
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
        center: train on the inputs minus their mean (stored as ``input_mean_`` and folded into
            ``b_dec``, so callers still pass raw embeddings). False = DN-CBM (raw embeddings);
            ShapesWorld's recommended settings centre (``conceptlab.data.shapes_facts.SAE_SETTINGS``).
        seed: seeds everything random in ``fit`` (DN-CBM 49); training is deterministic on CPU.
        device: None -> CUDA when present.
        progress: show a progress bar while training.

    Attributes (after ``fit``): ``sae_`` (the sae-lens inference SAE: ``StandardSAE`` or
    ``TopKSAE``), ``metrics_`` (:class:`SAEMetrics` on the fit data), ``live_`` (bool (M,): fired
    on the fit data), ``history_`` (per-step losses, resampling events, timing), ``n_steps_``,
    ``input_mean_`` ((d,) float tensor when ``center``, else None), ``provenance_``.
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
        center: bool = False,
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
        self.center = center
        self.seed = seed
        self.device = device
        self.progress = progress

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"SparseAutoencoder({shown}) [{'fitted' if self.is_fitted else 'not fitted'}]"

    def __sklearn_is_fitted__(self) -> bool:
        return self.is_fitted

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

    def fit(self, acts: Any, y: Any = None, provenance: dict[str, Any] | None = None,
            callback: Callable[[TrainProgress], Any] | None = None, cancel: Callable[[], bool] | None = None) -> SparseAutoencoder:
        """Train on raw embeddings ``acts`` (N, d); ``y`` is ignored. Returns self.

        With ``center`` the SAE trains on ``acts`` minus their mean, which is then folded into
        ``b_dec``. ``provenance`` (e.g. the activation-store key and backbone spec) is recorded
        with the run. ``callback`` and ``cancel`` are :func:`~conceptlab.discovery.train.train_sae`'s
        (progress after every step; a cancelled fit raises ``TrainingCancelled`` and leaves the
        estimator as it was). A store entry (``ActivationStore.open(key)``) is streamed: see
        :meth:`fit_stream`.
        """
        if _is_store_entry(acts):
            return self.fit_stream(acts, provenance=provenance, callback=callback, cancel=cancel)
        X = as_activations(acts, "activations", min_rows=2)
        settings = self.settings_for(X.shape[0], X.shape[1])
        mean = X.double().mean(0).float() if self.center else None
        training_sae, result = train_sae(X if mean is None else X - mean, settings, callback=callback, cancel=cancel)
        return _finish_fit(self, training_sae, result, settings, mean, X, provenance)

    def fit_stream(self, entry: Any, buffer_rows: int | None = None, chunk_rows: int | None = None, provenance: dict[str, Any] | None = None,
                   callback: Callable[[TrainProgress], Any] | None = None, cancel: Callable[[], bool] | None = None) -> SparseAutoencoder:
        """Train on a store entry larger than memory: batches are streamed from its memory-mapped
        shards through a shuffle buffer of ``buffer_rows`` rows (default about 1 GiB), so memory is
        bounded by the buffer, not by the entry (:mod:`conceptlab.discovery.streaming`). An entry
        that fits in the buffer is loaded and trained on exactly as ``fit(entry.load())``."""
        from conceptlab.discovery.streaming import fit_entry

        return fit_entry(self, entry, buffer_rows, chunk_rows, provenance, callback, cancel)

    def fit_distributed(self, data: Any, num_workers: int = 2, use_gpu: bool = False, address: str | None = None,
                        buffer_rows: int | None = None, chunk_rows: int | None = None, storage_path: str | None = None,
                        provenance: dict[str, Any] | None = None) -> SparseAutoencoder:
        """Train data-parallel on ``num_workers`` Ray Train workers (a tensor or a store entry); the
        same SAE as ``fit`` up to floating-point summation order. Needs ``conceptlab[distributed]``;
        see :func:`conceptlab.discovery.ray_train.fit_ray` for the arguments."""
        from conceptlab.discovery.ray_train import fit_ray

        return fit_ray(self, data, num_workers=num_workers, use_gpu=use_gpu, address=address, buffer_rows=buffer_rows,
                       chunk_rows=chunk_rows, storage_path=storage_path, provenance=provenance)

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
        """:class:`SAEMetrics` of this SAE on ``acts`` (a store entry is read chunk by chunk)."""
        self._check_fitted()
        if _is_store_entry(acts):
            from conceptlab.discovery.streaming import evaluate_entry
            from conceptlab.store.stream import ShuffledRows

            return evaluate_entry(self, ShuffledRows(acts, buffer_rows=65536))[0]
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
        as is (a centred SAE's mean is already in its ``b_dec``); a centred SAE also writes its
        mean to ``input_mean.safetensors``. Files are written to a temporary folder and moved
        into place. The metadata block also records the sha256 of the tensor files, which
        :meth:`load` verifies.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.sae_.cfg.metadata[METADATA_KEY] = self._metadata()
        tmp = Path(tempfile.mkdtemp(prefix=".sae-", dir=directory))
        try:
            self.sae_.save_model(tmp)
            names = [SAE_WEIGHTS_FILE, SAE_CFG_FILE]
            mean = getattr(self, "input_mean_", None)
            if mean is not None:
                save_file({"input_mean": mean.detach().cpu().float().contiguous()}, tmp / INPUT_MEAN_FILE)
                names.insert(0, INPUT_MEAN_FILE)
            elif (directory / INPUT_MEAN_FILE).exists():  # overwriting a centred SAE with an uncentred one
                (directory / INPUT_MEAN_FILE).unlink()
            _record_checksums(tmp, [n for n in names if n != SAE_CFG_FILE])
            for name in names:  # config last: a folder with a config is complete
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
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> SparseAutoencoder:
        """Load a folder in sae-lens's format (written by :meth:`save` or by sae-lens itself)."""
        from sae_lens import SAE

        from conceptlab.concepts.bank import ArtifactIntegrityError, read_json, read_tensors, verify_checksums

        directory = Path(directory)
        if not (directory / SAE_CFG_FILE).is_file() or not (directory / SAE_WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{directory} is not a saved SAE: it needs {SAE_CFG_FILE} and {SAE_WEIGHTS_FILE}")
        cfg = read_json(directory / SAE_CFG_FILE, "SAE config")  # safely, before sae-lens reads it
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        ours = meta.get(METADATA_KEY) if isinstance(meta.get(METADATA_KEY), dict) else {}
        if "files" in ours:  # written by conceptlab: the tensor files must be the ones it saved
            verify_checksums(directory, ours["files"], directory / SAE_CFG_FILE)
        weights = read_tensors(directory / SAE_WEIGHTS_FILE)  # finite, readable
        _check_sae_shapes(cfg, weights, directory)
        try:
            sae = SAE.load_from_disk(str(directory), device=device)
        except (RuntimeError, KeyError, TypeError) as error:  # shapes that do not match cfg.json, missing fields
            raise ValueError(f"{directory} is not a loadable SAE: {error}") from error
        _check_sae_finite(sae, directory)
        input_mean = None
        if (directory / INPUT_MEAN_FILE).is_file():
            try:
                input_mean = read_tensors(directory / INPUT_MEAN_FILE, required=("input_mean",))["input_mean"]
            except ArtifactIntegrityError:
                raise
            except ValueError as error:  # a truncated or foreign file
                raise ValueError(f"{directory / INPUT_MEAN_FILE} is not a readable input mean: {error}") from error
        return cls.from_sae(sae, input_mean=input_mean)

    @classmethod
    def from_sae(cls, sae: Any, input_mean: Any = None) -> SparseAutoencoder:
        """Wrap any sae-lens SAE (e.g. one loaded from the hub on a machine that has it).

        ``input_mean``: the centring mean of a ``center=True`` SAE, for the record only (it is
        already folded into ``b_dec``); None leaves ``input_mean_`` unknown (None).
        """
        meta = sae.cfg.metadata.get(METADATA_KEY) or {}
        params = dict(meta.get("params") or {})
        names = cls._get_param_names()
        model = cls(**{k: v for k, v in params.items() if k in names})
        if not params:
            model.architecture = sae.cfg.architecture()
            model.n_latents = int(sae.cfg.d_sae)
            model.k = getattr(sae.cfg, "k", None)
        model.sae_ = sae.eval()
        model.d_in_ = int(sae.cfg.d_in)
        model.d_sae_ = int(sae.cfg.d_sae)
        if input_mean is not None:
            input_mean = torch.as_tensor(input_mean, dtype=torch.float32).reshape(-1)
            if input_mean.shape != (model.d_in_,):
                raise ValueError(f"the input mean has shape {tuple(input_mean.shape)}, but the SAE encodes {model.d_in_}-d inputs")
        model.input_mean_ = input_mean
        settings = meta.get("settings")
        model.settings_ = TrainSettings(**settings) if settings else None
        model.metrics_ = SAEMetrics(**meta["metrics"]) if meta.get("metrics") else None
        model.live_ = torch.tensor(meta["live"], dtype=torch.bool) if meta.get("live") else None
        model.provenance_ = meta.get("provenance") or {"source": "sae-lens SAE without conceptlab metadata"}
        model.history_ = TrainResult()
        model.n_steps_ = settings["steps"] if settings else None
        return model


def _is_store_entry(value: Any) -> bool:
    from conceptlab.store.reader import StoredActivations

    return isinstance(value, StoredActivations)


def _record_checksums(directory: Path, names: list[str]) -> None:
    """Add the sha256 of ``names`` to the conceptlab block of ``cfg.json`` in ``directory``."""
    import json

    from conceptlab.concepts.bank import file_checksums
    from conceptlab.utils import atomic_write_json

    path = directory / SAE_CFG_FILE
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.setdefault("metadata", {}).setdefault(METADATA_KEY, {})["files"] = file_checksums(directory, names)
    atomic_write_json(path, cfg)


def _check_sae_shapes(cfg: dict[str, Any], weights: dict[str, torch.Tensor], directory: Path) -> None:
    """Weights as wide as cfg.json says (d_in, d_sae), checked before sae-lens reads them."""
    try:
        d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{directory / SAE_CFG_FILE} is corrupt: missing or bad {error}") from None
    expected = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    for name, shape in expected.items():
        if name in weights and tuple(weights[name].shape) != shape:
            raise ValueError(f"{directory / SAE_WEIGHTS_FILE} holds {name} of shape {tuple(weights[name].shape)}, but {SAE_CFG_FILE} says {shape}")


def _check_sae_finite(sae: Any, directory: Path) -> None:
    from conceptlab.concepts.bank import ArtifactIntegrityError

    bad = [n for n, p in sae.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise ArtifactIntegrityError(f"{directory / SAE_WEIGHTS_FILE} is corrupt: {', '.join(bad)} hold NaN or infinite values")


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


def _finish_fit(model: SparseAutoencoder, training_sae: Any, result: TrainResult, settings: TrainSettings, mean: torch.Tensor | None,
                X: torch.Tensor, provenance: dict[str, Any] | None) -> SparseAutoencoder:
    """``model`` fitted from a training SAE trained on ``X`` (raw, before centring): state, metrics on ``X``, provenance."""
    _set_fitted(model, training_sae, result, settings, mean)
    model.metrics_ = model.evaluate(X)
    model.live_ = model._firing(X)
    model.provenance_ = _provenance(model, settings, X, result, provenance)
    return model


def _set_fitted(model: SparseAutoencoder, training_sae: Any, result: TrainResult, settings: TrainSettings, mean: torch.Tensor | None) -> None:
    """The fitted state of ``model`` from a trained sae-lens training SAE (the input mean, if any, folded in)."""
    model.sae_ = _inference_sae(training_sae)
    model.input_mean_ = mean
    if mean is not None:
        _fold_input_mean(model.sae_, mean)
    model.settings_, model.history_, model.n_steps_ = settings, result, result.steps
    model.d_in_, model.d_sae_ = int(training_sae.cfg.d_in), int(settings.d_sae)


@torch.no_grad()
def _fold_input_mean(sae: Any, mean: torch.Tensor) -> None:
    """Make an SAE trained on ``x - mean`` take raw ``x``: sae-lens subtracts ``b_dec`` before
    encoding (``apply_b_dec_to_input``) and adds it after decoding, so ``b_dec += mean`` does both."""
    if not getattr(sae.cfg, "apply_b_dec_to_input", False):
        raise ValueError("center=True needs an SAE that subtracts b_dec from its input (apply_b_dec_to_input)")
    sae.b_dec.add_(mean.to(sae.b_dec.device, sae.b_dec.dtype))


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
