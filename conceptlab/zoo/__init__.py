"""The embedded default models: what they are, where their weights live, how to rebuild them."""

from __future__ import annotations

from pathlib import Path

from conceptlab.utils import conceptlab_home

__all__ = ["ZOO", "zoo_path", "build", "available"]

_PACKAGE_WEIGHTS = Path(__file__).parent / "weights"

#: zoo name -> one-line description
ZOO = {
    "shapes-clip": "open_clip CLIP (ModifiedResNet 1-1-1-1 w32, 64 px; 2-layer text) trained on ShapesWorld captions",
}


def _candidates(name: str) -> list[Path]:
    return [conceptlab_home() / "zoo" / name, _PACKAGE_WEIGHTS / name]


def available() -> dict[str, Path | None]:
    """zoo name -> folder its weights load from, or None when not built."""
    return {name: next((p for p in _candidates(name) if (p / "open_clip_config.json").is_file()), None) for name in ZOO}


def zoo_path(name: str) -> Path:
    """The folder holding a zoo model's weights; a clear error when it is unknown or not built."""
    if name not in ZOO:
        raise ValueError(f"no zoo model {name!r}; the zoo has: {', '.join(sorted(ZOO))}")
    folder = available()[name]
    if folder is None:
        places = " or ".join(str(p) for p in _candidates(name))
        raise FileNotFoundError(
            f"zoo:{name} is not built: no weights in {places}. "
            f"Build it with `conceptlab zoo build {name}` (a few minutes on a CPU)."
        )
    return folder


def build(
    name: str = "shapes-clip",
    out_dir: str | Path | None = None,
    progress: bool = True,
    evaluate: bool = True,
    **recipe_overrides,
) -> dict:
    """Train a zoo model by its recipe into ``out_dir`` (default $CONCEPTLAB_HOME/zoo/NAME)."""
    if name not in ZOO:
        raise ValueError(f"no zoo model {name!r}; the zoo has: {', '.join(sorted(ZOO))}")
    from conceptlab.zoo.shapes_clip import ShapesClipRecipe, train_shapes_clip

    recipe = ShapesClipRecipe(**recipe_overrides)
    return train_shapes_clip(out_dir or _candidates(name)[0], recipe, progress=progress, evaluate=evaluate)
