"""Splitting a dataset that comes as one piece (a folder, a table) into train / test parts.

A :class:`DatasetView` is a ``torch.utils.data.Subset`` that keeps the dataset surface
(``labels``, ``class_names``, ``concepts``, ...): the activation store unwraps it into the base
dataset's identity plus row indices, so a split shares the base's cache entries.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from conceptlab.data.image_files import DatasetError

__all__ = ["DatasetView", "split_dataset"]


class DatasetView(torch.utils.data.Subset):
    """Rows ``indices`` of ``dataset``, with its labels, classes and concept annotations."""

    def __init__(self, dataset, indices, name: str = "") -> None:
        super().__init__(dataset, [int(i) for i in indices])
        self.name = name
        self._rows = np.asarray(self.indices, dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.labels)[self._rows]

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)

    @property
    def concept_names(self) -> list[str]:
        return list(getattr(self.dataset, "concept_names", None) or [])

    @property
    def concepts(self):
        concepts = getattr(self.dataset, "concepts", None)
        return None if concepts is None else np.asarray(concepts)[self._rows]

    def __repr__(self) -> str:
        return f"DatasetView({self.name or 'rows'} of {self.dataset!r}: {len(self)} rows)"


def split_dataset(dataset, fractions: Mapping[str, float], seed: int = 0, stratify: bool = True) -> dict[str, DatasetView]:
    """Seeded disjoint parts of ``dataset`` in the given proportions (e.g. ``{"train": 0.8, "test": 0.2}``),
    stratified by class so every part sees every class in proportion."""
    names = list(fractions)
    shares = np.array([float(fractions[n]) for n in names])
    if not names or (shares <= 0).any() or shares.sum() > 1.0 + 1e-9:
        raise DatasetError(f"split fractions must be positive and sum to at most 1, got {dict(fractions)}")
    labels = np.asarray(dataset.labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    # Each row gets a position in [0, 1): its rank inside its class (shuffled), spread evenly, so
    # cutting the rows sorted by position at the cumulative fractions takes every class in
    # proportion and gives exactly floor(fraction · N) rows per part.
    position = rng.random(n)  # without stratification: a plain shuffle
    if stratify:
        for k in np.unique(labels):
            rows = np.flatnonzero(labels == k)
            rank = rng.permutation(len(rows))
            position[rows] = (rank + rng.random()) / len(rows)
    order = np.lexsort((rng.random(n), position))
    bounds = np.floor(np.cumsum(shares) * n + 1e-9).astype(int)
    parts = {name: order[start:end].tolist() for name, start, end in zip(names, [0, *bounds[:-1]], bounds)}
    empty = [n for n, rows in parts.items() if not rows]
    if empty:
        raise DatasetError(f"split {', '.join(empty)} would be empty with {len(labels)} images; use larger fractions or more images")
    return {n: DatasetView(dataset, sorted(rows), name=n) for n, rows in parts.items()}
