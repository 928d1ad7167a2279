"""Class selectivity: for image-level concepts (an ImageFolder's classes), each class's ROC AUC of a unit's
spatial maximum, one class against the rest: the probability that an image of the class scores above one
of another class, ties counting one half (the Mann-Whitney U statistic over the mid-ranks)."""

from __future__ import annotations

import numpy as np


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (n,), tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    stops = np.append(starts[1:], len(values))
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + stops + 1) / 2.0, stops - starts)
    return ranks


def class_auc(values: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(units, classes) AUC from `values` (images, units) and integer `labels` (images,) in [0, classes);
    NaN for a class with no image, or no image outside it."""
    n = len(labels)
    positives = np.bincount(labels, minlength=classes).astype(np.float64)
    negatives = n - positives
    auc = np.empty((values.shape[1], classes))
    for unit in range(values.shape[1]):
        rank_sums = np.bincount(labels, weights=midranks(values[:, unit]), minlength=classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc[unit] = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    auc[:, (positives == 0) | (negatives == 0)] = np.nan
    return auc
