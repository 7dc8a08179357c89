"""The ``conceptlab`` command: demo, zoo build, embed, info, probe."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from conceptlab.utils import human_bytes

__all__ = ["main", "build_parser"]

DEFAULT_BACKBONE = "zoo:shapes-clip"
APP_ENTRY = Path(__file__).resolve().parent.parent / "dashboards" / "Home.py"


def _ensure_zoo(name: str = "shapes-clip") -> None:
    from conceptlab import zoo

    if zoo.available().get(name) is None:
        print(f"zoo:{name} is not built yet; training it now (a few minutes, once).")
        zoo.build(name)


def cmd_demo(args: argparse.Namespace) -> int:
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore
    from conceptlab.zoo.shapes_clip import zero_shot_accuracy

    _ensure_zoo()
    backbone = load(args.backbone)
    store = ActivationStore()
    print(f"backbone: {backbone}")
    for split, size in (("train", args.train_size), ("test", args.test_size)):
        dataset = ShapesWorld(split, size=size)
        acts = store.get_or_compute(backbone, dataset, progress=True)
        print(f"embedded {dataset.identity}: {tuple(acts.shape)}")
    if args.no_app:
        test = ShapesWorld("test", size=min(500, args.test_size))
        scores = zero_shot_accuracy(backbone, test)
        print(f"zero-shot accuracy on ShapesWorld test ({len(test)} images):")
        for family, acc in scores.items():
            print(f"  {family:<11s} {acc:6.1%}")
        print(f"store: {store.root} ({human_bytes(store.total_bytes())})")
        return 0
    return _serve_app(args.port)


def _serve_app(port: int) -> int:
    if not APP_ENTRY.is_file():
        print(f"the app is not part of this install ({APP_ENTRY} missing); run `conceptlab demo --no-app`.")
        return 1
    url = f"http://127.0.0.1:{port}"
    print(f"\n  conceptlab app: {url}\n  (Ctrl+C stops it)\n", flush=True)
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_ENTRY),
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]
    try:
        return subprocess.call(command, env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
    except KeyboardInterrupt:
        return 0


def cmd_zoo_build(args: argparse.Namespace) -> int:
    from conceptlab import zoo

    overrides = {"steps": args.steps} if args.steps else {}
    card = zoo.build(args.name, out_dir=args.out, **overrides)
    print(json.dumps({k: v for k, v in card.items() if k != "loss_curve"}, indent=2))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore

    if args.backbone == DEFAULT_BACKBONE:
        _ensure_zoo()
    backbone = load(args.backbone)
    dataset = ShapesWorld(args.split, size=args.size, seed=args.seed)
    store = ActivationStore(root=args.store)
    estimate = store.estimate(backbone, dataset, batch_size=args.batch_size)
    print(f"{dataset.identity} through {backbone.spec}: {json.dumps(estimate, default=str)}")
    if args.dry_run:
        return 0
    acts = store.get_or_compute(backbone, dataset, batch_size=args.batch_size)
    print(f"stored {tuple(acts.shape)} under key {store.key(backbone, dataset)}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from conceptlab import __version__, zoo
    from conceptlab.store import ActivationStore

    print(f"conceptlab {__version__}, torch {torch.__version__}")
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    print(f"devices: {', '.join(devices)}")
    print("zoo:")
    for name, folder in zoo.available().items():
        print(f"  zoo:{name:<14s} {'built at ' + str(folder) if folder else 'not built (conceptlab zoo build ' + name + ')'}")
    store = ActivationStore(root=args.store)
    entries = store.entries()
    print(f"store: {store.root} ({len(entries)} entries, {human_bytes(store.total_bytes())})")
    for e in entries:
        state = "" if e.get("complete") else "  [incomplete]"
        print(f"  {e['key'][:12]}  {e['rows']:>7} x {e['dim']:<5} {human_bytes(e['bytes']):>9}  {e['backbone']}  {e['dataset']}{state}")
    return 0


def cmd_probe_run(args: argparse.Namespace) -> int:
    from conceptlab.probes import load_probe, run_probe
    from conceptlab.store import ActivationStore

    config = load_probe(args.path)
    result = run_probe(config, out_dir=args.out, store=ActivationStore(root=args.store), progress=not args.quiet)
    print(result.accuracy_table().round(4).to_string())
    print(f"report: {result.out_dir / 'report.html'}")
    return 0


def cmd_probe_validate(args: argparse.Namespace) -> int:
    from conceptlab.probes import load_probe

    for path in args.paths:
        config = load_probe(path)
        print(f"{path}: ok ({config.method['name']} on {config.backbone['spec']}, concepts {config.concepts['source']}, splits {', '.join(config.needed_splits)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conceptlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the default workspace (ShapesWorld + zoo:shapes-clip) and serve the app")
    demo.add_argument("--no-app", action="store_true", help="print a summary instead of serving the app")
    demo.add_argument("--backbone", default=DEFAULT_BACKBONE)
    demo.add_argument("--port", type=int, default=8501)
    demo.add_argument("--train-size", type=int, default=8000, help="ShapesWorld train images to embed")
    demo.add_argument("--test-size", type=int, default=2000, help="ShapesWorld test images to embed")
    demo.set_defaults(func=cmd_demo)

    zoo_parser = sub.add_parser("zoo", help="the embedded default models")
    zoo_sub = zoo_parser.add_subparsers(dest="zoo_command", required=True)
    build = zoo_sub.add_parser("build", help="train a zoo model by its recipe")
    build.add_argument("name", nargs="?", default="shapes-clip")
    build.add_argument("--out", default=None, help="output folder (default $CONCEPTLAB_HOME/zoo/NAME)")
    build.add_argument("--steps", type=int, default=None, help="override the recipe's training steps")
    build.set_defaults(func=cmd_zoo_build)

    embed = sub.add_parser("embed", help="embed a ShapesWorld split into the activation store")
    embed.add_argument("--backbone", default=DEFAULT_BACKBONE)
    embed.add_argument("--split", default="test")
    embed.add_argument("--size", type=int, default=None)
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument("--store", default=None, help="store folder (default $CONCEPTLAB_HOME/store)")
    embed.add_argument("--dry-run", action="store_true", help="only print the disk and memory estimate")
    embed.set_defaults(func=cmd_embed)

    probe = sub.add_parser("probe", help="declarative CBM runs from a TOML file (probes/*.toml)")
    probe_sub = probe.add_subparsers(dest="probe_command", required=True)
    probe_run = probe_sub.add_parser("run", help="run a probe: fit, evaluate, write model/, metrics.json, report.html")
    probe_run.add_argument("path", help="the probe file, e.g. probes/shapes_pcbm.toml")
    probe_run.add_argument("--out", default=None, help="output folder (default artifacts/probes/NAME)")
    probe_run.add_argument("--store", default=None, help="store folder (default $CONCEPTLAB_HOME/store)")
    probe_run.add_argument("--quiet", action="store_true", help="no progress bars")
    probe_run.set_defaults(func=cmd_probe_run)
    probe_validate = probe_sub.add_parser("validate", help="check probe files without running them")
    probe_validate.add_argument("paths", nargs="+")
    probe_validate.set_defaults(func=cmd_probe_validate)

    info = sub.add_parser("info", help="devices, zoo models, store contents")
    info.add_argument("--store", default=None)
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"conceptlab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
