"""Broden's own layout (Bau et al. 2017), read as it is distributed: `index.csv` (per image: `image` under
`images/`, its size and segmentation size, then one column per category holding `;`-separated label PNGs,
or label numbers for image-level categories such as scene and texture), `label.csv` (number, name, and the
categories a label occurs in with their counts, `color(289);object(10)`) and the label PNGs, whose pixel
label number is R + 256 G. A label's category is the one it occurs in most, as NetDissect's primary
category."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from app.atlas.concepts.base import Concept
from app.atlas.concepts.label_layers import read_label_png, regions_of
from app.errors import InvalidInput
from app.files import path_inside

META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
_CATEGORY = re.compile(r"^\s*([^()]+?)\s*\((\d+)\)\s*$")


def is_broden(folder: Path) -> bool:
    return (folder / "index.csv").is_file() and (folder / "label.csv").is_file() and (folder / "images").is_dir()


def broden_images(folder: Path) -> list[str] | None:
    """The images `index.csv` lists (relative to `images/`), or None when `folder` is not Broden's: its
    `images/` folder also holds the label PNGs, which are not images of the dataset."""
    if not is_broden(folder):
        return None
    with open(folder / "index.csv", newline="", encoding="utf-8") as rows:
        return [row["image"] for row in csv.DictReader(rows)]


class BrodenConcepts:
    layout = "broden"

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.images = self.folder / "images"
        self.concepts: list[Concept] = []
        self._numbers: dict[int, int] = {}  # Broden label number -> concept index
        with open(self.folder / "label.csv", newline="", encoding="utf-8") as rows:
            for row in csv.DictReader(rows):
                counts = [_CATEGORY.match(part) for part in (row.get("category") or "").split(";")]
                counts = [(int(m.group(2)), m.group(1)) for m in counts if m]
                number = int(row["number"])
                if number == 0 or not counts:
                    continue
                self._numbers[number] = len(self.concepts)
                self.concepts.append(Concept(row["name"], max(counts)[1]))
        if not self.concepts:
            raise InvalidInput(f"{self.folder / 'label.csv'} names no label with a category such as color(12)")
        with open(self.folder / "index.csv", newline="", encoding="utf-8") as rows:
            reader = csv.DictReader(rows)
            self.categories = [c for c in (reader.fieldnames or []) if c not in META_COLUMNS]
            self._rows = {row["image"]: row for row in reader}
        known = set(self.categories)
        missing = {concept.category for concept in self.concepts} - known
        self.categories += sorted(missing)  # a label.csv category with no index column still names concepts

    def regions(self, relpath: str) -> tuple[np.ndarray, list[list[int]]] | None:
        image = path_inside(self.images, relpath).relative_to(self.images).as_posix()
        row = self._rows.get(image)
        if row is None:
            return None
        layers, image_level = [], []
        for category in self.categories:
            for item in (row.get(category) or "").split(";"):
                item = item.strip()
                if not item:
                    continue
                if item.isdigit():
                    if int(item) in self._numbers:
                        image_level.append(self._numbers[int(item)])
                else:
                    layers.append(read_label_png(path_inside(self.images, item)))
        try:
            shape = (int(row["sh"]), int(row["sw"]))
        except (KeyError, ValueError):
            raise InvalidInput(f"index.csv row of {image} has no segmentation size (sh, sw)", image=image) from None
        return regions_of(layers, self._numbers, image_level, shape)
