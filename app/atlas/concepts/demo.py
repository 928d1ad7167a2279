"""The demo's concepts, from a split written by `app/demo/dataset.py`: each image's instance map
(`masks/<index>.png`) and its scene in `scenes.jsonl`. Every pixel has a colour and a texture; a shape's
pixels have its kind and `region:object`, the background's `region:background`."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import numpy as np
from PIL import Image

from app.atlas.concepts.base import Concept
from app.demo.scenes import COLOURS, SHAPE_KINDS, TEXTURES
from app.files import path_inside

SCENES = "scenes.jsonl"
CATEGORIES = ["shape", "colour", "texture", "region"]
CONCEPTS = ([Concept(kind, "shape") for kind in SHAPE_KINDS] + [Concept(c, "colour") for c in COLOURS]
            + [Concept(t, "texture") for t in TEXTURES] + [Concept("object", "region"),
                                                          Concept("background", "region")])
_NUMBER = {concept.id: i for i, concept in enumerate(CONCEPTS)}


def is_demo(folder: Path) -> bool:
    return (folder / SCENES).is_file() and (folder / "images").is_dir()


class DemoConcepts:
    layout = "demo"
    concepts = CONCEPTS
    categories = CATEGORIES

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.images = self.folder / "images"
        self._scenes: dict[str, dict] = {}
        with open(self.folder / SCENES, encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    record = json.loads(line)
                    self._scenes[record["image"]] = record

    def regions(self, relpath: str) -> tuple[np.ndarray, list[list[int]]] | None:
        # Only a scene's own mask file is opened: `relpath` is a key, folded as a path but never opened.
        record = self._scenes.get(posixpath.normpath(posixpath.join("images", relpath)))
        if record is None:
            return None
        scene = record["scene"]
        with Image.open(path_inside(self.folder, record["mask"])) as mask:
            instances = np.asarray(mask)  # its own integer type: a copy to int64 cost as much as the decoding
        background = scene["background"]
        concepts = [[_NUMBER[f"colour:{background['colour']}"], _NUMBER[f"texture:{background['texture']}"],
                     _NUMBER["region:background"]]]
        concepts += [[_NUMBER[f"shape:{shape['kind']}"], _NUMBER[f"colour:{shape['colour']}"],
                      _NUMBER[f"texture:{shape['texture']}"], _NUMBER["region:object"]] for shape in scene["shapes"]]
        if instances.size and not 0 <= int(instances.min()) <= int(instances.max()) < len(concepts):
            raise ValueError(f"{record['mask']} numbers a region its scene does not have ({len(concepts) - 1} shapes)")
        return instances, concepts
