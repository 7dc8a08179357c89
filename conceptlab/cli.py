"""The ``conceptlab`` command: demo, zoo build, embed, store, info, probe, data.

One error boundary, in :func:`main`: every failure is one line on stderr and an exit code that
says which kind of problem it was (``EXIT_CODES``, also in ``conceptlab --help``); a traceback is
printed only with ``--debug``. Paths given with ``--out`` and ``--store`` are checked before any
work starts, and Ctrl-C says what was kept and how to resume.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

from conceptlab.utils import human_bytes

__all__ = ["EXIT_CODES", "CLIError", "main", "build_parser"]

#: exit code -> the kind of problem it reports
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal error (a bug in conceptlab: rerun with --debug and report the traceback)",
    2: "invalid input: a bad argument, spec, probe file or value",
    3: "a file or folder that was asked for does not exist",
    4: "the output cannot be written: --out is a file, or a folder is not writable",
    5: "the activation store cannot be used: --store is not a folder, or is read-only where a write is needed",
    6: "not enough disk space or memory",
    7: "a size is over one of conceptlab's documented limits (conceptlab.limits)",
    8: "a saved file is corrupt (checksum, NaN weights, wrong shapes)",
    9: "the LLM server failed (unreachable, timed out, or answered with an error)",
    130: "interrupted (Ctrl-C); what was finished is kept, and rerunning the command resumes",
}


class CLIError(Exception):
    """A user error found by the CLI itself, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _exit_code(error: BaseException) -> int:
    """The exit code of an error that reached :func:`main` (the classes of ``EXIT_CODES``)."""
    from conceptlab.limits import LimitError

    if isinstance(error, CLIError):
        return error.code
    checks: list[tuple[tuple[type, ...], int]] = [((LimitError,), 7)]
    try:
        from conceptlab.concepts.bank import ArtifactIntegrityError
        from conceptlab.store import InsufficientDiskSpaceError, StoreCorruptionError, StoreUnavailableError

        checks += [((ArtifactIntegrityError, StoreCorruptionError), 8), ((StoreUnavailableError,), 5), ((InsufficientDiskSpaceError, MemoryError), 6)]
    except ImportError:  # pragma: no cover - a broken install is itself an internal error
        pass
    try:
        from conceptlab.concepts.language.providers import LLMError, LLMResponseError

        checks.append(((LLMError, LLMResponseError), 9))
    except ImportError:  # pragma: no cover
        pass
    if "openai" in sys.modules:  # an error from the LLM server (only possible once openai is loaded)
        checks.append(((sys.modules["openai"].APIError,), 9))
    for types_, code in checks:
        if isinstance(error, types_):
            return code
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return 6
    if isinstance(error, FileNotFoundError):
        return 3
    if isinstance(error, (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)) or (
        isinstance(error, OSError) and error.errno in (errno.EROFS, errno.EACCES, errno.ENAMETOOLONG)
    ):
        return 4
    if isinstance(error, (ValueError, KeyError)) and not isinstance(error, UnicodeError):
        return 2
    return 1


