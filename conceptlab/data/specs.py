"""Dataset specs: one string names a dataset, :func:`load` builds it.

``shapesworld:SPLIT?size=N&seed=S``, ``folder:PATH``, ``csv:PATH``, ``hf:PATH`` -- each kind is a
loader registered in ``conceptlab.registry.DATASET_KINDS`` by its own file; options follow a
``?`` as ``key=value`` pairs joined by ``&``. Every dataset has the same surface:
``ds[i] -> (PIL image, label)``, ``len``, ``labels``, ``class_names``, ``identity``, and
``concept_names`` / ``concepts`` where annotated.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from conceptlab.data.image_files import DatasetError
from conceptlab.registry import DATASET_KINDS

__all__ = ["dataset_kind_usage", "load", "parse_dataset_spec"]


def dataset_kind_usage() -> dict[str, str]:
    """kind -> its spec form and a one-line description."""
    return {e.name: f"{e.meta['usage']}  ({e.description})" for e in DATASET_KINDS.entries()}


def parse_dataset_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``kind:target?k=v&k2=v2`` -> (kind, target, options); unknown kinds list the known forms."""
    forms = "\n  ".join(dataset_kind_usage().values())
    if not isinstance(spec, str) or ":" not in spec:
        raise DatasetError(f"dataset spec {spec!r} has no kind. Known forms:\n  {forms}")
    kind, rest = spec.split(":", 1)
    if kind not in DATASET_KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r} in {spec!r}. Known forms:\n  {forms}")
    target, _, query = rest.partition("?")
    if not target:
        raise DatasetError(f"dataset spec {spec!r} names nothing after {kind}:")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise DatasetError(f"dataset spec {spec!r}: options after '?' must be key=value pairs joined by '&'") from None
    return kind, target, options


def load(spec: str):
    """The dataset a spec names, e.g. ``folder:/data/birds`` or ``shapesworld:test?size=500``."""
    kind, target, options = parse_dataset_spec(spec)
    return DATASET_KINDS.get(kind)(target, options)
