"""Reading the TOML of a probe kind (``kind = "..."`` files): one set of rules for every plug-in in
``conceptlab/experiments/kinds/``, so each kind only declares its sections and their defaults.

- :func:`read_header` -- unknown top-level keys and the probe's name;
- :func:`read_section` -- a ``[section]`` table against its defaults: unknown keys, types (an int
  where a float is expected is accepted and converted; booleans are never numbers; a list must be
  non-empty with items of the default's item type), per-key validators for the odd ones;
- :func:`check_spec` and :func:`check_choice` -- a model spec, and a value among allowed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from conceptlab.experiments.config import ProbeConfigError

__all__ = ["check_choice", "check_spec", "read_header", "read_section"]

#: a validator for one key: value -> (accepted, the value to keep)
Validator = Callable[[Any], tuple[bool, Any]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _typed(value: Any, default: Any) -> tuple[bool, Any]:
    if isinstance(default, bool):
        return isinstance(value, bool), value
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(default, float):
        return (True, float(value)) if _is_number(value) else (False, value)
    if isinstance(default, list):
        if not isinstance(value, list) or not value:
            return False, value
        if default and isinstance(default[0], float):
            return (True, [float(v) for v in value]) if all(_is_number(v) for v in value) else (False, value)
        inner = type(default[0]) if default else str
        return all(isinstance(v, inner) and not (inner is int and isinstance(v, bool)) for v in value), value
    return isinstance(value, type(default)), value


def read_section(
    raw: Mapping[str, Any], key: str, defaults: Mapping[str, Any], source: str, validators: Mapping[str, Validator] | None = None,
) -> dict[str, Any]:
    """``raw[key]`` checked against ``defaults`` and filled with them; a clear ProbeConfigError
    names the file, the section and the key of anything wrong."""
    given = raw.get(key, {})
    if not isinstance(given, Mapping):
        raise ProbeConfigError(f"{source}: [{key}] must be a table, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ProbeConfigError(f"{source}: [{key}]: unknown key(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    out = dict(defaults)
    for name, value in given.items():
        check = (validators or {}).get(name)
        ok, kept = check(value) if check else _typed(value, defaults[name])
        if not ok:
            raise ProbeConfigError(f"{source}: [{key}] {name} = {value!r} has the wrong type (expected like {defaults[name]!r})")
        out[name] = kept
    return out


def read_header(raw: Mapping[str, Any], top_level: Iterable[str], source: str, name: str | None) -> str:
    """Refuse unknown top-level keys; the probe's name (``name =``, else the file's stem)."""
    known = set(top_level)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProbeConfigError(f"{source}: top level: unknown key(s) or section(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    probe_name = raw.get("name", name)
    if not isinstance(probe_name, str) or not probe_name.strip():
        raise ProbeConfigError(f"{source}: top level: name must be a non-empty string")
    return probe_name


def check_spec(spec: str, source: str, where: str = "[model] spec") -> None:
    """A backbone / model spec that parses (its scheme is registered)."""
    from conceptlab.backbones import parse_spec

    try:
        parse_spec(spec)
    except ValueError as error:
        raise ProbeConfigError(f"{source}: {where}: {error}") from None


def check_choice(value: Any, allowed: Iterable[str], where: str, source: str) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ProbeConfigError(f"{source}: {where} = {value!r}; choose one of {', '.join(allowed)}")
