"""The demo dataset: rendered in memory for training, or written to disk as an ImageFolder tree with the
per-pixel concept masks kept beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from app.demo.render import render
from app.demo.scenes import DEFAULT_SEED, DEFAULT_SIZE, SHAPE_KINDS, sample_scene
from app.files import staged_dir

SPLIT_SIZES = {"train": 10_000, "heldout": 2_000}
# Per-channel statistics of the training split (computed once by `fovea demo train`, stable to 3 decimals).
MEAN = (0.521, 0.472, 0.461)
STD = (0.323, 0.257, 0.295)


def render_split(split: str, count: int, seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE,
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, h, w, 3) uint8 and integer labels (n,) for the first `count` scenes of a split."""
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    for index in range(count):
        scene = sample_scene(seed, split, index, size)
        images[index], _ = render(scene)
        labels[index] = SHAPE_KINDS.index(scene.label)
        if progress:
            progress(index + 1)
    return images, labels


def write_split(root: Path, split: str, count: int, seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE,
                progress: Callable[[int], None] | None = None) -> Path:
    """Write `root/<split>/` atomically: `images/<class>/<index>.png`, `masks/<index>.png` (instance ids)
    and `scenes.jsonl` (one scene description per line, which gives each instance id its concepts).
    A write that was killed part-way leaves a staging folder, which the next write removes."""
    with staged_dir(root / split) as staging:
        (staging / "masks").mkdir()
        for kind in SHAPE_KINDS:
            (staging / "images" / kind).mkdir(parents=True)
        with open(staging / "scenes.jsonl", "w") as lines:
            for index in range(count):
                scene = sample_scene(seed, split, index, size)
                image, instances = render(scene)
                name = f"{index:05d}.png"
                Image.fromarray(image).save(staging / "images" / scene.label / name)
                Image.fromarray(instances).save(staging / "masks" / name)
                record = {"index": index, "image": f"images/{scene.label}/{name}", "mask": f"masks/{name}"}
                lines.write(json.dumps(record | {"scene": scene.to_json()}) + "\n")
                if progress:
                    progress(index + 1)
        (staging / "dataset.json").write_text(json.dumps(
            {"name": "demo-shapes", "split": split, "count": count, "seed": seed, "size": size,
             "classes": list(SHAPE_KINDS)}, indent=2))
    return root / split  # renamed into place whole: a reader never sees a half-written split
