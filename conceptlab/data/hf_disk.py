"""``hf:PATH`` -- a Hugging Face ``datasets`` dataset saved with ``save_to_disk``, read offline.

The image column is the first ``Image`` feature (or ``?image=COL``), the label column the first
``ClassLabel`` (or ``?label=COL``; a plain integer or string column also works). A ``DatasetDict``
folder needs ``?split=NAME``. Rows are decoded one at a time, when asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conceptlab.data.image_files import DatasetError, check_classes, files_identity
from conceptlab.registry import register_dataset_kind

__all__ = ["HFDiskDataset", "load_hf_disk"]


class HFDiskDataset:
    """A saved ``datasets.Dataset`` with the ShapesWorld surface: ``ds[i] -> (image, label)``."""

    kind = "hf"

    def __init__(self, path: str | Path, split: str | None = None, image_column: str | None = None, label_column: str | None = None) -> None:
        try:
            import datasets
        except ImportError as error:  # pragma: no cover - datasets is installed with the test extras
            raise DatasetError("hf: datasets need the `datasets` package: pip install datasets") from error
        root = Path(path).expanduser()
        where = f"hf:{path}"
        if not root.is_dir():
            raise DatasetError(f"{where}: no such folder (a folder written by datasets' save_to_disk)")
        try:
            data = datasets.load_from_disk(str(root))
        except Exception as error:  # noqa: BLE001 -- datasets raises several types for a folder it cannot read
            raise DatasetError(f"{where}: not a dataset saved with save_to_disk ({type(error).__name__}: {error})") from error
        if isinstance(data, datasets.DatasetDict):
            if split is None or split not in data:
                raise DatasetError(f"{where}: holds splits {', '.join(data)}; pick one with ?split=NAME")
            data = data[split]
        features = data.features
        image_column = image_column or next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
        if image_column is None or image_column not in features:
            raise DatasetError(f"{where}: no image column (columns: {', '.join(features)}); name it with ?image=COL")
        label_column = label_column or next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
        label_column = label_column or ("label" if "label" in features else None)
        if label_column is None or label_column not in features:
            raise DatasetError(f"{where}: no label column (columns: {', '.join(features)}); name it with ?label=COL")
        raw = data[label_column]
        feature = features[label_column]
        if isinstance(feature, datasets.ClassLabel):
            self.class_names = list(feature.names)
            self.labels = np.asarray(raw, dtype=np.int64)
        elif all(isinstance(v, (int, np.integer)) for v in raw):
            self.labels = np.asarray(raw, dtype=np.int64)
            self.class_names = [str(k) for k in range(int(self.labels.max()) + 1)]
        else:
            self.class_names = sorted({str(v) for v in raw})
            index = {n: k for k, n in enumerate(self.class_names)}
            self.labels = np.array([index[str(v)] for v in raw], dtype=np.int64)
        self.concept_names: list[str] = []
        self.concepts = None
        self.describe = where
        self._data = data.select_columns([image_column])
        self._image_column = image_column
        self._root = root
        check_classes(where, self.labels, self.class_names)
        arrow_files = sorted(p for p in root.rglob("*") if p.is_file())
        self.identity = files_identity("hf", root, arrow_files, extra=f"{split}|{image_column}|{label_column}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self._data[int(index)][self._image_column]
        if image is None:
            raise DatasetError(f"{self.describe}: row {index}: no image")
        return image.convert("RGB"), int(self.labels[index])

    def __repr__(self) -> str:
        return f"HFDiskDataset({self.describe!r}, {len(self)} images, {len(self.class_names)} classes)"


@register_dataset_kind("hf", usage="hf:PATH[?split=NAME&image=COL&label=COL]", description="a Hugging Face dataset saved with save_to_disk")
def load_hf_disk(target: str, params: dict[str, str]) -> HFDiskDataset:
    return HFDiskDataset(target, split=params.get("split"), image_column=params.get("image"), label_column=params.get("label"))
