"""``folder:PATH`` -- torchvision's ImageFolder layout: one sub-folder per class, any image Pillow reads.

Classes are the sub-folder names in sorted order (ImageFolder's), images are the files with an
image ending in each, in sorted order; hidden files and folders are ignored. Options after
``?``: ``on_error=skip`` (leave unreadable images out, with a report), ``content_hash=1``.
"""

from __future__ import annotations

from pathlib import Path

from conceptlab.data.image_files import IMAGE_EXTENSIONS, DatasetError, ImageFileDataset, check_classes
from conceptlab.registry import register_dataset_kind

__all__ = ["FolderDataset", "load_folder"]


class FolderDataset(ImageFileDataset):
    """An ImageFolder-layout dataset (module docstring)."""

    kind = "folder"

    def __init__(self, path: str | Path, on_error: str = "raise", content_hash: bool = False) -> None:
        root = Path(path).expanduser()
        if not root.exists():
            raise DatasetError(f"folder:{path}: no such folder")
        if not root.is_dir():
            raise DatasetError(f"folder:{path}: is a file, not a folder of class sub-folders")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        paths, labels = [], []
        for k, name in enumerate(classes):
            files = sorted(f for f in (root / name).iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS)
            paths += files
            labels += [k] * len(files)
        if not classes:
            loose = [f.name for f in root.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS][:3]
            hint = f" (it holds images such as {', '.join(loose)} directly: put them in one sub-folder per class)" if loose else ""
            raise DatasetError(f"folder:{path}: no class sub-folders{hint}")
        empty = [c for c, k in zip(classes, range(len(classes))) if k not in set(labels)]
        if not paths:
            raise DatasetError(f"folder:{path}: the class sub-folders hold no images (endings Pillow reads: .png, .jpg, .webp, ...)")
        super().__init__(root, paths, labels, classes, on_error=on_error, content_hash=content_hash, describe=f"folder:{path}")
        check_classes(self.describe, self.labels, self.class_names)
        self.empty_classes = empty


@register_dataset_kind("folder", usage="folder:PATH[?on_error=skip]", description="one sub-folder of images per class (torchvision ImageFolder)")
def load_folder(target: str, params: dict[str, str]) -> FolderDataset:
    return FolderDataset(target, on_error=params.get("on_error", "raise"), content_hash=params.get("content_hash", "0") in ("1", "true"))
