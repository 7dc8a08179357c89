"""Saving and loading concept bottleneck models: ``config.json`` + ``model.safetensors`` + ``bank/``.

The folder holds the fitted bank (``bank/``, a :class:`~conceptlab.concepts.ConceptBank`), the
head's W and b (and residual) with the head's own learned tensors (``head.*``) in one safetensors
file, the layer's artifacts where it has any (``layer/``, e.g. DN-CBM's SAE in sae-lens's format),
and a JSON config: the registered method name, its parameters, class and concept names, edits,
provenance, and the layer's and head's JSON state. No pickles: a loaded model runs no code from
the folder, and the class comes from conceptlab's method registry by name.

Nothing in the folder is trusted blindly (format 3): the config records the sha256 of every other
file (verified on load, as the store verifies its shards), the shape of every tensor (checked
against the class and concept counts), and the layer's and head's JSON state may only set learned
attributes (names ending in ``_`` that are not the model's weights, names or anything the class
defines), so a hand-edited config cannot relabel the concepts ``explain()`` reports. Every tensor
must be finite. Format 2 folders (no checksums) still load, with all the other checks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from conceptlab.concepts.bank import ConceptBank, file_checksums, read_json, read_tensors, verify_checksums, write_json, write_tensors
from conceptlab.concepts.concept import jsonable
from conceptlab.registry import METHODS, RegistryError

__all__ = ["CBM_FORMAT", "CBM_FORMAT_VERSION", "load_model", "save_model"]

CBM_FORMAT = "conceptlab.ConceptBottleneckModel"
CBM_FORMAT_VERSION = 3  # 3: sha256 of every file and the tensor shapes in config.json
READABLE_VERSIONS = (2, 3)
CONFIG_FILE = "config.json"
TENSOR_FILE = "model.safetensors"
BANK_DIR = "bank"
LAYER_DIR = "layer"
HEAD_PREFIX = "head."


def _json_params(model: Any) -> dict[str, Any]:
    skip = ("bank", *model.artifact_params)
    return jsonable({k: v for k, v in model.get_params(deep=False).items() if k not in skip})


def save_model(model: Any, directory: str | os.PathLike) -> Path:
    """Write a fitted model into ``directory`` (created); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": model.weight_, "bias": model.bias_}
    if model.has_residual:
        tensors.update(residual_weight=model.residual_weight_, residual_bias=model.residual_bias_)
    tensors.update({HEAD_PREFIX + k: v for k, v in model.head_.tensors().items()})
    config = {
        "format": CBM_FORMAT,
        "format_version": CBM_FORMAT_VERSION,
        "method": model.method_name(),
        "model_class": type(model).__name__,
        "params": _json_params(model),
        "class_names": model.class_names_,
        "concept_names": model.concept_names_,
        "tensors": sorted(tensors),
        "tensor_shapes": {k: list(v.shape) for k, v in sorted(tensors.items())},
        "edits": jsonable(model.edits_),
        "provenance": model.provenance_,
        "layer_state": jsonable(model.concept_layer_.state()),
        "head_state": jsonable(model.head_.state()),
    }
    model.bank_.save(directory / BANK_DIR)
    model.concept_layer_.save_artifacts(directory / LAYER_DIR)
    write_tensors(directory / TENSOR_FILE, tensors, metadata={"format": CBM_FORMAT})
    written = [p.relative_to(directory).as_posix() for sub in (BANK_DIR, LAYER_DIR) if (directory / sub).is_dir()
               for p in sorted((directory / sub).rglob("*")) if p.is_file()]
    config["files"] = file_checksums(directory, [TENSOR_FILE, *written])
    write_json(directory / CONFIG_FILE, config)  # last: it vouches for every other file
    return directory


