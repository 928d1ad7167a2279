"""Float maps as JSON: the front end draws heatmaps itself from the numbers."""

from __future__ import annotations

import base64

import numpy as np
import pydantic_core
from fastapi.responses import JSONResponse

DTYPES = {"float32": "<f4", "float16": "<f2"}


def encode_maps(maps, dtype: str = "float32") -> dict:
    """A float array of any shape as base64 little-endian `dtype`, with its shape and (exact) range.

    float16 halves the bytes of maps meant for display (values in [0, 1] keep about 3.3 significant digits,
    far finer than a colormap's 256 levels); raw values go as float32."""
    exact = np.asarray(maps, dtype=np.float32)
    return {"shape": list(exact.shape), "dtype": dtype,
            "encoding": f"base64 little-endian {dtype}, row-major",
            "range": [float(exact.min()), float(exact.max())] if exact.size else [0.0, 0.0],
            "data": base64.b64encode(exact.astype(DTYPES[dtype], copy=False).tobytes()).decode("ascii")}


class FastJSONResponse(JSONResponse):
    """JSON through pydantic-core's serializer: the standard library's scans every character of a megabyte
    of base64 maps for escapes (3 ms for seven 224 px maps, against 0.6 ms). NaN and infinities become
    null, as JSON has no spelling for them."""

    def render(self, content) -> bytes:
        return pydantic_core.to_json(content, inf_nan_mode="null")
