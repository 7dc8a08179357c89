"""Small helpers shared across the library: atomic writes, byte sizes, the conceptlab home folder,
the device chooser and the array-to-matrix check.

torch and numpy are imported inside the two helpers that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "TEMP_PREFIX",
    "as_matrix",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "conceptlab_home",
    "default_device",
    "human_bytes",
    "params_for",
    "store_params",
]

#: temporary files start with this; a killed writer can leave them, and the next writer removes them
TEMP_PREFIX = ".tmp-"


def conceptlab_home() -> Path:
    """Where conceptlab keeps its store and built models: $CONCEPTLAB_HOME or ~/.cache/conceptlab."""
    return Path(os.environ.get("CONCEPTLAB_HOME", Path.home() / ".cache" / "conceptlab")).expanduser()


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either its old content or all of the new one.

    The bytes go to a temporary file in the same folder (so ``os.replace`` is a rename on one
    filesystem), are flushed to disk, then renamed over the target: a crash mid-write never
    leaves a half-written file under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def default_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit ``device`` always wins."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_matrix(
    value: Any,
    what: str = "embeddings",
    dim: int | None = None,
    dim_what: str = "the concept bank",
    min_rows: int = 1,
    single_row: bool = True,
) -> torch.Tensor:
    """A finite (N, d) float32 CPU tensor from a tensor or array; a single row (d,) becomes (1, d).

    Args:
        what: names the value in error messages ("embeddings have dimension 3 ...").
        dim: the width the caller needs (None: any width).
        dim_what: names what needs ``dim`` ("... but {dim_what} expects {dim}").
        min_rows: fewer rows is an error (0 allows an empty matrix).
        single_row: read a 1-D value as one row; ``False`` makes it an error.

    Raises TypeError for something that is not numbers, ValueError for a wrong shape or width,
    too few rows, zero columns, NaN or infinite values.
    """
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu", torch.float32)
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise TypeError(f"{what} must be a tensor or array of numbers, got {type(value).__name__}") from error
    if tensor.ndim == 1 and single_row:
        tensor = tensor[None, :]
    if tensor.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, d) matrix, got shape {tuple(tensor.shape)}")
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(f"{what} have dimension {tensor.shape[1]} but {dim_what} expects {dim}")
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


def store_params(estimator: Any, params: dict[str, Any]) -> None:
    """Store a constructor's arguments as same-named attributes, as scikit-learn's contract asks.

    Called as ``store_params(self, locals())`` first thing in ``__init__``: every parameter is
    kept unchanged (``sklearn.base.clone`` checks that), nothing is validated or derived.
    """
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def params_for(source: Any, target: type, **overrides: Any) -> dict[str, Any]:
    """The parameters of estimator class ``target`` that ``source`` has under the same names (a
    method passing its settings to its head), updated with ``overrides``."""
    names = target._get_param_names()
    return {**{n: getattr(source, n) for n in names if hasattr(source, n)}, **overrides}
