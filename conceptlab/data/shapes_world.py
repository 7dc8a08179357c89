"""ShapesWorld: a seeded world of rendered shapes whose every concept is known.

Each image is drawn from a row of attributes (shape, colour, size, fill, background, position).
Classes are rules over shape, colour and fill, so concepts -- not single pixels -- tell them apart,
and several classes share each concept. In the ``train``/``val``/``test`` splits each class goes
with one background most of the time (a spurious cue); the ``shifted`` split breaks that link by
never drawing a class on its usual background.

Rows are drawn on demand: constructing a split is O(1) whatever its size, and row ``i`` is drawn
from the split's seeded stream in blocks of :data:`BLOCK_ROWS` rows, the generator's state at the
start of each block kept as a checkpoint once reached (so revisiting a block replays only that
block). The stream is the one the original eager sampler drew, call for call, so every
(split, size, seed, ...) gives exactly the rows and images it always gave; ``attributes``,
``labels``, ``concepts`` and ``captions`` are computed for the whole split on first access. With
``label_noise > 0`` the noisy labels are drawn after the last row, so the first label read makes one
pass over all rows.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from PIL import Image

from conceptlab.data.rendering import render_image
from conceptlab.limits import check_limit

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
#: rows drawn together; the generator's state at each block start is kept once reached
BLOCK_ROWS = 4096
#: drawn blocks kept in memory (older ones are dropped and redrawn from their checkpoint)
CACHED_BLOCKS = 64
#: the attribute columns of a row, in the order the sampler draws them
_FAMILIES = tuple(ATTRIBUTE_VALUES)
_NUISANCE = ("jitter_x", "jitter_y", "scale_jitter", "rotation", "color_jitter")

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
        check_limit("dataset_rows", size, "ShapesWorld size")
        if resolution < 16:
            raise ValueError(f"resolution must be at least 16 pixels, got {resolution}")
        check_limit("resolution", int(resolution), "ShapesWorld resolution")
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
        self._blocks: OrderedDict[int, dict[str, list]] = OrderedDict()
        self._row_states: dict[int, dict] = {}  # block -> generator state at its first row
        self._caption_blocks: OrderedDict[int, list[str]] = OrderedDict()
        self._caption_states: dict[int, dict] = {}
        self._noisy: np.ndarray | None = None

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
    def _row_generator(self) -> np.random.Generator:
        c = self._config
        return np.random.default_rng(_seed_for(VERSION, c.seed, c.split, c.size))

    def _caption_generator(self) -> np.random.Generator:
        return np.random.default_rng(_seed_for(VERSION, "captions", self._config.seed, self.split))

    @property
    def _n_blocks(self) -> int:
        return -(-self._config.size // BLOCK_ROWS)

    def _block_rows(self, block: int) -> int:
        return min(BLOCK_ROWS, self._config.size - block * BLOCK_ROWS)

    def _generator_at(self, states: dict[int, dict], block: int, fresh) -> tuple[np.random.Generator, int]:
        """A generator positioned at the nearest checkpoint at or before ``block``, and its block."""
        known = max((k for k in states if k <= block), default=None)
        rng = fresh()
        if known is None:
            states[0] = rng.bit_generator.state
            return rng, 0
        rng.bit_generator.state = states[known]
        return rng, known

    def _block(self, block: int) -> dict[str, list]:
        """The columns of rows [block·BLOCK_ROWS, ...), drawn from the nearest checkpoint."""
        cached = self._blocks.get(block)
        if cached is not None:
            self._blocks.move_to_end(block)
            return cached
        rng, at = self._generator_at(self._row_states, block, self._row_generator)
        while True:
            columns = _draw_rows(rng, self._block_rows(at), self._config)
            self._row_states.setdefault(at + 1, rng.bit_generator.state)
            if at == block:
                break
            at += 1
        self._blocks[block] = columns
        if len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return columns

    def _caption_block(self, block: int) -> list[str]:
        cached = self._caption_blocks.get(block)
        if cached is not None:
            self._caption_blocks.move_to_end(block)
            return cached
        rng, at = self._generator_at(self._caption_states, block, self._caption_generator)
        while True:
            captions = _draw_captions(rng, self._block(at))
            self._caption_states.setdefault(at + 1, rng.bit_generator.state)
            if at == block:
                break
            at += 1
        self._caption_blocks[block] = captions
        if len(self._caption_blocks) > CACHED_BLOCKS:
            self._caption_blocks.popitem(last=False)
        return captions

    def _column(self, name: str) -> list:
        out: list = []
        for block in range(self._n_blocks):
            out.extend(self._block(block)[name])
        return out

    def _noisy_labels(self) -> np.ndarray:
        """Labels after ``label_noise``: drawn from the row stream after its last row, as always."""
        if self._noisy is None:
            c = self._config
            true_labels = np.asarray(self._column("label"), dtype=np.int64)
            self._block(self._n_blocks - 1)  # the state after the last row is a checkpoint now
            rng = self._row_generator()
            rng.bit_generator.state = self._row_states[self._n_blocks]
            n_classes = len(CLASS_RULES)
            noisy = true_labels.copy()
            flip = rng.random(c.size) < c.label_noise
            shift = rng.integers(1, n_classes, size=c.size)
            noisy[flip] = (true_labels[flip] + shift[flip]) % n_classes
            self._noisy = noisy
        return self._noisy

    def _label(self, index: int) -> int:
        if self._config.label_noise > 0:
            return int(self._noisy_labels()[index])
        return int(self._block(index // BLOCK_ROWS)["label"][index % BLOCK_ROWS])

    @cached_property
    def true_labels(self) -> np.ndarray:
        """(N,) int64 class of every image before label noise."""
        return np.asarray(self._column("label"), dtype=np.int64)

    @cached_property
    def labels(self) -> np.ndarray:
        """(N,) int64 label of every image (with ``label_noise``, some are another class)."""
        if self._config.label_noise > 0:
            return self._noisy_labels().copy()
        return np.asarray(self._column("label"), dtype=np.int64)

    @cached_property
    def attributes(self) -> pd.DataFrame:
        """One row per image: ``label``, ``class_name``, the six families and the nuisance draws."""
        frame = pd.DataFrame({name: self._column(name) for name in (*_FAMILIES, *_NUISANCE)})
        noisy = self.labels
        frame.insert(0, "label", noisy)
        frame.insert(1, "class_name", [self.class_names[k] for k in noisy])
        return frame

    @cached_property
    def concepts(self) -> np.ndarray:
        """(N, 25) bool ground truth: image i shows concept j."""
        columns = []
        for name in self.concept_names:
            family, value = name.split(":", 1)
            columns.append(self.attributes[family].to_numpy() == value)
        return np.stack(columns, axis=1)

    @cached_property
    def captions(self) -> list[str]:
        """One seeded caption per image (a random subset of its families named)."""
        out: list[str] = []
        for block in range(self._n_blocks):
            out.extend(self._caption_block(block))
        return out

    def caption(self, index: int) -> str:
        """The seeded caption of image ``index`` (``captions[index]`` without drawing all of them)."""
        index = self._check_index(index)
        return self._caption_block(index // BLOCK_ROWS)[index % BLOCK_ROWS]

    def __getstate__(self) -> dict:
        # DataLoader workers get the checkpoints, not the drawn blocks (they redraw what they read)
        state = dict(self.__dict__)
        state["_blocks"], state["_caption_blocks"] = OrderedDict(), OrderedDict()
        for name in ("attributes", "concepts", "captions"):
            state.pop(name, None)
        return state

    # -- dataset protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self._config.size

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return index % len(self)

    def row(self, index: int) -> dict:
        """The attribute row of image ``index`` as a dict (the columns of ``attributes``)."""
        index = self._check_index(index)
        columns = self._block(index // BLOCK_ROWS)
        offset = index % BLOCK_ROWS
        label = self._label(index)
        out: dict = {"label": label, "class_name": self.class_names[label]}
        out.update((name, columns[name][offset]) for name in (*_FAMILIES, *_NUISANCE))
        return out

    def image(self, index: int) -> Image.Image:
        return render_image(self.row(index), self._config.resolution)

    def masks(self, index: int) -> dict[str, np.ndarray]:
        """Boolean pixel masks of image ``index``: ``"shape"``, ``"background"`` and one per attribute
        family (the region that carries it), rendered with the image (``rendering.render_masks``)."""
        from conceptlab.data.rendering import render_masks

        return render_masks(self.row(index), self._config.resolution)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image = self.image(int(index))
        return image, self._label(self._check_index(index))

    def caption_variants(self, index: int, rng: np.random.Generator) -> str:
        """A fresh random caption of image ``index`` (used by the zoo's contrastive training)."""
        families = list(ATTRIBUTE_VALUES)
        chosen = [f for f in families if rng.random() < 0.6] or [families[rng.integers(6)]]
        return caption_for(self.row(index), chosen)


# -- the sampler: the original eager loop's draws, call for call ----------------------------------
_RULES = list(CLASS_RULES.values())
# per class: the (family, allowed values) a row draws from, in the sampler's family order
_PLANS = [tuple((family, tuple(rule.get(family, values))) for family, values in ATTRIBUTE_VALUES.items()) for rule, _ in _RULES]
_OTHER_BACKGROUNDS = [tuple(b for b in ATTRIBUTE_VALUES["background"] if b != usual) for _, usual in _RULES]


def _draw_rows(rng: np.random.Generator, count: int, config: _Config) -> dict[str, list]:
    """The next ``count`` rows of the stream as columns (``label`` is the true class).

    ``rng.integers(len(values))`` indexing ``values`` is the same draw as ``rng.choice(values)``
    (numpy's ``choice`` samples an index with ``integers``), and much cheaper.
    """
    columns: dict[str, list] = {name: [] for name in ("label", *_FAMILIES, *_NUISANCE)}
    integers, uniform = rng.integers, rng.uniform
    n_classes = len(_RULES)
    shifted = config.split == "shifted"
    for _ in range(count):
        label = int(integers(n_classes))
        plan = _PLANS[label]
        while True:  # rejection-sample free families until no other class's rule matches
            row = {family: values[int(integers(len(values)))] for family, values in plan}
            if all(not _matches(r, row) for k, (r, _) in enumerate(_RULES) if k != label):
                break
        others = _OTHER_BACKGROUNDS[label]
        if shifted:
            row["background"] = others[int(integers(len(others)))]
        elif rng.random() < config.spurious_strength:
            row["background"] = _RULES[label][1]
        else:
            row["background"] = others[int(integers(len(others)))]
        columns["label"].append(label)
        for family in _FAMILIES:
            columns[family].append(row[family])
        # continuous nuisance parameters, stored so rendering is a pure function of the row
        columns["jitter_x"].append(float(uniform(-0.06, 0.06)))
        columns["jitter_y"].append(float(uniform(-0.06, 0.06)))
        columns["scale_jitter"].append(float(uniform(-0.08, 0.08)))
        columns["rotation"].append(float(uniform(-12.0, 12.0)))
        columns["color_jitter"].append(int(integers(0, 2**31 - 1)))
    return columns


def _draw_captions(rng: np.random.Generator, columns: dict[str, list]) -> list[str]:
    families = list(ATTRIBUTE_VALUES)
    captions = []
    for offset in range(len(columns["label"])):
        row = {family: columns[family][offset] for family in _FAMILIES}
        chosen = [f for f in families if rng.random() < 0.6] or [families[rng.integers(6)]]
        captions.append(caption_for(row, chosen))
    return captions