#: attributes a saved layer/head state may never set: what the loader itself restores and checks
_PROTECTED = frozenset({
    "weight_", "bias_", "residual_weight_", "residual_bias_", "bank_", "concept_names_", "class_names_",
    "n_classes_", "classes_", "concept_layer_", "head_", "edits_", "provenance_", "sae_",
})
_LEARNED = re.compile(r"[a-z][a-z0-9_]*_")


def _check_state(state: Any, target: Any, where: str) -> dict[str, Any]:
    """``state`` when no key can overwrite what it must not, on ``target`` (a fresh head or layer).

    Never: a private name, an attribute the loader owns (weights, names, bank), or anything the
    class defines (methods, properties). A head's ``restore`` sets its state keys as attributes, so
    a head's keys must moreover be learned attributes (``name_``) -- or name a sub-head (a residual
    head keeps its inner head's state under ``inner``), whose state is checked in turn. A layer's
    ``restore`` reads only the keys it knows, so its other keys are plain data.
    """
    from conceptlab.cbm.heads.base import Head

    if state is None:
        return {}
    if not isinstance(state, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(state).__name__}")
    for key, value in state.items():
        if isinstance(key, str) and isinstance(target, Head):
            nested = getattr(target, "head", None) if key == "inner" else None
            if isinstance(nested, Head):
                _check_state(value, nested, f"{where}.{key}")
                continue
        allowed = (
            isinstance(key, str) and key.isidentifier() and not key.startswith("_") and key not in _PROTECTED
            and not hasattr(type(target), key) and (not isinstance(target, Head) or _LEARNED.fullmatch(key) is not None)
        )
        if not allowed:
            raise ValueError(
                f"{where} tries to set {key!r}, which is not learned state of a {type(target).__name__} "
                "(the config was edited or corrupted); save the model again"
            )
    return state


def _method_class(config: dict[str, Any], config_path: Path) -> type:
    name = config.get("method")
    if name:
        try:
            return METHODS.get(name)
        except RegistryError as error:
            raise ValueError(f"{config_path} was saved by method {name!r}: {error}") from None
    by_class = [e.obj for e in METHODS.entries() if e.obj.__name__ == config.get("model_class")]
    if not by_class:
        raise ValueError(f"{config_path} names no registered method (model class {config.get('model_class')!r})")
    return by_class[0]


