"""The zoo: the shipped shapes-clip meets its bars; the recipe is deterministic and learns."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conceptlab import zoo
from conceptlab.backbones import load
from conceptlab.data import ATTRIBUTE_VALUES, ShapesWorld
from conceptlab.zoo.shapes_clip import MODEL_CFG, family_prompts, zero_shot_accuracy

# The bars of the foundation issue, on the ShapesWorld test split, zero-shot.
BARS = {"color": 0.95, "shape": 0.90, "size": 0.85, "fill": 0.85, "background": 0.85, "position": 0.85}


def test_family_prompts_name_one_value_each():
    assert family_prompts("color")[0] == "a red shape"
    assert family_prompts("shape") == [f"a {v}" for v in ATTRIBUTE_VALUES["shape"]]
    assert family_prompts("position")[0] == "a shape at the top left"
    assert family_prompts("background")[1] == "a shape on a black background"


@pytest.mark.skipif(zoo.available()["shapes-clip"] is None, reason="zoo:shapes-clip is not built")
def test_shipped_shapes_clip_meets_the_zero_shot_bars():
    backbone = load("zoo:shapes-clip", device="cpu")
    scores = zero_shot_accuracy(backbone, ShapesWorld("test", size=600, seed=0))
    for family, bar in BARS.items():
        assert scores[family] >= bar, f"{family}: {scores[family]:.3f} < {bar}"


@pytest.mark.skipif(zoo.available()["shapes-clip"] is None, reason="zoo:shapes-clip is not built")
def test_shipped_weights_are_small_fp16_and_match_the_recipe_config():
    folder = zoo.zoo_path("shapes-clip")
    weights = folder / "open_clip_model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20
    assert all(t.dtype == torch.float16 for t in load_file(weights).values())
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["model_cfg"] == MODEL_CFG
    card = json.loads((folder / "model_card.json").read_text())
    assert card["recipe"]["model_cfg"] == MODEL_CFG


def test_short_recipe_is_deterministic_and_learns(tmp_path):
    kwargs = dict(steps=12, batch_size=32, pool_size=256, warmup_steps=2, lr=2e-3)
    first = zoo.build("shapes-clip", out_dir=tmp_path / "a", progress=False, evaluate=False, **kwargs)
    second = zoo.build("shapes-clip", out_dir=tmp_path / "b", progress=False, evaluate=False, **kwargs)
    a = load_file(tmp_path / "a" / "open_clip_model.safetensors")
    b = load_file(tmp_path / "b" / "open_clip_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    curve = first["loss_curve"]
    assert first["loss_curve"] == second["loss_curve"]
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3  # the contrastive loss goes down
    # what the recipe writes loads through the ordinary local-dir path
    backbone = load(f"local-dir:{tmp_path / 'a'}", device="cpu")
    assert backbone.dim == MODEL_CFG["embed_dim"]


def test_build_rejects_unknown_models(tmp_path):
    with pytest.raises(ValueError, match="the zoo has"):
        zoo.build("imagenet-clip", out_dir=tmp_path)
