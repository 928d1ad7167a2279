"""Per-unit statistics, each declared once: its name (the catalog column and the JSON key), how it is
computed from what the index pass recorded, how it is stored, and how it is shown and sorted. The catalog's
schema, the writer, the reader's sort keys, the API's unit JSON and `GET /api/statistics` (which the front
end's sort menu reads) all read this list. A new statistic is one entry here, its computation and its test
(docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.engine.histogram import Histogram

REGION_QUANTILE = 0.995  # Network Dissection's threshold for a unit's region mask


@dataclass(frozen=True)
class FinishedLayer:
    """What one layer's pass leaves for its statistics, each array with a row per unit."""

    summary: dict[str, np.ndarray]  # ImageStats.summary(): moments of each image's spatial max and mean
    topk: dict[str, np.ndarray]  # TopK.ordered(): values, image_ids (-1: empty), positions (y * w + x), maps
    histogram: Histogram
    map_shape: tuple[int, int]


@dataclass(frozen=True)
class UnitStatistic:
    name: str
    label: str  # as the sort menu and the unit page name it
    description: str
    compute: Callable[[FinishedLayer], np.ndarray]  # (units,) values; NaN is stored as NULL (no value)
    sql_type: Literal["REAL", "INTEGER"] = "REAL"
    format: Literal["number", "percent", "count"] = "number"
    # A sort key's natural direction; None: not a sort key. Sort keys are also in every unit's summary (the
    # layer grid shows the sorted one under each cell); the others only on the unit's page.
    order: Literal["asc", "desc"] | None = "desc"

    @property
    def sortable(self) -> bool:
        return self.order is not None

    def describe(self) -> dict:
        return {"id": self.name, "label": self.label, "description": self.description, "format": self.format,
                "sortable": self.sortable}


def _summary(key: str) -> Callable[[FinishedLayer], np.ndarray]:
    return lambda layer: layer.summary[key]


def _region_quantile(layer: FinishedLayer) -> np.ndarray:
    # Read off a histogram bin, a quantile can pass the largest value by up to a bin's width: cap it there.
    return np.minimum(layer.histogram.quantile(REGION_QUANTILE), layer.summary["max_max"])


def border_peaks(layer: FinishedLayer) -> np.ndarray:
    """The fraction of a unit's top images whose peak lies on the map's outermost rows or columns. Units
    that respond to zero padding rather than to content peak there on most of their top images. No value
    on maps under 3 x 3, where every position is on the border, and for units with no top image."""
    height, width = layer.map_shape
    ids, positions = layer.topk["image_ids"], layer.topk["positions"]
    kept = ids >= 0
    counts = kept.sum(axis=1)
    if height < 3 or width < 3:
        return np.full(len(ids), np.nan)
    y, x = positions // width, positions % width
    on_border = kept & ((y == 0) | (y == height - 1) | (x == 0) | (x == width - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, on_border.sum(axis=1) / counts, np.nan)


STATISTICS: tuple[UnitStatistic, ...] = (
    UnitStatistic("max_max", "max activation", "the largest activation anywhere on any image",
                  _summary("max_max")),
    UnitStatistic("max_mean", "mean of image max", "the mean over images of each image's spatial maximum",
                  _summary("max_mean")),
    UnitStatistic("max_std", "std of image max", "the standard deviation over images of each image's spatial "
                  "maximum", _summary("max_std"), order=None),
    UnitStatistic("mean_mean", "mean activation", "the mean activation over every position of every image",
                  _summary("mean_mean")),
    UnitStatistic("mean_std", "std of image mean", "the standard deviation over images of each image's spatial "
                  "mean", _summary("mean_std"), order=None),
    UnitStatistic("mean_max", "max of image mean", "the largest spatial mean of any image", _summary("mean_max"),
                  order=None),
    UnitStatistic("fraction_active", "fraction active", "the fraction of images on which the unit is positive "
                  "somewhere", _summary("fraction_active"), format="percent"),
    UnitStatistic("images_at_max", "images at the maximum", "how many images reach the unit's maximum exactly "
                  "(more than one: a clamp such as ReLU6 saturates it)", _summary("images_at_max"),
                  sql_type="INTEGER", format="count", order=None),
    UnitStatistic("quantile_995", "99.5% quantile", "the 99.5% quantile of all activation values: the threshold "
                  "of the unit's region (Network Dissection)", _region_quantile),
    UnitStatistic("border_peaks", "peaks on the border", "the fraction of the top images whose peak lies on the "
                  "map's outermost rows or columns (near 1: the unit may respond to padding, not content)",
                  border_peaks, format="percent"),
)
UNIT_SORTS = ("unit", *(statistic.name for statistic in STATISTICS if statistic.sortable))


def sorts() -> list[dict]:
    """The sort keys, as `GET /api/statistics` lists them: the unit index first."""
    return [{"id": "unit", "label": "unit index", "order": "asc", "format": "count", "description": "channel index"},
            *({"id": s.name, "label": s.label, "order": s.order, "format": s.format, "description": s.description}
              for s in STATISTICS if s.sortable)]