def load_model(directory: str | os.PathLike, base: type) -> Any:
    """Read a model written by :func:`save_model`; it must be a ``base`` (or a subclass).

    Checks, in order: the config's format; the sha256 of every file it lists (format 3); the bank;
    tensor names, shapes (against the class and concept counts, and the recorded shapes) and
    finiteness; the parameters; the layer's and head's state keys. Each failure names the file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no saved model directory at {directory}")
    config_path = directory / CONFIG_FILE
    config = read_json(config_path, "model config")
    if config.get("format") != CBM_FORMAT:
        raise ValueError(f"{config_path} is not a conceptlab CBM config (format {config.get('format')!r})")
    try:
        version = int(config.get("format_version", -1))
    except (TypeError, ValueError):
        raise ValueError(f"{config_path} is corrupt: bad format_version {config.get('format_version')!r}") from None
    if version > CBM_FORMAT_VERSION:
        raise ValueError(f"{config_path} has format_version {version}; this conceptlab reads up to {CBM_FORMAT_VERSION}")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{config_path} was written by an older conceptlab (format_version {version}); refit the model and save it again")
    if version >= 3:
        if "files" not in config:
            raise ValueError(f"{config_path} is corrupt: format_version {version} lists its files' checksums, this one has none")
        verify_checksums(directory, config["files"], config_path)
    klass = _method_class(config, config_path)
    if not issubclass(klass, base):
        raise TypeError(f"{directory} holds a {klass.__name__}, not a {base.__name__}")
    bank = ConceptBank.load(directory / BANK_DIR)
    try:
        params = dict(config["params"])
        class_names = [str(c) for c in config["class_names"]]
        concept_names = list(config["concept_names"])
        names = config.get("tensors", ["weight", "bias"])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError("'tensors' must be a list of names")
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{config_path} is corrupt: missing or bad {error}") from error
    if concept_names != bank.names:
        raise ValueError(f"{config_path} lists concepts that differ from the bank in {directory / BANK_DIR}")
    if len(class_names) < 2 or len(set(class_names)) != len(class_names):
        raise ValueError(f"{config_path} is corrupt: class_names must be at least 2 unique names")
    tensors = read_tensors(directory / TENSOR_FILE, required=names)
    _check_shapes(tensors, config, len(class_names), bank, directory / TENSOR_FILE)
    unknown = sorted(set(params) - set(klass._get_param_names()))
    if unknown:
        raise ValueError(f"{config_path} has parameters {unknown} that {klass.__name__} does not take")
    model = klass(bank=bank, **params)
    try:
        fresh_layer = model._make_layer()
        layer_state = _check_state(config.get("layer_state"), fresh_layer, f"{config_path} layer_state")
        layer = fresh_layer.restore(bank, dict(layer_state))
        layer.load_artifacts(directory / LAYER_DIR)
        head_tensors = {k[len(HEAD_PREFIX):]: v.float() for k, v in tensors.items() if k.startswith(HEAD_PREFIX)}
        fresh_head = model._make_head(len(bank), len(class_names))
        head_state = _check_state(config.get("head_state"), fresh_head, f"{config_path} head_state")
        head = fresh_head.restore(dict(head_state), head_tensors)
    except (KeyError, TypeError) as error:  # a state that restore cannot read
        raise ValueError(f"{config_path} is corrupt: the saved layer or head state is unreadable ({error!r})") from error
    head.weight_ = tensors["weight"].float()
    head.bias_ = tensors["bias"].float()
    head.residual_weight_ = tensors["residual_weight"].float() if "residual_weight" in tensors else None
    head.residual_bias_ = tensors["residual_bias"].float() if "residual_bias" in tensors else None
    model.class_names_ = class_names
    model.n_classes_ = len(class_names)
    model.classes_ = torch.arange(len(class_names)).numpy()
    model._set_fitted(layer, head)
    model.edits_ = list(config.get("edits") or [])
    model.provenance_ = dict(config.get("provenance") or {})
    model._restored()
    return model


def _check_shapes(tensors: dict[str, torch.Tensor], config: dict[str, Any], n_classes: int, bank: ConceptBank, path: Path) -> None:
    """Every tensor has the shape the model needs and the shape the config recorded at save time."""
    expected = {"weight": (n_classes, len(bank)), "bias": (n_classes,)}
    if "residual_weight" in tensors or "residual_bias" in tensors:
        expected.update(residual_weight=(n_classes, bank.dim), residual_bias=(n_classes,))
    recorded = config.get("tensor_shapes")
    if recorded is not None and not isinstance(recorded, dict):
        raise ValueError(f"{path.parent / CONFIG_FILE} is corrupt: 'tensor_shapes' must be a table")
    for name, tensor in tensors.items():
        shape = tuple(tensor.shape)
        want = expected.get(name)
        if want is None and recorded is not None:
            want = tuple(recorded.get(name, ())) if name in recorded else None
            if want is None:
                raise ValueError(f"{path} holds a tensor {name!r} that {path.parent / CONFIG_FILE} does not list")
        if want is not None and shape != want:
            raise ValueError(f"{path} holds {name!r} of shape {shape}, expected {want} ({n_classes} classes, {len(bank)} concepts of dimension {bank.dim})")
        if recorded is not None and name in recorded and tuple(recorded[name]) != shape:
            raise ValueError(f"{path} holds {name!r} of shape {shape}, but {path.parent / CONFIG_FILE} recorded {tuple(recorded[name])}")
    missing = [n for n in expected if n not in tensors]
    if missing:
        raise ValueError(f"{path} is corrupt: it lacks {', '.join(missing)}")