def _message(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__  # one line

DEFAULT_BACKBONE = "zoo:shapes-clip"
APP_ENTRY = Path(__file__).resolve().parent.parent / "dashboards" / "Home.py"


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A folder conceptlab may write into: an existing writable folder, or one that can be created
    (its nearest existing ancestor is a writable folder and every name fits the filesystem)."""
    path = Path(path).expanduser()
    for part in path.parts:
        if len(os.fsencode(part)) > 255:
            raise CLIError(f"{flag} {str(path)[:80]}...: the name {part[:40]!r}... is longer than a file name may be (255 bytes)", 4)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{flag} {path} is a file, not a folder; pass a folder (it is created if missing)", 4)
    anchor = _nearest_existing(path)
    if not anchor.is_dir():
        raise CLIError(f"{flag} {path} cannot be created: {anchor} is a file", 4)
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {path} cannot be written: {anchor} is not writable", 4)
    return path


def check_store_dir(path: str | os.PathLike | None) -> None:
    """``--store`` names a folder, or a place where one can be made. A read-only store is fine:
    complete entries are served without writing, and a needed write is its own clear error."""
    from conceptlab.store import default_root

    root = Path(path).expanduser() if path is not None else default_root()
    if root.exists() and not root.is_dir():
        raise CLIError(f"--store {root} is a file, not a store folder", 5)
    anchor = _nearest_existing(root)
    if not anchor.is_dir():
        raise CLIError(f"--store {root} cannot be created: {anchor} is a file", 5)


def _ensure_zoo(name: str = "shapes-clip") -> None:
    from conceptlab import zoo

    if zoo.available().get(name) is None:
        print(f"zoo:{name} is not built yet; training it now (a few minutes, once).")
        zoo.build(name)


#: the port ``conceptlab demo`` (``make app``) serves on when none is given and it is free
DEFAULT_PORT = 8501
#: the shipped probe files the first run prepares the embeddings of (absent from a wheel install)
PROBES_DIR = Path(__file__).resolve().parent.parent / "probes"


def port_number(text: str) -> int:
    """argparse type of ``--port``: an integer 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(requested: int | None) -> int:
    """The port to serve on, decided before any work: ``requested`` when free (else a clear
    error: the user asked for it), or DEFAULT_PORT, or a free one when the default is busy."""
    if requested is not None:
        if not port_is_free(requested):
            raise CLIError(f"port {requested} is in use (another app or server is on it); pick another with --port N (make app PORT=N)", 2)
        return requested
    if port_is_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    print(f"port {DEFAULT_PORT} is in use; serving on {port} instead")
    return port


def cmd_demo(args: argparse.Namespace) -> int:
    from conceptlab.experiments.precompute import precompute_plan, run_plan
    from conceptlab.store import ActivationStore

    port = None if args.no_app else choose_port(args.port)  # a busy or bad port is found before any work
    _ensure_zoo()
    store = ActivationStore()
    probes = sorted(PROBES_DIR.glob("*.toml")) if (args.probes and PROBES_DIR.is_dir()) else []
    plan = precompute_plan(args.backbone, probes)
    rows = sum(len(item.dataset) for item in plan)
    print(f"first run: {len(plan)} store entries ({rows} images) for the app's default pages" + (f" and {len(probes)} shipped probes" if probes else ""))
    args.interrupt_note = "finished store entries are kept; rerunning resumes where it stopped"
    if args.no_app:
        run_plan(plan, store, progress=True)
        return _demo_summary(args.backbone, store)
    app = _start_app(port)
    try:
        # the app is served while the rest is embedded; the app's pages wait for an entry being written
        _lower_priority()
        run_plan(plan, store, progress=True, should_stop=lambda: app.poll() is not None)
        if app.poll() is None:
            print(f"\n  every default embedding is stored; the app is at http://127.0.0.1:{port} (Ctrl+C stops it)\n", flush=True)
        return app.wait()
    finally:
        if app.poll() is None:
            app.terminate()
            try:
                app.wait(timeout=10)
            except subprocess.TimeoutExpired:
                app.kill()


def _lower_priority() -> None:
    """Embed at a lower CPU priority than the app's server, so pages stay responsive."""
    try:
        os.nice(10)
    except (AttributeError, OSError):  # not on this platform, or not allowed
        pass


def _demo_summary(backbone_spec: str, store) -> int:
    from conceptlab.backbones import load
    from conceptlab.data import APP_SIZES, ShapesWorld
    from conceptlab.zoo.shapes_clip import zero_shot_accuracy

    test = ShapesWorld("test", size=APP_SIZES["test"])
    scores = zero_shot_accuracy(load(backbone_spec), test)
    print(f"zero-shot accuracy on ShapesWorld test ({len(test)} images):")
    for family, acc in scores.items():
        print(f"  {family:<11s} {acc:6.1%}")
    print(f"store: {store.root} ({human_bytes(store.total_bytes())})")
    return 0


def _start_app(port: int) -> subprocess.Popen:
    if not APP_ENTRY.is_file():
        raise CLIError(f"the app is not part of this install ({APP_ENTRY} missing); run `conceptlab demo --no-app`", 3)
    url = f"http://127.0.0.1:{port}"
    print(f"\n  conceptlab app: {url}\n  (Ctrl+C stops it; the Home page shows the first run's progress)\n", flush=True)
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_ENTRY),
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]
    return subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})


