"""ActivationStore: every activation computed once, kept on disk under a hash of what made it.

Layout: ``root/<key>/manifest.json`` + ``shard-00000.safetensors``, ... (see DESIGN.md,
"ActivationStore"). Writes are atomic and a manifest is rewritten after each finished shard, so a
killed run loses at most the shard in progress; shards are checked against the manifest on every
read, and a bad one is reported and recomputed rather than served.

A read-only store (a shared cache on a read-only mount, or one the user may not write) serves its
complete entries through ``get_or_compute`` without writing anything (a shared lock, no manifest
rewrite); only a missing or damaged shard, which would need a write, is an error
(:class:`StoreUnavailableError`). Shard size adapts by bytes and by time (``default_shard_rows``
and a one-batch timing probe before a new entry's first shard), so an interrupted run of a few
thousand images on a slow backbone resumes instead of starting over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from tqdm.auto import tqdm

import conceptlab
from conceptlab.store.captures import Capture, get_capture
from conceptlab.store.extract import DEFAULT_SHARD_SECONDS, default_num_workers, default_shard_rows, encodes_in_workers, on_gpu, run_shards
from conceptlab.store.files import READ_ONLY_ERRNOS, TEMP_PREFIX, atomic_write_bytes, entry_lock, human_bytes
from conceptlab.store.keys import dataset_identity, resolve_slice, slice_fields, store_key, torch_dtype
from conceptlab.store.manifest import MANIFEST_NAME, TENSOR_NAME, Manifest, ManifestError, ShardRecord, shard_name
from conceptlab.store.reader import StoreCorruptionError, StoredActivations, read_shard, shard_problem
from conceptlab.utils import conceptlab_home

__all__ = [
    "ActivationStore", "InsufficientDiskSpaceError", "InsufficientMemoryError", "StoreIntegrityWarning", "StoreUnavailableError", "default_root",
]

# safetensors header (8-byte length + JSON with our metadata, padded to 8) per shard, and the
# manifest's size; measured, rounded up. Only estimates and the free-space check use them.
_SHARD_HEADER_BYTES = 256
_MANIFEST_BYTES = 1024
_MANIFEST_BYTES_PER_SHARD = 256
_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")


class InsufficientDiskSpaceError(OSError):
    """The disk under the store has less free space than an extraction needs."""


class InsufficientMemoryError(MemoryError):
    """The result of a request would not fit in the memory the machine has available."""


class StoreUnavailableError(OSError):
    """The store cannot do what was asked: it is read-only (or not ours to write) and the entry
    needs a write, or its root is not a folder."""


def _available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", "rb") as handle:
            for line in handle:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_only(error: OSError) -> bool:
    return isinstance(error, PermissionError) or error.errno in READ_ONLY_ERRNOS


class StoreIntegrityWarning(UserWarning):
    """A stored shard or manifest was bad (missing, truncated, corrupted) and is being recomputed."""


def default_root() -> Path:
    """``$CONCEPTLAB_HOME/store``; CONCEPTLAB_HOME defaults to ``~/.cache/conceptlab``."""
    return conceptlab_home() / "store"


def _fingerprint(backbone) -> str:
    try:
        value = getattr(backbone, "fingerprint", None)
    except Exception as error:  # a property that fails is as unusable as a missing one
        raise ValueError(f"could not compute the weight fingerprint of {backbone!r}: {error}") from error
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"{type(backbone).__name__} has no weight fingerprint (a `fingerprint` string hashing its "
            "weights); the store keys activations on it so that new weights never read old activations"
        )
    return value


class _Request:
    """One resolved request: the key, its readable fields, and what extraction needs."""

    def __init__(self, backbone, dataset, capture: str, indices, dtype: str) -> None:
        self.capture: Capture = get_capture(capture)
        self.torch_dtype = torch_dtype(dtype)
        fingerprint = _fingerprint(backbone)
        self.capture.check(backbone)
        self.dataset, self.rows = resolve_slice(dataset, indices)
        self.identity = dataset_identity(self.dataset)
        self.n_rows = len(self.dataset) if self.rows is None else int(self.rows.size)
        self.dim = self.capture.dim(backbone)
        self.backbone_spec = str(getattr(backbone, "spec", type(backbone).__name__))
        self.fields = {
            "backbone_fingerprint": fingerprint,
            "capture": capture,
            "preprocess": self.capture.preprocess_id(backbone),
            "dataset": self.identity,
            "slice": slice_fields(self.rows, len(self.dataset)),
            "dtype": dtype,
            "conceptlab_version": conceptlab.__version__,
        }
        self.key = store_key(self.fields)

    @property
    def itemsize(self) -> int:
        return torch.empty((), dtype=self.torch_dtype).element_size()

    def new_manifest(self, batch_size: int, shard_rows: int | None) -> Manifest:
        shard_rows = shard_rows or default_shard_rows(self.dim, self.itemsize, batch_size)
        return Manifest(
            key=self.key, fields=self.fields, backbone_spec=self.backbone_spec, rows=self.n_rows,
            dim=self.dim, dtype=self.fields["dtype"], shard_rows=shard_rows, batch_size=batch_size,
        )


def _shard_disk_bytes(rows: int, dim: int, itemsize: int) -> int:
    return rows * dim * itemsize + _SHARD_HEADER_BYTES


def _check_sizes(batch_size: int, shard_rows: int | None) -> None:
    if int(batch_size) <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shard_rows is not None and int(shard_rows) <= 0:
        raise ValueError(f"shard_rows must be positive, got {shard_rows}")


class ActivationStore:
    """A content-addressed cache of activations on disk.

    ``get_or_compute(backbone, dataset)`` returns the (N, dim) activations in dataset order,
    computing only what the store does not already hold. ``key``/``estimate`` answer questions
    before any work; ``entries``/``contains``/``open``/``delete``/``total_bytes`` manage what is kept.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.root)!r})"

    # -- keys and estimates -------------------------------------------------------------------
    def key(self, backbone, dataset, capture: str = "image", indices=None, dtype: str = "float32") -> str:
        """The hex key the activations of this request are stored under."""
        return _Request(backbone, dataset, capture, indices, dtype).key

    def path(self, key: str) -> Path:
        """The folder of entry ``key`` (whether or not it exists)."""
        if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
            raise ValueError(f"{key!r} is not a store key (64 lowercase hex digits)")
        return self.root / key

    def estimate(
        self, backbone, dataset, capture: str = "image", indices=None, batch_size: int = 64,
        num_workers: int | None = None, shard_rows: int | None = None, dtype: str = "float32",
    ) -> dict:
        """Disk and memory a ``get_or_compute`` with these arguments needs, before running it.

        ``peak_memory_bytes`` adds the batch of preprocessed inputs, the batches DataLoader workers
        prefetch, the model's parameters and buffers, the result tensor and two shard-sized
        buffers (the shard being filled and its serialised bytes). The model's forward-pass
        intermediates are not included: they depend on the architecture.
        """
        _check_sizes(batch_size, shard_rows)
        request = _Request(backbone, dataset, capture, indices, dtype)
        manifest = request.new_manifest(batch_size, shard_rows)
        workers = default_num_workers() if num_workers is None else num_workers
        first = 0 if request.rows is None else int(request.rows[0])
        batch = min(batch_size, request.n_rows) * request.capture.input_bytes_per_row(backbone, request.dataset, first)
        model = getattr(backbone, "model", None)
        tensors = [*model.parameters(), *model.buffers()] if isinstance(model, torch.nn.Module) else []
        row_bytes = request.dim * request.itemsize
        memory = {
            "batch_inputs": batch,
            "prefetched_batches": 2 * workers * batch,
            "model_params": sum(t.numel() * t.element_size() for t in tensors),
            "result": request.n_rows * row_bytes,
            "shard_buffers": 2 * min(manifest.shard_rows, request.n_rows) * row_bytes,
        }
        disk = sum(_shard_disk_bytes(stop - start, request.dim, request.itemsize)
                   for start, stop in map(manifest.shard_range, range(manifest.n_shards)))
        peak = sum(memory.values())
        return {
            "key": request.key, "rows": request.n_rows, "dim": request.dim, "dtype": dtype,
            "batch_size": batch_size, "num_workers": workers, "shard_rows": manifest.shard_rows,
            "shards": manifest.n_shards, "disk_bytes": disk, "peak_memory_bytes": peak,
            "memory": memory, "disk": human_bytes(disk), "peak_memory": human_bytes(peak),
            "cached": self.contains(request.key),
        }

    # -- the main call ------------------------------------------------------------------------
    def get_or_compute(
        self, backbone, dataset, capture: str = "image", indices=None, batch_size: int = 64,
        num_workers: int | None = None, progress: bool = True, shard_rows: int | None = None,
        dtype: str = "float32", on_progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """(N, dim) activations of ``dataset`` (or its ``indices`` rows), in dataset order.

        ``on_progress(done_rows, total_rows)`` is called after every computed batch, for progress
        bars other than the terminal's (an app's, say); it is not called for rows read from disk.

        Verified shards are read from the store; missing or damaged ones are computed and written.
        An entry that already has finished shards keeps its own ``batch_size`` and ``shard_rows``
        so that resumed and repaired rows are batched exactly as in an uninterrupted run.
        """
        _check_sizes(batch_size, shard_rows)
        request = _Request(backbone, dataset, capture, indices, dtype)
        if self.root.exists() and not self.root.is_dir():
            raise StoreUnavailableError(f"the activation store root {self.root} is a file, not a folder")
        self._check_memory(request.n_rows * request.dim * request.itemsize)
        directory = self.root / request.key
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(entry_lock(directory))
            except OSError as error:
                if not _read_only(error):
                    raise
                return self._read_only_get(directory, request)
            manifest = self._load_manifest(directory, request, batch_size, shard_rows)
            result = torch.empty(request.n_rows, request.dim, dtype=request.torch_dtype)
            self._read_verified(directory, manifest, result)
            missing = manifest.missing()
            if missing:
                self._check_disk_space(directory, manifest, missing, request.itemsize)
                self._remove_temp_files(directory)
                if not manifest.shards and shard_rows is None:
                    manifest.shard_rows = self._timed_shard_rows(request, backbone, manifest)
                    missing = manifest.missing()
                manifest.save(directory)
                workers = default_num_workers() if num_workers is None else int(num_workers)
                self._compute(directory, manifest, request, backbone, missing, result, workers, progress, on_progress)
        return result

    def _read_only_get(self, directory: Path, request: _Request) -> torch.Tensor:
        """Serve a complete entry of a store this process cannot write: verify, read, write nothing."""
        unwritable = f"the activation store at {self.root} is read-only (or not writable by this user)"
        if not (directory / MANIFEST_NAME).is_file():
            raise StoreUnavailableError(
                f"{unwritable} and holds no entry for {request.identity} (key {request.key[:12]}...); "
                "embed it into a writable store (--store / $CONCEPTLAB_HOME), or ask the store's owner to",
            )
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(entry_lock(directory, create=False, shared=True))
            except OSError as error:  # no lock file we may open: nobody can be writing here either
                if not (_read_only(error) or isinstance(error, FileNotFoundError)):
                    raise
            try:
                manifest = Manifest.load(directory / MANIFEST_NAME)
            except ManifestError as error:
                raise StoreCorruptionError(f"{error}; {unwritable}, so the entry cannot be repaired here") from error
            stored = (manifest.key, manifest.rows, manifest.dim, manifest.dtype)
            if stored != (request.key, request.n_rows, request.dim, request.fields["dtype"]):
                raise StoreCorruptionError(f"{directory / MANIFEST_NAME} describes {stored}, not this entry; {unwritable}")
            if not manifest.complete:
                raise StoreUnavailableError(
                    f"{unwritable} and its entry {request.key[:12]}... is incomplete "
                    f"({len(manifest.shards)}/{manifest.n_shards} shards); finish it in a writable copy of the store",
                )
            result = torch.empty(request.n_rows, request.dim, dtype=request.torch_dtype)
            for index in sorted(manifest.shards):
                record = manifest.shards[index]
                problem = shard_problem(directory, record)
                if problem is not None:
                    raise StoreCorruptionError(f"{problem}; {unwritable}, so it cannot be recomputed here")
                result[record.start : record.stop] = read_shard(directory, record, manifest.dim, result.dtype)
            return result

    @staticmethod
    def _check_memory(needed: int) -> None:
        available = _available_memory()
        if available is not None and needed > available:
            raise InsufficientMemoryError(
                f"the activations asked for take {human_bytes(needed)} in memory, but only {human_bytes(available)} "
                "is available; embed fewer rows at once (indices=...) or read a stored entry shard by shard (ActivationStore.open)"
            )

    def _timed_shard_rows(self, request: _Request, backbone, manifest: Manifest) -> int:
        """Rows per shard for a new entry: the byte-sized default, made smaller when one batch shows
        that such a shard would take more than ``DEFAULT_SHARD_SECONDS`` (always a multiple of the
        batch size, so the rows of every batch, and so the numbers, do not change)."""
        batch = manifest.batch_size
        if manifest.rows <= 4 * batch:
            return manifest.shard_rows
        rows = range(batch) if request.rows is None else request.rows[:batch].tolist()
        start = time.perf_counter()
        inputs = request.capture.collate(backbone)([request.dataset[int(i)] for i in rows])
        request.capture.encode(backbone, inputs)
        seconds = max(time.perf_counter() - start, 1e-6)
        by_time = int(batch / seconds * DEFAULT_SHARD_SECONDS) // batch * batch
        return max(batch, min(manifest.shard_rows, by_time))

    def _load_manifest(self, directory: Path, request: _Request, batch_size: int, shard_rows: int | None) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.exists():
            return request.new_manifest(batch_size, shard_rows)
        try:
            manifest = Manifest.load(path)
            stored = (manifest.key, manifest.rows, manifest.dim, manifest.dtype)
            if stored != (request.key, request.n_rows, request.dim, request.fields["dtype"]):
                raise ManifestError(f"{path} describes {stored}, not this entry")
        except ManifestError as error:
            warnings.warn(f"activation store: {error}; recomputing the whole entry", StoreIntegrityWarning, stacklevel=3)
            return request.new_manifest(batch_size, shard_rows)
        if not manifest.shards:  # nothing computed yet: the caller's layout costs nothing to adopt
            fresh = request.new_manifest(batch_size, shard_rows)
            fresh.created = manifest.created
            return fresh
        return manifest

    def _read_verified(self, directory: Path, manifest: Manifest, result: torch.Tensor) -> None:
        """Copy every trustworthy shard into ``result``; drop the others from the manifest."""
        dropped = False
        for index in sorted(manifest.shards):
            record = manifest.shards[index]
            problem = shard_problem(directory, record)
            if problem is None:
                try:
                    result[record.start : record.stop] = read_shard(directory, record, manifest.dim, result.dtype)
                    continue
                except StoreCorruptionError as error:
                    problem = str(error)
            warnings.warn(
                f"activation store: {problem}; recomputing rows {record.start}-{record.stop - 1}",
                StoreIntegrityWarning, stacklevel=4,
            )
            del manifest.shards[index]
            dropped = True
        if dropped:
            manifest.save(directory)

    def _check_disk_space(self, directory: Path, manifest: Manifest, missing: list[int], itemsize: int) -> None:
        needed = _MANIFEST_BYTES + _MANIFEST_BYTES_PER_SHARD * manifest.n_shards + sum(
            _shard_disk_bytes(stop - start, manifest.dim, itemsize) for start, stop in map(manifest.shard_range, missing)
        )
        free = shutil.disk_usage(directory).free
        if free < needed:
            raise InsufficientDiskSpaceError(
                f"not enough disk space for the activation store at {self.root}: this extraction needs "
                f"{human_bytes(needed)} ({needed} bytes) but only {human_bytes(free)} is free. Delete "
                "entries (ActivationStore.entries / delete), free space, or set CONCEPTLAB_HOME (or "
                "root=) to a larger disk."
            )

    @staticmethod
    def _remove_temp_files(directory: Path) -> None:
        # Called under the entry lock: any temp file here belongs to a writer that died.
        for leftover in directory.glob(f"{TEMP_PREFIX}*"):
            leftover.unlink(missing_ok=True)

    def _compute(self, directory, manifest, request, backbone, missing, result, num_workers, progress, on_progress) -> None:
        shards = [(index, *manifest.shard_range(index)) for index in missing]
        todo = sum(stop - start for _, start, stop in shards)
        bar = tqdm(
            total=manifest.rows, initial=manifest.rows - todo, unit="row", disable=not progress,
            desc=f"{request.capture.name} activations of {request.identity} by {request.backbone_spec}",
        )

        done = manifest.rows - todo

        def on_batch(rows: int) -> None:
            nonlocal done
            done += rows
            bar.update(rows)  # a disabled bar counts nothing, hence our own count
            if on_progress is not None:
                on_progress(done, manifest.rows)

        with bar:
            for index, tensor in run_shards(
                request.capture, backbone, request.dataset, request.rows, shards, manifest.batch_size,
                manifest.dim, request.torch_dtype, num_workers, on_batch=on_batch,
                pin_memory=on_gpu(backbone),  # page-locked batches copy to a GPU faster
                encode_in_workers=encodes_in_workers(backbone, num_workers),  # CPU: the workers are backbone replicas
            ):
                self._write_shard(directory, manifest, index, tensor)
                start, stop = manifest.shard_range(index)
                result[start:stop] = tensor

    @staticmethod
    def _write_shard(directory: Path, manifest: Manifest, index: int, tensor: torch.Tensor) -> None:
        start, stop = manifest.shard_range(index)
        manifest.shards[index] = write_shard_file(directory, manifest.key, index, start, stop, tensor)
        manifest.save(directory)  # after the shard is durable, so the manifest never lists a partial one

    # -- management ---------------------------------------------------------------------------
    def contains(self, key: str) -> bool:
        """True when entry ``key`` is complete: its manifest lists every shard and each has its
        recorded size (a cheap check; reads still verify sha256)."""
        directory = self.path(key)
        try:
            manifest = Manifest.load(directory / MANIFEST_NAME)
        except (FileNotFoundError, ManifestError):
            return False
        return manifest.complete and all(
            (directory / r.file).is_file() and (directory / r.file).stat().st_size == r.bytes
            for r in manifest.shards.values()
        )

    def open(self, key: str) -> StoredActivations:
        """A complete entry for shard-by-shard reading; no backbone needed, nothing computed."""
        directory = self.path(key)
        if not os.path.lexists(directory / MANIFEST_NAME):
            raise KeyError(f"the store at {self.root} has no entry {key}")
        manifest = Manifest.load(directory / MANIFEST_NAME)  # a ManifestError when it is no manifest
        if not manifest.complete:
            raise ValueError(
                f"entry {key} is incomplete ({len(manifest.shards)}/{manifest.n_shards} shards); "
                "finish it with get_or_compute"
            )
        return StoredActivations(directory, manifest)

    def entries(self) -> list[dict]:
        """One dict per entry, read from manifests only (no hashing), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for directory in self.root.iterdir():
            if not (directory.is_dir() and _KEY_PATTERN.fullmatch(directory.name)):
                continue
            if not any(p.name != ".lock" for p in directory.iterdir()):
                continue  # a request that stopped before writing anything (e.g. no disk space)
            entry = {"key": directory.name, "bytes": _tree_bytes(directory), "complete": False}
            try:
                manifest = Manifest.load(directory / MANIFEST_NAME)
            except (FileNotFoundError, ManifestError) as error:
                entry["error"] = str(error)
                found.append(entry)
                continue
            entry.update(
                backbone=manifest.backbone_spec, backbone_fingerprint=manifest.fields.get("backbone_fingerprint"),
                dataset=manifest.fields.get("dataset"), capture=manifest.fields.get("capture"),
                rows=manifest.rows, dim=manifest.dim, dtype=manifest.dtype, created=manifest.created,
                complete=manifest.complete, shards_done=len(manifest.shards), shards_total=manifest.n_shards,
            )
            found.append(entry)
        return sorted(found, key=lambda e: (e.get("created") or "", e["key"]))

    def delete(self, key: str) -> None:
        """Remove entry ``key`` and its files; KeyError when there is none."""
        directory = self.path(key)
        if not directory.is_dir():
            raise KeyError(f"the store at {self.root} has no entry {key}")
        try:
            with entry_lock(directory, create=False):  # wait for a writer of this entry to finish
                shutil.rmtree(directory)
        except FileNotFoundError:  # another delete won the race
            raise KeyError(f"the store at {self.root} has no entry {key}") from None

    def resolve(self, prefix: str) -> str:
        """The full key of the one entry whose key starts with ``prefix`` (as the app and
        ``conceptlab store ls`` show keys: 12 hex digits). KeyError when none or several match."""
        prefix = prefix.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
            raise KeyError(f"{prefix!r} is not a store key: give at least 4 of its hex digits")
        matches = [e["key"] for e in self.entries() if e["key"].startswith(prefix)]
        if len(matches) != 1:
            found = "no entry" if not matches else f"{len(matches)} entries ({', '.join(m[:12] for m in matches[:5])})"
            raise KeyError(f"the store at {self.root} has {found} whose key starts with {prefix}")
        return matches[0]

    def total_bytes(self) -> int:
        """Bytes of every file under the store's root."""
        return _tree_bytes(self.root) if self.root.is_dir() else 0


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def shard_bytes(key: str, start: int, stop: int, tensor: torch.Tensor) -> bytes:
    """A shard file's bytes: safetensors with one tensor and the entry's (key, start, stop).

    The header is written here, with sorted keys, rather than by ``safetensors.torch.save``,
    whose metadata order changes from process to process: so the same rows always give the same
    bytes and sha256, whichever process or machine wrote them (``safe_open`` reads either)."""
    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype not in _SAFETENSORS_DTYPES or sys.byteorder != "little":  # safetensors is little-endian: let it convert
        return safetensors_bytes({TENSOR_NAME: tensor}, metadata={"key": key, "start": str(start), "stop": str(stop)})
    payload = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    header = {
        "__metadata__": {"key": key, "start": str(start), "stop": str(stop)},
        TENSOR_NAME: {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [0, len(payload)]},
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors pads the header with spaces to a multiple of 8 bytes
    return struct.pack("<Q", len(text)) + text + payload


def write_shard_file(directory: Path, key: str, index: int, start: int, stop: int, tensor: torch.Tensor) -> ShardRecord:
    """Write rows [start, stop) of entry ``key`` as shard ``index`` (atomically) and return its record.

    The one way a shard file is made, whichever engine computed it (this process, or a Ray actor
    in ``ray_engine``), so their files are byte for byte the same."""
    data = shard_bytes(key, start, stop, tensor)
    atomic_write_bytes(directory / shard_name(index), data)
    return ShardRecord(index=index, file=shard_name(index), start=start, stop=stop, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def _tree_bytes(directory: Path) -> int:
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(directory)
        for name in names
    )
