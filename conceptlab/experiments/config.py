"""Probe files: declarative CBM runs from a TOML file, with a model, metrics and an HTML report.

A probe names a backbone, a ShapesWorld slice, a concept source, a method and what to evaluate::

    name = "shapes_pcbm"
    [backbone]
    spec = "zoo:shapes-clip"
    [dataset]
    sizes = { train = 4000, val = 1000, test = 1000, shifted = 1000 }
    [concepts]
    source = "text"               # any registered concept source: text | cav | bank | concept_set | v2c | sae
    [method]
    name = "pcbm"                 # any registered method: pcbm | pcbm_h | labo | v2c | lfcbm | dncbm
    params = { lam_scale = 2.0 }
    [evaluation]
    splits = ["val", "test", "shifted"]
    [evaluation.editing]
    suggest = 4

``conceptlab probe run probes/shapes_pcbm.toml`` (or :func:`~conceptlab.experiments.run_probe`) writes into the output
folder (default ``artifacts/probes/<name>/``): ``model/`` (the CBM's ``save``), ``metrics.json``,
``probe.json`` (the validated configuration) and ``report.html`` (metrics table and plots). Every
file is written atomically. :func:`load_probe` validates a file without running it; mistakes
(unknown sections, keys, methods, backbone schemes, concept sources; missing or ill-typed fields)
are :class:`ProbeConfigError` naming the file, the section and the key.

Methods and concept sources are read from the leaf registry (:mod:`conceptlab.registry`): a
new method or source file registers itself there and is usable here without touching this file.
"""


from __future__ import annotations

import difflib
import inspect
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conceptlab.backbones import parse_spec
from conceptlab.limits import LimitError, check_limit, limit
from conceptlab.registry import CONCEPT_SOURCES, METHODS, PROBE_KINDS, REQUIRED, RegistryError

__all__ = [
    "SPLIT_NAMES",
    "EditingConfig",
    "ProbeConfig",
    "ProbeConfigError",
    "default_out_dir",
    "load_probe",
    "method_params",
    "parse_any",
    "parse_probe",
]

SPLIT_NAMES = ("train", "val", "test", "shifted")


class ProbeConfigError(ValueError):
    """A probe file that cannot be run; the message names the file, section and key at fault."""


def method_params(klass: type) -> dict[str, Any]:
    """A method's ``[method.params]``: constructor parameter -> default (None when it has none),
    but the bank, the class names and objects saved beside the model (DN-CBM's SAE)."""
    skip = {"bank", "class_names", *getattr(klass, "artifact_params", ())}
    out: dict[str, Any] = {}
    for name, parameter in inspect.signature(klass.__init__).parameters.items():
        if name == "self" or name in skip or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        out[name] = None if parameter.default is parameter.empty else parameter.default
    return out


@dataclass(frozen=True)
class EditingConfig:
    enabled: bool = True
    concepts: list[str] | None = None
    suggest: int = 4
    renormalize: bool = False
    method: str = "auto"


@dataclass(frozen=True)
class ProbeConfig:
    """A validated probe (see the module docstring for the file format)."""

    name: str
    backbone: dict[str, Any]
    dataset: dict[str, Any]
    concepts: dict[str, Any]
    method: dict[str, Any]
    evaluation: dict[str, Any]
    editing: EditingConfig
    description: str = ""
    source: str | None = None
    #: ``seeds = [...]`` at the top level: the probe is re-run with each ShapesWorld seed (and the
    #: method's ``seed``) and the report gives mean ± sd over them beside the main run's numbers
    seeds: tuple[int, ...] = ()

    @property
    def base_dir(self) -> Path:
        return Path(self.source).resolve().parent if self.source else Path.cwd()

    @property
    def needed_splits(self) -> list[str]:
        splits = ["train", *self.evaluation["splits"]]
        for key in ("concept_auroc", "intervention"):
            if self.evaluation[key]:
                splits.append(self.evaluation[key])
        if self.editing.enabled:
            splits.append("shifted")
        if self.concepts["source"] == "cav":
            splits.append(self.concepts["split"])
        return [s for s in SPLIT_NAMES if s in splits]

    kind = "cbm"

    def summary(self) -> str:
        """One line saying what the probe will run."""
        return f"{self.method['name']} on {self.backbone['spec']}, concepts {self.concepts['source']}, splits {', '.join(self.needed_splits)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "source": self.source,
            "backbone": self.backbone, "dataset": self.dataset, "concepts": self.concepts,
            "method": self.method, "evaluation": {**self.evaluation, "editing": asdict(self.editing)}, "seeds": list(self.seeds),
        }


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _check_type(value: Any, default: Any, where: str) -> Any:
    """Check ``value`` against the type of ``default`` (None: anything)."""
    if default is None or default is REQUIRED:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ProbeConfigError(f"{where} must be {_type_name(default)}, got {_type_name(value)} {value!r}")
    return value


