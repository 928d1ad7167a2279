"""Image datasets an atlas is built on: an ImageFolder-style tree (labels from folder names) or a flat
folder of images. Only listing and fingerprinting happen here; images are decoded during the build."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from app.atlas.concepts import is_concept_folder
from app.atlas.concepts.broden import broden_images
from app.errors import InvalidInput
from app.files import path_inside

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageDataset:
    name: str  # URL- and file-safe: "demo", or the folder's name plus a hash of its absolute path
    root: Path
    files: tuple[str, ...]  # POSIX paths relative to root, sorted; an image's id is its index here
    labels: tuple[str | None, ...]  # the top-level folder of each file, None for files directly in root
    fingerprint: str  # sha256 of every path and size: a changed dataset is a different dataset

    def __len__(self) -> int:
        return len(self.files)

    @property
    def classes(self) -> list[str]:
        return sorted({label for label in self.labels if label is not None})

    def path(self, image_id: int) -> Path:
        return self.root / self.files[image_id]


def scan_folder(root: Path, name: str | None = None) -> ImageDataset:
    """List every image below `root` (by file suffix; unreadable ones are found and counted at build time),
    or the images Broden's index lists. A concept dataset's own folder (app/atlas/concepts) stands for its
    `images/` folder."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise InvalidInput(f"dataset folder {root} does not exist or is not a folder", path=str(root))
    if (root / "images").is_dir() and is_concept_folder(root):
        root = root / "images"  # a concept dataset given by its own folder: its images are the dataset
    listed = broden_images(root.parent)
    if listed is not None:
        files = sorted(file for file in listed if _listed_inside(root, file))
    else:
        files = sorted(
            path.relative_to(root).as_posix()
            for path in root.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not _hidden(path.relative_to(root))
        )
    if not files:
        raise InvalidInput(f"no images (JPEG, PNG, WebP, ...) found under {root}", path=str(root))
    # ImageFolder classes; Broden's first folders are its source datasets, not classes.
    labels = tuple(file.split("/")[0] if "/" in file and listed is None else None for file in files)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file}\t{(root / file).stat().st_size}\n".encode())
    return ImageDataset(
        name=name or dataset_name(root),
        root=root,
        files=tuple(files),
        labels=labels,
        fingerprint=digest.hexdigest(),
    )


def _listed_inside(root: Path, file: str) -> bool:
    """A file an index lists, present and inside `root` (an index's `../x` or `/etc/x` is left out)."""
    try:
        return path_inside(root, file).is_file()
    except InvalidInput:
        return False


def is_dataset_name(name: str) -> bool:
    """Whether `name` could be a dataset's name (what `dataset_name` makes, or `demo`): safe in a path."""
    return re.fullmatch(r"[a-z0-9][a-z0-9-]{0,80}", name) is not None


def dataset_name(root: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:40] or "images"
    return f"{slug}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)

