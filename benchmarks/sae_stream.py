"""Out-of-core SAE training: peak memory and final loss, streamed from the store vs in memory.

    .venv/bin/python benchmarks/sae_stream.py [--rows 1000000] [--dim 64] [--buffer-rows 65536] [--steps 400]

A synthetic entry (rows that are sparse sums of dictionary atoms, plus noise and an offset) is
written to a temporary store, larger than the shuffle buffer. Each run is its own subprocess:

* in memory - ``SparseAutoencoder.fit(entry.load())`` (the whole entry, and the centred copy, in RAM);
* streamed  - ``SparseAutoencoder.fit_stream(entry, buffer_rows=...)``.

Peak memory is the growth of the child's peak resident set (VmHWM) over its value after imports
and a warm-up fit on 512 rows (Linux's ``/proc/self/clear_refs`` resets the peak first), so it
is what the measured fit itself added. The in-memory fit is also run with other seeds: how far
apart seeds land is the yardstick for the streamed run's loss (the streamed run sees the same
rows in another order, which is what a different seed changes too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def synthetic_rows(n: int, dim: int, atoms: int = 256, active: int = 4, seed: int = 0):
    """(n, dim) float32 rows: ``active`` of ``atoms`` unit directions with random weights, + noise + offset."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, dim, generator=generator)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    out = torch.empty(n, dim)
    for start in range(0, n, 65536):  # in pieces, so making the data does not need much memory either
        stop = min(n, start + 65536)
        which = torch.randint(atoms, (stop - start, active), generator=generator)
        weights = torch.rand(stop - start, active, generator=generator) * 2 + 0.5
        out[start:stop] = (weights[..., None] * dictionary[which]).sum(1) + 0.05 * torch.randn(stop - start, dim, generator=generator) + 1.0
    return out


def write_entry(root: Path, rows, shard_rows: int) -> str:
    """Write ``rows`` as a complete store entry (as extraction would) and return its key."""
    import hashlib

    from conceptlab.store.manifest import Manifest
    from conceptlab.store.store import write_shard_file

    key = hashlib.sha256(f"synthetic|{tuple(rows.shape)}".encode()).hexdigest()
    directory = root / key
    directory.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(key=key, fields={"dataset": "synthetic"}, backbone_spec="synthetic", rows=len(rows), dim=rows.shape[1],
                        dtype="float32", shard_rows=shard_rows, batch_size=shard_rows)
    for index in range(manifest.n_shards):
        start, stop = manifest.shard_range(index)
        manifest.shards[index] = write_shard_file(directory, key, index, start, stop, rows[start:stop])
    manifest.save(directory)
    return key


def _peak_kib() -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def child(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from conceptlab.discovery import SparseAutoencoder
    from conceptlab.store import ActivationStore

    params = {"expansion": args.expansion, "l1": args.l1, "lr": 1e-3, "steps": args.steps, "batch_size": args.batch_size,
              "center": True, "progress": False, "seed": args.seed}
    SparseAutoencoder(**{**params, "steps": 2, "batch_size": 64}).fit(torch.randn(512, args.dim))  # warm-up: lazy imports, allocator
    entry = ActivationStore(args.root).open(args.key)
    reset = _reset_peak()
    before = _peak_kib()
    if args.child == "memory":
        sae = SparseAutoencoder(**params).fit(entry.load())
    else:
        sae = SparseAutoencoder(**params).fit_stream(entry, buffer_rows=args.buffer_rows)
    losses = sae.history_.losses
    return {"mode": args.child, "seed": args.seed, "peak_growth_mib": (_peak_kib() - before) / 1024, "peak_reset": reset,
            "final_loss": sum(losses[-50:]) / len(losses[-50:]), "mse": sae.metrics_.mse, "explained_variance": sae.metrics_.explained_variance,
            "l0": sae.metrics_.l0, "seconds": sae.history_.seconds}


def _run(mode: str, seed: int, args, root: Path, key: str) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--seed", str(seed), "--root", str(root), "--key", key]
    for flag in ("rows", "dim", "buffer_rows", "steps", "batch_size", "expansion", "l1", "threads"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"the {mode} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--buffer-rows", type=int, default=65_536)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--l1", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="in-memory runs (seeds 0..n-1) for the seed-to-seed spread")
    parser.add_argument("--child", choices=("memory", "stream"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    entry_mib = args.rows * args.dim * 4 / 2**20
    with tempfile.TemporaryDirectory(prefix="conceptlab-sae-stream-") as tmp:
        root = Path(tmp)
        key = write_entry(root, synthetic_rows(args.rows, args.dim), shard_rows=max(args.batch_size, 262_144 // max(1, args.dim // 64)))
        streamed = _run("stream", 0, args, root, key)
        memory = [_run("memory", seed, args, root, key) for seed in range(args.seeds)]
    print(f"entry: {args.rows:,} rows x {args.dim} float32 = {entry_mib:.0f} MiB; shuffle buffer {args.buffer_rows:,} rows = "
          f"{args.buffer_rows * args.dim * 4 / 2**20:.1f} MiB; {args.steps} steps of {args.batch_size}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'run':<22}{'peak growth':>13}{'final loss':>12}{'MSE':>10}{'expl. var':>11}{'L0':>7}{'train s':>9}")
    for run in [streamed, *memory]:
        name = f"{'streamed' if run['mode'] == 'stream' else 'in memory'} (seed {run['seed']})"
        print(f"{name:<22}{run['peak_growth_mib']:>9.0f} MiB{run['final_loss']:>12.5f}{run['mse']:>10.5f}{run['explained_variance']:>11.4f}"
              f"{run['l0']:>7.1f}{run['seconds']:>9.1f}")
    same_seed = memory[0]
    spread = (max(r["final_loss"] for r in memory) - min(r["final_loss"] for r in memory)) / same_seed["final_loss"]
    gap = abs(streamed["final_loss"] - same_seed["final_loss"]) / same_seed["final_loss"]
    print(f"streamed vs in-memory final loss (seed 0): {100 * gap:.2f} % apart; in-memory seeds span {100 * spread:.2f} %")
    print(f"peak memory: streamed {streamed['peak_growth_mib']:.0f} MiB vs in memory {same_seed['peak_growth_mib']:.0f} MiB "
          f"(entry {entry_mib:.0f} MiB, buffer {args.buffer_rows * args.dim * 4 / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