def cmd_zoo_build(args: argparse.Namespace) -> int:
    from conceptlab import zoo

    if args.out is not None:
        check_output_dir(args.out)
    args.interrupt_note = "the zoo model was not written; rerun the command to train it again"
    overrides = {"steps": args.steps} if args.steps else {}
    card = zoo.build(args.name, out_dir=args.out, **overrides)
    print(json.dumps({k: v for k, v in card.items() if k != "loss_curve"}, indent=2))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore

    check_store_dir(args.store)
    if args.batch_size <= 0:
        raise CLIError(f"--batch-size must be positive, got {args.batch_size}", 2)
    _check_ray_flags(args)
    if args.data:  # the dataset (and its size caps) before the model loads
        from conceptlab.data import load as load_dataset

        dataset = load_dataset(args.data)
    else:
        dataset = ShapesWorld(args.split, size=args.size, seed=args.seed)
    if args.backbone == DEFAULT_BACKBONE:
        _ensure_zoo()
    backbone = load(args.backbone)
    store = ActivationStore(root=args.store)
    estimate = store.estimate(backbone, dataset, batch_size=args.batch_size)
    print(f"{dataset.identity} through {backbone.spec}: {json.dumps(estimate, default=str)}")
    if args.dry_run:
        return 0
    args.interrupt_note = f"finished shards are kept in the store at {store.root}; rerun the same command to resume from them"
    if args.engine == "ray":
        return _embed_on_ray(args, store, backbone, dataset)
    acts = store.get_or_compute(backbone, dataset, batch_size=args.batch_size)
    print(f"stored {tuple(acts.shape)} under key {store.key(backbone, dataset)}")
    return 0


def _check_ray_flags(args: argparse.Namespace) -> None:
    if args.engine != "ray" and (args.address is not None or args.num_actors is not None or args.num_gpus):
        raise CLIError("--address, --num-actors and --num-gpus need --engine ray", 2)
    if args.num_actors is not None and args.num_actors < 1:
        raise CLIError(f"--num-actors must be at least 1, got {args.num_actors}", 2)
    if args.num_gpus < 0:
        raise CLIError(f"--num-gpus must be >= 0, got {args.num_gpus}", 2)
    if args.engine == "ray":
        from conceptlab.store.ray_engine import import_ray

        try:
            import_ray()
        except ImportError as error:
            raise CLIError(str(error), 2) from None


def _embed_on_ray(args: argparse.Namespace, store, backbone, dataset) -> int:
    """``embed --engine ray``: the same entry, computed by backbone replicas on a Ray cluster."""
    from conceptlab.store import ray_extract

    entry = ray_extract(store, backbone, dataset, batch_size=args.batch_size, address=args.address, num_actors=args.num_actors,
                        num_gpus=args.num_gpus, load_on_workers=args.load_on_workers)
    print(f"stored {(len(entry), entry.dim)} under key {entry.key} (Ray engine)")
    return 0


def _dataset_from_args(spec: str):
    """A dataset spec; the shorthand ``shapesworld`` means ``shapesworld:test``."""
    from conceptlab.data import load as load_dataset

    return load_dataset("shapesworld:test" if spec == "shapesworld" else spec)


