"""Store keys: everything that decides an activation tensor's values, hashed into one name.

Two requests share a key exactly when they must give the same numbers: same weights, same capture
point, same preprocessing, same images in the same order, same dtype, same library version. Nothing
else (batch size, shard size, the backbone's spec string, the machine) enters the key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

__all__ = ["DTYPES", "canonical_json", "dataset_identity", "resolve_slice", "slice_fields", "store_key", "torch_dtype"]

#: dtypes the store can hold; activations are computed in float32 and cast before writing.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a store dtype name; an unknown name lists the known ones."""
    if name not in DTYPES:
        raise ValueError(f"unsupported store dtype {name!r}; supported: {', '.join(DTYPES)}")
    return DTYPES[name]


def canonical_json(value: Any) -> str:
    """One text for one value: sorted keys, no whitespace, ASCII only, so its hash is stable."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def dataset_identity(dataset) -> str:
    """The string that names exactly a dataset's images (``ShapesWorld.identity`` is one)."""
    identity = getattr(dataset, "identity", None)
    if not isinstance(identity, str) or not identity:
        raise TypeError(
            f"{type(dataset).__name__} has no `identity` string. The activation store keys cached "
            "activations on a string that names exactly the dataset's images (ShapesWorld.identity "
            "is one); give the dataset an `identity` property that changes whenever its images do."
        )
    return identity


def resolve_slice(dataset, indices) -> tuple[Any, np.ndarray | None]:
    """(base dataset, int64 row indices or None for "every row in order").

    A ``torch.utils.data.Subset`` of an identified dataset is unwrapped into its base and indices,
    so the same images reached two ways share one key. ``indices`` equal to ``range(len)`` collapse
    to None for the same reason.
    """
    while not hasattr(dataset, "identity") and isinstance(dataset, torch.utils.data.Subset):
        outer = np.asarray(dataset.indices, dtype=np.int64)
        indices = outer if indices is None else outer[_as_index_array(indices, len(outer))]
        dataset = dataset.dataset
    n = len(dataset)
    if n == 0:
        raise ValueError(f"dataset {dataset_identity(dataset)!r} is empty; there is nothing to embed")
    if indices is None:
        return dataset, None
    rows = _as_index_array(indices, n)
    if rows.size == n and np.array_equal(rows, np.arange(n)):
        return dataset, None
    return dataset, rows


def _as_index_array(indices, n: int) -> np.ndarray:
    rows = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if rows.dtype == bool or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise TypeError(f"indices must be integers (a list, range, array or tensor), got dtype {rows.dtype}")
    if rows.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {rows.shape}")
    rows = rows.astype(np.int64)
    if rows.size == 0:
        raise ValueError("indices is empty; there is nothing to embed")
    low, high = int(rows.min()), int(rows.max())
    if low < 0 or high >= n:
        raise IndexError(f"indices must lie in [0, {n}); got values from {low} to {high}")
    return rows


def slice_fields(rows: np.ndarray | None, n: int) -> dict:
    """The key's description of which rows: all of them, or a hash of the index list."""
    if rows is None:
        return {"kind": "all", "rows": int(n)}
    digest = hashlib.sha256(rows.astype("<i8").tobytes()).hexdigest()
    return {"kind": "indices", "rows": int(rows.size), "sha256": digest}


def store_key(fields: dict) -> str:
    """sha256 hex digest of the canonical JSON of the key fields."""
    return hashlib.sha256(canonical_json(fields).encode("ascii")).hexdigest()
