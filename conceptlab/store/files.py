"""File primitives of the store: atomic writes, hashing with a per-process cache, entry locks."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from pathlib import Path

from conceptlab.utils import TEMP_PREFIX, atomic_write_bytes, human_bytes

__all__ = ["READ_ONLY_ERRNOS", "TEMP_PREFIX", "atomic_write_bytes", "entry_lock", "file_digest", "human_bytes", "sha256_file"]

#: errors that mean "this place cannot be written" (a read-only mount, no permission)
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


# A digest is only cached for files whose mtime is this much older than the moment we hashed them.
# Filesystem timestamps are coarse (a kernel tick, or 2 s on FAT), so a file rewritten within one
# tick of its last write keeps the same (mtime, size); trusting the cache for such "racy" files
# could hide a corruption. Git's index treats racily-clean entries the same way.
_RACY_NS = 2_000_000_000
_DIGESTS: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike, stat: os.stat_result | None = None) -> str:
    """sha256 of a file, cached per process so repeated reads stay cheap.

    The cache key is (path, device, inode, size, mtime, ctime): a file rewritten in place, replaced
    by another, or written and then given back its old mtime (``os.utime`` sets the ctime, which
    no one can set) is hashed again, so a shard corrupted after its first read in a long-running
    process is caught on the next read.
    """
    stat = stat or os.stat(path)
    cache_key = (os.path.abspath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    digest = _DIGESTS.get(cache_key)
    if digest is None:
        hashed_at = time.time_ns()
        digest = sha256_file(path)
        if hashed_at - stat.st_mtime_ns > _RACY_NS:
            _DIGESTS[cache_key] = digest
    return digest


@contextlib.contextmanager
def entry_lock(directory: Path, create: bool = True, shared: bool = False):
    """An advisory lock on one store entry, so two processes never write it at once.

    Exclusive by default; ``shared=True`` takes a shared lock through a read-only handle (a reader
    of a read-only store). With ``create`` the entry folder is made first. After the lock is taken
    the lock file must still be the one in the folder: if a ``delete`` removed the entry while we
    waited, the folder is made again (``create``) and the lock retaken, or ``FileNotFoundError``
    says the entry is gone. The kernel drops the lock when its holder dies, so a killed run never
    leaves the entry locked (forked DataLoader workers share it, and exit soon after their parent
    does). Where ``fcntl`` does not exist (Windows) this is a no-op.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    path = directory / ".lock"
    for _ in range(100):  # each retry follows a delete that won the race; a bounded loop all the same
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        handle = open(path, "rb" if shared else "a+b")  # noqa: SIM115 - closed below on every path
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            held = os.fstat(handle.fileno())
            if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                return
        finally:
            handle.close()
        if not create:
            raise FileNotFoundError(f"store entry {directory} was deleted while waiting for its lock")
    raise OSError(errno.EAGAIN, f"could not lock store entry {directory}: it was deleted and recreated 100 times while waiting")
