"""Small helpers shared across the library: atomic writes and the conceptlab home folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "conceptlab_home"]


def conceptlab_home() -> Path:
    """Where conceptlab keeps its store and built models: $CONCEPTLAB_HOME or ~/.cache/conceptlab."""
    return Path(os.environ.get("CONCEPTLAB_HOME", Path.home() / ".cache" / "conceptlab")).expanduser()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either its old content or all of the new one.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed over
    the target: a crash mid-write never leaves a half-written file under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
