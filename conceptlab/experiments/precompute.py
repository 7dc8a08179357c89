"""The first run: embed exactly what the default app pages and the shipped probes read, once.

:func:`precompute_plan` lists the (backbone, dataset) pairs -- the app's ShapesWorld slices
(:func:`conceptlab.data.app_requests`, the first page's first) and the datasets of each probe file
(:func:`~conceptlab.experiments.runner.probe_datasets`, the same function the probe runner reads).
:func:`run_plan` fills the store with them, skipping what is stored, and keeps a status file beside
the store's entries that the app's Home page reads to show progress while the pages are in use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conceptlab.backbones import load
from conceptlab.data import ShapesWorld, app_requests
from conceptlab.experiments.config import ProbeConfig, load_probe
from conceptlab.experiments.runner import probe_datasets
from conceptlab.store import ActivationStore
from conceptlab.utils import atomic_write_text

__all__ = ["STATUS_NAME", "PrecomputeItem", "precompute_plan", "read_status", "run_plan"]

#: the status file in the store's root (not an entry: entries are 64-hex-digit folders)
STATUS_NAME = "first-run.json"
#: seconds between status writes while an entry is being computed
_WRITE_EVERY_S = 1.0


@dataclass(frozen=True)
class PrecomputeItem:
    """One store entry to fill: a backbone spec, a dataset, and who reads it."""

    backbone_spec: str
    dataset: Any
    reader: str

    @property
    def label(self) -> str:
        return f"{self.dataset.identity} ({self.reader})"


def precompute_plan(
    backbone_spec: str, probe_files: Iterable[str | os.PathLike] = (), environ: Mapping[str, str] = os.environ, seed_reruns: bool = False,
) -> list[PrecomputeItem]:
    """What the default pages (on ``backbone_spec``) and the CBM probes in ``probe_files`` read, each
    (backbone, dataset) once, the app's first.

    ``seed_reruns``: also the datasets of a probe's ``seeds = [...]`` re-runs (off: they triple the
    cost and only a probe run reads them). Probe files of other kinds (concept vectors, diffusion)
    read no image embeddings and add nothing.
    """
    items = [PrecomputeItem(backbone_spec, ShapesWorld(split, size=size, seed=seed), "app") for split, size, seed in app_requests(environ)]
    for path in probe_files:
        config = load_probe(path)
        if not isinstance(config, ProbeConfig):
            continue
        configs = [config]
        if seed_reruns and not config.dataset.get("spec"):
            configs += [_with_seed(config, seed) for seed in config.seeds if seed != config.dataset["seed"]]
        for each in configs:
            items += [PrecomputeItem(each.backbone["spec"], dataset, f"probe {config.name}") for dataset in probe_datasets(each).values()]
    unique: dict[tuple[str, str], PrecomputeItem] = {}
    for item in items:
        unique.setdefault((item.backbone_spec, item.dataset.identity), item)
    return list(unique.values())


def _with_seed(config: ProbeConfig, seed: int) -> ProbeConfig:
    return dataclasses.replace(config, dataset={**config.dataset, "seed": int(seed)}, seeds=())


def run_plan(
    items: list[PrecomputeItem], store: ActivationStore | None = None, progress: bool = True,
    should_stop: Callable[[], bool] = lambda: False, num_workers: int | None = None,
) -> dict[str, Any]:
    """Fill the store with every item of the plan (stored ones are skipped; an interrupted run
    resumes from its finished shards) and keep ``STATUS_NAME`` up to date. Returns the final status.

    ``should_stop`` is asked between entries (e.g. "has the app been closed?"); a stopped run
    leaves the finished entries and a status that says it stopped.
    """
    store = store or ActivationStore()
    status = {
        "pid": os.getpid(), "started": time.time(), "updated": time.time(), "state": "running",
        "items": [{"label": item.label, "rows": len(item.dataset), "done": 0, "state": "pending"} for item in items],
    }
    path = store.root / STATUS_NAME
    backbones: dict[str, Any] = {}
    last_write = [0.0]

    def write(force: bool = False) -> None:
        now = time.time()
        if force or now - last_write[0] >= _WRITE_EVERY_S:
            status["updated"] = now
            store.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(status, indent=1))
            last_write[0] = now

    write(force=True)
    try:
        for item, entry in zip(items, status["items"]):
            if should_stop():
                status["state"] = "stopped"
                break
            backbone = backbones.get(item.backbone_spec) or backbones.setdefault(item.backbone_spec, load(item.backbone_spec))
            if store.contains(store.key(backbone, item.dataset)):
                entry.update(state="stored", done=entry["rows"])
                write(force=True)
                continue
            entry["state"] = "computing"
            write(force=True)

            def report(done: int, total: int, entry: dict = entry) -> None:
                entry["done"] = int(done)
                write()

            store.get_or_compute(backbone, item.dataset, progress=progress, on_progress=report, num_workers=num_workers)
            entry.update(state="computed", done=entry["rows"])
            write(force=True)
        else:
            status["state"] = "finished"
    except BaseException as error:
        status["state"] = "failed" if isinstance(error, Exception) else "stopped"
        status["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        status["finished_at"] = time.time()
        write(force=True)
    return status


def read_status(store: ActivationStore | None = None) -> dict[str, Any] | None:
    """The last first-run status of ``store`` (None when there is none), with ``alive``: whether
    the process that writes it still runs, and ``done_rows`` / ``total_rows``."""
    store = store or ActivationStore()
    path = Path(store.root) / STATUS_NAME
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict) or not isinstance(status.get("items"), list):
        return None
    status["alive"] = status.get("state") == "running" and _pid_alive(status.get("pid"))
    status["total_rows"] = sum(int(i.get("rows", 0)) for i in status["items"])
    status["done_rows"] = sum(int(i.get("done", 0)) for i in status["items"])
    return status


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
