"""Diffusion targets on tiny models built in code: conditions, pipelines, the hybrid sampler (incl.
the latent hand-off between scheduler families), the diversity metrics (Vendi against the
``vendi-score`` package's ``score_K``), the studies, the DT grid and the zoo recipes' round trips.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from conceptlab.diffusion import (  # noqa: E402
    ShapesPipeline,
    StepRecorder,
    attribute_diversity,
    convergence,
    diversity_study,
    dt_grid,
    entropy_bits,
    from_vp,
    hybrid_sample,
    make_scheduler,
    pairwise_distance,
    structure_steps,
    to_vp,
    vendi_score,
)
from conceptlab.zoo.shapes_ddpm import (  # noqa: E402
    SCHEDULER_CFG,
    AttributeReader,
    ShapesConditioner,
    ShapesModel,
    condition_codes,
    condition_text,
    load_shapes_model,
    make_unet,
    save_shapes_model,
)

TINY_UNET = {
    "sample_size": 8, "in_channels": 3, "out_channels": 3, "layers_per_block": 1, "block_out_channels": [8, 16], "norm_num_groups": 4,
    "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"], "attention_head_dim": 8, "class_embed_type": "identity",
}
# Stable Diffusion's noise schedule (σ_max ≈ 14.6): float32 Euler and DDIM agree to 1e-4 on it
LINEAR_CFG = {**SCHEDULER_CFG, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False}


def tiny_model(seed: int, scheduler_cfg=None, sampler=None) -> ShapesModel:
    torch.manual_seed(seed)
    unet = make_unet(TINY_UNET)
    conditioner = ShapesConditioner(unet.time_embedding.linear_2.out_features)
    torch.nn.init.normal_(conditioner.embedding.weight, std=0.5)
    card = {"name": f"tiny-{seed}", "sampler": sampler or {"name": "ddim", "num_inference_steps": 6, "guidance_scale": 2.0}}
    return ShapesModel(unet, conditioner, dict(scheduler_cfg or LINEAR_CFG), card).eval()


@pytest.fixture(scope="module")
def base():
    return ShapesPipeline(tiny_model(0))


@pytest.fixture(scope="module")
def distilled():
    model = tiny_model(1, sampler={"name": "lcm", "num_inference_steps": 4, "guidance_scale": 1.0})
    return ShapesPipeline(model)


# -- conditions -------------------------------------------------------------------------------------
def test_conditions_parse_text_and_mappings():
    assert condition_codes("a red circle") == [0, 0, 3, 3, 4, 4]
    assert condition_codes({"shape": "circle", "color": "red"}) == condition_codes("A red circle.")
    codes = condition_codes("a small striped shape at the top left on a gray background")
    assert condition_text(codes) == "a small striped shape at the top left on a gray background"
    assert condition_codes(None) == condition_codes("a shape") == [5, 6, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="unknown words"):
        condition_codes("a crimson circle")
    with pytest.raises(ValueError, match="two color values"):
        condition_codes("a red blue circle")
    with pytest.raises(ValueError, match="unknown color"):
        condition_codes({"color": "crimson"})
    with pytest.raises(TypeError):
        condition_codes(3)


# -- pipelines --------------------------------------------------------------------------------------
def test_a_seed_gives_the_same_image_whatever_the_batch(base, one_thread):
    both = base("a red circle", [3, 5], output_type="pt").images
    alone = base("a red circle", [5], output_type="pt").images
    torch.testing.assert_close(both[1:], alone, rtol=1e-4, atol=1e-5)
    stochastic = base.with_scheduler("euler-ancestral")
    torch.testing.assert_close(stochastic("a red circle", [3, 5], output_type="pt").images[1:], stochastic("a red circle", [5], output_type="pt").images, rtol=1e-4, atol=1e-5)
    images = base("a red circle", 2).images
    assert len(images) == 2 and images[0].size == (8, 8)


def test_pipeline_works_with_the_recorder_and_interrupts(base, one_thread):
    pipe = base.copy()
    with StepRecorder(pipe, stop_at=2) as recorder:
        out = pipe("a blue star", [0], output_type="pt")
    assert recorder.calls == 3 and out.timesteps == [f.timestep for f in recorder.frames]
    assert [f.step for f in recorder.frames] == [0, 1, 2] and recorder.frames[0].timestep == 999
    with pytest.raises(ValueError, match="unknown scheduler"):
        base.with_scheduler("heun-ish")
    with pytest.raises(ValueError, match="output_type"):
        base("a red circle", [0], output_type="np")


def test_model_folder_round_trip_is_fp16_and_keeps_outputs(tmp_path, one_thread):
    model = tiny_model(2)
    save_shapes_model(model, tmp_path / "m")
    loaded = load_shapes_model(tmp_path / "m")
    x, t, codes = torch.randn(2, 3, 8, 8), torch.tensor(500), torch.tensor([condition_codes("a red circle")] * 2)
    torch.testing.assert_close(loaded.predict(x, t, codes, 2.0), model.predict(x, t, codes, 2.0), rtol=2e-2, atol=2e-2)
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(tmp_path / "m" / "unet.safetensors").values())
    with pytest.raises(FileNotFoundError, match="missing"):
        load_shapes_model(tmp_path)


# -- hybrid -----------------------------------------------------------------------------------------
def test_hybrid_ends_are_the_two_models(base, distilled, one_thread):
    seeds = [0, 1]
    alone = distilled.copy()("a red circle", seeds, output_type="pt").images
    zero = hybrid_sample(base, distilled, "a red circle", seeds, switch_at=0)
    torch.testing.assert_close(zero.images, alone)
    assert zero.base_timesteps == [] and len(zero.distilled_timesteps) == 4
    # the base model on the distilled schedule for every step
    on_lcm = ShapesPipeline(base.model, make_scheduler("lcm", base.model.scheduler_config), num_inference_steps=4, guidance_scale=3.0)
    full = hybrid_sample(base, distilled, "a red circle", seeds, switch_at=4, base_guidance=3.0)
    torch.testing.assert_close(full.images, on_lcm("a red circle", seeds, output_type="pt").images)
    one = hybrid_sample(base, distilled, "a red circle", seeds, switch_at=1, record={"what": ("x0",)})
    assert one.base_timesteps == zero.distilled_timesteps[:1] and one.distilled_timesteps == zero.distilled_timesteps[1:]
    assert one.model_evaluations == 4 and [f.step for f in one.frames] == [0, 1, 2, 3]
    assert not torch.allclose(one.images, zero.images)


def test_hybrid_hand_off_converts_between_scheduler_families(monkeypatch, one_thread):
    """Euler (sigma space) and DDIM (VP) with the same trailing timesteps take identical steps once
    x_VP = x_σ/√(1+σ²) (DDIM is Euler on x/√ᾱ), so a hybrid of one model -- Euler first, DDIM after --
    must equal Euler alone (they differ only in the starting scale: Euler starts at σ_max·noise, DDIM
    at noise), and DDIM first, Euler after must equal DDIM alone. Without the conversion it does not.
    Five steps: DDIM's previous timestep t − 1000 // steps is the next trailing one only when the
    step count divides 1000."""
    import conceptlab.diffusion.hybrid as hybrid_module

    model = tiny_model(3)
    ddim = ShapesPipeline(model, make_scheduler("ddim", model.scheduler_config), num_inference_steps=5, guidance_scale=1.0)
    euler = ShapesPipeline(model, make_scheduler("euler", model.scheduler_config), num_inference_steps=5, guidance_scale=1.0)
    alone = {"ddim": ddim.copy()("a red circle", [0, 1], output_type="pt").images, "euler": euler.copy()("a red circle", [0, 1], output_type="pt").images}
    settings = {"base_guidance": 1.0, "distilled_guidance": 1.0, "shared_scheduler": False, "base_steps": 5, "distilled_steps": 5}
    for k in (1, 3):
        mixed = hybrid_sample(euler, ddim, "a red circle", [0, 1], switch_at=k, **settings)
        assert len(mixed.base_timesteps) == k and mixed.base_timesteps + mixed.distilled_timesteps == [999.0, 799.0, 599.0, 399.0, 199.0]
        torch.testing.assert_close(mixed.images, alone["euler"], rtol=1e-4, atol=1e-4)
        reverse = hybrid_sample(ddim, euler, "a red circle", [0, 1], switch_at=k, **settings)
        torch.testing.assert_close(reverse.images, alone["ddim"], rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(hybrid_module, "to_vp", lambda x, scheduler, index: x)  # a hand-off without the conversion
    naive = hybrid_sample(euler, ddim, "a red circle", [0, 1], switch_at=1, **settings)
    assert not torch.allclose(naive.images, alone["euler"], rtol=1e-2, atol=1e-2)
    monkeypatch.undo()
    scheduler = euler.copy().scheduler
    scheduler.set_timesteps(5)
    x = torch.randn(1, 3, 8, 8)
    sigma = float(scheduler.sigmas[2])
    torch.testing.assert_close(to_vp(x, scheduler, 2), x / math.sqrt(1 + sigma**2))
    torch.testing.assert_close(from_vp(to_vp(x, scheduler, 2), scheduler, 2), x)


# -- diversity metrics ------------------------------------------------------------------------------
def psd_kernels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    yield x @ x.T  # cosine kernel of low rank
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    yield np.exp(-d / 2.0)  # RBF kernel, full rank
    yield np.ones((6, 6))  # all identical


@pytest.mark.parametrize("q", [0.5, 1.0, 2.0, math.inf])
def test_vendi_score_matches_the_vendi_package_score_K(q):
    vendi = pytest.importorskip("vendi_score.vendi")
    for K in psd_kernels():
        expected = vendi.score_K(K, q="inf" if math.isinf(q) else q)
        assert vendi_score(K=K, q=q) == pytest.approx(float(expected), rel=1e-6)


def test_vendi_and_pairwise_golden_values():
    assert vendi_score(np.eye(5)) == pytest.approx(5.0)
    assert vendi_score(np.ones((4, 3))) == pytest.approx(1.0)
    two_clusters = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    assert vendi_score(two_clusters) == pytest.approx(2.0)
    assert pairwise_distance(np.eye(4)) == pytest.approx(1.0)
    assert pairwise_distance(two_clusters) == pytest.approx(9 / 15)  # 9 of 15 pairs are orthogonal
    with pytest.raises(ValueError, match="unit diagonal"):
        vendi_score(K=2 * np.eye(3))
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_distance(np.ones((1, 3)))


def test_attribute_coverage_and_entropy():
    read = {"size": ["small", "small", "large", "medium"], "fill": ["solid"] * 4}
    stats = attribute_diversity(read, ["size", "fill"], {"size": 3, "fill": 3})
    assert stats["size"]["distinct"] == 3 and stats["size"]["coverage"] == 1.0
    assert stats["size"]["entropy"] == pytest.approx(1.5)  # (1/2, 1/4, 1/4)
    assert stats["fill"]["entropy"] == 0.0 and stats["fill"]["coverage"] == pytest.approx(1 / 3)
    assert stats["fill"]["max_entropy"] == pytest.approx(math.log2(3), abs=1e-4)
    assert entropy_bits(["a", "b"] * 8) == pytest.approx(1.0)


# -- studies and views ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_reader(tiny_backbone):
    return AttributeReader.fit(tiny_backbone, n_images=48, seed=3)


def test_reader_round_trip_and_modes(tiny_reader, tiny_backbone, tmp_path):
    tiny_reader.save(tmp_path)
    loaded = AttributeReader.load(tmp_path, tiny_backbone)
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    assert loaded.read(images) == tiny_reader.read(images)
    assert set(tiny_reader.read(images, mode="zero-shot")) == set(tiny_reader.read(images))
    with pytest.raises(ValueError, match="reader mode"):
        tiny_reader.read(images, mode="psychic")


def test_diversity_study_and_convergence_on_tiny_models(base, distilled, tiny_reader, one_thread):
    study = diversity_study(base, distilled, ["a red circle", "a blue star"], seeds=4, reader=tiny_reader, progress=False)
    assert list(study.table["model"]) == ["base", "distilled", "hybrid"] * 2
    for family in ("size", "fill", "background", "position"):
        assert study.table[f"{family}_coverage"].between(0.25, 1.0).all()
        assert (study.table[f"{family}_entropy"] <= 2.0 + 1e-9).all()
    assert list(study.summary.index) == ["base", "distilled", "hybrid"]
    assert (study.table["vendi"] >= 1.0 - 1e-9).all() and (study.table["vendi"] <= 4 + 1e-9).all()
    counts = study.histogram("a red circle", "size")
    assert counts.groupby("model")["count"].sum().eq(4).all()

    result = convergence({"base": base, "distilled": distilled}, "a red circle", [0, 1], tiny_reader)
    assert len(result.curve) == (6 + 4) * 2
    last = result.curve.groupby("model").apply(lambda g: g[g["step"] == g["step"].max()])
    assert np.allclose(last["clip_distance"], 0.0, atol=1e-5) and (last["attributes_match"] == 1.0).all()
    steps = structure_steps(result.curve)
    assert set(steps["model"]) == {"base", "distilled"} and steps["attribute_lock_share_mean"].between(0, 1).all()
    assert steps["clip_fixed_share"].between(0, 1).all() and (steps["first_step_spread"] >= 0).all()
    grid = dt_grid(result.frames, size=16, gap=2)
    assert grid.size == (6 * (2 * 16 + 2) + 7 * 2, 2 * 16 + 3 * 2)
