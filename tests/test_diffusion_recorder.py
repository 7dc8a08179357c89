"""The step recorder: per scheduler family, the recorded x̂0 equals that family's closed form on the
same model outputs; it calls ``scheduler.step`` once per step and changes nothing about sampling;
and it works unchanged on a tiny randomly initialised ``StableDiffusionPipeline`` (with CFG and the
VAE decode path).

The formulas below are written out independently of ``conceptlab.diffusion.recorder`` (from the
diffusers 0.42 scheduler definitions: ᾱ_t for VP schedulers, σ for sigma-space and flow ones).
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from conceptlab.diffusion import StepRecorder, decode, x0_from  # noqa: E402

STEPS = 6
CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), attention_head_dim=8,
    )
    return unet.eval()


def run_loop(unet, scheduler, seed: int = 0, recorder_kwargs: dict | None = None, record: bool = True):
    """A plain diffusers loop over the tiny UNet, optionally inside a recorder."""
    scheduler.set_timesteps(STEPS)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((2, 3, 8, 8), generator=generator) * getattr(scheduler, "init_noise_sigma", 1.0)
    step_gen = torch.Generator().manual_seed(seed + 1)
    kwargs = {"generator": step_gen} if "generator" in inspect.signature(type(scheduler).step).parameters else {}
    recorder = StepRecorder(scheduler, what=("x_t", "x0", "model_output"), **(recorder_kwargs or {}))
    with torch.no_grad():
        if record:
            recorder.__enter__()
        try:
            for t in scheduler.timesteps:
                scaled = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
                out = unet(scaled, t).sample
                x = scheduler.step(out, t, x, **kwargs).prev_sample
                if recorder.stopped:
                    break
        finally:
            if record:
                recorder.__exit__(None, None, None)
    return x, recorder


def vp_x0(scheduler, frame):
    abar = scheduler.alphas_cumprod[int(frame.timestep)].double()
    return ((frame.x_t.double() - (1 - abar).sqrt() * frame.model_output.double()) / abar.sqrt()).float()


def sigma_x0(scheduler, frame):
    sigma = scheduler.sigmas[frame.step].double()
    return (frame.x_t.double() - sigma * frame.model_output.double()).float()


def lcm_x0(scheduler, frame):
    t = frame.timestep * 10.0  # LCM's timestep_scaling
    c_skip = 0.25 / (t**2 + 0.25)
    c_out = t / (t**2 + 0.25) ** 0.5
    return c_skip * frame.x_t + c_out * vp_x0(scheduler, frame)


def flow_x0(scheduler, frame):
    return frame.x_t - scheduler.sigmas[frame.step] * frame.model_output


FAMILIES = {
    "DDPMScheduler": ({"clip_sample": False}, vp_x0, "pred_original_sample"),
    "DDIMScheduler": ({"clip_sample": False}, vp_x0, "pred_original_sample"),
    "EulerDiscreteScheduler": ({}, sigma_x0, "pred_original_sample"),
    "EulerAncestralDiscreteScheduler": ({}, sigma_x0, "pred_original_sample"),
    "DPMSolverMultistepScheduler": ({"algorithm_type": "dpmsolver++"}, vp_x0, "model_outputs"),
    "LCMScheduler": ({}, lcm_x0, "denoised"),
    "FlowMatchEulerDiscreteScheduler": (None, flow_x0, "formula"),
}


def make(name: str):
    overrides, _, _ = FAMILIES[name]
    klass = getattr(diffusers, name)
    return klass(shift=1.0) if overrides is None else klass(**CONFIG, **overrides)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_recorded_x0_is_the_closed_form_of_each_scheduler_family(tiny_unet, name, one_thread):
    scheduler = make(name)
    _, recorder = run_loop(tiny_unet, scheduler)
    _, formula, source = FAMILIES[name]
    assert [f.step for f in recorder.frames] == list(range(STEPS))
    for frame in recorder.frames:
        assert frame.source == source
        torch.testing.assert_close(frame.x0, formula(scheduler, frame), rtol=1e-4, atol=1e-4)
        # the recorder's own fallback formula agrees with what the scheduler returned
        if name != "LCMScheduler":
            sigma = frame.sigma if name != "DDPMScheduler" and name != "DDIMScheduler" and name != "DPMSolverMultistepScheduler" else None
            torch.testing.assert_close(x0_from(scheduler, frame.model_output, frame.timestep, frame.x_t, sigma=sigma), frame.x0, rtol=1e-4, atol=1e-4)


def vp_x0_v(scheduler, frame):
    abar = scheduler.alphas_cumprod[int(frame.timestep)].double()
    return (abar.sqrt() * frame.x_t.double() - (1 - abar).sqrt() * frame.model_output.double()).float()


def sigma_x0_v(scheduler, frame):
    sigma = scheduler.sigmas[frame.step].double()
    return (frame.model_output.double() * (-sigma / (sigma**2 + 1).sqrt()) + frame.x_t.double() / (sigma**2 + 1)).float()


def lcm_x0_v(scheduler, frame):
    t = frame.timestep * 10.0
    return 0.25 / (t**2 + 0.25) * frame.x_t + t / (t**2 + 0.25) ** 0.5 * vp_x0_v(scheduler, frame)


V_FAMILIES = {
    "DDPMScheduler": vp_x0_v, "DDIMScheduler": vp_x0_v, "EulerDiscreteScheduler": sigma_x0_v, "EulerAncestralDiscreteScheduler": sigma_x0_v,
    "DPMSolverMultistepScheduler": vp_x0_v, "LCMScheduler": lcm_x0_v,
}


@pytest.mark.parametrize("name", list(V_FAMILIES))
def test_recorded_x0_under_v_prediction(tiny_unet, name, one_thread):
    """The zoo models predict v: the same check with each family's v formula."""
    overrides, _, source = FAMILIES[name]
    scheduler = getattr(diffusers, name)(**CONFIG, **overrides, prediction_type="v_prediction")
    _, recorder = run_loop(tiny_unet, scheduler)
    for frame in recorder.frames:
        assert frame.source == source
        torch.testing.assert_close(frame.x0, V_FAMILIES[name](scheduler, frame), rtol=1e-4, atol=1e-4)
        if name != "LCMScheduler":
            sigma = frame.sigma if "Euler" in name else None
            torch.testing.assert_close(x0_from(scheduler, frame.model_output, frame.timestep, frame.x_t, sigma=sigma), frame.x0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["DDIMScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "LCMScheduler", "FlowMatchEulerDiscreteScheduler"])
def test_recorder_calls_step_once_and_changes_nothing(tiny_unet, name, one_thread):
    plain, _ = run_loop(tiny_unet, make(name), record=False)
    scheduler = make(name)
    calls = []
    original = scheduler.step

    def counting(*args, **kwargs):
        calls.append(kwargs.get("return_dict", True))
        return original(*args, **kwargs)

    scheduler.step = counting
    recorded, recorder = run_loop(tiny_unet, scheduler)
    assert torch.equal(plain, recorded)  # same samples, bit for bit
    assert len(calls) == STEPS and all(calls)  # one call a step, always asking for the output object
    assert scheduler.step is counting  # the recorder restored what it found
    assert "step" not in vars(make(name))


def test_recorder_returns_tuples_when_asked_and_restores_on_error(tiny_unet, one_thread):
    scheduler = make("DDPMScheduler")
    scheduler.set_timesteps(3)
    x = torch.randn(1, 3, 8, 8)
    with StepRecorder(scheduler) as recorder:
        out = tiny_unet(x, scheduler.timesteps[0]).sample
        as_tuple = scheduler.step(out, scheduler.timesteps[0], x, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[1], recorder.frames[0].x0)
    with pytest.raises(RuntimeError):
        with StepRecorder(scheduler):
            raise RuntimeError("boom")
    assert "step" not in vars(scheduler)


def test_clip_sample_is_recorded_as_the_scheduler_uses_it(tiny_unet, one_thread):
    scheduler = make("DDIMScheduler")
    scheduler.register_to_config(clip_sample=True)
    _, recorder = run_loop(tiny_unet, scheduler)
    for frame in recorder.frames:
        torch.testing.assert_close(frame.x0, vp_x0(scheduler, frame).clamp(-1, 1), rtol=1e-4, atol=1e-4)


def test_record_every_record_steps_and_stop_at(tiny_unet, one_thread):
    _, every = run_loop(tiny_unet, make("EulerDiscreteScheduler"), recorder_kwargs={"record_every": 2})
    assert [f.step for f in every.frames] == [0, 2, 4, 5]  # the last step is always kept
    _, chosen = run_loop(tiny_unet, make("DDIMScheduler"), recorder_kwargs={"record_steps": [1, 3], "include_last": False})
    assert [f.step for f in chosen.frames] == [1, 3]
    _, stopped = run_loop(tiny_unet, make("LCMScheduler"), recorder_kwargs={"stop_at": 2})
    assert stopped.stopped and stopped.calls == 3 and [f.step for f in stopped.frames] == [0, 1, 2]
    assert stopped.frames[-1].share == pytest.approx(3 / STEPS)
    with pytest.raises(ValueError, match="record_every"):
        StepRecorder(make("DDIMScheduler"), record_every=0)
    with pytest.raises(ValueError, match="unknown recorded"):
        StepRecorder(make("DDIMScheduler"), what=("latents",))
    with pytest.raises(TypeError, match="neither"):
        StepRecorder(object())


# -- a tiny Stable Diffusion pipeline, built offline ---------------------------------------------------
def tiny_tokenizer(folder):
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({f"{c}</w>": len(letters) + i for i, c in enumerate(letters)})
    for word in ("a", "red", "circle", "shape"):
        vocab.setdefault(f"{word}</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=12)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=12, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4,
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    scheduler = diffusers.DDIMScheduler(**CONFIG, clip_sample=False, set_alpha_to_one=True, steps_offset=1)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


SD_SCHEDULERS = {
    "DDIMScheduler": ({"clip_sample": False, "set_alpha_to_one": True}, vp_x0),
    "EulerAncestralDiscreteScheduler": ({}, sigma_x0),
    "DPMSolverMultistepScheduler": ({"algorithm_type": "dpmsolver++"}, vp_x0),
}


@pytest.mark.parametrize("name", list(SD_SCHEDULERS))
def test_recorder_on_a_tiny_stable_diffusion_pipeline_with_cfg(tiny_sd, name, one_thread):
    overrides, formula = SD_SCHEDULERS[name]
    tiny_sd.scheduler = getattr(diffusers, name).from_config({**CONFIG, "steps_offset": 1, **overrides})
    unet_outputs = []
    hook = tiny_sd.unet.register_forward_hook(lambda module, args, out: unet_outputs.append((out[0] if isinstance(out, tuple) else out.sample).detach().clone()))
    guidance = 3.0
    try:
        with StepRecorder(tiny_sd, what=("x_t", "x0", "model_output")) as recorder:
            result = tiny_sd("a red circle", num_inference_steps=4, guidance_scale=guidance, output_type="pt", generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert "step" not in vars(tiny_sd.scheduler)
    assert len(recorder.frames) == 4 and len(unet_outputs) == 4
    scheduler = tiny_sd.scheduler
    for frame, both in zip(recorder.frames, unet_outputs):
        uncond, cond = both.chunk(2)
        # the recorded model output is the guided one, and x̂0 is its family's formula
        torch.testing.assert_close(frame.model_output, uncond + guidance * (cond - uncond), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(frame.x0, formula(scheduler, frame), rtol=1e-4, atol=1e-4)
    # the VAE decode path: the last step's x̂0, decoded, is the pipeline's own image
    image = (decode(tiny_sd, recorder.frames[-1].x0) / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(image, result.images.float().cpu(), rtol=1e-3, atol=1e-3)


def test_stop_at_interrupts_a_stable_diffusion_pipeline(tiny_sd, one_thread):
    tiny_sd.scheduler = diffusers.DDIMScheduler(**CONFIG, clip_sample=False, steps_offset=1)
    with StepRecorder(tiny_sd, stop_at=1, what=("x0",)) as recorder:
        tiny_sd("a red circle", num_inference_steps=5, guidance_scale=1.0, output_type="latent", generator=torch.Generator().manual_seed(0))
    assert recorder.calls == 2 and [f.step for f in recorder.frames] == [0, 1]
    assert recorder.frames[0].x_t is None and recorder.frames[0].x0 is not None
