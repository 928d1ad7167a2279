"""Fovea's own concept layout, for any images with per-pixel labels (docs/concepts.md):

    my-concepts/
        concepts.csv                  number,name,category   (numbers from 1; 0 in a label map is unlabelled)
        images/<path>                 the images, as any dataset folder
        labels/<category>/<path>.png  per image and category, a label map (grey values, or R + 256 G in RGB)
        image-labels.csv              optional: image,numbers  (image-level labels, `;`-separated)

`<path>` is an image's path under `images/` with its suffix replaced by `.png`; a missing label map leaves
that category unlabelled on that image."""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from app.atlas.concepts.base import Concept
from app.atlas.concepts.label_layers import read_label_png, regions_of
from app.errors import InvalidInput
from app.files import path_inside


def is_label_maps(folder: Path) -> bool:
    return (folder / "concepts.csv").is_file() and (folder / "images").is_dir()


class LabelMapConcepts:
    layout = "label-maps"

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.images = self.folder / "images"
        self.concepts: list[Concept] = []
        self._numbers: dict[int, int] = {}
        with open(self.folder / "concepts.csv", newline="", encoding="utf-8") as rows:
            for line, row in enumerate(csv.DictReader(rows), start=2):
                try:
                    number, name, category = int(row["number"]), row["name"].strip(), row["category"].strip()
                except (KeyError, ValueError, AttributeError, TypeError):
                    raise InvalidInput(f"concepts.csv line {line}: expected number,name,category") from None
                if number < 1 or not name or not category:
                    raise InvalidInput(f"concepts.csv line {line}: numbers start at 1 and every concept needs a "
                                       f"name and a category")
                self._numbers[number] = len(self.concepts)
                self.concepts.append(Concept(name, category))
        if not self.concepts:
            raise InvalidInput(f"{self.folder / 'concepts.csv'} lists no concept: one per line, number,name,category")
        self.categories = list(dict.fromkeys(concept.category for concept in self.concepts))
        self._image_level: dict[str, list[int]] = {}
        if (self.folder / "image-labels.csv").is_file():
            with open(self.folder / "image-labels.csv", newline="", encoding="utf-8") as rows:
                for row in csv.DictReader(rows):
                    numbers = [int(n) for n in (row.get("numbers") or "").split(";") if n.strip().isdigit()]
                    self._image_level[row["image"]] = [self._numbers[n] for n in numbers if n in self._numbers]

    def regions(self, relpath: str) -> tuple[np.ndarray, list[list[int]]] | None:
        image = path_inside(self.images, relpath).relative_to(self.images).as_posix()
        stem = PurePosixPath(image).with_suffix(".png").as_posix()
        layers = [read_label_png(path) for category in self.categories
                  if (path := path_inside(self.folder / "labels", f"{category}/{stem}")).is_file()]
        image_level = self._image_level.get(image, [])
        if not layers and not image_level:
            return None
        shape = None
        if not layers:
            with Image.open(self.images / image) as picture:
                shape = (picture.height, picture.width)
        return regions_of(layers, self._numbers, image_level, shape)
