"""ShapesWorld: a seeded world of rendered shapes whose every concept is known.

Each image is drawn from a row of attributes (shape, colour, size, fill, background, position).
Classes are rules over shape, colour and fill, so concepts -- not single pixels -- tell them apart,
and several classes share each concept. In the ``train``/``val``/``test`` splits each class goes
with one background most of the time (a spurious cue); the ``shifted`` split breaks that link by
never drawing a class on its usual background.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image

from conceptlab.data.rendering import render_image

__all__ = ["ShapesWorld", "ATTRIBUTE_VALUES", "CLASS_RULES", "SPLITS", "caption_for"]

#: attribute family -> its values; every (family, value) pair is one binary concept.
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "cross", "star"),
    "color": ("red", "green", "blue", "yellow", "purple", "orange"),
    "size": ("small", "medium", "large"),
    "fill": ("solid", "striped", "dotted"),
    "background": ("white", "black", "gray", "beige"),
    "position": ("top-left", "top-right", "bottom-left", "bottom-right"),
}

#: class name -> (rule over families, its usual background in the spurious splits).
#: A rule maps a family to the values it allows; families not named are free.
CLASS_RULES: dict[str, tuple[dict[str, tuple[str, ...]], str]] = {
    "ruby disc": ({"shape": ("circle",), "color": ("red",)}, "white"),
    "ruby block": ({"shape": ("square",), "color": ("red",)}, "black"),
    "jade disc": ({"shape": ("circle",), "color": ("green",)}, "gray"),
    "jade spire": ({"shape": ("triangle",), "color": ("green",)}, "beige"),
    "azure block": ({"shape": ("square",), "color": ("blue",)}, "white"),
    "azure star": ({"shape": ("star",), "color": ("blue",)}, "black"),
    "sun cross": ({"shape": ("cross",), "color": ("yellow", "orange")}, "gray"),
    "sun star": ({"shape": ("star",), "color": ("yellow", "orange")}, "beige"),
    "violet tile": ({"shape": ("square", "circle"), "color": ("purple",), "fill": ("solid",)}, "white"),
    "violet zebra": (
        {"shape": ("square", "circle"), "color": ("purple",), "fill": ("striped", "dotted")},
        "black",
    ),
    "ember spire": ({"shape": ("triangle",), "color": ("orange", "red")}, "gray"),
    "frost cross": ({"shape": ("cross",), "color": ("blue", "green")}, "beige"),
}

SPLITS = ("train", "val", "test", "shifted")
DEFAULT_SIZES = {"train": 8000, "val": 2000, "test": 2000, "shifted": 2000}
VERSION = "shapesworld-v1"

FAMILY_PHRASES = {
    "background": "on a {} background",
    "position": "at the {}",
}


def _matches(rule: dict[str, tuple[str, ...]], row: dict[str, str]) -> bool:
    return all(row[family] in allowed for family, allowed in rule.items())


def caption_for(row: dict[str, str], families: list[str]) -> str:
    """A caption naming exactly ``families`` of ``row``, in one fixed word order.

    Unnamed shape becomes the word "shape", so "a red shape" and "a striped star" are both captions
    and a zero-shot prompt for any single family is in the training distribution.
    """
    words = ["a"]
    for family in ("size", "color", "fill"):
        if family in families:
            words.append(row[family])
    words.append(row["shape"] if "shape" in families else "shape")
    for family in ("position", "background"):
        if family in families:
            words.append(FAMILY_PHRASES[family].format(row[family].replace("-", " ")))
    return " ".join(words)


def _seed_for(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class _Config:
    split: str
    size: int
    seed: int
    resolution: int
    label_noise: float
    spurious_strength: float


class ShapesWorld(torch.utils.data.Dataset):
    """A split of ShapesWorld: ``ds[i] -> (PIL.Image, int)`` with ground-truth concepts.

    Args:
        split: one of ``train``, ``val``, ``test``, ``shifted``.
        size: number of images; defaults to 8000 for train and 2000 otherwise.
        seed: world seed; the same (split, size, seed, ...) always gives the same images.
        resolution: image side in pixels (64 by default).
        label_noise: probability that a label is replaced by a uniformly drawn other class.
        spurious_strength: probability that an image shows its class's usual background in the
            non-shifted splits (the rest are drawn uniformly from the other backgrounds).
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        seed: int = 0,
        resolution: int = 64,
        label_noise: float = 0.0,
        spurious_strength: float = 0.9,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; ShapesWorld has {', '.join(SPLITS)}")
        size = DEFAULT_SIZES[split] if size is None else int(size)
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if resolution < 16:
            raise ValueError(f"resolution must be at least 16 pixels, got {resolution}")
        if not 0.0 <= label_noise < 1.0:
            raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
        if not 0.0 <= spurious_strength <= 1.0:
            raise ValueError(f"spurious_strength must be in [0, 1], got {spurious_strength}")
        self._config = _Config(split, size, seed, resolution, label_noise, spurious_strength)
        self.class_names: list[str] = list(CLASS_RULES)
        self.attribute_values: dict[str, tuple[str, ...]] = dict(ATTRIBUTE_VALUES)
        self.concept_names: list[str] = [
            f"{family}:{value}" for family, values in ATTRIBUTE_VALUES.items() for value in values
        ]
        self.attributes, self.true_labels, self.labels = self._sample()
        self.concepts = self._concept_matrix()
        self.captions = self._captions()

    # -- identity -----------------------------------------------------------------------------
    @property
    def split(self) -> str:
        return self._config.split

    @property
    def seed(self) -> int:
        return self._config.seed

    @property
    def resolution(self) -> int:
        return self._config.resolution

    @property
    def identity(self) -> str:
        """A string that names exactly these images; the activation store keys on it."""
        c = self._config
        return (
            f"{VERSION}:{c.split}:n={c.size}:seed={c.seed}:res={c.resolution}"
            f":noise={c.label_noise}:spurious={c.spurious_strength}"
        )

    def __repr__(self) -> str:
        return f"ShapesWorld({self.identity})"

    # -- sampling -----------------------------------------------------------------------------
    def _sample(self) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        c = self._config
        rng = np.random.default_rng(_seed_for(VERSION, c.seed, c.split, c.size))
        rules = list(CLASS_RULES.values())
        n_classes = len(rules)
        backgrounds = ATTRIBUTE_VALUES["background"]
        rows, labels = [], []
        for _ in range(c.size):
            label = int(rng.integers(n_classes))
            rule, usual_background = rules[label]
            while True:  # rejection-sample free families until no other class's rule matches
                row = {
                    family: str(rng.choice(rule.get(family, values)))
                    for family, values in ATTRIBUTE_VALUES.items()
                }
                if all(not _matches(r, row) for k, (r, _) in enumerate(rules) if k != label):
                    break
            others = [b for b in backgrounds if b != usual_background]
            if c.split == "shifted":
                row["background"] = str(rng.choice(others))
            elif rng.random() < c.spurious_strength:
                row["background"] = usual_background
            else:
                row["background"] = str(rng.choice(others))
            # continuous nuisance parameters, stored so rendering is a pure function of the row
            row["jitter_x"] = float(rng.uniform(-0.06, 0.06))
            row["jitter_y"] = float(rng.uniform(-0.06, 0.06))
            row["scale_jitter"] = float(rng.uniform(-0.08, 0.08))
            row["rotation"] = float(rng.uniform(-12.0, 12.0))
            row["color_jitter"] = int(rng.integers(0, 2**31 - 1))
            rows.append(row)
            labels.append(label)
        true_labels = np.asarray(labels, dtype=np.int64)
        noisy = true_labels.copy()
        if c.label_noise > 0:
            flip = rng.random(c.size) < c.label_noise
            shift = rng.integers(1, n_classes, size=c.size)
            noisy[flip] = (true_labels[flip] + shift[flip]) % n_classes
        frame = pd.DataFrame(rows)
        frame.insert(0, "label", noisy)
        frame.insert(1, "class_name", [self.class_names[k] for k in noisy])
        return frame, true_labels, noisy

    def _concept_matrix(self) -> np.ndarray:
        columns = []
        for name in self.concept_names:
            family, value = name.split(":", 1)
            columns.append(self.attributes[family].to_numpy() == value)
        return np.stack(columns, axis=1)

    def _captions(self) -> list[str]:
        rng = np.random.default_rng(_seed_for(VERSION, "captions", self._config.seed, self.split))
        families = list(ATTRIBUTE_VALUES)
        captions = []
        for row in self.attributes.to_dict("records"):
            chosen = [f for f in families if rng.random() < 0.6] or [families[rng.integers(6)]]
            captions.append(caption_for(row, chosen))
        return captions

    # -- dataset protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self._config.size

    def row(self, index: int) -> dict:
        """The attribute row of image ``index`` as a dict."""
        return self.attributes.iloc[index].to_dict()

    def image(self, index: int) -> Image.Image:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return render_image(self.row(index % len(self)), self._config.resolution)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image = self.image(int(index))
        return image, int(self.labels[int(index)])

    def caption_variants(self, index: int, rng: np.random.Generator) -> str:
        """A fresh random caption of image ``index`` (used by the zoo's contrastive training)."""
        families = list(ATTRIBUTE_VALUES)
        chosen = [f for f in families if rng.random() < 0.6] or [families[rng.integers(6)]]
        return caption_for(self.row(index), chosen)
