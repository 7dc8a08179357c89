"""Extraction on Ray Data: many backbone replicas write the shards of one store entry.

>>> from conceptlab.store import ActivationStore, ray_extract
>>> entry = ray_extract(ActivationStore("/shared/store"), backbone, dataset, address="auto")
>>> entry.load()            # or entry.iter_shards(): the very entry get_or_compute would have made

The work list is the entry's missing shards, one Ray Data row per shard ``(index, start, stop)``.
``map_batches`` sends them to a fixed pool of actors (``ActorPoolStrategy``), each holding one
backbone replica; an actor reads its rows' images from the dataset by index (optionally through
DataLoader workers that decode in parallel), encodes them with the store's own ``run_shards`` (so
rows are batched exactly as in one process) and writes the shard with the store's own
``write_shard_file`` (temp file + rename). The driver holds the entry lock for the whole run and
merges the shard records into the manifest once, at the end. So the result is the single-process
entry: same key, same shard files byte for byte, same manifest semantics.

Resuming. A shard file is renamed into place only when complete, so a run that was interrupted
(the driver killed, a task that failed) leaves finished shards that its manifest may not list yet.
The next run adopts every such file whose safetensors header names this entry's key and the
shard's row range with the right shape and dtype (its sha256 is then recorded), and computes only
the rest. A killed actor is restarted by Ray and its shard computed again from the start.

Ray is optional (``pip install 'conceptlab[distributed]'``); it is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from conceptlab.store.extract import default_shard_rows, run_shards
from conceptlab.store.files import TEMP_PREFIX, entry_lock, sha256_file
from conceptlab.store.manifest import MANIFEST_NAME, TENSOR_NAME, Manifest, ManifestError, ShardRecord, shard_name
from conceptlab.store.reader import StoredActivations, shard_problem
from conceptlab.store.store import _SAFETENSORS_DTYPES, ActivationStore, StoreIntegrityWarning, StoreUnavailableError, _check_sizes, _Request, write_shard_file

__all__ = ["RAY_EXTRA", "adopt_finished_shards", "import_ray", "plan_ray_shard_rows", "ray_extract", "ray_session"]

RAY_EXTRA = "conceptlab[distributed]"
#: a new entry gets at least this many shards per actor, so a slow actor or a restart costs little
SHARDS_PER_ACTOR = 4


def import_ray():
    """The ``ray`` module, or an ImportError that says which extra installs it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError as error:
        raise ImportError(f"the Ray engine needs ray with its Data library: pip install '{RAY_EXTRA}' (ray[data,train]>=2.60)") from error
    return ray


