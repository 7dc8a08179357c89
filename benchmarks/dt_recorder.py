"""The step recorder's overhead, and the hybrid sampler's cost against the base and distilled models.

    .venv/bin/python benchmarks/dt_recorder.py [--seeds 16] [--repeats 7] [--threads 1]

On the same model, scheduler, steps and seeds it times:

* plain sampling against sampling inside ``StepRecorder`` -- recording latents only (x_t and x̂0
  kept as tensors every step, nothing decoded; the issue's target is ≤ 5 % overhead), recording
  every tensor (x_t, x̂0 and the model output), and recording x̂0 then decoding every step's x̂0 to
  images (for these pixel-space models "decode" is the conversion to PIL images a DT grid shows;
  a latent model would add one VAE decode per recorded step);
* the hybrid (base model for the first step, distilled after, shared LCM schedule; and with separate
  schedulers: base DDIM down to the student's second timestep) against the base model (DDIM, its
  card's steps and guidance) and the distilled model (LCM, 4 steps).

Runs are interleaved and repeated; the medians are reported, with each ratio measured in the same
run. It uses the zoo diffusion models when they are built, else tiny random models of the zoo's
architecture (the output says which). Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing the package
    sys.path.insert(0, str(REPO))


def _pipelines():
    import torch

    from conceptlab import zoo
    from conceptlab.diffusion import ShapesPipeline, load_pipeline
    from conceptlab.zoo.shapes_ddpm import SCHEDULER_CFG, UNET_CFG, ShapesConditioner, ShapesModel, make_unet

    if zoo.available()["shapes-ddpm"] and zoo.available()["shapes-ddpm-distilled"]:
        return load_pipeline("zoo:shapes-ddpm"), load_pipeline("zoo:shapes-ddpm-distilled"), ""

    def random_model(seed, sampler):
        torch.manual_seed(seed)
        unet = make_unet(UNET_CFG)
        return ShapesModel(unet, ShapesConditioner(unet.time_embedding.linear_2.out_features), dict(SCHEDULER_CFG), {"sampler": sampler}).eval()

    base = ShapesPipeline(random_model(0, {"name": "ddim", "num_inference_steps": 25, "guidance_scale": 2.0}))
    distilled = ShapesPipeline(random_model(1, {"name": "lcm", "num_inference_steps": 4, "guidance_scale": 1.0}))
    return base, distilled, "the zoo diffusion models are not built: random models of their architecture"


def _time(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=16, help="samples per call (one batch)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--condition", default="a red circle")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from conceptlab.diffusion import StepRecorder, hybrid_sample
    from conceptlab.zoo.shapes_ddpm import tensor_to_images

    base, distilled, note = _pipelines()
    seeds = list(range(args.seeds))
    load = os.getloadavg()[0]
    print(f"models: {base!r} / {distilled!r}" + (f"\n  NOTE: {note}" if note else ""))
    print(f"{args.seeds} seeds a call, {args.repeats} repeats, torch threads {args.threads}, CPUs {os.cpu_count()}, load average {load:.1f}")
    if load > (os.cpu_count() or 1) * 0.5:
        print("  WARNING: other processes are using the CPUs; absolute times are slower than on an idle machine, ratios less stable")

    def plain():
        base.copy()(args.condition, seeds, output_type="pt")

    def recorded(what, decode=False):
        def run():
            pipe = base.copy()
            with StepRecorder(pipe, what=what) as recorder:
                pipe(args.condition, seeds, output_type="pt")
            if decode:
                [tensor_to_images(frame.x0) for frame in recorder.frames]

        return run

    runs = {
        "plain": plain,
        "recorder, latents (x_t, x0)": recorded(("x_t", "x0")),
        "recorder, all tensors": recorded(("x_t", "x0", "model_output")),
        "recorder, x0 decoded": recorded(("x0",), decode=True),
        "distilled (LCM)": lambda: distilled.copy()(args.condition, seeds, output_type="pt"),
        "hybrid (1 base step)": lambda: hybrid_sample(base, distilled, args.condition, seeds, switch_at=1, base_guidance=0.0),
        "hybrid, separate schedulers": lambda: hybrid_sample(base, distilled, args.condition, seeds, switch_at=1, base_guidance=0.0, shared_scheduler=False),
    }
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(_time(fn))
    median = {name: statistics.median(values) for name, values in times.items()}
    print()
    print(f"{'path':<30}{'median s':>10}{'min s':>9}")
    for name in runs:
        print(f"{name:<30}{median[name]:>10.3f}{min(times[name]):>9.3f}")
    print()
    print(f"recorder overhead, latents only: {median['recorder, latents (x_t, x0)'] / median['plain'] - 1:+.1%} (target <= +5 %)")
    print(f"recorder overhead, all tensors:  {median['recorder, all tensors'] / median['plain'] - 1:+.1%}")
    print(f"recorder overhead, x0 decoded to images every step: {median['recorder, x0 decoded'] / median['plain'] - 1:+.1%}")
    steps = f"{base.num_inference_steps} DDIM steps, guidance {base.guidance_scale}"
    print(f"hybrid / base ({steps}):  {median['hybrid (1 base step)'] / median['plain']:.3f}x")
    print(f"hybrid / distilled ({distilled.num_inference_steps} LCM steps): {median['hybrid (1 base step)'] / median['distilled (LCM)']:.3f}x")
    separate = median["hybrid, separate schedulers"]
    print(f"hybrid with separate schedulers / base: {separate / median['plain']:.3f}x, / distilled: {separate / median['distilled (LCM)']:.3f}x")


if __name__ == "__main__":
    main()
