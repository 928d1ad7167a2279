"""Heatmap overlays rendered on the server (PNG twins of what the front end draws on canvas).

The colormaps are the front end's (`frontend/js/colormaps.js`, same anchors, same interpolation; a test
keeps the two in step), so a PNG and a page show the same colours.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
                "#fde725"],
    "inferno": ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06", "#f7d13d",
                "#fcffa4"],
    "turbo": ["#30123b", "#4662d7", "#36aaf9", "#1ae4b6", "#72fe5e", "#c8ef34", "#faba39", "#f66b19", "#ca2a04",
              "#7a0403"],
    "gray": ["#000000", "#ffffff"],
}
COLORMAPS = tuple(ANCHORS)


@functools.cache
def lookup_table(name: str) -> np.ndarray:
    """(256, 3) uint8: the colour of each level, linear between the anchors."""
    anchors = np.array([[int(hex_[i:i + 2], 16) for i in (1, 3, 5)] for hex_ in ANCHORS[name]], dtype=np.float64)
    position = np.arange(256) / 255 * (len(anchors) - 1)
    low = np.minimum(np.floor(position).astype(int), len(anchors) - 2)
    t = (position - low)[:, None]
    return np.floor(anchors[low] * (1 - t) + anchors[low + 1] * t + 0.5).astype(np.uint8)  # JS Math.round


def overlay(image: Image.Image, activation: np.ndarray, low: float, high: float, colormap: str = "viridis",
            opacity: float = 0.5) -> Image.Image:
    """`image` with the map `activation` (h, w) upsampled bilinearly over it, values scaled by [low, high].
    As on the page, weak values fade out: a level's alpha is opacity * sqrt(level)."""
    width, height = image.size
    values = torch.from_numpy(np.asarray(activation, dtype=np.float32))[None, None]
    upsampled = torch.nn.functional.interpolate(values, size=(height, width), mode="bilinear",
                                                align_corners=False)[0, 0].numpy()
    span = high - low if high > low else 1.0
    levels = np.clip(np.rint((upsampled - low) / span * 255), 0, 255).astype(np.uint8)
    colours = lookup_table(colormap)[levels].astype(np.float32)
    alpha = (opacity * np.sqrt(levels / 255.0))[..., None]
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    return Image.fromarray(np.rint(base * (1 - alpha) + colours * alpha).astype(np.uint8))