def _hint_accepts(value: Any, hint: Any) -> tuple[bool, Any, list[str]]:
    """(ok, value (ints as floats where a float is wanted), names of the accepted types) for a
    constructor annotation; an annotation this cannot read accepts anything."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is None or isinstance(hint, (str, typing.TypeVar)):
        return True, value, []
    if origin in (typing.Union, types.UnionType):
        names: list[str] = []
        for option in typing.get_args(hint):
            if option is type(None):
                continue
            ok, converted, option_names = _hint_accepts(value, option)
            if ok:
                return True, converted, []
            if not option_names:  # an option we cannot read: accept
                return True, value, []
            names.extend(n for n in option_names if n not in names)
        return False, value, names
    if origin is typing.Literal:
        options = typing.get_args(hint)
        return value in options, value, [" or ".join(map(repr, options))]
    target = origin or hint
    if target is bool:
        return isinstance(value, bool), value, ["a boolean"]
    if target is int:
        return isinstance(value, int) and not isinstance(value, bool), value, ["an integer"]
    if target is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value, ["a number"]
    if target is str:
        return isinstance(value, str), value, ["a string"]
    if isinstance(target, type) and issubclass(target, (list, tuple)) or target in (typing.Sequence, _abc_sequence()):
        return isinstance(value, list), value, ["a list"]
    if isinstance(target, type) and issubclass(target, dict) or target in (typing.Mapping, _abc_mapping()):
        return isinstance(value, dict), value, ["a table"]
    return True, value, []


def _abc_sequence() -> Any:
    from collections.abc import Sequence

    return Sequence


def _abc_mapping() -> Any:
    return Mapping


def _check_hint(value: Any, hint: Any, where: str) -> Any:
    ok, converted, names = _hint_accepts(value, hint)
    if not ok:
        raise ProbeConfigError(f"{where} must be {' or '.join(names)}, got {_type_name(value)} {value!r}")
    return converted


def _constructor_hints(klass: type) -> dict[str, Any]:
    """The constructor's annotations, resolved; {} when they cannot be (then nothing is checked)."""
    try:
        return typing.get_type_hints(klass.__init__)
    except Exception:  # an annotation naming something only a type checker imports
        return {}


