"""Units that fire on one image, judged against their own dataset distribution: a unit whose activation
is ordinary for it ranks low however large the number, a quiet unit that is rarely this active ranks
high."""

from __future__ import annotations

import numpy as np


def rank_fired_units(pooled: np.ndarray, spatial_mean: np.ndarray, limit: int) -> list[dict]:
    """`pooled` (N, C): the dataset images' spatial-mean activations (the atlas's pooled array);
    `spatial_mean` (C,): this image's. Units ordered by percentile (the share of dataset images with a lower
    spatial mean, ties counting half), then by z-score; the first `limit`."""
    dataset = np.asarray(pooled, dtype=np.float32)
    value = np.asarray(spatial_mean, dtype=np.float32).astype(np.float16).astype(np.float32)  # as stored
    below = (dataset < value).sum(axis=0)
    ties = (dataset == value).sum(axis=0)
    percentile = (below + 0.5 * ties) / max(len(dataset), 1)
    mean, std = dataset.mean(axis=0), dataset.std(axis=0)
    z = np.divide(value - mean, std, out=np.zeros_like(mean), where=std > 0)
    order = np.lexsort((-z, -percentile))[:limit]
    return [{"unit": int(u), "spatial_mean": float(spatial_mean[u]), "percentile": float(percentile[u]),
             "z": float(z[u])} for u in order]
