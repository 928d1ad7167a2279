"""Float maps as JSON: the front end draws heatmaps itself from the raw numbers."""

from __future__ import annotations

import base64

import numpy as np


def encode_maps(maps) -> dict:
    """A float array of any shape as base64 little-endian float32, with its shape and range."""
    maps = np.asarray(maps, dtype="<f4")
    return {"shape": list(maps.shape), "encoding": "base64 little-endian float32, row-major",
            "range": [float(maps.min()), float(maps.max())] if maps.size else [0.0, 0.0],
            "data": base64.b64encode(maps.tobytes()).decode("ascii")}