def cmd_data_export(args: argparse.Namespace) -> int:
    from conceptlab.data import export_dataset

    check_output_dir(args.out_dir, flag="out_dir")
    dataset = _dataset_from_args(args.source)
    args.interrupt_note = f"the export to {args.out_dir} is incomplete; rerun the command to write it again"
    out = export_dataset(dataset, args.out_dir, format=args.format, progress=not args.quiet)
    reader = f"folder:{out}" if args.format == "folder" else f"csv:{out / 'labels.csv'}"
    print(f"wrote {len(dataset)} images of {len(dataset.class_names)} classes to {out}; read it back as {reader}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    import numpy as np

    dataset = _dataset_from_args(args.spec)
    counts = np.bincount(np.asarray(dataset.labels), minlength=len(dataset.class_names))
    print(f"{args.spec}: {len(dataset)} images, {len(dataset.class_names)} classes, identity {dataset.identity}")
    for name, count in zip(dataset.class_names, counts):
        print(f"  {count:>7}  {name}")
    concepts = list(getattr(dataset, "concept_names", None) or [])
    print(f"concepts: {', '.join(concepts) if concepts else 'none annotated'}")
    for skipped in getattr(dataset, "skipped", []):
        print(f"skipped row {skipped['row']}: {skipped['file']} ({skipped['reason']})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from conceptlab import __version__, zoo

    print(f"conceptlab {__version__}, torch {torch.__version__}")
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    print(f"devices: {', '.join(devices)}")
    print("zoo:")
    for name, folder in zoo.available().items():
        print(f"  zoo:{name:<14s} {'built at ' + str(folder) if folder else 'not built (conceptlab zoo build ' + name + ')'}")
    _print_store(_open_store(args.store))
    return 0


def _open_store(root: str | None):
    from conceptlab.store import ActivationStore

    check_store_dir(root)
    return ActivationStore(root=root)


def _print_store(store, newest_first: bool = False) -> None:
    entries = store.entries()
    print(f"store: {store.root} ({len(entries)} entries, {human_bytes(store.total_bytes())})")
    for e in reversed(entries) if newest_first else entries:
        if "rows" not in e:  # a manifest that cannot be read: say so, and list the rest
            print(f"  {e['key'][:12]}  [unreadable: {' '.join(str(e.get('error', 'no manifest')).split())}]  {human_bytes(e['bytes'])}")
            continue
        state = "" if e.get("complete") else "  [incomplete]"
        print(f"  {e['key'][:12]}  {e['rows']:>7} x {e['dim']:<5} {human_bytes(e['bytes']):>9}  {e['backbone']}  {e['dataset']}{state}")


def cmd_store_ls(args: argparse.Namespace) -> int:
    _print_store(_open_store(args.store), newest_first=True)  # newest first, as the app's Home page lists them
    return 0


def cmd_store_rm(args: argparse.Namespace) -> int:
    store = _open_store(args.store)
    try:
        keys = [store.resolve(prefix) for prefix in args.keys]  # every key checked before anything is deleted
    except KeyError as error:
        raise CLIError(str(error.args[0]), 3) from None
    for key in dict.fromkeys(keys):
        store.delete(key)
        print(f"deleted {key[:12]}")
    return 0


def cmd_probe_run(args: argparse.Namespace) -> int:
    from conceptlab.experiments import load_probe, run_probe
    from conceptlab.experiments.config import ProbeConfig, default_out_dir
    from conceptlab.store import ActivationStore

    config = load_probe(args.path)
    if args.out is not None:
        check_output_dir(args.out)
    elif isinstance(config, ProbeConfig):
        check_output_dir(default_out_dir(config), flag="the output folder")
    check_store_dir(args.store)
    args.interrupt_note = (
        "embeddings already computed are kept in the activation store and nothing was written to the output "
        "folder; rerun the same command to resume (it reuses the stored embeddings)"
    )
    result = run_probe(config, out_dir=args.out, store=ActivationStore(root=args.store), progress=not args.quiet)
    print(result.summary())
    print(f"report: {result.out_dir / 'report.html'}")
    return 0


def cmd_probe_validate(args: argparse.Namespace) -> int:
    from conceptlab.experiments import load_probe

    failed = 0
    for path in args.paths:
        try:
            config = load_probe(path)
        except (ValueError, OSError) as error:
            if len(args.paths) == 1:
                raise
            failed += 1
            print(f"conceptlab: error: {_message(error)}", file=sys.stderr)
            continue
        print(f"{path}: ok ({config.summary()})")
    if failed:
        raise CLIError(f"{failed} of {len(args.paths)} probe files are invalid", 2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="conceptlab", description=__doc__.split("\n\n")[0], epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the default workspace (ShapesWorld + zoo:shapes-clip) and serve the app")
    demo.add_argument("--no-app", action="store_true", help="print a summary instead of serving the app")
    demo.add_argument("--backbone", default=DEFAULT_BACKBONE)
    demo.add_argument("--port", type=port_number, default=None, help=f"serve on this port (default {DEFAULT_PORT}, or a free one when it is busy)")
    demo.add_argument("--no-probes", dest="probes", action="store_false", help="prepare only the app pages' embeddings, not the shipped probes'")
    demo.set_defaults(func=cmd_demo)

    zoo_parser = sub.add_parser("zoo", help="the embedded default models")
    zoo_sub = zoo_parser.add_subparsers(dest="zoo_command", required=True)
    build = zoo_sub.add_parser("build", help="train a zoo model by its recipe")
    build.add_argument("name", nargs="?", default="shapes-clip")
    build.add_argument("--out", default=None, help="output folder (default $CONCEPTLAB_HOME/zoo/NAME)")
    build.add_argument("--steps", type=int, default=None, help="override the recipe's training steps")
    build.set_defaults(func=cmd_zoo_build)

    embed = sub.add_parser("embed", help="embed a dataset (a ShapesWorld split by default) into the activation store")
    embed.add_argument("--backbone", default=DEFAULT_BACKBONE)
    embed.add_argument("--data", default=None, help="a dataset spec: folder:PATH, csv:PATH, hf:PATH, shapesworld:SPLIT?size=N (overrides --split/--size/--seed)")
    embed.add_argument("--split", default="test")
    embed.add_argument("--size", type=int, default=None)
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument("--store", default=None, help="store folder (default $CONCEPTLAB_HOME/store)")
    embed.add_argument("--dry-run", action="store_true", help="only print the disk and memory estimate")
    embed.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local: this process (DataLoader workers decode); ray: backbone replicas on a Ray cluster (pip install 'conceptlab[distributed]')")
    embed.add_argument("--address", default=None, help="with --engine ray: the cluster (auto = the one `ray start` runs here; default: a new local one)")
    embed.add_argument("--num-actors", type=int, default=None, help="with --engine ray: backbone replicas (default: as many as fit)")
    embed.add_argument("--num-gpus", type=float, default=0.0, help="with --engine ray: GPUs per replica (default 0: CPU)")
    embed.add_argument("--load-on-workers", action="store_true",
                       help="with --engine ray: each replica loads --backbone itself (the checkpoint must exist on every node) instead of receiving this one's")
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

    data = sub.add_parser("data", help="datasets: show a dataset spec, export ShapesWorld as a folder or CSV")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_export = data_sub.add_parser("export", help="write a dataset as a folder (one sub-folder per class) or a CSV table with images")
    data_export.add_argument("source", help="a dataset spec, e.g. shapesworld:test?size=200 (shapesworld alone = the test split)")
    data_export.add_argument("out_dir", help="the folder to create")
    data_export.add_argument("--format", choices=["folder", "csv"], default="folder")
    data_export.add_argument("--quiet", action="store_true", help="no progress bar")
    data_export.set_defaults(func=cmd_data_export)
    data_show = data_sub.add_parser("show", help="check a dataset spec and print its classes and concepts")
    data_show.add_argument("spec")
    data_show.set_defaults(func=cmd_data_show)

    store_parser = sub.add_parser("store", help="list the activation store's entries, or delete some")
    store_sub = store_parser.add_subparsers(dest="store_command", required=True)
    store_ls = store_sub.add_parser("ls", help="list the entries, newest first (key prefix, size, backbone, dataset)")
    store_ls.add_argument("--store", default=None, help="store folder (default $CONCEPTLAB_HOME/store)")
    store_ls.set_defaults(func=cmd_store_ls)
    store_rm = store_sub.add_parser("rm", help="delete entries by key (a unique prefix of at least 4 hex digits, as `store ls` shows)")
    store_rm.add_argument("keys", nargs="+")
    store_rm.add_argument("--store", default=None, help="store folder (default $CONCEPTLAB_HOME/store)")
    store_rm.set_defaults(func=cmd_store_rm)

    info = sub.add_parser("info", help="devices, zoo models, store contents")
    info.add_argument("--store", default=None)
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error becomes one line on stderr and its exit code (``EXIT_CODES``)."""
    args = build_parser().parse_args(argv)
    args.interrupt_note = "nothing was written"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"\nconceptlab: interrupted; {args.interrupt_note}", file=sys.stderr)
        return 130
    except Exception as error:
        code = _exit_code(error)
        if args.debug:
            traceback.print_exc()
        if code == 1:
            print(f"conceptlab: internal error: {type(error).__name__}: {_message(error)} "
                  "(rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        else:
            print(f"conceptlab: error: {_message(error)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
