"""``csv:PATH`` -- a table with an image path column, a label column and optional concept columns.

Image paths are relative to the table's folder (absolute paths are kept). Concept columns hold
0/1 (or true/false, yes/no); an empty cell means "unknown" and is recorded in ``concept_known``.
Column roles: ``image`` (default ``image``), ``label`` (default ``label``), ``concepts`` (a comma
list; by default every other column). Labels are all integers or all names; names become the
classes in sorted order, integers the classes "0" .. "K-1".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conceptlab.data.image_files import DatasetError, ImageFileDataset, check_classes
from conceptlab.registry import register_dataset_kind

__all__ = ["CSVDataset", "load_csv"]

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


class CSVDataset(ImageFileDataset):
    """A table-backed image dataset (module docstring)."""

    kind = "csv"

    def __init__(
        self,
        path: str | Path,
        image_column: str = "image",
        label_column: str = "label",
        concept_columns: list[str] | None = None,
        on_error: str = "raise",
        content_hash: bool = False,
    ) -> None:
        import pandas as pd

        table_path = Path(path).expanduser()
        where = f"csv:{path}"
        if not table_path.is_file():
            raise DatasetError(f"{where}: no such file")
        try:
            frame = pd.read_csv(table_path, dtype=str, keep_default_na=False)
        except Exception as error:  # noqa: BLE001 -- pandas raises several types for a bad table
            raise DatasetError(f"{where}: cannot read the table ({type(error).__name__}: {error})") from error
        for role, column in (("image", image_column), ("label", label_column)):
            if column not in frame.columns:
                raise DatasetError(f"{where}: no {role} column {column!r}; the columns are {', '.join(frame.columns)} (set it with ?{role}=NAME)")
        if frame.empty:
            raise DatasetError(f"{where}: the table has no rows")
        if concept_columns is None:
            concept_columns = [c for c in frame.columns if c not in (image_column, label_column)]
        missing = [c for c in concept_columns if c not in frame.columns]
        if missing:
            raise DatasetError(f"{where}: no concept column(s) {', '.join(map(repr, missing))}; the columns are {', '.join(frame.columns)}")
        labels, class_names = _labels(frame[label_column].tolist(), where, label_column)
        base = table_path.parent
        paths = []
        for row, text in enumerate(frame[image_column].tolist()):
            if not text.strip():
                raise DatasetError(f"{where}: row {row + 2}: empty {image_column!r} cell")
            file = Path(text).expanduser()
            file = file if file.is_absolute() else base / file
            if not file.is_file():
                raise DatasetError(f"{where}: row {row + 2}: image file {file} does not exist")
            paths.append(file)
        concepts = known = None
        if concept_columns:
            concepts = np.zeros((len(frame), len(concept_columns)), dtype=bool)
            known = np.ones_like(concepts)
            for j, column in enumerate(concept_columns):
                for row, cell in enumerate(frame[column].tolist()):
                    value = cell.strip().lower()
                    if value == "":
                        known[row, j] = False
                    elif value in _TRUE:
                        concepts[row, j] = True
                    elif value not in _FALSE:
                        raise DatasetError(f"{where}: row {row + 2}, column {column!r}: {cell!r} is not 0/1 (or empty for unknown)")
        super().__init__(base, paths, labels, class_names, concepts=concepts, concept_names=concept_columns,
                         concept_known=known, on_error=on_error, content_hash=content_hash, describe=where)
        check_classes(self.describe, self.labels, self.class_names)


def _labels(values: list[str], where: str, column: str) -> tuple[np.ndarray, list[str]]:
    blank = [i for i, v in enumerate(values) if not v.strip()]
    if blank:
        raise DatasetError(f"{where}: row {blank[0] + 2}: empty label in column {column!r}")
    numeric = [v.strip().lstrip("-").isdigit() for v in values]
    if all(numeric):
        ints = np.array([int(v) for v in values], dtype=np.int64)
        if ints.min() < 0:
            raise DatasetError(f"{where}: column {column!r}: integer labels must be >= 0, found {ints.min()}")
        return ints, [str(k) for k in range(int(ints.max()) + 1)]
    if any(numeric):
        first_int = values[numeric.index(True)]
        first_name = values[numeric.index(False)]
        raise DatasetError(f"{where}: column {column!r} mixes integer labels ({first_int!r}) and class names ({first_name!r}); use one kind")
    names = sorted({v.strip() for v in values})
    index = {n: k for k, n in enumerate(names)}
    return np.array([index[v.strip()] for v in values], dtype=np.int64), names


@register_dataset_kind(
    "csv", usage="csv:PATH[?image=COL&label=COL&concepts=A,B&on_error=skip]",
    description="a table of image paths (relative to it), labels and optional 0/1 concept columns",
)
def load_csv(target: str, params: dict[str, str]) -> CSVDataset:
    concepts = params.get("concepts")
    return CSVDataset(
        target, image_column=params.get("image", "image"), label_column=params.get("label", "label"),
        concept_columns=[c for c in concepts.split(",") if c] if concepts is not None else None,
        on_error=params.get("on_error", "raise"), content_hash=params.get("content_hash", "0") in ("1", "true"),
    )
