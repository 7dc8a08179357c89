"""File primitives of the store: atomic writes, hashing with a per-process cache, entry locks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

from conceptlab.utils import TEMP_PREFIX, atomic_write_bytes, human_bytes

__all__ = ["TEMP_PREFIX", "atomic_write_bytes", "entry_lock", "file_digest", "human_bytes", "sha256_file"]


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
