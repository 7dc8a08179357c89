"""Documented caps on sizes, checked when an input is validated (before any work starts).

Every cap has a name, a default and an environment variable that raises (or lowers) it::

    from conceptlab.limits import LIMITS, check_limit
    check_limit("resolution", 4096, "ShapesWorld resolution")
    # LimitError: ShapesWorld resolution is 4096, over the limit of 1024 pixels
    #   (conceptlab.limits "resolution"; set $CONCEPTLAB_LIMIT_RESOLUTION to change it)

| name | default | what it bounds |
|---|---|---|
| ``dataset_rows`` | 10¹⁰ | rows of a ShapesWorld split (constructing one is O(1); rows are drawn on demand) |
| ``resolution`` | 1024 | ShapesWorld image side in pixels (a 1024-px image takes ~1.5 s to draw; 4096 px took 240 s) |
| ``probe_rows`` | 10⁶ | images per split of a probe (a probe keeps every split's embeddings in memory) |
| ``concepts`` | 100 000 | concepts in one concept set or bank that a probe encodes |
| ``probe_name`` | 100 | characters in a probe name (it becomes a folder name) |
| ``llm_response_bytes`` | 1 MiB | bytes of one LLM server answer (an answer to ``max_tokens=256`` is a few KiB) |
| ``json_bytes`` | 64 MiB | bytes of a JSON file conceptlab reads (configs, manifests, caches) |

This module is a leaf (it imports nothing of conceptlab), so every layer can use it. It also holds
the two readers every layer needs for files it did not write: :func:`read_regular_file` (refuses
FIFOs, devices and oversized files instead of hanging or filling memory) and :func:`parse_json`
(turns ``RecursionError`` on absurdly nested JSON into a ``ValueError``).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LIMITS", "Limit", "LimitError", "check_limit", "limit", "parse_json", "read_regular_file"]


class LimitError(ValueError):
    """A size over one of the documented caps; the message names the cap and how to change it."""


@dataclass(frozen=True)
class Limit:
    name: str
    default: int
    unit: str
    description: str

    @property
    def env(self) -> str:
        return f"CONCEPTLAB_LIMIT_{self.name.upper()}"

    @property
    def value(self) -> int:
        """The default, or ``$CONCEPTLAB_LIMIT_<NAME>`` when that is set to a positive integer."""
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise LimitError(f"${self.env} must be a positive integer, got {raw!r}") from None
        if value <= 0:
            raise LimitError(f"${self.env} must be a positive integer, got {raw!r}")
        return value


LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit("dataset_rows", 10**10, "rows", "rows of a ShapesWorld split"),
        Limit("resolution", 1024, "pixels", "ShapesWorld image side"),
        Limit("probe_rows", 10**6, "images", "images per split of a probe"),
        Limit("concepts", 100_000, "concepts", "concepts in one concept set or bank a probe encodes"),
        Limit("probe_name", 100, "characters", "characters in a probe name"),
        Limit("llm_response_bytes", 1 << 20, "bytes", "bytes of one LLM server answer"),
        Limit("json_bytes", 64 << 20, "bytes", "bytes of a JSON file conceptlab reads"),
    )
}


def limit(name: str) -> int:
    """The current value of cap ``name``."""
    return LIMITS[name].value


def check_limit(name: str, value: int, what: str) -> int:
    """``value`` when it is within cap ``name``; else a :class:`LimitError` naming ``what``, the cap
    and the environment variable that changes it."""
    cap = LIMITS[name]
    bound = cap.value
    if value > bound:
        raise LimitError(
            f"{what} is {value:,}, over the limit of {bound:,} {cap.unit} "
            f"(conceptlab.limits {name!r}; set ${cap.env} to change it)"
        )
    return value


def read_regular_file(path: str | os.PathLike, max_bytes: int | None = None, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (default: the ``json_bytes`` cap).

    A FIFO, socket or device in place of the file is an error, not a read that blocks forever; the
    file is opened without following a FIFO's writer (``O_NONBLOCK``) and checked after opening, so
    a swap between the check and the read cannot slip through. Missing: ``FileNotFoundError``.
    """
    path = Path(path)
    bound = limit("json_bytes") if max_bytes is None else int(max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} {path} is not a regular file (a FIFO, socket, device or folder); refusing to read it")
        if info.st_size > bound:
            raise LimitError(f"{what} {path} is {info.st_size:,} bytes, over the limit of {bound:,} bytes")
        chunks, total = [], 0
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            total += len(block)
            if total > bound:  # grew while we read
                raise LimitError(f"{what} {path} is over the limit of {bound:,} bytes")
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def parse_json(data: bytes | str, what: str = "JSON") -> Any:
    """``json.loads`` whose every failure is a ``ValueError`` naming ``what``: bad syntax, bad
    UTF-8, or nesting so deep that the parser would raise ``RecursionError``."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        return json.loads(text)
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} is not UTF-8 text: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} is not valid JSON: {error}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to be a conceptlab file") from None
