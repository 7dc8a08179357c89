"""``shapesworld:SPLIT?size=N&seed=S`` -- the embedded world, as a dataset spec.

Other options: ``resolution``, ``label_noise``, ``spurious_strength`` (ShapesWorld's arguments).
"""

from __future__ import annotations

from conceptlab.data.image_files import DatasetError
from conceptlab.data.shapes_world import SPLITS, ShapesWorld
from conceptlab.registry import register_dataset_kind

__all__ = ["load_shapesworld"]

_CASTS = {"size": int, "seed": int, "resolution": int, "label_noise": float, "spurious_strength": float}


@register_dataset_kind(
    "shapesworld", usage="shapesworld:SPLIT[?size=N&seed=S]", description="the embedded world with ground-truth concepts (train, val, test, shifted)",
)
def load_shapesworld(target: str, params: dict[str, str]) -> ShapesWorld:
    if target not in SPLITS:
        raise DatasetError(f"shapesworld:{target}: unknown split; ShapesWorld has {', '.join(SPLITS)}")
    unknown = sorted(set(params) - set(_CASTS))
    if unknown:
        raise DatasetError(f"shapesworld:{target}: unknown option(s) {', '.join(unknown)}; known: {', '.join(_CASTS)}")
    try:
        kwargs = {k: _CASTS[k](v) for k, v in params.items()}
    except ValueError as error:
        raise DatasetError(f"shapesworld:{target}: {error}") from None
    return ShapesWorld(target, **kwargs)
