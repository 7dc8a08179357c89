"""The ``zoo:NAME`` backbone scheme: a model conceptlab trains itself, from its weights folder."""

from __future__ import annotations

from conceptlab.backbones import is_language_model_dir, load_hf_language_model, load_local_dir
from conceptlab.registry import register_backbone_scheme
from conceptlab.zoo.catalog import zoo_path

__all__: list[str] = []


@register_backbone_scheme("zoo", usage="zoo:NAME", description="a model conceptlab trains itself; `conceptlab info` lists them")
def _zoo_scheme(rest: str, device=None, spec: str | None = None):
    folder = zoo_path(rest)
    if (folder / "unet.safetensors").is_file():  # zoo:shapes-ddpm and its student sample images; they embed nothing
        raise ValueError(f"zoo:{rest} is a diffusion model, not a backbone: load it with conceptlab.diffusion.load_pipeline('zoo:{rest}')")
    if is_language_model_dir(folder):  # a Hugging Face causal LM folder (e.g. zoo:facts-gpt2)
        return load_hf_language_model(folder, device=device, spec=spec)
    return load_local_dir(folder, device=device, spec=spec)
