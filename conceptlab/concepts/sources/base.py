"""What a concept source is handed, and the error it raises on a configuration it cannot run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ConceptSourceError", "SourceContext", "resolve_path", "train_split"]


class ConceptSourceError(ValueError):
    """A concept source's configuration does not work on this run; the message names the key."""


@dataclass(frozen=True)
class SourceContext:
    """The run a concept source builds a bank for.

    ``backbone``: the loaded backbone; ``datasets``: split -> dataset (``labels``,
    ``class_names``, and ``concepts`` / ``concept_names`` where annotated); ``embeddings``: split
    -> (N, d) float tensor from the store; ``base_dir``: the folder relative paths are read from
    (the probe file's).
    """

    backbone: Any
    datasets: Mapping[str, Any]
    embeddings: Mapping[str, Any]
    base_dir: Path


def resolve_path(path: str, context: SourceContext) -> Path:
    """``path`` as given when absolute, else relative to ``context.base_dir``."""
    out = Path(path).expanduser()
    return out if out.is_absolute() else Path(context.base_dir) / out


def train_split(context: SourceContext):
    """(embeddings, labels as numpy, class names) of the training split."""
    import numpy as np

    train = context.datasets["train"]
    return context.embeddings["train"], np.asarray(train.labels), list(train.class_names)
