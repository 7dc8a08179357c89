"""Writing a dataset as a folder or a CSV table, so users see the layouts ``folder:`` and ``csv:`` read.

``export_dataset(ds, out_dir, format="folder")`` writes ``OUT/<class>/<row>.png``;
``format="csv"`` writes ``OUT/images/<row>.png`` and ``OUT/labels.csv`` (columns ``image``,
``label`` = class name, and one 0/1 column per annotated concept). PNG is lossless, so the
images read back are the very pixels written. The folder appears whole or not at all (written
beside it, then renamed).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from conceptlab.data.image_files import DatasetError

__all__ = ["EXPORT_FORMATS", "export_dataset"]

EXPORT_FORMATS = ("folder", "csv")
CSV_NAME = "labels.csv"


def _safe_name(name: str) -> str:
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise DatasetError(f"class name {name!r} cannot be a folder name")
    return name


def export_dataset(dataset, out_dir: str | os.PathLike, format: str = "folder", progress: bool = True) -> Path:  # noqa: A002
    """Write ``dataset`` (``ds[i] -> (image, label)``, ``class_names``) to ``out_dir``; returns it."""
    if format not in EXPORT_FORMATS:
        raise DatasetError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    out = Path(out_dir).expanduser()
    if out.exists():
        raise DatasetError(f"{out} exists already; export writes a new folder (remove it or pick another name)")
    out.parent.mkdir(parents=True, exist_ok=True)
    class_names = [str(c) for c in dataset.class_names]
    concept_names = list(getattr(dataset, "concept_names", None) or [])
    concepts = getattr(dataset, "concepts", None) if concept_names else None
    width = max(5, len(str(len(dataset) - 1)))
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        rows = []
        for i in tqdm(range(len(dataset)), desc=f"export {format}", disable=not progress, unit="img"):
            image, label = dataset[i]
            name = class_names[int(label)]
            if format == "folder":
                relative = Path(_safe_name(name)) / f"{i:0{width}d}.png"
            else:
                relative = Path("images") / f"{i:0{width}d}.png"
            (temp / relative).parent.mkdir(parents=True, exist_ok=True)
            image.save(temp / relative, format="PNG")
            rows.append((relative.as_posix(), name))
        if format == "csv":
            values = None if concepts is None else np.asarray(concepts).astype(int)
            with open(temp / CSV_NAME, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["image", "label", *concept_names])
                for i, (relative, name) in enumerate(rows):
                    writer.writerow([relative, name, *([] if values is None else values[i].tolist())])
        os.replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out