class _Reader:
    """Reads a TOML table, key by key, with errors that name the file and the section."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, message: str) -> ProbeConfigError:
        return ProbeConfigError(f"{self.source}: {where}: {message}")

    def table(self, raw: Any, where: str) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.error(where, f"must be a table ([{where.strip('[]')}]), got {_type_name(raw)}")
        return raw

    def take(self, raw: Mapping[str, Any], where: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in raw if k not in spec]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, list(spec), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise self.error(where, f"unknown key {key!r}.{hint} Known keys: {', '.join(spec)}")
        out = {}
        for key, default in spec.items():
            if key not in raw:
                if default is REQUIRED:
                    raise self.error(where, f"missing required key {key!r}")
                out[key] = list(default) if isinstance(default, (list, tuple)) else default
                continue
            try:
                out[key] = _check_type(raw[key], default, f"key {key!r}")
            except ProbeConfigError as error:
                raise self.error(where, str(error)) from None
        return out


def _str_list(reader: _Reader, value: Any, where: str, key: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise reader.error(where, f"key {key!r} must be a list of strings, got {value!r}")
    return list(value)


def _split_or_false(reader: _Reader, value: Any, where: str, key: str) -> str | None:
    if value is False or value is None:
        return None
    if value not in SPLIT_NAMES:
        raise reader.error(where, f"key {key!r} must be a split ({', '.join(SPLIT_NAMES)}) or false, got {value!r}")
    return value


def _check_dataset_spec(reader: _Reader, dataset: dict[str, Any]) -> None:
    """``[dataset] spec``: a dataset that comes whole (a folder, a table) is split by ``fractions``."""
    from conceptlab.data import DatasetError, parse_dataset_spec

    if not isinstance(dataset["spec"], str):
        raise reader.error("[dataset]", f"spec must be a string, got {dataset['spec']!r}")
    try:
        kind, _, _ = parse_dataset_spec(dataset["spec"])
    except DatasetError as error:
        raise reader.error("[dataset]", f"spec: {error}") from None
    if kind == "shapesworld":
        raise reader.error("[dataset]", "ShapesWorld has its own splits: give [dataset.sizes] instead of a shapesworld: spec")
    if dataset["sizes"] is not None:
        raise reader.error("[dataset]", "give either spec (with fractions) or sizes (ShapesWorld), not both")
    fractions = reader.table(dataset["fractions"] if dataset["fractions"] is not None else {"train": 0.8, "test": 0.2}, "[dataset.fractions]")
    for split, share in fractions.items():
        if split not in SPLIT_NAMES:
            raise reader.error("[dataset.fractions]", f"unknown split {split!r}; splits are {', '.join(SPLIT_NAMES)}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
            raise reader.error("[dataset.fractions]", f"{split} must be a fraction in (0, 1), got {share!r}")
    if "train" not in fractions:
        raise reader.error("[dataset.fractions]", "missing required key 'train' (the split the model is fitted on)")
    if sum(fractions.values()) > 1 + 1e-9:
        raise reader.error("[dataset.fractions]", f"the fractions sum to {sum(fractions.values()):g} > 1")
    dataset["fractions"] = {s: float(fractions[s]) for s in SPLIT_NAMES if s in fractions}


def parse_probe(raw: Mapping[str, Any], source: str = "<probe>", name: str | None = None) -> ProbeConfig:
    """Validate a probe given as a dict (parsed TOML); ``source`` names it in errors."""
    reader = _Reader(source)
    if not isinstance(raw, Mapping):
        raise ProbeConfigError(f"{source}: a probe is a TOML table, got {_type_name(raw)}")
    sections = {"backbone": REQUIRED, "dataset": REQUIRED, "concepts": REQUIRED, "method": REQUIRED, "evaluation": None}
    top = reader.take(raw, "top level", {"name": name or REQUIRED, "description": "", "seeds": [], **sections})
    seeds = top["seeds"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in seeds) or len(set(seeds)) != len(seeds):
        raise reader.error("top level", f"seeds must be a list of distinct non-negative integers, got {seeds!r}")
    if not top["name"].strip() or any(c in top["name"] for c in "/\\") or top["name"] in (".", ".."):
        raise reader.error("top level", f"name {top['name']!r} must be a non-empty folder name (no slashes)")
    if any(ord(c) < 32 or ord(c) == 127 for c in top["name"]):
        raise reader.error("top level", f"name {top['name']!r} holds a control character; it becomes a folder name")
    if len(top["name"]) > limit("probe_name"):
        try:
            check_limit("probe_name", len(top["name"]), "name")
        except LimitError as error:
            raise reader.error("top level", f"{str(error).replace(', over', ' characters, over', 1)}; it becomes a folder name") from None

    # [backbone]
    backbone = reader.take(reader.table(top["backbone"], "[backbone]"), "[backbone]", {"spec": REQUIRED, "device": "cpu"})
    try:
        scheme, rest = parse_spec(backbone["spec"])
    except ValueError as error:
        raise reader.error("[backbone]", f"spec: {error}") from None
    if scheme == "zoo":
        from conceptlab.zoo import ZOO

        if rest not in ZOO:
            raise reader.error("[backbone]", f"unknown zoo model {rest!r} in spec {backbone['spec']!r}; the zoo has: {', '.join(sorted(ZOO))}")

    # [dataset]
    dataset = reader.take(
        reader.table(top["dataset"], "[dataset]"), "[dataset]",
        {"name": "shapesworld", "seed": 0, "resolution": 64, "label_noise": 0.0, "spurious_strength": 0.9, "sizes": None,
         "spec": "", "fractions": None},
    )
    if dataset["spec"]:
        _check_dataset_spec(reader, dataset)
    elif dataset["sizes"] is None:
        raise reader.error("[dataset]", "missing required key 'sizes' (ShapesWorld split sizes), or give spec = \"folder:PATH\" (any dataset spec)")
    if dataset["name"] != "shapesworld":
        raise reader.error("[dataset]", f"unknown dataset {dataset['name']!r}; probes know: shapesworld (or give spec = \"...\")")
    sizes = reader.table(dataset["sizes"] or {"train": 1}, "[dataset.sizes]")
    for split, size in sizes.items():
        if split not in SPLIT_NAMES:
            raise reader.error("[dataset.sizes]", f"unknown split {split!r}; ShapesWorld has {', '.join(SPLIT_NAMES)}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise reader.error("[dataset.sizes]", f"{split} must be a positive integer, got {size!r}")
        try:
            check_limit("probe_rows", size, f"{split} size")
        except LimitError as error:
            raise reader.error("[dataset.sizes]", str(error)) from None
    _check_dataset_values(reader, dataset)
    if "train" not in sizes:
        raise reader.error("[dataset.sizes]", "missing required key 'train' (the split the model is fitted on)")
    dataset["sizes"] = {} if dataset["spec"] else {s: sizes[s] for s in SPLIT_NAMES if s in sizes}
    available = list(dataset["fractions"] or dataset["sizes"])

    # [concepts]
    concepts_raw = reader.table(top["concepts"], "[concepts]")
    source_name = concepts_raw.get("source", REQUIRED)
    if source_name is REQUIRED:
        raise reader.error("[concepts]", f"missing required key 'source' (one of {', '.join(sorted(CONCEPT_SOURCES))})")
    if source_name not in CONCEPT_SOURCES:
        raise reader.error("[concepts]", f"unknown concept source {source_name!r}; known sources: {', '.join(sorted(CONCEPT_SOURCES))}")
    csource = CONCEPT_SOURCES.entry(source_name)
    concepts = {"source": source_name, **reader.take({k: v for k, v in concepts_raw.items() if k != "source"}, "[concepts]", csource.meta["keys"])}
    for key in ("names", "templates"):
        if key in concepts:
            concepts[key] = _str_list(reader, concepts[key], "[concepts]", key)
    if "split" in concepts and concepts["split"] not in SPLIT_NAMES:
        raise reader.error("[concepts]", f"split must be one of {', '.join(SPLIT_NAMES)}, got {concepts['split']!r}")
    if csource.meta.get("validate"):
        try:
            csource.meta["validate"](concepts)
        except ValueError as error:
            raise reader.error("[concepts]", str(error)) from None
    _check_concept_paths(reader, concepts, source)

    # [method]
    method_raw = reader.take(reader.table(top["method"], "[method]"), "[method]", {"name": REQUIRED, "params": None})
    try:
        klass = METHODS.get(method_raw["name"])
    except RegistryError:
        known = sorted(METHODS.names())
        close = difflib.get_close_matches(method_raw["name"], known, n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise reader.error("[method]", f"unknown method {method_raw['name']!r}.{hint} Known methods: {', '.join(known)}") from None
    name = method_raw["name"]
    defaults = method_params(klass)
    params = reader.take(reader.table(method_raw["params"], "[method.params]"), f"[method.params] of {name}", {k: None for k in defaults})
    params = {k: v for k, v in params.items() if k in (method_raw["params"] or {})}
    hints = _constructor_hints(klass)
    for key, value in params.items():
        try:
            params[key] = _check_type(value, defaults[key], f"key {key!r}")
            if defaults[key] is None:  # the default says nothing of the type: the annotation does
                params[key] = _check_hint(value, hints.get(key), f"key {key!r}")
        except ProbeConfigError as error:
            raise reader.error(f"[method.params] of {name}", str(error)) from None
    method = {"name": name, "params": params}

    # [evaluation]
    evaluation_raw = dict(reader.table(top["evaluation"], "[evaluation]"))
    editing_raw = reader.table(evaluation_raw.pop("editing", None), "[evaluation.editing]")
    evaluation = reader.take(
        evaluation_raw, "[evaluation]",
        {"splits": ["val", "test", "shifted"], "linear_baseline": True, "concept_auroc": "test", "intervention": "test", "per_class": True},
    )
    if dataset["spec"]:  # a dataset split by fractions: the defaults follow the splits it has
        if "splits" not in evaluation_raw:
            evaluation["splits"] = [s for s in available if s != "train"]
        for key in ("concept_auroc", "intervention"):
            if key not in evaluation_raw and evaluation[key] not in available:
                evaluation[key] = False
        if "enabled" not in editing_raw and "shifted" not in available:
            editing_raw = {**editing_raw, "enabled": False}
    evaluation["splits"] = _str_list(reader, evaluation["splits"], "[evaluation]", "splits")
    for split in evaluation["splits"]:
        if split not in SPLIT_NAMES:
            raise reader.error("[evaluation]", f"unknown split {split!r} in splits; ShapesWorld has {', '.join(SPLIT_NAMES)}")
    for key in ("concept_auroc", "intervention"):
        evaluation[key] = _split_or_false(reader, evaluation[key], "[evaluation]", key)
    editing = reader.take(editing_raw, "[evaluation.editing]", {"enabled": True, "concepts": None, "suggest": 4, "renormalize": False, "method": "auto"})
    editing["concepts"] = _str_list(reader, editing["concepts"], "[evaluation.editing]", "concepts")
    if editing["suggest"] < 1 and not editing["concepts"]:
        raise reader.error("[evaluation.editing]", "suggest must be at least 1 when no concepts are given")
    if editing["method"] not in ("auto", "correlation", "agreement"):
        raise reader.error("[evaluation.editing]", f"method must be auto, correlation or agreement, got {editing['method']!r}")

    config = ProbeConfig(
        name=top["name"], description=top["description"], backbone=backbone, dataset=dataset,
        concepts=concepts, method=method, evaluation=evaluation, editing=EditingConfig(**editing), source=source, seeds=tuple(seeds),
    )
    missing = [s for s in config.needed_splits if s not in available]
    if missing:
        raise reader.error("[dataset.sizes]", f"the probe uses split(s) {', '.join(missing)} but gives no size for them")
    return config


def _check_dataset_values(reader: _Reader, dataset: dict[str, Any]) -> None:
    """The ShapesWorld settings a run will construct, checked now rather than after embedding."""
    resolution = dataset["resolution"]
    if resolution < 16:
        raise reader.error("[dataset]", f"resolution must be at least 16 pixels, got {resolution}")
    try:
        check_limit("resolution", resolution, "resolution")
    except LimitError as error:
        raise reader.error("[dataset]", str(error)) from None
    if not 0.0 <= dataset["label_noise"] < 1.0:
        raise reader.error("[dataset]", f"label_noise must be in [0, 1), got {dataset['label_noise']}")
    if not 0.0 <= dataset["spurious_strength"] <= 1.0:
        raise reader.error("[dataset]", f"spurious_strength must be in [0, 1], got {dataset['spurious_strength']}")


#: ``[concepts]`` keys that name a file or folder a run will read
PATH_KEYS = ("path", "vocabulary")


def _check_concept_paths(reader: _Reader, concepts: dict[str, Any], source: str) -> None:
    """Every file a concept source will read exists now (relative paths: beside the probe file),
    and a concept set file holds no more concepts than the ``concepts`` cap."""
    base = Path(source).resolve().parent if source and not source.startswith("<") else Path.cwd()  # as ProbeConfig.base_dir
    for key in PATH_KEYS:
        value = concepts.get(key)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.exists():
            raise reader.error("[concepts]", f"key {key!r}: no such file or folder: {path}")
        if concepts["source"] == "concept_set" and key == "path":
            _check_concept_count(reader, path)


def _check_concept_count(reader: _Reader, path: Path) -> None:
    from conceptlab.concepts.language import load_concept_set

    if not path.is_file():
        raise reader.error("[concepts]", f"key 'path': {path} is not a file")
    try:
        check_limit("json_bytes", path.stat().st_size, f"concept set file {path} size")
        count = len(load_concept_set(path))
    except (LimitError, ValueError, TypeError, OSError) as error:
        raise reader.error("[concepts]", f"key 'path': {error}") from None
    cap = limit("concepts")
    if count > cap:
        raise reader.error(
            "[concepts]", f"the concept set {path} holds {count:,} concepts, over the limit of {cap:,} concepts "
            "(conceptlab.limits 'concepts'; set $CONCEPTLAB_LIMIT_CONCEPTS to change it)",
        )


def parse_any(raw: Mapping[str, Any], source: str = "<probe>", name: str | None = None) -> Any:
    """Validate a probe of any kind: ``kind = "cbm"`` (the default) is :func:`parse_probe`, any
    other kind is read by the plug-in registered for it in ``conceptlab.registry.PROBE_KINDS``."""
    kind = raw.get("kind", "cbm") if isinstance(raw, Mapping) else "cbm"
    if kind == "cbm":
        return parse_probe({k: v for k, v in raw.items() if k != "kind"} if isinstance(raw, Mapping) else raw, source=source, name=name)
    try:
        entry = PROBE_KINDS.get(kind)
    except RegistryError:
        known = ", ".join(["cbm", *sorted(PROBE_KINDS.names())])
        raise ProbeConfigError(f"{source}: top level: unknown probe kind {kind!r}; known kinds: {known}") from None
    return entry.parse(raw, source=source, name=name)


def load_probe(path: str | Path) -> Any:
    """Read and validate a probe TOML file of any kind (nothing is run)."""
    from conceptlab.limits import read_regular_file

    path = Path(path)
    if not path.is_file():
        raise ProbeConfigError(f"no probe file at {path}")
    try:
        raw = tomllib.loads(read_regular_file(path, what="probe file").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ProbeConfigError(f"{path}: not valid TOML: {error}") from None
    except ValueError as error:  # not a regular file, or over the size cap
        raise ProbeConfigError(str(error)) from None
    except RecursionError:
        raise ProbeConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return parse_any(raw, source=str(path), name=path.stem)  # the file name is the default name


def default_out_dir(config: ProbeConfig) -> Path:
    return Path("artifacts") / "probes" / config.name