# -- planning ----------------------------------------------------------------------------------------
def plan_ray_shard_rows(rows: int, dim: int, itemsize: int, batch_size: int, actors: int) -> int:
    """Rows per shard of a new entry: the store's size-based default, made smaller so that every
    actor gets ``SHARDS_PER_ACTOR`` shards; always a multiple of ``batch_size`` (so the rows of
    every batch, and so the numbers, are those of a single-process run)."""
    by_bytes = default_shard_rows(dim, itemsize, batch_size)
    per_shard = -(-rows // (SHARDS_PER_ACTOR * max(1, actors)))
    by_parallelism = -(-per_shard // batch_size) * batch_size
    return max(batch_size, min(by_bytes, by_parallelism))


def _pool_size(ray, num_actors: int | None, num_cpus: float, num_gpus: float) -> int:
    """Actors to start: what was asked, checked against the cluster. A CPU pool stays below the
    cluster's CPU count: Ray Data needs a CPU left for its own tasks, or the pool can hang (ray#44687)."""
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if num_gpus > 0:
        fit = int(gpus // num_gpus)
        if fit < 1:
            raise ValueError(f"num_gpus={num_gpus} per actor, but the Ray cluster has {gpus:g} GPUs; pass num_gpus=0 to run on CPUs")
    else:
        fit = int((cpus - 1) // num_cpus) if num_cpus > 0 else int(cpus - 1)
        if fit < 1:
            raise ValueError(f"the Ray cluster has {cpus:g} CPUs: a pool of actors of {num_cpus:g} CPU needs at least {num_cpus + 1:g} "
                             "(one CPU stays free for Ray Data, ray#44687)")
    if num_actors is None:
        return fit
    if int(num_actors) < 1:
        raise ValueError(f"num_actors must be at least 1, got {num_actors}")
    if int(num_actors) > fit:
        what = f"{gpus:g} GPUs at {num_gpus:g} per actor" if num_gpus > 0 else f"{cpus:g} CPUs at {num_cpus:g} per actor, one kept free (ray#44687)"
        raise ValueError(f"num_actors={num_actors} does not fit the Ray cluster ({what}): at most {fit}")
    return int(num_actors)


# -- resuming --------------------------------------------------------------------------------------------
def _orphan_problem(path: Path, key: str, start: int, stop: int, dim: int, dtype: torch.dtype) -> str | None:
    """Why a shard file the manifest does not list cannot be adopted, or None when it can."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata != {"key": key, "start": str(start), "stop": str(stop)}:
                return f"{path} belongs to another entry or row range ({metadata})"
            view = handle.get_slice(TENSOR_NAME)
            shape, stored = tuple(view.get_shape()), view.get_dtype()
    except (SafetensorError, OSError, KeyError) as error:
        return f"{path} is not a readable shard: {error}"
    expected = _SAFETENSORS_DTYPES[dtype]
    if shape != (stop - start, dim) or stored != expected:
        return f"{path} holds {shape} {stored}; expected {(stop - start, dim)} {expected}"
    return None


def adopt_finished_shards(directory: Path, manifest: Manifest, dtype: torch.dtype) -> list[int]:
    """Add to ``manifest`` every complete shard file it does not list yet (the work of an interrupted
    run, whose manifest is merged only at the end); returns the adopted indices. Files that do not
    belong to this entry's layout are left alone (the run overwrites them)."""
    adopted = []
    for index in manifest.missing():
        path = directory / shard_name(index)
        if not path.is_file():
            continue
        start, stop = manifest.shard_range(index)
        problem = _orphan_problem(path, manifest.key, start, stop, manifest.dim, dtype)
        if problem is not None:
            warnings.warn(f"activation store: {problem}; recomputing it", StoreIntegrityWarning, stacklevel=3)
            continue
        manifest.shards[index] = ShardRecord(index=index, file=path.name, start=start, stop=stop, bytes=path.stat().st_size, sha256=sha256_file(path))
        adopted.append(index)
    return adopted


def _drop_bad_shards(directory: Path, manifest: Manifest) -> bool:
    """Remove from ``manifest`` every shard whose file does not match its record; True when any was."""
    dropped = False
    for index in sorted(manifest.shards):
        problem = shard_problem(directory, manifest.shards[index])
        if problem is not None:
            record = manifest.shards.pop(index)
            dropped = True
            warnings.warn(f"activation store: {problem}; recomputing rows {record.start}-{record.stop - 1}", StoreIntegrityWarning, stacklevel=3)
    return dropped


def _load_or_start_manifest(directory: Path, request: _Request, batch_size: int, shard_rows: int) -> Manifest:
    """The entry's manifest when it has one for this key (its layout kept, so that the shards of an
    interrupted run still fit), else a new one with the given layout."""
    path = directory / MANIFEST_NAME
    if path.exists():
        try:
            manifest = Manifest.load(path)
            stored = (manifest.key, manifest.rows, manifest.dim, manifest.dtype)
            if stored == (request.key, request.n_rows, request.dim, request.fields["dtype"]):
                return manifest
            warnings.warn(f"activation store: {path} describes {stored}, not this entry; recomputing the whole entry", StoreIntegrityWarning, stacklevel=3)
        except ManifestError as error:
            warnings.warn(f"activation store: {error}; recomputing the whole entry", StoreIntegrityWarning, stacklevel=3)
    return request.new_manifest(batch_size, shard_rows)


def _remove_temp_files(directory: Path) -> None:
    for leftover in directory.glob(f"{TEMP_PREFIX}*"):
        leftover.unlink(missing_ok=True)


# -- the actor -----------------------------------------------------------------------------------------
def _to_device(backbone: Any, device: str) -> Any:
    """Move a shipped backbone to ``device`` (an actor with a GPU); only adapters with ``model`` and ``device``."""
    if device == "cpu" or str(getattr(backbone, "device", "cpu")) == device:
        return backbone
    if not (isinstance(getattr(backbone, "model", None), torch.nn.Module) and hasattr(backbone, "device")):
        raise TypeError(f"cannot move a {type(backbone).__name__} to {device}; pass load_on_workers=True so each actor loads it from its spec")
    backbone.model.to(device)
    backbone.device = torch.device(device)
    return backbone


class ShardWriter:
    """A Ray Data actor: one backbone replica that computes and writes whole shards.

    Each input row is one shard ``(index, start, stop)``; the output row is its record.
    """

    def __init__(self, directory: str, key: str, backbone: Any, fingerprint: str, dataset: Any, rows: Any, capture: str,
                 batch_size: int, dim: int, dtype: str, device: str, threads: int | None, decode_workers: int) -> None:
        from conceptlab.store.captures import get_capture
        from conceptlab.store.keys import torch_dtype

        if threads:
            torch.set_num_threads(int(threads))
        if isinstance(backbone, str):  # a spec: this node loads its own replica
            from conceptlab.backbones import load

            backbone = load(backbone, device=device)
            if backbone.fingerprint != fingerprint:
                raise RuntimeError(f"the backbone {backbone.spec} loaded on this Ray node has other weights (fingerprint "
                                   f"{backbone.fingerprint}) than the driver's ({fingerprint}); install the same checkpoint on every node")
        self.backbone = _to_device(backbone, device)
        self.directory, self.key = Path(directory), key
        self.dataset, self.rows = dataset, rows
        self.capture = get_capture(capture)
        self.batch_size, self.dim, self.dtype = int(batch_size), int(dim), torch_dtype(dtype)
        self.decode_workers, self.pin_memory = int(decode_workers), device != "cpu"

    def __call__(self, batch: dict) -> dict:
        records: dict[str, list] = {"index": [], "bytes": [], "sha256": []}
        for index, start, stop in zip(batch["index"].tolist(), batch["start"].tolist(), batch["stop"].tolist()):
            for _, tensor in run_shards(self.capture, self.backbone, self.dataset, self.rows, [(index, start, stop)], self.batch_size,
                                        self.dim, self.dtype, self.decode_workers, pin_memory=self.pin_memory):
                record = write_shard_file(self.directory, self.key, index, start, stop, tensor)
                records["index"].append(index)
                records["bytes"].append(record.bytes)
                records["sha256"].append(record.sha256)
        return records


# -- the driver -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(ray, address: str | None):
    """Use a running Ray session, or connect to ``address`` (``"auto"``: the local cluster started by
    ``ray start``; None: a new local one) and disconnect at the end."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def ray_extract(
    store: ActivationStore, backbone, dataset, capture: str = "image", indices=None, batch_size: int = 64,
    shard_rows: int | None = None, dtype: str = "float32", address: str | None = None, num_actors: int | None = None,
    num_cpus: float = 1.0, num_gpus: float = 0.0, threads: int | None = None, decode_workers: int = 0,
    load_on_workers: bool = False, progress: bool = True,
) -> StoredActivations:
    """Compute the missing shards of an entry on a Ray cluster; returns the complete entry.

    Args:
        store: where the entry lives. On a cluster every node must see this folder at the same
            path (a shared filesystem): actors write the shard files there directly.
        backbone, dataset, capture, indices, dtype: as for ``ActivationStore.get_or_compute``; they
            give the same key.
        batch_size, shard_rows: the entry's layout (an existing entry keeps its own). A new entry
            gets ``plan_ray_shard_rows`` unless ``shard_rows`` is given.
        address: the Ray cluster (``"auto"``, ``"ray://head:10001"``); None starts a local one.
            An already initialised Ray session is used as is.
        num_actors: backbone replicas; default as many as fit (CPU pools keep one CPU free).
        num_cpus, num_gpus: resources per actor; with ``num_gpus`` the replica runs on ``cuda``.
        threads: torch threads per actor (default: Ray's, i.e. ``num_cpus``).
        decode_workers: DataLoader worker processes per actor that read and preprocess images
            while the model encodes (0: in the actor).
        load_on_workers: each actor loads the backbone from its spec (the checkpoint must exist on
            every node; its weight fingerprint is checked) instead of receiving the driver's copy.
        progress: a progress bar over rows.
    """
    ray = import_ray()
    from tqdm.auto import tqdm

    _check_sizes(batch_size, shard_rows)
    request = _Request(backbone, dataset, capture, indices, dtype)
    if store.root.exists() and not store.root.is_dir():
        raise StoreUnavailableError(f"the activation store root {store.root} is a file, not a folder")
    directory = store.root / request.key
    with ray_session(ray, address), entry_lock(directory):
        actors = _pool_size(ray, num_actors, float(num_cpus), float(num_gpus))
        layout = shard_rows or plan_ray_shard_rows(request.n_rows, request.dim, request.itemsize, batch_size, actors)
        had_manifest = (directory / MANIFEST_NAME).is_file()
        manifest = _load_or_start_manifest(directory, request, batch_size, layout)
        dropped = _drop_bad_shards(directory, manifest)
        adopted = adopt_finished_shards(directory, manifest, request.torch_dtype)
        _remove_temp_files(directory)  # under the lock: leftovers of writers that died
        missing = manifest.missing()
        if missing or adopted or dropped or not had_manifest:  # a complete entry is left untouched
            manifest.save(directory)  # the layout first, so the shards of an interrupted run fit the next one
        if missing:
            store._check_disk_space(directory, manifest, missing, request.itemsize)
            try:
                _run_pool(ray, tqdm, directory, manifest, request, backbone, missing, actors, float(num_cpus), float(num_gpus),
                          threads, int(decode_workers), load_on_workers, progress)
            finally:
                _remove_temp_files(directory)  # every actor is done: a temp file here is a dead writer's
                manifest.save(directory)  # the one merge: every shard that was finished, even when the run failed
    return store.open(request.key)


def _run_pool(ray, tqdm, directory, manifest, request, backbone, missing, actors, num_cpus, num_gpus, threads, decode_workers,
              load_on_workers, progress) -> None:
    items = [{"index": i, "start": manifest.shard_range(i)[0], "stop": manifest.shard_range(i)[1]} for i in missing]
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts rows
    shipped = backbone.spec if load_on_workers else backbone
    writer_args = {
        "directory": str(directory), "key": manifest.key, "backbone": shipped, "fingerprint": request.fields["backbone_fingerprint"],
        "dataset": request.dataset, "rows": request.rows, "capture": request.capture.name, "batch_size": manifest.batch_size,
        "dim": manifest.dim, "dtype": manifest.dtype, "device": "cuda" if num_gpus > 0 else "cpu", "threads": threads,
        "decode_workers": decode_workers,
    }
    shards = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ShardWriter, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs=writer_args, num_cpus=num_cpus, num_gpus=num_gpus or None,
    )
    todo = sum(item["stop"] - item["start"] for item in items)
    desc = f"{request.capture.name} activations of {request.identity} by {request.backbone_spec} on {actors} Ray actor(s)"
    with tqdm(total=manifest.rows, initial=manifest.rows - todo, unit="row", disable=not progress, desc=desc) as bar:
        for row in shards.iter_rows():
            index = int(row["index"])
            start, stop = manifest.shard_range(index)
            record = ShardRecord(index=index, file=shard_name(index), start=start, stop=stop, bytes=int(row["bytes"]), sha256=str(row["sha256"]))
            if not (directory / record.file).is_file() or os.path.getsize(directory / record.file) != record.bytes:
                raise RuntimeError(f"a Ray actor reported shard {record.file} but {directory} does not hold it as written; "
                                   "is the store on a filesystem every node shares?")
            manifest.shards[index] = record
            bar.update(stop - start)
