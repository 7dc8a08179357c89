"""The zoo diffusion models: shortened recipes are deterministic, learn, and write folders the
pipelines load; the shipped weights are small fp16 files whose cards carry measured figures, and
the shipped base model shows the attributes it is asked for more often than chance."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("diffusers")

from conceptlab import zoo  # noqa: E402
from conceptlab.diffusion import StepRecorder, load_pipeline  # noqa: E402

TINY_UNET = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3, "layers_per_block": 1, "block_out_channels": [8, 16], "norm_num_groups": 4,
    "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"], "attention_head_dim": 8, "class_embed_type": "identity",
}
SHORT = {"steps": 8, "batch_size": 8, "pool_size": 48, "warmup_steps": 2, "threads": 1, "unet_cfg": TINY_UNET}


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion-zoo")
    cards = [zoo.build("shapes-ddpm", out_dir=root / name, progress=False, evaluate=False, **SHORT) for name in ("a", "b")]
    student = zoo.build(
        "shapes-ddpm-distilled", out_dir=root / "student", progress=False, evaluate=False,
        teacher=str(root / "a"), steps=3, batch_size=8, pool_size=48, warmup_steps=1, threads=1,
    )
    return root, cards, student


@pytest.mark.slow
def test_short_base_recipe_is_deterministic_and_learns(short_runs, one_thread):
    root, (first, second), _ = short_runs
    a, b = load_file(root / "a" / "unet.safetensors"), load_file(root / "b" / "unet.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float16 for v in a.values())
    assert first["loss_curve"] == second["loss_curve"]
    assert first["loss_curve"][-1] < first["loss_curve"][0]  # the ε loss falls from its start near 1
    pipe = load_pipeline(f"local-dir:{root / 'a'}", num_inference_steps=3)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.timestep_spacing == "trailing"
    assert pipe("a red circle", [0, 1], output_type="pt").images.shape == (2, 3, 32, 32)


@pytest.mark.slow
def test_short_distillation_writes_an_lcm_student(short_runs, one_thread):
    root, _, card = short_runs
    assert card["sampler"] == {"name": "lcm", "num_inference_steps": 4, "guidance_scale": 1.0}
    student = load_pipeline(f"local-dir:{root / 'student'}")
    assert type(student.scheduler).__name__ == "LCMScheduler" and student.num_inference_steps == 4
    with StepRecorder(student) as recorder:
        student("a blue star", [0], output_type="pt")
    assert [f.source for f in recorder.frames] == ["denoised"] * 4
    # the student starts as a copy of the teacher, so few steps leave it close to it
    teacher = load_file(root / "a" / "unet.safetensors")
    weights = load_file(root / "student" / "unet.safetensors")
    assert teacher.keys() == weights.keys()


def test_distillation_needs_a_teacher(tmp_path, isolated_home):
    from conceptlab.zoo.shapes_ddpm_distilled import DistillRecipe, distill_shapes_ddpm

    with pytest.raises(FileNotFoundError):
        distill_shapes_ddpm(tmp_path / "out", DistillRecipe(teacher=str(tmp_path / "nowhere"), steps=1), progress=False, evaluate=False)


@pytest.mark.parametrize("name", ["shapes-ddpm", "shapes-ddpm-distilled"])
def test_shipped_weights_are_small_fp16_with_measured_cards(name):
    if zoo.available()[name] is None:
        pytest.skip(f"zoo:{name} is not built")
    folder = zoo.zoo_path(name)
    weights = folder / "unet.safetensors"
    assert weights.stat().st_size <= 4 * 2**20
    assert all(t.dtype == torch.float16 for t in load_file(weights).values())
    card = json.loads((folder / "model_card.json").read_text())
    assert card["train_seconds"] > 0 and set(card["conditional_accuracy"]["probe"]) == {"shape", "color", "size", "fill", "background", "position"}


@pytest.mark.parametrize("name", ["shapes-ddpm", "shapes-ddpm-distilled"])
def test_shipped_models_show_the_requested_colour_and_background_above_chance(name, one_thread):
    """Each colour and background requested alone, 4 seeds each, read back by the zoo reader: the
    tiny models are weak on shape and position (see the model cards) but must follow these two."""
    if zoo.available()[name] is None or zoo.available()["shapes-clip"] is None:
        pytest.skip(f"zoo:{name} or zoo:shapes-clip is not built")
    from conceptlab.data import ATTRIBUTE_VALUES
    from conceptlab.diffusion import load_reader

    pipe, reader = load_pipeline(f"zoo:{name}"), load_reader()
    for family, bar in (("color", 2 / 6), ("background", 2 / 4)):  # twice chance
        requests = [value for value in ATTRIBUTE_VALUES[family] for _ in range(4)]
        images = torch.cat([pipe({family: value}, range(4 * i, 4 * i + 4), output_type="pt").images for i, value in enumerate(ATTRIBUTE_VALUES[family])])
        read = reader.read(images)[family]
        accuracy = sum(a == b for a, b in zip(read, requests)) / len(requests)
        assert accuracy >= bar, (name, family, accuracy)


def test_a_diffusion_model_is_not_an_embedding_backbone():
    if zoo.available()["shapes-ddpm"] is None:
        pytest.skip("zoo:shapes-ddpm is not built")
    from conceptlab.backbones import load

    with pytest.raises(ValueError, match="load_pipeline"):
        load("zoo:shapes-ddpm")
