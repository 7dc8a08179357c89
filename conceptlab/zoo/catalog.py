"""The zoo's catalog: which models conceptlab trains itself, where their weights live, how to rebuild them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from conceptlab.utils import conceptlab_home

__all__ = ["ZOO", "ZooModel", "zoo_path", "build", "available"]

_PACKAGE_WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: what it is, the file whose presence says its weights are there, and its
    recipe as ``"module:function"``; the function is ``build(out_dir, progress, evaluate,
    **overrides) -> model card dict``."""

    description: str
    marker: str
    recipe: str


#: zoo name -> entry
ZOO: dict[str, ZooModel] = {
    "shapes-clip": ZooModel(
        "open_clip CLIP (ModifiedResNet 1-1-1-1 w32, 64 px; 2-layer text) trained on ShapesWorld captions",
        marker="open_clip_config.json", recipe="conceptlab.zoo.shapes_clip:build",
    ),
    "facts-gpt2": ZooModel(
        "Hugging Face GPT2LMHeadModel (2 layers, 64-d, 128 MLP neurons, word-level vocabulary) trained on FactsWorld",
        marker="config.json", recipe="conceptlab.zoo.facts_gpt2:build",
    ),
    "shapes-ddpm": ZooModel(
        "conditional pixel DDPM (diffusers UNet2DModel, 32 px) on ShapesWorld; sampled with DDIM in 25 steps",
        marker="unet.safetensors", recipe="conceptlab.zoo.shapes_ddpm:build",
    ),
    "shapes-ddpm-distilled": ZooModel(
        "4-step student of shapes-ddpm by latent-consistency distillation; sampled with LCMScheduler",
        marker="unet.safetensors", recipe="conceptlab.zoo.shapes_ddpm_distilled:build",
    ),
}


def _candidates(name: str) -> list[Path]:
    return [conceptlab_home() / "zoo" / name, _PACKAGE_WEIGHTS / name]


def available() -> dict[str, Path | None]:
    """zoo name -> folder its weights load from, or None when not built."""
    return {name: next((p for p in _candidates(name) if (p / entry.marker).is_file()), None) for name, entry in ZOO.items()}


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
    module, _, function = ZOO[name].recipe.partition(":")
    recipe = getattr(importlib.import_module(module), function)  # a recipe needs torch and the data: loaded on demand
    return recipe(out_dir or _candidates(name)[0], progress=progress, evaluate=evaluate, **recipe_overrides)
