"""open_clip checkpoints: built-in names with pretrained tags, and open_clip-format directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conceptlab.backbones.base import ImageTextBackbone
from conceptlab.registry import register_backbone_scheme

__all__ = ["OpenClipBackbone", "load_open_clip", "load_local_dir", "WEIGHT_FILES"]

#: weight files open_clip looks for in a directory, in its order of preference
WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)
CONFIG_FILE = "open_clip_config.json"


class OpenClipBackbone(ImageTextBackbone):
    """An open_clip ``CLIP`` model behind the ImageTextBackbone interface."""


def _open_clip():
    try:
        import open_clip
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("open_clip backbones need `pip install open_clip_torch`") from error
    return open_clip


def load_local_dir(path: str | os.PathLike, device=None, spec: str | None = None) -> OpenClipBackbone:
    """Load an open_clip checkpoint directory: ``open_clip_config.json`` + a weight file.

    This is the layout open_clip's ``save_for_hf`` writes and the Hugging Face hub serves.
    """
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no checkpoint directory at {directory}. A local-dir: backbone is a folder holding "
            f"{CONFIG_FILE} (with 'model_cfg') and one of {', '.join(WEIGHT_FILES)}."
        )
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{directory} has no {CONFIG_FILE}; put open_clip's config file there "
            f"(open_clip.push_to_hf_hub.save_config_for_hf writes one)."
        )
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{directory / CONFIG_FILE} is not valid JSON: {error}") from error
    if "model_cfg" not in config:
        raise ValueError(f"{directory / CONFIG_FILE} lacks the 'model_cfg' section open_clip needs")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        present = sorted(p.name for p in directory.iterdir())
        raise FileNotFoundError(
            f"{directory} has a config but no weights; expected one of {', '.join(WEIGHT_FILES)}, "
            f"found {present or 'nothing'}."
        )
    open_clip = _open_clip()
    name = f"local-dir:{directory}"
    model, _, preprocess = open_clip.create_model_and_transforms(name, device="cpu")
    tokenizer = open_clip.get_tokenizer(name)
    return OpenClipBackbone(spec or name, model, preprocess, tokenizer, device)


def load_open_clip(name: str, pretrained: str | None, device=None, spec: str | None = None) -> OpenClipBackbone:
    """Load a built-in open_clip architecture with a pretrained tag or a weight file path.

    A tag needs its weights in the Hugging Face cache (or a network); offline, a missing file is
    an error that says where the weights go, never a silent random model.
    """
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise ValueError(
            f"open_clip has no model {name!r}. Known models include: "
            f"{', '.join(open_clip.list_models()[:12])}, ... (open_clip.list_models() lists all)"
        )
    if pretrained and not os.path.isfile(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ValueError(f"{name} has no pretrained tag {pretrained!r}; known tags: {', '.join(tags)}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device="cpu")
    except Exception as error:  # the hub client raises many types; all mean "weights not here"
        raise FileNotFoundError(
            f"could not load weights for open_clip:{name}/{pretrained}: {error}. "
            "This machine may be offline: put the checkpoint in the Hugging Face cache "
            "(HF_HOME), pass a weight file path as PRETRAINED, or save the model as a folder "
            "and use local-dir:PATH."
        ) from error
    tokenizer = open_clip.get_tokenizer(name)
    return OpenClipBackbone(spec or f"open_clip:{name}/{pretrained}", model, preprocess, tokenizer, device)


@register_backbone_scheme("local-dir", usage="local-dir:PATH", description="a folder with open_clip_config.json and open_clip_model.safetensors")
def _local_dir_scheme(rest: str, device=None, spec: str | None = None) -> OpenClipBackbone:
    return load_local_dir(rest, device=device, spec=spec)


@register_backbone_scheme(
    "open_clip", usage="open_clip:NAME/PRETRAINED", description="a built-in open_clip model and a pretrained tag or weight file"
)
def _open_clip_scheme(rest: str, device=None, spec: str | None = None) -> OpenClipBackbone:
    name, _, pretrained = rest.partition("/")
    return load_open_clip(name, pretrained or None, device=device, spec=spec)
