"""TCAV with 100 random CAVs on 2,000 images: conceptlab against captum.concept.TCAV, same work.

The task, for both: layer ``visual.layer4`` of ``zoo:shapes-clip`` flattened (captum's only
option, 4,096 features); one concept (100 ShapesWorld images showing ``color:red``) against 100
random sets of 100 images, plus 100 random-vs-random CAVs (captum's tutorial protocol: 200
experimental sets); TCAV scores of the zero-shot logit of "a red circle" on 2,000 test images.

- captum: ``TCAV(model, layers=[...])`` with its default classifier (sklearn SGD, alpha 0.01) and
  ``interpret(inputs, experimental_sets, target=0)``; it embeds each concept's images itself and
  caches activations and CAVs under a fresh ``save_path``.
- conceptlab: activations through a fresh ActivationStore (the layer capture), batched CAVs
  (:func:`train_cavs`, the same SGD), gradients once, scores and the significance test.

Each side runs in its own subprocess so its peak resident memory (``ru_maxrss``) is its own; each
is timed end to end (model already loaded), then conceptlab again with a warm store. The ratio
printed is captum's time over ours. Run: ``python benchmarks/tcav.py`` (``--images``, ``--runs``,
``--threads``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

LAYER = "visual.layer4"
PROMPT = "a red circle"


def _setup(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld

    backbone = load("zoo:shapes-clip", device="cpu")
    world = ShapesWorld("train", size=args.examples * (2 * args.runs + 2), seed=0)
    red = np.flatnonzero(world.attributes["color"].to_numpy() == "red")[: args.examples]
    test = ShapesWorld("test", size=args.images, seed=0)
    return backbone, world, red, test


def run_ours(args) -> dict:
    import numpy as np
    import torch

    from conceptlab.data.splits import DatasetView
    from conceptlab.store import ActivationStore
    from conceptlab.vectors import TCAV, layer_gradients, zero_shot_logit

    backbone, world, red, test = _setup(args)
    images = [test.image(i) for i in range(len(test))]
    store = ActivationStore(tempfile.mkdtemp(prefix="tcav-bench-store-"))
    seconds = []
    for _ in range(2):  # cold store, then warm
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        pool_rows = rng.choice(len(world), size=args.examples * (2 * args.runs + 1) // 2, replace=False)
        capture = f"image:{LAYER}@flatten"
        concept = store.get_or_compute(backbone, DatasetView(world, red.tolist()), capture=capture, progress=False, num_workers=0)
        pool = store.get_or_compute(backbone, DatasetView(world, sorted(pool_rows.tolist())), capture=capture, progress=False, num_workers=0)
        tcav = TCAV(n_random=args.runs).fit({"color:red": concept}, pool)
        grads = layer_gradients(backbone, LAYER, images, zero_shot_logit(backbone, PROMPT), pool="flatten").grads
        result = tcav.test({PROMPT: grads})
        seconds.append(time.perf_counter() - start)
    row = result.table[result.table["score"] == "sign_count"].iloc[0]
    return {"seconds_cold": seconds[0], "seconds_warm": seconds[1], "sign_count": float(row["concept_mean"]), "p_value": float(row["p_value"]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch_threads": torch.get_num_threads()}


def run_captum(args) -> dict:
    import warnings

    import numpy as np
    import torch
    from captum.concept import TCAV as CaptumTCAV
    from captum.concept import Concept

    backbone, world, red, test = _setup(args)
    warnings.filterwarnings("ignore")

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = backbone.model.visual
            with torch.no_grad():
                self.text = torch.nn.functional.normalize(backbone.encode_texts([PROMPT]), dim=-1)
            self.scale = float(backbone.model.logit_scale.detach().exp())

        def forward(self, x):
            return self.scale * torch.nn.functional.normalize(self.visual(x), dim=-1) @ self.text.T

    def tensor(rows) -> torch.Tensor:
        return torch.stack([backbone.preprocess(world.image(int(i)).convert("RGB")) for i in rows])

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    concept = Concept(0, "red", torch.utils.data.DataLoader(tensor(red), batch_size=64))
    randoms = [Concept(i + 1, f"random{i}", torch.utils.data.DataLoader(tensor(rng.choice(len(world), args.examples, replace=False)), batch_size=64))
               for i in range(args.runs + 1)]
    sets = [[concept, r] for r in randoms[1:]] + [[randoms[0], r] for r in randoms[1:]]
    inputs = torch.stack([backbone.preprocess(test.image(i).convert("RGB")) for i in range(len(test))])
    tcav = CaptumTCAV(Head().eval(), layers=[LAYER], save_path=tempfile.mkdtemp(prefix="tcav-bench-captum-"))
    scores = tcav.interpret(inputs, sets, target=0)
    seconds = time.perf_counter() - start
    sign = [float(scores[f"0-{r.id}"][LAYER]["sign_count"][0]) for r in randoms[1:]]
    return {"seconds": seconds, "sign_count": float(np.mean(sign)), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--side", choices=["ours", "captum"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_ours(args) if args.side == "ours" else run_captum(args)))
        return
    results = {}
    for side in ("ours", "captum"):
        command = [sys.executable, __file__, "--side", side, "--images", str(args.images), "--runs", str(args.runs),
                   "--examples", str(args.examples), "--threads", str(args.threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[side] = json.loads(output)
        print(side, results[side], flush=True)
    ours, captum = results["ours"], results["captum"]
    print(f"TCAV, {args.runs} random CAVs, {args.images} images, {LAYER} flattened, {args.threads} thread(s):")
    print(f"  captum {captum['seconds']:.1f} s, peak RSS {captum['peak_rss_mb']:.0f} MB")
    print(f"  conceptlab cold store {ours['seconds_cold']:.1f} s, warm store {ours['seconds_warm']:.1f} s, peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"  ratio captum / conceptlab: {captum['seconds'] / ours['seconds_cold']:.2f}x cold, {captum['seconds'] / ours['seconds_warm']:.2f}x warm; "
          f"peak memory ratio {captum['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x")
    print(f"  mean sign count of color:red: captum {captum['sign_count']:.3f}, conceptlab {ours['sign_count']:.3f} (p = {ours['p_value']:.2g})")


if __name__ == "__main__":
    main()
