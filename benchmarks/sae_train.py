"""SAE training throughput: conceptlab's sae-lens path against the same SAE in a plain torch loop.

    .venv/bin/python benchmarks/sae_train.py [--n 16384] [--d 128] [--expansion 8] [--batch-size 1024] [--steps 40]

Both paths train the same standard (ReLU + L1) SAE on the same synthetic embeddings (a planted
sparse dictionary, N × d), from the same initial weights, on the same batches, with the same loss
(DN-CBM's: MSE averaged over features + L1, unit-norm decoder), Adam and gradient clipping:

* sae-lens - ``conceptlab.discovery.train_sae``: a sae-lens ``StandardTrainingSAE`` trained by
  sae-lens's ``SAETrainer``, stepped through its public seams;
* plain - ``conceptlab.discovery.train_sae_plain``: the same maths written as a bare torch loop.

Each path runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own;
the figure after importing and building the data is reported as the baseline (the plain run never
imports sae-lens, so the two baselines differ by what that import costs). Only the training
loop is timed (not imports or model construction); each path does a warm-up run and then
``--repeats`` timed runs, and the fastest counts (the machine may be shared). The two runs' final weights are compared.
Resampling is off by default (``--resample-every`` steps turns it on for both).
Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing the package
    sys.path.insert(0, str(REPO))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _data(n: int, d: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    k = 4 * d
    atoms = torch.randn(k, d, generator=g)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    codes = (torch.rand(n, k, generator=g) < 8 / k) * torch.rand(n, k, generator=g) * 3
    return codes @ atoms + 0.05 * torch.randn(n, d, generator=g)


def _child(mode: str, args, workdir: Path) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # 0: leave torch's default
    from safetensors.torch import load_file, save_file

    from conceptlab.discovery.train import TrainSettings, build_training_sae, train_sae, train_sae_plain

    X = _data(args.n, args.d)
    settings = TrainSettings(d_sae=args.expansion * args.d, steps=args.steps, batch_size=args.batch_size, l1=args.l1,
                             lr=args.lr, resample_every=args.resample_every, seed=0, device="cpu", progress=False)
    if mode == "sae-lens":  # sae-lens builds the initial weights; the plain run reads them and never imports sae-lens
        init = {k: v.detach().clone().contiguous() for k, v in build_training_sae(args.d, settings).state_dict().items()}
        save_file(init, str(workdir / "init.safetensors"))
    else:
        init = load_file(str(workdir / "init.safetensors"))
    baseline = _rss_mib()

    def run(steps: int):
        run_settings = TrainSettings(**{**settings.to_dict(), "steps": steps})
        if mode == "sae-lens":
            sae, result = train_sae(X, run_settings)
            return {k: v.detach() for k, v in sae.state_dict().items()}, result
        return train_sae_plain(X, run_settings, init=init)

    run(min(10, args.steps))  # warm-up, not timed
    seconds = []
    for _ in range(args.repeats):
        weights, result = run(args.steps)
        seconds.append(result.seconds)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(workdir / f"{mode}.safetensors"))
    return {
        "mode": mode, "threads": torch.get_num_threads(), "seconds": min(seconds), "median_seconds": sorted(seconds)[len(seconds) // 2],
        "samples": result.samples, "baseline_rss_mib": baseline, "peak_rss_mib": _rss_mib(), "final_loss": result.losses[-1],
        "resampled": sum(n for _, n in result.resampled),
    }


def _run_child(mode: str, args, workdir: Path) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--workdir", str(workdir)]
    for flag in ("n", "d", "expansion", "batch_size", "steps", "repeats", "l1", "lr", "resample_every", "threads"):
        value = getattr(args, flag)
        if value is not None:
            command += [f"--{flag.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"the {mode} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16384, help="embeddings (default 16384)")
    parser.add_argument("--d", type=int, default=128, help="embedding dimension (default 128)")
    parser.add_argument("--expansion", type=int, default=8, help="latents per dimension (default 8, DN-CBM)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per step (default 1024; DN-CBM uses 4096)")
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per timed run (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; the fastest counts (default 3)")
    parser.add_argument("--l1", type=float, default=3e-3)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--resample-every", type=int, default=0, help="steps between resamplings (default 0: off)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in both runs (default 1: stable on a shared machine; 0 = torch's default)")
    parser.add_argument("--child", choices=("sae-lens", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        print(json.dumps(_child(args.child, args, args.workdir)))
        return

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="conceptlab-bench-") as tmp:
        workdir = Path(tmp)
        runs = {mode: _run_child(mode, args, workdir) for mode in ("sae-lens", "plain")}
        a = load_file(str(workdir / "plain.safetensors"))
        b = load_file(str(workdir / "sae-lens.safetensors"))
        max_diff = max(float((a[k] - b[k]).abs().max()) for k in a)

    load = os.getloadavg()[0]
    print(f"SAE: standard (ReLU + L1, unit-norm decoder), d={args.d}, {args.expansion * args.d} latents, "
          f"batch {args.batch_size}, {args.steps} steps, N={args.n} synthetic embeddings")
    print(f"torch threads: {runs['plain']['threads']}; CPUs: {os.cpu_count()}; load average {load:.1f}")
    if load > (os.cpu_count() or 1):
        print("  WARNING: other processes are using the CPUs; absolute figures are slower than on an idle machine")
    print()
    print(f"{'path':<12}{'samples':>9}{'best s':>8}{'median s':>10}{'activations/s':>15}{'baseline RSS':>15}{'peak RSS':>11}{'final loss':>12}")
    for name, run in sorted(runs.items(), reverse=True):
        print(f"{name:<12}{run['samples']:>9}{run['seconds']:>8.2f}{run['median_seconds']:>10.2f}{run['samples'] / run['seconds']:>15,.0f}"
              f"{run['baseline_rss_mib']:>11.0f} MiB{run['peak_rss_mib']:>7.0f} MiB{run['final_loss']:>12.5g}")
    print(f"(activations/s from the fastest of {args.repeats} timed runs per path, after a warm-up run)")
    plain_rate = runs["plain"]["samples"] / runs["plain"]["seconds"]
    lens_rate = runs["sae-lens"]["samples"] / runs["sae-lens"]["seconds"]
    print()
    print(f"throughput ratio sae-lens / plain: {lens_rate / plain_rate:.2f}x")
    print(f"peak RSS: sae-lens {runs['sae-lens']['peak_rss_mib']:.0f} MiB vs plain {runs['plain']['peak_rss_mib']:.0f} MiB "
          f"(increase over baseline: {runs['sae-lens']['peak_rss_mib'] - runs['sae-lens']['baseline_rss_mib']:.0f} vs "
          f"{runs['plain']['peak_rss_mib'] - runs['plain']['baseline_rss_mib']:.0f} MiB)")
    print(f"same SAE: max |plain - sae-lens| over all weights = {max_diff:.2e}"
          + (f"; latents resampled: {runs['plain']['resampled']} vs {runs['sae-lens']['resampled']}" if args.resample_every else ""))


if __name__ == "__main__":
    main()
