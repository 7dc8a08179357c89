"""Vocabulary scan: the streamed, chunked scan against the full ``W_out · W_U`` product per layer.

    .venv/bin/python benchmarks/vocab_scan.py [--layers 12] [--chunk 512] [--k 200] [--threads 2]

Both paths find the top-``k`` tokens of every value vector of a GPT-2-small-shaped model with
random weights (d_model 768, d_mlp 3072, vocab 50,257, 12 layers; a Hugging Face
``GPT2LMHeadModel`` built from its default config, no download):

* full -- for each layer, the whole ``[d_mlp, d_vocab]`` logit matrix ``W_out[l] @ W_U``, then
  ``topk`` (what a user writes first);
* streamed -- :func:`conceptlab.vectors.scan_vocabulary`: ``--chunk`` value vectors at a time, only
  the top-k ids and a score kept.

Each path runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own; the
figure after building the model is the baseline, and the extra peak above it is compared. The
paths alternate ``--repeats`` times and each one's fastest run counts (a shared machine's load
varies between runs). The two
paths' top-k ids are checked to be the same. Speed and memory are printed here, as ratios
measured in the same run, and never asserted in a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing the package
    sys.path.insert(0, str(REPO))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _model():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from conceptlab.backbones import HFLanguageModel

    class _Vocabulary:  # token strings are not needed to time a scan
        def convert_ids_to_tokens(self, ids):
            return [str(i) for i in ids]

        def get_vocab(self):
            return {str(i): i for i in range(50257)}

        unk_token_id = None

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())  # GPT-2 small: 12 layers, 768-d, 3072 MLP neurons, 50,257 tokens
    return HFLanguageModel("random GPT-2-small", model, _Vocabulary(), device="cpu")


def _child(mode: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    lm = _model()
    baseline = _rss_mib()
    layers = list(range(args.layers))
    terms = [str(i) for i in range(0, 50257, 97)]  # any term set: the cost does not depend on it
    start = time.perf_counter()
    if mode == "full":
        w_u = lm.unembedding("raw", copy=False)
        tops = []
        with torch.no_grad():
            for layer in layers:
                logits = lm.value_vectors(layer) @ w_u  # [d_mlp, d_vocab]
                tops.append(logits.topk(args.k, dim=1).indices)
                del logits
        ids = torch.stack(tops)
    else:
        from conceptlab.vectors import scan_vocabulary

        scan = scan_vocabulary(lm, terms, layers=layers, k=args.k, chunk=args.chunk, progress=False)
        ids = scan.top_ids.long()
    seconds = time.perf_counter() - start
    checksum = int(ids[:, :64].sum()) + int(ids[:, -64:, :5].sum())
    return {"mode": mode, "seconds": seconds, "baseline_mib": baseline, "peak_mib": _rss_mib(), "checksum": checksum, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each path; the fastest counts (a shared machine's load varies)")
    parser.add_argument("--child", choices=("full", "streamed"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args)))
        return
    results: dict[str, dict] = {}
    for _ in range(args.repeats):
        for mode in ("full", "streamed"):
            command = [sys.executable, __file__, "--child", mode, "--layers", str(args.layers), "--chunk", str(args.chunk), "--k", str(args.k), "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"the {mode} run failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            best = results.get(mode)
            if best is None or run["seconds"] < best["seconds"]:
                results[mode] = {**run, "peak_mib": max(run["peak_mib"], best["peak_mib"]) if best else run["peak_mib"]}
    full, streamed = results["full"], results["streamed"]
    extra = {m: r["peak_mib"] - r["baseline_mib"] for m, r in results.items()}
    block_mib = args.chunk * 50257 * 4 / 2**20
    print(f"GPT-2-small-shaped random model, {args.layers} layers x 3072 value vectors, vocab 50,257, top-{args.k}, {full['threads']} threads")
    print(f"{'path':<10} {'seconds':>9} {'extra peak MiB':>15}")
    for mode in ("full", "streamed"):
        print(f"{mode:<10} {results[mode]['seconds']:>9.1f} {extra[mode]:>15.0f}")
    print(f"same top-{args.k} ids: {full['checksum'] == streamed['checksum']}")
    print(f"streamed / full: time {streamed['seconds'] / full['seconds']:.2f}x, extra peak memory {extra['streamed'] / max(extra['full'], 1e-9):.2f}x")
    print(f"one chunk block ({args.chunk} x 50,257 float32) = {block_mib:.0f} MiB; one full layer product = {3072 * 50257 * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
