"""Units that fire on one image, judged against their own dataset distribution: a unit whose activation
is ordinary for it ranks low however large the number, a quiet unit that is rarely this active ranks
high."""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 32_768  # dataset images compared at a time: a request's memory stays bounded on any atlas


def rank_fired_units(pooled: np.ndarray, spatial_mean: np.ndarray, limit: int,
                     exclude: int | None = None) -> list[dict]:
    """`pooled` (N, C): the dataset images' spatial-mean activations (the atlas's pooled array, read a chunk
    of rows at a time); `spatial_mean` (C,): this image's. Units ordered by percentile (the share of dataset
    images with a lower spatial mean, ties counting half), then by z-score; the first `limit`. `exclude`: the
    image's own row when it is one of the dataset's, so that it is ranked among the others (against itself
    it would tie, and a unit's top image could never reach 100%)."""
    value = np.asarray(spatial_mean, dtype=np.float32).astype(np.float16).astype(np.float32)  # as stored
    moments = _Moments(value.shape[0])
    below, ties = np.zeros(value.shape, dtype=np.int64), np.zeros(value.shape, dtype=np.int64)
    for start in range(0, len(pooled), CHUNK_ROWS):
        rows = np.asarray(pooled[start:start + CHUNK_ROWS], dtype=np.float32)
        below += (rows < value).sum(axis=0)
        ties += (rows == value).sum(axis=0)
        moments.add(rows)
    if exclude is not None:
        own = np.asarray(pooled[exclude], dtype=np.float32)
        below -= own < value
        ties -= own == value
        moments.remove(own)
    percentile = (below + 0.5 * ties) / max(moments.count, 1)
    mean, std = moments.mean.astype(np.float32), moments.std().astype(np.float32)
    z = np.divide(value - mean, std, out=np.zeros_like(mean), where=std > 0)
    order = np.lexsort((-z, -percentile))[:limit]
    return [{"unit": int(u), "spatial_mean": float(spatial_mean[u]), "percentile": float(percentile[u]),
             "z": float(z[u])} for u in order]


class _Moments:
    """Each unit's count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.'s pairwise
    update: each chunk's own are two-pass, so identical values keep a spread of exactly 0)."""

    def __init__(self, units: int):
        self.count, self.mean, self.squares = 0, np.zeros(units), np.zeros(units)

    def add(self, rows: np.ndarray) -> None:
        n = len(rows)
        if n == 0:
            return
        mean = rows.mean(axis=0, dtype=np.float64)
        squares = np.square(rows - mean).sum(axis=0, dtype=np.float64)
        total = self.count + n
        delta = mean - self.mean
        self.squares = self.squares + squares + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.count = total

    def remove(self, row: np.ndarray) -> None:
        """Take one row back out (Welford's update, reversed)."""
        if self.count <= 1:
            self.count, self.mean, self.squares = 0, np.zeros_like(self.mean), np.zeros_like(self.squares)
            return
        mean = (self.mean * self.count - row) / (self.count - 1)
        self.squares = np.maximum(self.squares - (row - self.mean) * (row - mean), 0.0)
        self.mean, self.count = mean, self.count - 1

    def std(self) -> np.ndarray:
        return np.sqrt(self.squares / max(self.count, 1))
