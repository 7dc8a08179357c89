"""Peak memory of embedding a large image folder: the lazy ``folder:`` dataset through the store
against the same folder read eagerly into memory first (what a quick script does).

    .venv/bin/python benchmarks/folder_memory.py [--n 50000] [--backbone zoo:shapes-clip]

It writes ``--n`` small PNGs (``--pixels`` square, random colours, 10 class sub-folders) into a
temporary folder, then runs each path in its own subprocess so that each peak resident set size
(``ru_maxrss``) is its own:

* store -- ``load("folder:DIR")`` (a list of paths; no image opened until the DataLoader asks)
  through ``ActivationStore.get_or_compute`` into a fresh store (shards written as they fill);
* eager -- every image opened and converted into a list first, then encoded batch by batch and
  the embeddings kept in memory.

Both produce the same (N, d) embeddings (checked on the first rows). Memory and time are printed,
with the ratio; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_folder(root: Path, n: int, pixels: int, classes: int = 10, seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(classes):
        (root / f"class{k:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        colour = rng.integers(0, 256, size=3, dtype=np.uint8)
        pixels_ = np.broadcast_to(colour, (pixels, pixels, 3)).copy()
        pixels_[rng.integers(0, pixels), :, :] = 255 - colour  # a line, so images differ
        Image.fromarray(pixels_).save(root / f"class{i % classes:02d}" / f"{i:06d}.png")
    return root


def child(mode: str, folder: Path, spec: str, batch_size: int, workdir: Path) -> dict:
    import torch

    from conceptlab.backbones import load
    from conceptlab.data import load as load_dataset
    from conceptlab.store import ActivationStore

    backbone = load(spec, device="cpu")
    baseline = _rss_mib()
    start = time.perf_counter()
    dataset = load_dataset(f"folder:{folder}")
    if mode == "store":
        embeddings = ActivationStore(workdir / "store").get_or_compute(backbone, dataset, batch_size=batch_size, progress=False)
    else:
        images = [dataset[i][0] for i in range(len(dataset))]
        with torch.no_grad():
            embeddings = torch.cat([backbone.encode_images(images[s : s + batch_size]) for s in range(0, len(images), batch_size)])
    seconds = time.perf_counter() - start
    return {
        "mode": mode, "rows": int(embeddings.shape[0]), "seconds": seconds, "baseline_rss_mib": baseline,
        "peak_rss_mib": _rss_mib(), "first_rows": embeddings[:4].tolist(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--pixels", type=int, default=32)
    parser.add_argument("--backbone", default="zoo:shapes-clip")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--child", choices=("store", "eager"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.backbone, args.batch_size, args.workdir)))
        return
    with tempfile.TemporaryDirectory(prefix="conceptlab-folder-bench-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        folder = make_folder(tmp / "images", args.n, args.pixels)
        print(f"wrote {args.n} PNGs of {args.pixels}x{args.pixels} px in {time.perf_counter() - start:.1f} s")
        results = {}
        for mode in ("store", "eager"):
            command = [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--workdir", str(tmp / mode),
                       "--backbone", args.backbone, "--batch-size", str(args.batch_size)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    store, eager = results["store"], results["eager"]
    same = max(abs(a - b) for ra, rb in zip(store["first_rows"], eager["first_rows"]) for a, b in zip(ra, rb))
    print(f"{args.n} images through {args.backbone}, batch {args.batch_size}; max |difference| of the first rows {same:.2e}")
    for r in (store, eager):
        grown = r["peak_rss_mib"] - r["baseline_rss_mib"]
        print(f"  {r['mode']:>5}: peak RSS {r['peak_rss_mib']:8.0f} MiB (+{grown:6.0f} over the loaded model), {r['seconds']:7.1f} s, "
              f"{r['rows'] / r['seconds']:7.1f} img/s")
    ratio = (eager["peak_rss_mib"] - eager["baseline_rss_mib"]) / max(store["peak_rss_mib"] - store["baseline_rss_mib"], 1.0)
    print(f"eager / store growth of peak memory: {ratio:.1f}x")


if __name__ == "__main__":
    main()
