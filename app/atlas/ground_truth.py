"""Ground-truth object masks for the images of a demo split, for the pointing games of
`app/engine/cam/metrics.py`.

A split written by `app/demo/dataset.py:write_split` holds `images/<class>/<index>.png`, `masks/<index>.png`
(instance ids: 0 the background, shape i of the scene i + 1) and `scenes.jsonl` (per image: its path, its
mask's path and its scene, whose shapes each have a `kind`). The atlas catalog stores image paths relative
to the dataset root it scanned, which for the demo is the split's `images/` folder (`arrow/00017.png`); a
root that is the split folder itself (`images/arrow/00017.png`) works too. Paths are only ever built from
the catalog's relative paths and the split's own `scenes.jsonl`, and must stay inside their root.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.engine.preprocess import Preprocessing, Resampling
from app.errors import NotFound
from app.files import path_inside

SCENES = "scenes.jsonl"


@dataclass(frozen=True)
class SceneMasks:
    mask: str  # the instance map, relative to the split folder
    kinds: tuple[str, ...]  # the kind of shape i, whose instance id is i + 1


# Split folder -> (scenes.jsonl's (mtime_ns, size), image path relative to the split -> its masks).
_scenes_cache: dict[Path, tuple[tuple[int, int], dict[str, SceneMasks]]] = {}
_scenes_lock = threading.Lock()


def class_mask(dataset_root: Path, relpath: str, class_name: str) -> np.ndarray | None:
    """(h, w) bool at the image's own size: every visible pixel of the image's shapes of kind `class_name`.
    None when the dataset has no scene descriptions or none for this image, or when no shape of that kind
    is visible in it. InvalidInput when `relpath` leads outside `dataset_root`."""
    root = Path(dataset_root).resolve()
    image = path_inside(root, relpath)
    split = next((folder for folder in (root, root.parent) if (folder / SCENES).is_file()), None)
    if split is None:
        return None
    scene = scenes(split).get(image.relative_to(split).as_posix())
    if scene is None:
        return None
    ids = [number for number, kind in enumerate(scene.kinds, start=1) if kind == class_name]
    if not ids:
        return None
    path = path_inside(split, scene.mask)
    try:
        with Image.open(path) as instances:
            found = np.isin(np.asarray(instances), ids)
    except FileNotFoundError:
        raise NotFound(f"the mask {scene.mask} listed in {split / SCENES} is gone from disk",
                       mask=scene.mask) from None
    return found if found.any() else None


def mask_to_input(mask: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """(h, w) bool -> the model input's (H, W) bool, through the same resize and centre crop as the image
    (`Preprocessing.fit`) with NEAREST interpolation, so the mask stays binary and covers what the image
    covers."""
    picture = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
    return np.asarray(preprocessing.fit(picture, Resampling.NEAREST)) > 0


def scenes(split: Path) -> dict[str, SceneMasks]:
    """The split's scenes.jsonl by image path, read once per split and again only when the file changes
    (a split is rewritten whole, `app/files.py:replace_dir`). Safe to call from several threads."""
    split = Path(split).resolve()
    path = split / SCENES
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _scenes_lock:
        cached = _scenes_cache.get(split)
        if cached is None or cached[0] != stamp:
            cached = (stamp, _read_scenes(path))
            _scenes_cache[split] = cached
        return cached[1]


def _read_scenes(path: Path) -> dict[str, SceneMasks]:
    found = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            if "mask" in record:
                kinds = tuple(shape["kind"] for shape in record["scene"]["shapes"])
                found[record["image"]] = SceneMasks(mask=record["mask"], kinds=kinds)
    return found
