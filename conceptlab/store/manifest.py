"""The manifest: one JSON file per entry that says what the key means and which shards are done.

Only shards listed here are ever read; the manifest is rewritten atomically after each finished
shard, so after a crash it lists exactly the shards that were completely written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from conceptlab.limits import parse_json, read_regular_file
from conceptlab.store.files import atomic_write_bytes

__all__ = ["FORMAT", "MANIFEST_NAME", "TENSOR_NAME", "Manifest", "ManifestError", "ShardRecord", "shard_name"]

FORMAT = "conceptlab-activation-store/1"
MANIFEST_NAME = "manifest.json"
#: the tensor's name inside every shard file
TENSOR_NAME = "activations"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ManifestError(ValueError):
    """A manifest that cannot be parsed or contradicts itself."""


@dataclass(frozen=True)
class ShardRecord:
    """One finished shard: rows [start, stop) in ``file``, with its byte size and sha256."""

    index: int
    file: str
    start: int
    stop: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """What an entry holds. ``fields`` are the key's inputs, in readable form."""

    key: str
    fields: dict
    backbone_spec: str
    rows: int
    dim: int
    dtype: str
    shard_rows: int
    batch_size: int
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    shards: dict[int, ShardRecord] = field(default_factory=dict)

    @property
    def n_shards(self) -> int:
        return -(-self.rows // self.shard_rows)

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.shard_rows
        return start, min(start + self.shard_rows, self.rows)

    @property
    def complete(self) -> bool:
        return len(self.shards) == self.n_shards

    def missing(self) -> list[int]:
        return [i for i in range(self.n_shards) if i not in self.shards]

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        data = asdict(self)
        data["shards"] = [asdict(self.shards[i]) for i in sorted(self.shards)]
        return {"format": FORMAT, **data, "complete": self.complete}

    def save(self, directory: Path) -> None:
        self.updated = now_iso()
        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(directory / MANIFEST_NAME, text.encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Parse and check a manifest; any inconsistency is a ManifestError (a FIFO or folder in its
        place, an oversized file or absurdly nested JSON included: never a hang or RecursionError)."""
        try:
            data = parse_json(read_regular_file(path, what="manifest"), f"{path}")
        except ValueError as error:
            raise ManifestError(str(error)) from error
        except IsADirectoryError as error:
            raise ManifestError(f"{path} is a folder, not a manifest") from error
        try:
            return cls._from_json(data)
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"{path} is malformed: {error!r}") from error

    @classmethod
    def _from_json(cls, data: dict) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT!r}")
        manifest = cls(
            key=str(data["key"]),
            fields=dict(data["fields"]),
            backbone_spec=str(data["backbone_spec"]),
            rows=int(data["rows"]),
            dim=int(data["dim"]),
            dtype=str(data["dtype"]),
            shard_rows=int(data["shard_rows"]),
            batch_size=int(data["batch_size"]),
            created=str(data["created"]),
            updated=str(data["updated"]),
        )
        if min(manifest.rows, manifest.dim, manifest.shard_rows, manifest.batch_size) <= 0:
            raise ValueError("rows, dim, shard_rows and batch_size must be positive")
        for raw in data["shards"]:
            record = ShardRecord(**{k: type_(raw[k]) for k, type_ in _RECORD_TYPES.items()})
            if record.index in manifest.shards or not 0 <= record.index < manifest.n_shards:
                raise ValueError(f"shard index {record.index} is duplicated or out of range")
            if (record.start, record.stop) != manifest.shard_range(record.index) or record.file != shard_name(record.index):
                raise ValueError(f"shard {record.index} does not match the entry's layout")
            manifest.shards[record.index] = record
        return manifest


_RECORD_TYPES = {"index": int, "file": str, "start": int, "stop": int, "bytes": int, "sha256": str}
