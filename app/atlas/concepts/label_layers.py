"""What the file layouts share: label PNGs (a pixel's label number is its grey value, or R + 256 G in an
RGB image as in Broden) and the regions of an image labelled by several layers at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def read_label_png(path: Path) -> np.ndarray:
    """(H, W) int64 label numbers; 0 is unlabelled. Grey values, palette indices, or R + 256 G."""
    with Image.open(path) as picture:
        if picture.mode in ("RGB", "RGBA"):
            pixels = np.asarray(picture.convert("RGB"), dtype=np.int64)
            return pixels[:, :, 0] + 256 * pixels[:, :, 1]
        # A palette image (VOC's and ADE's masks) stores each pixel's label as its palette index: read the
        # indices, not the colours they are drawn with.
        return np.asarray(picture, dtype=np.int64)


def regions_of(layers: list[np.ndarray], numbers: dict[int, int], image_level: list[int],
               shape: tuple[int, int] | None = None) -> tuple[np.ndarray, list[list[int]]]:
    """Regions of pixels with the same labels across `layers` (each (H, W) label numbers, 0 unlabelled,
    resized with NEAREST to the first's size when they differ), as a region map and each region's concept
    indices (`numbers` maps label numbers to them; unknown numbers are ignored), `image_level` concept
    indices added to every region."""
    if not layers:
        if shape is None:
            raise ValueError("an image with no label layers needs a shape")
        return np.zeros(shape, dtype=np.int64), [list(image_level)]
    height, width = layers[0].shape
    stacked = np.stack([layer if layer.shape == (height, width) else nearest(layer, (height, width))
                        for layer in layers]).reshape(len(layers), -1)
    combinations, inverse = np.unique(stacked.T, axis=0, return_inverse=True)
    concepts = [sorted({numbers[int(n)] for n in row if int(n) in numbers} | set(image_level))
                for row in combinations]
    return inverse.reshape(height, width), concepts


def nearest(layer: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map resized to `size` (h, w) with nearest neighbours, each output pixel reading the input pixel
    under its centre."""
    rows = (np.arange(size[0]) + 0.5) * layer.shape[0] / size[0]
    columns = (np.arange(size[1]) + 0.5) * layer.shape[1] / size[1]
    return layer[rows.astype(np.int64)[:, None], columns.astype(np.int64)[None, :]]
