"""Class selectivity: for image-level concepts (an ImageFolder's classes), each class's ROC AUC of a unit's
spatial maximum, one class against the rest: the probability that an image of the class scores above one
of another class, ties counting one half (the Mann-Whitney U statistic over the mid-ranks)."""

from __future__ import annotations

import numpy as np


def class_auc(values: np.ndarray, labels: np.ndarray, classes: int, min_images: int = 1) -> np.ndarray:
    """(units, classes) AUC from `values` (images, units) and integer `labels` (images,) in [0, classes);
    NaN for a class with fewer than `min_images` images, or fewer outside it (with few, chance alone reaches a
    high AUC). NaN values tie with each other, above every number.

    Every unit at once, and each class's rank sum is taken in sorted order, so no rank is scattered back to
    its image: one unit at a time, numpy's overhead was most of the time."""
    n = len(labels)
    positives = np.bincount(labels, minlength=classes).astype(np.float64)
    negatives = n - positives
    by_unit = np.ascontiguousarray(values.T)
    order = np.argsort(by_unit, axis=1)  # tied values share a rank, so their order does not matter
    ranks = _sorted_midranks(np.take_along_axis(by_unit, order, axis=1))
    units = len(by_unit)
    # Half-integer ranks sum exactly in float64, in any order.
    bins = (np.arange(units)[:, None] * classes + labels[order]).ravel()
    rank_sums = np.bincount(bins, weights=ranks.ravel(), minlength=units * classes).reshape(units, classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    auc[:, too_few_images(labels, classes, min_images)] = np.nan
    return auc


def too_few_images(labels: np.ndarray, classes: int, min_images: int) -> np.ndarray:
    """(classes,) whether a class has fewer than `min_images` images (at least 1), or fewer outside it."""
    positives = np.bincount(labels, minlength=classes)
    return np.minimum(positives, len(labels) - positives) < max(min_images, 1)


def _sorted_midranks(ordered: np.ndarray) -> np.ndarray:
    """The 1-based mid-ranks of each row of `ordered` (rows sorted ascending, NaNs last)."""
    units, n = ordered.shape
    nan = np.isnan(ordered)
    new = np.ones(ordered.shape, dtype=bool)  # where a run of tied values begins
    new[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]) & ~(nan[:, 1:] & nan[:, :-1])
    index = np.arange(n, dtype=np.int32)
    starts = np.maximum.accumulate(np.where(new, index, np.int32(0)), axis=1)
    # A run ends where the next begins: the nearest start to the right, found right to left.
    last = np.ones(ordered.shape, dtype=bool)
    last[:, :-1] = new[:, 1:]
    stops = np.minimum.accumulate(np.where(last, index + 1, np.int32(n))[:, ::-1], axis=1)[:, ::-1]
    return (starts + stops + 1) / 2.0
