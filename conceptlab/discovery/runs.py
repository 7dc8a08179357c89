"""Discovery runs: a trained SAE, its latent names and the settings that made them, saved as one folder.

>>> run = discover(train_embeddings, backbone, SAE_SETTINGS)      # train + name (conceptlab.data.SAE_SETTINGS)
>>> run.save(discovery_root() / "my-run")                          # atomic: all of it or nothing
>>> run = DiscoveryRun.load(discovery_root() / "my-run")
>>> [info.name for info in list_runs()]                            # what $CONCEPTLAB_HOME/discovery holds

A run folder holds::

    sae/        the SparseAutoencoder in sae-lens's format (cfg.json + sae_weights.safetensors [+ input_mean.safetensors])
    names/      the LatentNames with the analyst's renames (config.json + directions.safetensors)
    run.json    {"format": "conceptlab.discovery-run", "format_version": 2, "settings", "provenance", "renamed", ...}

``save`` writes everything into a hidden temporary sibling folder, then renames it onto the
target (an older run of that name is first renamed aside and removed once the new one is in
place), so a save killed at any point never leaves a half-written folder under the real name.
``load`` also reads the first format the app wrote (``run.json`` with an ``input_mean`` list,
the SAE trained on centred inputs): the mean is folded into the SAE, which then takes raw
embeddings like a ``center=True`` one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from conceptlab.discovery.naming import LatentNames, name_latents
from conceptlab.discovery.sae import SparseAutoencoder
from conceptlab.utils import as_matrix, atomic_write_json, conceptlab_home

__all__ = [
    "NAMING_KEYS",
    "RUN_FORMAT",
    "DiscoveryRun",
    "RunInfo",
    "check_run_name",
    "discover",
    "discovery_root",
    "list_runs",
    "sae_params",
]

RUN_FORMAT = "conceptlab.discovery-run"
RUN_FORMAT_VERSION = 2
RUN_FILE = "run.json"
SAE_DIR = "sae"
NAMES_DIR = "names"
#: settings keys that are about naming the latents, not about the SAE
NAMING_KEYS = ("templates", "top_k")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_TMP_TAG = ".tmp-"  # hidden sibling a save writes into: .NAME.tmp-XXXX
_OLD_TAG = ".old-"  # hidden sibling the replaced run waits in until the new one is in place


def discovery_root() -> Path:
    """Where discovery runs live by default: ``$CONCEPTLAB_HOME/discovery``."""
    return conceptlab_home() / "discovery"


def check_run_name(name: str) -> str:
    """``name`` stripped, if it can name a run folder (letters, digits, ``.``, ``_``, ``-``; at most 80)."""
    name = str(name).strip()
    if not _NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} cannot name a run folder: use letters, digits, '.', '_' or '-' (at most 80, no spaces)")
    return name


def sae_params(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`SparseAutoencoder` parameters among ``settings`` (naming keys left out); an
    unknown key is a ValueError naming it."""
    known = set(SparseAutoencoder._get_param_names())
    unknown = sorted(k for k in settings if k not in known and k not in NAMING_KEYS)
    if unknown:
        raise ValueError(f"unknown SAE setting(s) {unknown}; known: {sorted(known | set(NAMING_KEYS))}")
    return {k: v for k, v in settings.items() if k in known}


