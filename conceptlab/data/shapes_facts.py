"""ShapesWorld facts the rest of the library reads: prompts, templates, concept phrases, settings.

One home for each: the zoo, the probes, the concept sources, discovery and the app import them
from here. Plain data only; the data cards under ``data_cards/`` say where each value comes from.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from conceptlab.data.shapes_world import ATTRIBUTE_VALUES, caption_for

__all__ = [
    "APP_SEED",
    "APP_SIZES",
    "NAMING_TEMPLATES",
    "PCBM_H_SETTINGS",
    "SAE_SETTINGS",
    "SHAPESWORLD_CONCEPTS_CARD",
    "SHAPESWORLD_CONCEPTS_FILE",
    "family_prompts",
    "shapesworld_concepts",
    "shapesworld_text_prompts",
]


def family_prompts(family: str) -> list[str]:
    """Zero-shot prompts for every value of one family, in ATTRIBUTE_VALUES order."""
    template = {f: "?" for f in ATTRIBUTE_VALUES}
    return [caption_for({**template, family: v}, [family]) for v in ATTRIBUTE_VALUES[family]]


def shapesworld_text_prompts() -> dict[str, str]:
    """The 25 ShapesWorld concepts (``family:value``) and their text prompts, the captions the zoo
    CLIP was trained on ("a red shape", "a circle", "a shape on a white background", ...)."""
    return {
        f"{family}:{value}": prompt
        for family, values in ATTRIBUTE_VALUES.items()
        for value, prompt in zip(values, family_prompts(family))
    }


#: the class -> concept phrases file shipped for ShapesWorld's 12 classes (its card says how it was written)
SHAPESWORLD_CONCEPTS_FILE = "conceptlab/resources/shapesworld_concepts.json"
SHAPESWORLD_CONCEPTS_CARD = "data_cards/shapesworld_concepts.md"


def shapesworld_concepts() -> dict[str, list[str]]:
    """The raw class -> concept phrases mapping of :data:`SHAPESWORLD_CONCEPTS_FILE` (LaBo's
    ``class2concepts.json`` format); ``conceptlab.concepts.shapesworld_concept_set`` wraps it."""
    text = (resources.files("conceptlab") / "resources" / "shapesworld_concepts.json").read_text(encoding="utf-8")
    return json.loads(text)


#: the zoo CLIP's caption grammar, one frame per family, ensembled per word when naming (data_cards/shapesworld_text_concepts.md)
NAMING_TEMPLATES: tuple[str, ...] = ("a {} shape", "a {}", "a shape on a {} background", "a shape at the {}")

#: the ShapesWorld SAE measured best for naming: small and sparse, named with the caption grammar (data_cards/vocabulary_dn.md)
SAE_SETTINGS: dict[str, Any] = {
    "n_latents": 64,
    "l1": 1e-2,
    "steps": 400,
    "batch_size": 1024,
    "lr": 5e-4,
    "seed": 49,
    # SAE on the embeddings minus their train mean (what the app always did): recovers more concepts than raw
    "center": True,
    "templates": NAMING_TEMPLATES,
    "top_k": 5,
}

#: PCBM-h's residual on zoo:shapes-clip's raw embeddings: the official 0.01 oscillates (probes/shapes_pcbm_h.toml)
PCBM_H_SETTINGS: dict[str, Any] = {"residual_lr": 1e-3}

#: the ShapesWorld slices the app's pages read (Embeddings: test; Concept bottleneck and Concept set:
#: train + val/shifted; Discovered concepts: train), at seed APP_SEED; `conceptlab demo` embeds exactly these
APP_SEED = 0
APP_SIZES: dict[str, int] = {"test": 500, "train": 2000, "val": 500, "shifted": 500}

#: registered CBM method name -> the settings ShapesWorld runs (the app, the probes) use beyond its defaults
METHOD_SETTINGS: dict[str, dict[str, Any]] = {"pcbm_h": PCBM_H_SETTINGS}
