"""Data-parallel SAE training on Ray Train (``TorchTrainer``; gloo on CPUs, NCCL on GPUs).

>>> sae = SparseAutoencoder(expansion=8).fit_distributed(acts, num_workers=4)           # a tensor
>>> sae = SparseAutoencoder(expansion=8).fit_distributed(store.open(key), address="auto")  # a store entry

Each Ray Train worker holds one replica of the SAE and trains on its slice of every batch, with
the gradients averaged after each backward pass (:mod:`conceptlab.discovery.data_parallel`), so
the result is the one-process ``fit`` up to floating-point summation order. A tensor reaches the
workers through Ray's object store; a store entry is read by every worker from the store folder
(on a cluster, a filesystem all nodes share), streamed through the same shuffle buffer as
``fit_stream`` when it is larger than ``buffer_rows``.

Rank 0 reports the trained weights as a Ray Train checkpoint (safetensors + JSON, written under
``storage_path``: a temporary folder by default, a shared path on a multi-node cluster); the
driver reads it back and finishes the estimator exactly as ``fit`` does (metrics, live latents,
provenance, which records the workers).

Ray is optional (``pip install 'conceptlab[distributed]'``) and imported only inside functions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from conceptlab.discovery.data_parallel import check_batch_split
from conceptlab.discovery.train import TrainResult, TrainSettings, build_training_sae
from conceptlab.store.ray_engine import RAY_EXTRA, ray_session
from conceptlab.store.reader import StoredActivations

__all__ = ["fit_ray"]

_WEIGHTS, _HISTORY = "training_sae.safetensors", "history.json"


def _import_ray_train():
    try:
        import ray
        from ray.train import CheckpointConfig, RunConfig, ScalingConfig  # noqa: F401
        from ray.train.torch import TorchConfig, TorchTrainer  # noqa: F401
    except ImportError as error:
        raise ImportError(f"data-parallel SAE training needs Ray Train: pip install '{RAY_EXTRA}' (ray[data,train]>=2.60)") from error
    return ray


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: train a replica on this worker's slice of every batch; rank 0 reports the weights."""
    import ray
    import ray.train
    import ray.train.torch
    from safetensors.torch import save_file

    from conceptlab.discovery.data_parallel import GradientAveraging
    from conceptlab.discovery.streaming import StreamedRows
    from conceptlab.discovery.train import TensorRows, train_sae
    from conceptlab.store.store import ActivationStore
    from conceptlab.store.stream import ShuffledRows

    device = ray.train.torch.get_device()
    settings = TrainSettings(**{**config["settings"], "device": str(device), "progress": False})
    if "tensor" in config:
        source = TensorRows(ray.get(config["tensor"]))
    else:
        directory = Path(config["entry"])
        entry = ActivationStore(directory.parent).open(directory.name)
        rows = ShuffledRows(entry, config["buffer_rows"], config["chunk_rows"], seed=settings.seed)
        source = StreamedRows(rows, config["mean"])
    training_sae, result = train_sae(source, settings, data_parallel=GradientAveraging())
    metrics = {"loss": result.losses[-1], "steps": result.steps, "seconds": result.seconds}
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="conceptlab-sae-") as folder:
        save_file({k: v.detach().cpu().contiguous() for k, v in training_sae.state_dict().items()}, str(Path(folder) / _WEIGHTS))
        history = {"losses": result.losses, "mse_losses": result.mse_losses, "resampled": result.resampled, "steps": result.steps,
                   "samples": result.samples, "seconds": result.seconds}
        (Path(folder) / _HISTORY).write_text(json.dumps(history))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def fit_ray(model: Any, data: Any, num_workers: int = 2, use_gpu: bool = False, address: str | None = None,
            buffer_rows: int | None = None, chunk_rows: int | None = None, storage_path: str | None = None,
            provenance: dict[str, Any] | None = None) -> Any:
    """Fit ``model`` (a ``SparseAutoencoder``) data-parallel on ``num_workers`` Ray Train workers.

    Args:
        data: an (N, d) tensor / array, or a store entry (``ActivationStore.open(key)``).
        num_workers: SAE replicas; the batch size must be a multiple of it. Each takes 1 CPU (or 1 GPU).
        use_gpu: one GPU per worker, NCCL between them.
        address: the Ray cluster (``"auto"``, ``"ray://head:10001"``); None starts a local one; an
            initialised Ray session is used as is.
        buffer_rows, chunk_rows: the shuffle buffer of a streamed store entry (as ``fit_stream``).
        storage_path: where Ray Train writes the run and its checkpoint (shared on a multi-node
            cluster); default a temporary folder, removed afterwards.
    """
    from conceptlab.discovery.sae import _finish_fit, as_activations
    from conceptlab.discovery.streaming import default_buffer_rows, entry_mean, finish_entry_fit
    from conceptlab.store.stream import ShuffledRows

    ray = _import_ray_train()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if int(num_workers) < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    entry = data if isinstance(data, StoredActivations) else None
    X = as_activations(data, "activations", min_rows=2) if entry is None else None
    n, dim = (len(entry), entry.dim) if entry is not None else tuple(X.shape)
    settings = model.settings_for(n, dim)
    buffer_rows = int(buffer_rows) if buffer_rows is not None else default_buffer_rows(dim, settings.batch_size)
    # as fit_stream: an entry that fits in the buffer is loaded and trained on as a tensor
    streamed = entry is not None and buffer_rows < n
    if entry is not None and not streamed:
        X = entry.load()
    check_batch_split(settings.batch_size, int(num_workers))  # before Ray starts
    config: dict[str, Any] = {"settings": settings.to_dict()}
    extra = {"data_parallel": {"engine": "ray.train.torch.TorchTrainer", "workers": int(num_workers), "use_gpu": bool(use_gpu)}}
    if entry is not None:
        extra["store_key"] = entry.key
    if streamed:
        rows = ShuffledRows(entry, buffer_rows, chunk_rows, seed=settings.seed)
        mean = entry_mean(rows) if model.center else None
        config.update(entry=str(entry.directory), buffer_rows=rows.buffer_rows, chunk_rows=rows.chunk_rows, mean=mean)
    else:
        mean = X.double().mean(0).float() if model.center else None
    folder = Path(storage_path) if storage_path else Path(tempfile.mkdtemp(prefix="conceptlab-ray-train-"))
    try:
        with ray_session(ray, address):
            if not streamed:
                config["tensor"] = ray.put(X if mean is None else X - mean)
            trainer = TorchTrainer(
                _train_worker, train_loop_config=config,
                scaling_config=ScalingConfig(num_workers=int(num_workers), use_gpu=bool(use_gpu)),
                torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
                run_config=RunConfig(storage_path=str(folder.resolve()), name="sae"),
            )
            outcome = trainer.fit()
        if outcome.checkpoint is None:
            raise RuntimeError(f"Ray Train finished without the SAE's checkpoint: {outcome.error or 'no error reported'}")
        training_sae, result = _read_checkpoint(outcome.checkpoint, dim, settings)
    finally:
        if not storage_path:
            shutil.rmtree(folder, ignore_errors=True)
    extra.update(provenance or {})
    if streamed:
        return finish_entry_fit(model, training_sae, result, settings, mean, rows, extra)
    return _finish_fit(model, training_sae, result, settings, mean, X, extra)


def _read_checkpoint(checkpoint: Any, dim: int, settings: TrainSettings) -> tuple[Any, TrainResult]:
    """The training SAE (on the CPU) and its history from rank 0's checkpoint."""
    from safetensors.torch import load_file

    with checkpoint.as_directory() as folder:
        state = load_file(str(Path(folder) / _WEIGHTS))
        history = json.loads((Path(folder) / _HISTORY).read_text())
    local = TrainSettings(**{**settings.to_dict(), "device": "cpu"})
    training_sae = build_training_sae(dim, local)
    training_sae.load_state_dict(state)
    training_sae.eval()
    result = TrainResult(losses=history["losses"], mse_losses=history["mse_losses"], resampled=[tuple(r) for r in history["resampled"]],
                         steps=history["steps"], samples=history["samples"], seconds=history["seconds"])
    return training_sae, result