@dataclass
class DiscoveryRun:
    """A fitted :class:`SparseAutoencoder`, the :class:`LatentNames` of its latents, the
    ``settings`` they were made with (SAE parameters + naming keys) and free-form ``provenance``
    (backbone spec, store key of the training embeddings, ...)."""

    sae: SparseAutoencoder
    names: LatentNames
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sae._check_fitted()
        if len(self.names) != self.sae.d_sae_:
            raise ValueError(f"{len(self.names)} latent names for an SAE with {self.sae.d_sae_} latents")

    @property
    def n_latents(self) -> int:
        return int(self.sae.d_sae_)

    @property
    def renamed(self) -> dict[int, dict[str, Any]]:
        """latent -> {"name", "auto_name", "by"} for every latent the analyst renamed."""
        return {int(r.latent): {"name": r.name, "auto_name": r.auto_name, "by": r.renamed_by}
                for r in self.names.table.itertuples() if r.renamed}

    def encode(self, embeddings: Any) -> torch.Tensor:
        """The latents' activations on raw embeddings (the SAE centres them itself when it was trained so)."""
        return self.sae.encode(embeddings)

    def rename(self, renames: Mapping[int, str], by: str = "analyst") -> DiscoveryRun:
        """A copy with some latents renamed (``LatentNames.rename``)."""
        return DiscoveryRun(self.sae, self.names.rename(dict(renames), by=by), dict(self.settings), dict(self.provenance))

    # -- persistence ------------------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        from conceptlab.concepts.concept import jsonable

        return jsonable({
            "format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
            "saved": datetime.now(UTC).isoformat(timespec="seconds"),
            "n_latents": self.n_latents, "d_in": int(self.sae.d_in_),
            "settings": dict(self.settings), "provenance": dict(self.provenance),
            "renamed": {str(k): v for k, v in self.renamed.items()},
        })

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the run to ``directory`` atomically (see the module docstring); returns it.

        An existing folder there is replaced only if it is a discovery run (has ``run.json``) or empty.
        """
        directory = Path(directory).expanduser()
        parent = directory.parent
        parent.mkdir(parents=True, exist_ok=True)
        if not _recover(directory):
            for stale in _set_aside(directory):  # a save killed after its swap, before removing the old run
                shutil.rmtree(stale, ignore_errors=True)
        if directory.exists() and not (directory / RUN_FILE).is_file() and any(directory.iterdir()):
            raise FileExistsError(f"{directory} exists and is not a discovery run; refusing to replace it")
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}{_TMP_TAG}", dir=parent))
        try:
            self.sae.save(tmp / SAE_DIR)
            self.names.save(tmp / NAMES_DIR)
            atomic_write_json(tmp / RUN_FILE, self._record())  # last: a folder with run.json is complete
            if directory.exists():
                old = parent / f".{directory.name}{_OLD_TAG}{secrets.token_hex(4)}"
                os.rename(directory, old)
                try:
                    os.rename(tmp, directory)
                except BaseException:
                    os.rename(old, directory)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(parent)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> DiscoveryRun:
        """Read a run folder; a missing folder or file is FileNotFoundError, a corrupt one ValueError,
        each naming the path."""
        from conceptlab.concepts.bank import read_json

        directory = Path(directory).expanduser()
        _recover(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"no discovery run at {directory}")
        record = read_json(directory / RUN_FILE, "discovery run")
        if record.get("format") != RUN_FORMAT:
            raise ValueError(f"{directory / RUN_FILE} is not a discovery run (format {record.get('format')!r})")
        from conceptlab.concepts.bank import ArtifactIntegrityError

        try:
            sae = SparseAutoencoder.load(directory / SAE_DIR, device=device)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"discovery run {directory} is incomplete: {error}") from error
        except ArtifactIntegrityError as error:  # a checksum or a NaN: keep the class, name the run
            raise ArtifactIntegrityError(f"discovery run {directory} has a corrupt SAE in {directory / SAE_DIR}: {error}") from error
        except Exception as error:  # sae-lens and safetensors raise their own types for corrupt files
            raise ValueError(f"discovery run {directory} has a corrupt SAE in {directory / SAE_DIR}: {error}") from error
        names = LatentNames.load(directory / NAMES_DIR)
        if "format_version" in record:
            settings, provenance = dict(record.get("settings") or {}), dict(record.get("provenance") or {})
        else:  # format 1 (the app's first): the SAE was trained on inputs minus run.json's input_mean
            settings, provenance = _upgrade_v1(record, sae, directory)
        try:
            return cls(sae, names, settings, provenance)
        except ValueError as error:
            raise ValueError(f"discovery run {directory} is corrupt: {error}") from error


def _upgrade_v1(record: dict[str, Any], sae: SparseAutoencoder, directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from conceptlab.discovery.sae import _fold_input_mean

    mean = record.get("input_mean")
    if mean is not None and getattr(sae, "input_mean_", None) is None:
        try:
            mean = as_matrix(mean, "input_mean", dim=sae.d_in_, dim_what="the SAE")[0]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{directory / RUN_FILE} has a bad input_mean: {error}") from error
        if bool(mean.abs().max() > 0):
            _fold_input_mean(sae.sae_, mean)
            sae.center, sae.input_mean_ = True, mean
    settings = {k: record[k] for k in ("n_latents", "l1", "steps") if k in record}
    settings["center"] = bool(sae.center)
    skip = {"format", "input_mean", "renamed", "n_latents", "l1", "steps"}
    return settings, {k: v for k, v in record.items() if k not in skip}


@dataclass(frozen=True)
class RunInfo:
    """A run folder found by :func:`list_runs` (read from its ``run.json`` only; the SAE is not loaded)."""

    name: str
    path: Path
    n_latents: int
    renamed: int
    mtime: float


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    """The discovery runs directly under ``root`` (default :func:`discovery_root`), newest first.

    Folders without a readable ``run.json`` of this format (e.g. the ``sae`` source's cache) and
    hidden folders (a save in progress) are left out.
    """
    from conceptlab.concepts.bank import read_json

    root = Path(root).expanduser() if root is not None else discovery_root()
    if not root.is_dir():
        return []
    for old in root.glob(f".*{_OLD_TAG}*"):  # a run a killed save left set aside gets its name back
        _recover(root / old.name[1:].rsplit(_OLD_TAG, 1)[0])
    found = []
    for folder in root.iterdir():
        if folder.name.startswith("."):
            continue
        try:
            record = read_json(folder / RUN_FILE, "discovery run")
            mtime = (folder / RUN_FILE).stat().st_mtime
        except (OSError, ValueError):
            continue
        if record.get("format") != RUN_FORMAT:
            continue
        found.append(RunInfo(folder.name, folder, int(record.get("n_latents") or 0), len(record.get("renamed") or {}), mtime))
    return sorted(found, key=lambda r: (-r.mtime, r.name))


def _set_aside(directory: Path) -> list[Path]:
    """Old runs of this name that a save set aside (newest last)."""
    if not directory.parent.is_dir():
        return []
    pattern = "." + re.sub(r"([\[\]*?])", r"[\1]", directory.name) + _OLD_TAG + "*"
    return sorted(directory.parent.glob(pattern), key=lambda p: p.stat().st_mtime)


def _recover(directory: Path) -> bool:
    """Undo a swap a killed save left halfway (the old run set aside, the new one not yet in
    place): the old run gets its name back. Returns whether it did."""
    if directory.exists():
        return False
    olds = _set_aside(directory)
    if not olds:
        return False
    with contextlib.suppress(OSError):
        os.rename(olds[-1], directory)
        return True
    return False


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def discover(
    embeddings: Any,
    backbone: Any,
    settings: Mapping[str, Any] | None = None,
    *,
    sae: SparseAutoencoder | None = None,
    vocabulary: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    callback: Callable[[Any], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> DiscoveryRun:
    """Discover, then name: train an SAE on raw ``embeddings`` (N, d) and name its latents.

    Args:
        embeddings: the training embeddings (raw: ``settings["center"]`` decides the centring).
        backbone: the image-text backbone that made them (its text encoder embeds the vocabulary).
        settings: SAE parameters plus the naming keys ``templates`` (None or [] = bare words, as
            DN-CBM) and ``top_k``; ShapesWorld's are ``conceptlab.data.SAE_SETTINGS``. None = the
            SparseAutoencoder defaults (DN-CBM's).
        sae: an SAE already fitted on these embeddings with these settings (e.g. from a cache):
            only the naming runs.
        vocabulary: the words to name with (the packaged DN-CBM vocabulary by default).
        provenance: recorded with the SAE and the run (e.g. the store key, the backbone spec).
        callback, cancel: passed to :meth:`SparseAutoencoder.fit` (a ``TrainProgress`` after every
            step; ``cancel()`` returning True stops training with ``TrainingCancelled``).
    """
    settings = dict(settings or {})
    params = sae_params(settings)
    provenance = dict(provenance or {})
    if sae is None:
        sae = SparseAutoencoder(**{"progress": False, **params}).fit(embeddings, provenance=provenance, callback=callback, cancel=cancel)
    templates = list(settings.get("templates") or []) or None
    names = name_latents(sae, backbone, vocabulary, templates=templates, top_k=int(settings.get("top_k", 5)))
    spec = getattr(backbone, "spec", None)
    return DiscoveryRun(sae, names, settings, {**({"backbone": str(spec)} if spec else {}), **provenance})
