"""Concepts grounded in pixels: ShapesWorld's masks, attributions through the backbone, the grader.

The grader is checked on a planted backbone whose only feature is the colour of the image's four
corner patches -- always background in ShapesWorld images with a small or medium shape -- so any
concept it computes depends on the background alone, and the grader must say so (and must say a
shape concept named on it looks in the wrong place). Integrated gradients and occlusion are checked
against their defining properties and against captum's implementations on the same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab.cbm import PCBM, DotLayer, MarginLayer
from conceptlab.cbm.calibration import CalibratedLayer
from conceptlab.cbm.grounding import (
    attribution_map,
    concept_region,
    differentiable_layer,
    grade_grounding,
    ground_model,
    integrated_gradients,
    mass_in_mask,
    occlusion,
    pointing_hit,
    sae_concept_columns,
)
from conceptlab.concepts import ConceptBank
from conceptlab.data import ShapesWorld
from conceptlab.data.rendering import BACKGROUND_RGB, FAMILY_REGIONS

pytestmark = pytest.mark.usefixtures("one_thread")
CORNER = 4


class CornerColour(torch.nn.Module):
    """A planted image tower: the mean colour of the four CORNER × CORNER corner patches, plus a constant."""

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        c = CORNER
        patches = torch.cat([x[..., :c, :c], x[..., :c, -c:], x[..., -c:, :c], x[..., -c:, -c:]], dim=-1)
        return torch.cat([patches.mean((-2, -1)), torch.ones(len(x), 1)], dim=1)


class PlantedBackbone:
    spec = "planted:corners"
    dim = 4

    def __init__(self) -> None:
        self.model = CornerColour()

    @staticmethod
    def preprocess(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


@pytest.fixture(scope="module")
def world():
    return ShapesWorld("test", size=240, seed=0)


def test_masks_are_rendered_with_the_images(world):
    for i in range(12):
        row, masks = world.row(i), world.masks(i)
        image = np.asarray(world.image(i)).astype(int)
        assert masks["shape"].shape == image.shape[:2] and not (masks["shape"] & masks["background"]).any()
        assert all(masks[family] is masks[region] for family, region in FAMILY_REGIONS.items() for region in [region])
        distance = np.abs(image - np.array(BACKGROUND_RGB[row["background"]])).max(-1)
        assert np.median(distance[masks["background"]]) <= 8  # the background is the background colour (± its jitter)
        if row["fill"] == "solid":
            assert (distance[masks["shape"]] > 30).mean() > 0.95  # a solid shape is its colour
    assert concept_region("background:white") == "background" and concept_region("color:red") == "shape" and concept_region("x") is None


def test_pointing_and_mass_by_hand():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    attribution = np.zeros((6, 6))
    attribution[2, 2], attribution[5, 5] = 3.0, 1.0
    assert pointing_hit(attribution, mask) and mass_in_mask(attribution, mask) == pytest.approx(0.75)
    attribution[5, 5] = 4.0
    assert not pointing_hit(attribution, mask) and mass_in_mask(attribution, mask) == pytest.approx(3 / 7)
    attribution[3, 2] = 9.0  # one pixel off the mask: inside with the default 1-pixel tolerance
    assert pointing_hit(attribution, mask) and not pointing_hit(attribution, mask, tolerance=0)
    assert not pointing_hit(-np.ones((6, 6)), mask) and np.isnan(mass_in_mask(-np.ones((6, 6)), mask))


def _planted_model(world):
    backbone = PlantedBackbone()
    small = [i for i in range(len(world)) if world.row(i)["size"] in ("small", "medium")]
    X = backbone.model.encode_image(torch.stack([backbone.preprocess(world.image(i)) for i in small[:120]]))
    brightness = torch.tensor([[1.0, 1.0, 1.0, -1.5]]) / 3.0
    # the same background-only direction under a background name and under a shape name
    bank = ConceptBank.from_tensors(["background:white", "shape:circle"], torch.cat([brightness, brightness]), "planted")
    model = PCBM(bank, world.class_names, lam=1e-3).fit(X, world.labels[small[:120]])
    return backbone, model, small


def test_the_grader_sees_a_background_only_concept(world):
    backbone, model, small = _planted_model(world)
    white = [i for i in small if world.row(i)["background"] == "white" and world.row(i)["shape"] != "circle"][:4]
    circles = [i for i in small if world.row(i)["shape"] == "circle" and world.row(i)["background"] != "white"][:4]
    result = ground_model(backbone, model, world, white + circles, ig={"steps": 8, "n_baselines": 1}, occ={"window": CORNER, "stride": CORNER})
    table = result.table(n_boot=200).set_index(["family", "method"])
    for method in ("integrated_gradients", "occlusion"):
        background = table.loc[("background", method)]
        assert background["n"] == 4 and background["pointing"] == 1.0 and background["mass"] > 0.99, background
        # named as a shape concept, the same score looks at the wrong region: the grader says so
        shape = table.loc[("shape", method)]
        assert shape["n"] == 4 and shape["pointing"] == 0.0 and shape["mass"] < 0.01, shape
    frame = result.frame
    assert (frame.loc[frame["concept"] == "shape:circle", "other_mass"] > 0.99).all()


def test_integrated_gradients_is_complete_and_matches_captum():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3))
    x = torch.randn(2, 3, 8, 8)
    base = torch.zeros_like(x)
    ours = integrated_gradients(net, x, [0, 2], baseline=base, steps=64)
    gap = net(x)[[0, 1], [0, 2]] - net(base)[[0, 1], [0, 2]]
    assert ours.sum((1, 2, 3)).detach().numpy() == pytest.approx(gap.detach().numpy(), rel=2e-3, abs=1e-4)  # completeness
    captum = pytest.importorskip("captum.attr")
    theirs = captum.IntegratedGradients(net).attribute(x, baselines=base, target=[0, 2], n_steps=64, method="riemann_middle")
    assert torch.allclose(ours, theirs.detach(), atol=1e-5)


def test_occlusion_on_a_linear_score_and_against_captum():
    w = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))

    def linear(x):
        return (x * w).sum((1, 2, 3)).unsqueeze(1)

    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    heat = occlusion(linear, x, 0, window=4, stride=4)
    # non-overlapping windows: each pixel gets its window's share of the score
    windows = (x * w).sum(1)[0].reshape(2, 4, 2, 4).sum((1, 3))
    assert torch.allclose(heat[0], windows.repeat_interleave(4, 0).repeat_interleave(4, 1), atol=1e-5)
    captum = pytest.importorskip("captum.attr")
    theirs = captum.Occlusion(linear).attribute(x, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), target=0, baselines=0)
    ours = occlusion(linear, x, 0, window=4, stride=2)
    # captum gives every channel of a pixel the mean drop of the windows covering it: our map, per channel
    assert all(torch.allclose(ours[0], theirs[0, c], atol=1e-5) for c in range(3))
    assert attribution_map(torch.ones(2, 3, 4, 4)).shape == (2, 4, 4)


def test_differentiable_layers_are_the_layers():
    bank = ConceptBank.from_tensors(["a", "b"], torch.randn(2, 5, generator=torch.Generator().manual_seed(0)), "s")
    X = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(30) % 2
    for layer in (MarginLayer(), DotLayer(normalize_images=True), CalibratedLayer(MarginLayer())):
        fitted = layer.fit(bank, X, y, ["0", "1"]) if not isinstance(layer, CalibratedLayer) else layer.fit(bank, X, y, ["0", "1"], concept_labels=np.c_[X[:, 0] > 0, X[:, 1] > 0])
        fn = differentiable_layer(fitted, 5)
        Xg = X.clone().requires_grad_(True)
        out = fn(Xg)
        assert out.requires_grad and torch.allclose(out.detach(), fitted.scores(X), atol=1e-5), type(layer).__name__


def test_grader_inputs_are_checked(world):
    inputs = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match="no ShapesWorld region"):
        grade_grounding(lambda x: x.sum((2, 3)), inputs, [world.masks(0), world.masks(1)], {0: "mood:happy"})
    with pytest.raises(ValueError, match="attribution methods"):
        grade_grounding(lambda x: x.sum((2, 3)), inputs, [world.masks(0), world.masks(1)], {0: "color:red"}, methods=["saliency"])
    assert sae_concept_columns(["red", "white", None, "zzz", "top left"], world.concept_names) == {
        0: "color:red", 1: "background:white", 4: "position:top-left",
    }
