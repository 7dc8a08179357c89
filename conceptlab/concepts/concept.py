"""One concept, whatever backs it: a CAV, a text embedding, an SAE latent, a learned row."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Concept", "as_vector", "jsonable"]


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: numpy/torch scalars and arrays to Python, tuples to lists, NaN/inf to None.

    Concepts and models store provenance and metrics through this, so what is in memory is exactly
    what a save/load round trip gives back.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"cannot store {type(value).__name__} value {value!r} as JSON")


def as_vector(value: Any, what: str = "vector") -> torch.Tensor:
    """A 1-D, finite, float32, CPU, contiguous tensor from a tensor, array or list."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu", torch.float32)
    else:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
    if tensor.ndim == 2 and 1 in tensor.shape:  # sklearn's coef_ is (1, d)
        tensor = tensor.reshape(-1)
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"{what} must be a non-empty 1-D vector, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return tensor.contiguous()


@dataclass
class Concept:
    """A named direction in a stated space.

    Attributes:
        name: unique within a bank, e.g. ``"color:red"``.
        vector: (d,) float32 tensor.
        space: the space ``vector`` lives in, e.g. ``"zoo:shapes-clip#image-embedding"``; concepts
            from different spaces never share a bank.
        bias: intercept of the concept's hyperplane (a CAV's SVM intercept; 0 for text concepts).
        class_links: class names the concept is tied to (LaBo/V2C), possibly empty.
        provenance: where it came from (kind, prompt, templates, SVM C, data, ...); JSON-safe.
        metrics: optional quality figures (train/val accuracy, margin statistics, AUROC ...).
    """

    name: str
    vector: torch.Tensor
    space: str
    bias: float = 0.0
    class_links: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a concept needs a non-empty string name, got {self.name!r}")
        if not isinstance(self.space, str) or not self.space:
            raise ValueError(f"concept {self.name!r} needs a non-empty string space, got {self.space!r}")
        self.vector = as_vector(self.vector, f"vector of concept {self.name!r}")
        self.bias = float(self.bias)
        if not math.isfinite(self.bias):
            raise ValueError(f"bias of concept {self.name!r} is not finite: {self.bias}")
        self.class_links = [str(c) for c in self.class_links]
        self.provenance = jsonable(dict(self.provenance))
        if self.metrics is not None:
            self.metrics = jsonable(dict(self.metrics))

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    @property
    def kind(self) -> str:
        """``provenance["kind"]`` (``text``, ``cav``, ``sae_decoder``, ...) or ``"unknown"``."""
        return str(self.provenance.get("kind", "unknown"))

    def __repr__(self) -> str:
        return f"Concept({self.name!r}, dim={self.dim}, space={self.space!r}, kind={self.kind!r}, bias={self.bias:.4g})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Concept):
            return NotImplemented
        return (
            self.name == other.name
            and self.space == other.space
            and self.bias == other.bias
            and self.class_links == other.class_links
            and self.provenance == other.provenance
            and self.metrics == other.metrics
            and torch.equal(self.vector, other.vector)
        )
