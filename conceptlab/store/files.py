"""File primitives of the store: atomic writes, hashing with a per-process cache, entry locks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from pathlib import Path

__all__ = ["TEMP_PREFIX", "atomic_write_bytes", "entry_lock", "file_digest", "human_bytes", "sha256_file"]

#: temporary files start with this; a killed writer can leave them, the next writer removes them
TEMP_PREFIX = ".tmp-"

# A digest is only cached for files whose mtime is this much older than the moment we hashed them.
# Filesystem timestamps are coarse (a kernel tick, or 2 s on FAT), so a file rewritten within one
# tick of its last write keeps the same (mtime, size); trusting the cache for such "racy" files
# could hide a corruption. Git's index treats racily-clean entries the same way.
_RACY_NS = 2_000_000_000
_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike, stat: os.stat_result | None = None) -> str:
    """sha256 of a file, cached per process by (path, mtime, size) so repeated reads stay cheap."""
    stat = stat or os.stat(path)
    cache_key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    digest = _DIGESTS.get(cache_key)
    if digest is None:
        hashed_at = time.time_ns()
        digest = sha256_file(path)
        if hashed_at - stat.st_mtime_ns > _RACY_NS:
            _DIGESTS[cache_key] = digest
    return digest


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part.

    The temp file lives in the same directory so ``os.replace`` is a rename on one filesystem.
    """
    path = Path(path)
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def entry_lock(directory: Path):
    """An exclusive advisory lock on one store entry, so two processes never write it at once.

    The kernel drops the lock when its holder dies, so a killed run never leaves the entry locked
    (forked DataLoader workers share it, and exit soon after their parent does).
    Where ``fcntl`` does not exist (Windows) this is a no-op.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
