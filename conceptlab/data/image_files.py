"""Datasets of image files (a folder, a CSV table): lazy, identified by their files, with clear errors.

:class:`ImageFileDataset` holds a list of image paths, integer labels, class names and optional
concept annotations; no image is opened before ``ds[i]`` asks for it, so a 50,000-image folder
costs a list of paths. Its ``identity`` (part of every activation-store key) hashes the file list
with sizes and modification times, or the files' bytes with ``content_hash=True``, so the key
changes when a file does.

Bad images: ``on_error="raise"`` (the default) makes ``ds[i]`` fail with the row and the file;
``on_error="skip"`` opens every image once when the dataset is built, drops the unreadable ones
and lists them in ``skipped`` (row, file, reason) -- a report, not a silent loss.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "DatasetError", "ImageFileDataset", "check_classes", "files_identity"]


def _image_extensions() -> frozenset[str]:
    Image.init()  # registers every format Pillow can read
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(e.lower() for e in readable)


#: file endings Pillow can open (``.png``, ``.jpg``, ``.webp``, ``.bmp``, ``.tif``, ...)
IMAGE_EXTENSIONS = _image_extensions()
ON_ERROR = ("raise", "skip")


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message names the file, row or column."""


def files_identity(kind: str, root: Path, paths: Sequence[Path], extra: str = "", content_hash: bool = False) -> str:
    """``kind:root:n=N:files=<sha256>``: the hash covers each file's path relative to ``root`` and
    its size and modification time (or its bytes with ``content_hash``), and ``extra``."""
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(os.path.relpath(path, root).encode())
        if content_hash:
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
        else:
            stat = os.stat(path)
            digest.update(f"|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    mode = "content" if content_hash else "stat"
    return f"{kind}:{Path(root).resolve()}:n={len(paths)}:{mode}={digest.hexdigest()[:24]}"


class ImageFileDataset:
    """Images read from files on demand: ``ds[i] -> (PIL RGB image, label)``.

    Attributes: ``paths``, ``labels`` (int64), ``class_names``, ``concept_names`` and ``concepts``
    (bool, N × C; unknown entries are False and False in ``concept_known``) where annotated,
    ``skipped`` (what ``on_error="skip"`` dropped) and ``identity``.
    """

    kind = "files"

    def __init__(
        self,
        root: Path,
        paths: Sequence[Path],
        labels: Sequence[int],
        class_names: Sequence[str],
        concepts: np.ndarray | None = None,
        concept_names: Sequence[str] | None = None,
        concept_known: np.ndarray | None = None,
        on_error: str = "raise",
        content_hash: bool = False,
        describe: str = "",
    ) -> None:
        if on_error not in ON_ERROR:
            raise DatasetError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.root = Path(root)
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = [str(c) for c in class_names]
        self.concept_names = list(concept_names or [])
        self.concepts = concepts
        self.concept_known = concept_known
        self.skipped: list[dict[str, Any]] = []
        if on_error == "skip":
            self._drop_unreadable()
        if not self.paths:
            raise DatasetError(f"{describe or self.root}: no readable images")
        self._content_hash = content_hash
        self._identity: str | None = None
        self.describe = describe or str(self.root)

    def _drop_unreadable(self) -> None:
        keep = []
        for row, path in enumerate(self.paths):
            try:
                with Image.open(path) as image:
                    image.convert("RGB")
            except Exception as error:  # noqa: BLE001 -- every unreadable file is reported, whatever Pillow raised
                self.skipped.append({"row": row, "file": str(path), "reason": f"{type(error).__name__}: {error}"})
            else:
                keep.append(row)
        if self.skipped:
            self.paths = [self.paths[i] for i in keep]
            self.labels = self.labels[keep]
            if self.concepts is not None:
                self.concepts = self.concepts[keep]
            if self.concept_known is not None:
                self.concept_known = self.concept_known[keep]

    @property
    def identity(self) -> str:
        """Names exactly these images (see the module docstring); computed once."""
        if self._identity is None:
            extra = "|".join([*self.class_names, "#", *map(str, self.labels.tolist())])
            self._identity = files_identity(self.kind, self.root, self.paths, extra=extra, content_hash=self._content_hash)
        return self._identity

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except Exception as error:  # noqa: BLE001 -- the row and file matter more than Pillow's exception type
            raise DatasetError(
                f"{self.describe}: row {index % len(self)}: cannot read image {path} ({type(error).__name__}: {error}); "
                "fix or remove the file, or load the dataset with on_error=\"skip\" to leave it out with a report"
            ) from error
        return rgb, int(self.labels[index])

    def __repr__(self) -> str:
        annotated = f", {len(self.concept_names)} concepts" if self.concept_names else ""
        return f"{type(self).__name__}({self.describe!r}, {len(self)} images, {len(self.class_names)} classes{annotated})"


def check_classes(describe: str, labels: np.ndarray, class_names: Sequence[str]) -> None:
    """A classifier's dataset needs at least two classes with images."""
    present = np.unique(labels)
    if len(class_names) < 2 or len(present) < 2:
        found = ", ".join(class_names) or "none"
        raise DatasetError(f"{describe}: a dataset for classification needs at least two classes; found {len(present)} ({found})")
