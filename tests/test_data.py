"""ShapesWorld: determinism, ground truth that matches the pixels, class rules, the shifted split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab.data import ATTRIBUTE_VALUES, CLASS_RULES, ShapesWorld, render_image
from conceptlab.data.rendering import BACKGROUND_RGB, COLOR_RGB, POSITION_CENTER


def test_public_surface_and_shapes():
    ds = ShapesWorld(split="test", size=200, seed=0)
    image, label = ds[0]
    assert image.size == (64, 64) and image.mode == "RGB"
    assert isinstance(label, int) and 0 <= label < len(ds.class_names)
    assert len(ds) == 200 and ds.labels.shape == (200,)
    assert len(ds.class_names) >= 10
    assert len(ATTRIBUTE_VALUES) >= 6 and len(ds.concept_names) >= 24
    assert ds.concepts.shape == (200, len(ds.concept_names)) and ds.concepts.dtype == bool
    # exactly one value per family is true for each image
    assert (ds.concepts.sum(axis=1) == len(ATTRIBUTE_VALUES)).all()
    assert len(ds.captions) == 200 and all(c.startswith("a ") for c in ds.captions)
    assert list(ds.attributes.index) == list(range(200))
    assert ds.attribute_values["color"] == ATTRIBUTE_VALUES["color"]
    assert isinstance(ds, torch.utils.data.Dataset)


def test_deterministic_and_seed_sensitive():
    a, b = ShapesWorld("train", size=50, seed=3), ShapesWorld("train", size=50, seed=3)
    c = ShapesWorld("train", size=50, seed=4)
    assert a.identity == b.identity != c.identity
    assert a.attributes.equals(b.attributes) and a.captions == b.captions
    assert np.array_equal(np.asarray(a[7][0]), np.asarray(b[7][0]))
    assert not a.attributes[["shape", "color"]].equals(c.attributes[["shape", "color"]])
    # splits are different draws
    assert not ShapesWorld("val", size=50, seed=3).attributes[["shape", "color"]].equals(a.attributes[["shape", "color"]])


def test_labels_follow_class_rules_and_classes_share_concepts():
    ds = ShapesWorld("train", size=600, seed=1)
    rules = [rule for rule, _ in CLASS_RULES.values()]
    for row in ds.attributes.to_dict("records"):
        matching = [k for k, rule in enumerate(rules) if all(row[f] in vals for f, vals in rule.items())]
        assert matching == [row["label"]]
    # every class appears, and each concept value of a rule is shared by at least two classes
    assert set(ds.labels) == set(range(len(ds.class_names)))
    shapes = [v for rule in rules for v in rule["shape"]]
    assert all(shapes.count(s) >= 2 for s in set(shapes))


def test_pixels_match_ground_truth():
    ds = ShapesWorld("test", size=40, seed=2, resolution=64)
    for i in range(40):
        row = ds.row(i)
        pixels = np.asarray(ds.image(i)).astype(int)
        corner = pixels[1, 1] if not row["position"] == "top-left" else pixels[-2, -2]
        assert np.abs(corner - np.array(BACKGROUND_RGB[row["background"]])).max() <= 10
        # the shape's colour is present near the shape's centre
        px, py = POSITION_CENTER[row["position"]]
        cy, cx = int((py + row["jitter_y"]) * 64), int((px + row["jitter_x"]) * 64)
        window = pixels[max(0, cy - 6): cy + 7, max(0, cx - 6): cx + 7].reshape(-1, 3)
        distance = np.abs(window - np.array(COLOR_RGB[row["color"]])).max(axis=1)
        assert distance.min() <= 14, (i, row)


def test_spurious_background_in_train_broken_in_shifted():
    usual = {k: bg for k, (_, bg) in enumerate(CLASS_RULES.values())}
    train = ShapesWorld("train", size=1000, seed=0)
    shifted = ShapesWorld("shifted", size=500, seed=0)

    def on_usual(ds):
        return np.mean([bg == usual[y] for bg, y in zip(ds.attributes["background"], ds.labels)])

    assert 0.85 <= on_usual(train) <= 0.95
    assert on_usual(shifted) == 0.0


def test_label_noise_flips_the_requested_share():
    ds = ShapesWorld("train", size=2000, seed=0, label_noise=0.2)
    flipped = ds.labels != ds.true_labels
    assert 0.16 <= flipped.mean() <= 0.24
    clean = ShapesWorld("train", size=2000, seed=0)
    assert np.array_equal(clean.labels, clean.true_labels)


def test_resolution_is_configurable():
    ds = ShapesWorld("test", size=3, resolution=128)
    assert ds[0][0].size == (128, 128)
    assert render_image(ds.row(0), 32).size == (32, 32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "holdout"}, "unknown split"),
        ({"size": 0}, "size must be positive"),
        ({"label_noise": 1.5}, "label_noise"),
        ({"resolution": 4}, "resolution"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesWorld(**kwargs)


def _render_on_canvas(row: dict, resolution: int):
    """The reference drawing: the whole supersampled canvas painted, then Pillow's BOX resize."""
    from PIL import Image

    from conceptlab.data import rendering

    side = resolution * rendering.SUPERSAMPLE
    rng = np.random.default_rng(int(row["color_jitter"]))
    color = np.clip(np.array(rendering.COLOR_RGB[row["color"]]) + rng.integers(-12, 13, size=3), 0, 255)
    background = np.clip(np.array(rendering.BACKGROUND_RGB[row["background"]]) + rng.integers(-8, 9, size=3), 0, 255)
    mask = rendering._shape_mask(row, side)
    coloured = mask & rendering._fill_pattern(row["fill"], side)
    if row["fill"] != "solid":
        eroded = mask.copy()  # erosion by the 4-neighbour cross over the whole canvas
        for _ in range(rendering.SUPERSAMPLE * max(1, resolution // 32)):
            shrunk = eroded.copy()
            shrunk[1:, :] &= eroded[:-1, :]
            shrunk[:-1, :] &= eroded[1:, :]
            shrunk[:, 1:] &= eroded[:, :-1]
            shrunk[:, :-1] &= eroded[:, 1:]
            eroded = shrunk
        coloured |= mask & ~eroded
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = background.astype(np.uint8)
    canvas[coloured] = color.astype(np.uint8)
    return Image.fromarray(canvas, "RGB").resize((resolution, resolution), Image.Resampling.BOX)


@pytest.mark.parametrize("split", ["train", "shifted"])
def test_fast_rendering_gives_the_pixels_of_a_box_resized_canvas(split):
    """render_image computes the downsample from run counts; it must equal painting the canvas and resizing it."""
    ds = ShapesWorld(split, size=400, seed=11)
    for index in range(len(ds)):
        row = ds.row(index)
        for resolution in (64,) if index % 8 else (64, 32, 48, 17):
            assert np.array_equal(np.asarray(render_image(row, resolution)), np.asarray(_render_on_canvas(row, resolution))), (index, resolution)
