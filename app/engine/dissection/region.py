"""A unit's region on an image: its map upsampled bilinearly to the label maps' size (as
`F.interpolate(..., mode="bilinear", align_corners=False)` does) and thresholded, rebuilt exactly from the
kept top activations (`top_activations.py`) and counted pixel by pixel against the labels' signatures.

Upsampling partitions the output pixels into cells: output row Y reads map rows `low[Y]` and `high[Y]`, so
the rows with the same `low` form one cell row. A cell's pixels interpolate its four corners only, so a cell
with no corner above the threshold has no pixel above it, and a cell with one has all four corners in that
corner's kept 3 x 3 neighbourhood. Only those cells are evaluated.

Exactly means in the kernel's float32 arithmetic (along the width, then the height, each a sum of two
products). F.interpolate computes the same sums, but some CPUs' builds of it fuse a product into the sum, so a
pixel within a float32 step of the threshold can round the other way there; and a pixel whose four corners
are all at or below the threshold is outside, even where rounding lifts it a step above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch


@dataclass(frozen=True)
class Axis:
    """torch's bilinear geometry along one axis (align_corners=False), in float32 as its CPU kernel computes."""

    low: torch.Tensor  # (out,) the lower source index of each output index
    high: torch.Tensor  # (out,) the upper one (equal to low at the last source index)
    weight_low: torch.Tensor  # (out,) float32
    weight_high: torch.Tensor
    start: np.ndarray  # (in,) the first output index whose `low` is each source index
    stop: np.ndarray  # (in,) one past the last (start == stop: no output index)

    @property
    def span(self) -> int:
        """The most output indices of one cell."""
        return int((self.stop - self.start).max())


def axis(size_in: int, size_out: int) -> Axis:
    scale = torch.tensor(size_in, dtype=torch.float32) / size_out
    source = (scale * (torch.arange(size_out, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
    low = source.to(torch.int64)  # truncation is floor for source >= 0
    high = low + (low < size_in - 1).to(torch.int64)
    weight_high = source - low.to(torch.float32)
    counts = np.bincount(low.numpy(), minlength=size_in)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return Axis(low, high, 1 - weight_high, weight_high, start, start + counts)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference: (..., h, w) maps upsampled as the dissection defines it."""
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    up = torch.nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return up.reshape(*maps.shape[:-2], *size)


def count_region_pixels(above: dict[str, np.ndarray], thresholds: np.ndarray, map_shape: tuple[int, int],
                        signature_maps: np.ndarray, rows: np.ndarray, signatures: int, units: int) -> np.ndarray:
    """(units, signatures) int64: how many pixels of each unit's region carry each signature, over the images
    whose (n, H, W) signature maps are given; `rows[image id]` is an image's row in `signature_maps` (-1:
    not given). `above` are the kept entries above their unit's threshold as TopActivations.above orders them:
    by image, then unit."""
    h, w = map_shape
    n, height, width = signature_maps.shape
    ys, xs = axis(h, height), axis(w, width)
    counts = np.zeros((units, signatures), dtype=np.int64)
    index = {key: np.asarray(above[key], dtype=np.int64) for key in ("unit", "image", "y", "x")}  # no copy if so
    _count(index["unit"], index["image"], index["y"], index["x"],
           np.ascontiguousarray(above["neighbourhood"], dtype=np.float32),
           np.asarray(thresholds, dtype=np.float64), ys.start, ys.stop, xs.start, xs.stop,
           ys.weight_low.numpy(), ys.weight_high.numpy(), xs.weight_low.numpy(), xs.weight_high.numpy(),
           np.ascontiguousarray(signature_maps, dtype=np.int32), np.asarray(rows, dtype=np.int64), counts)
    return counts


# A pixel's value is float32 arithmetic on its cell's corners v: within ROUNDING * max|v| of the same
# interpolation in exact arithmetic (6 products and 3 sums rounded, and weights 1 - s rounded: each off by
# at most 2^-24 of max|v|; twice that, to be safe).
ROUNDING = 16 * 2.0 ** -24


@numba.njit(cache=True, nogil=True)
def _count(unit, image, y, x, neighbourhood, thresholds, row_start, row_stop, column_start, column_stop,
           wy0, wy1, wx0, wx1, signature_maps, rows,
           counts):  # pragma: no cover - compiled; tested through its caller
    """Each cell with a corner above its unit's threshold, once per image and unit (`seen` holds the last
    image-and-unit group that evaluated a cell: entries come grouped so). Most of a cell's rows lie below the
    threshold: each is first bounded in exact arithmetic and skipped when below by more than rounding."""
    h, w = len(row_start), len(column_start)
    seen = np.full((h, w), -1, dtype=np.int64)
    group, last_image, last_unit = -1, -1, -1
    for e in range(len(unit)):
        row = rows[image[e]]
        if row < 0:
            continue
        u, t = unit[e], thresholds[unit[e]]
        if image[e] != last_image or u != last_unit:
            group, last_image, last_unit = group + 1, image[e], u
        for cy in range(y[e] - 1, y[e] + 1):
            if cy < 0 or row_start[cy] == row_stop[cy]:
                continue
            for cx in range(x[e] - 1, x[e] + 1):
                if cx < 0 or column_start[cx] == column_stop[cx] or seen[cy, cx] == group:
                    continue
                seen[cy, cx] = group
                # The cell's corners, from this entry's 3 x 3 neighbourhood (row-major, centred on it).
                up, down = cy - y[e] + 1, min(cy + 1, h - 1) - y[e] + 1
                left, right = cx - x[e] + 1, min(cx + 1, w - 1) - x[e] + 1
                v00, v01 = neighbourhood[e, up * 3 + left], neighbourhood[e, up * 3 + right]
                v10, v11 = neighbourhood[e, down * 3 + left], neighbourhood[e, down * 3 + right]
                bound = ROUNDING * max(abs(v00), abs(v01), abs(v10), abs(v11)) + 1e-30
                first, width = column_start[cx], column_stop[cx] - column_start[cx]
                s_first, s_last = np.float64(wx1[first]), np.float64(wx1[first + width - 1])
                for out_y in range(row_start[cy], row_stop[cy]):
                    # In exact arithmetic a pixel of this row is p + (q - p) s at its column weight s, so the row's
                    # end pixels bound it: none can exceed t when both are below it by the rounding bound.
                    r = np.float64(wy1[out_y])
                    p = np.float64(v00) + (np.float64(v10) - np.float64(v00)) * r
                    q = np.float64(v01) + (np.float64(v11) - np.float64(v01)) * r
                    if max(p + (q - p) * s_first, p + (q - p) * s_last) <= t - bound:
                        continue
                    a, b = wy0[out_y], wy1[out_y]
                    signatures = signature_maps[row, out_y]
                    run_signature, run = -1, 0
                    for i in range(first, first + width):
                        # As the kernel computes it, in float32: along the width, then the height.
                        if (v00 * wx0[i] + v01 * wx1[i]) * a + (v10 * wx0[i] + v11 * wx1[i]) * b > t:
                            # Neighbouring pixels mostly share a signature: a run is added once, not pixel by pixel.
                            signature = signatures[i]
                            if signature == run_signature:
                                run += 1
                            else:
                                if run:
                                    counts[u, run_signature] += run
                                run_signature, run = signature, 1
                    if run:
                        counts[u, run_signature] += run
