"""Per-unit statistics are declared once (app/atlas/statistics.py) and everything reads the declaration: the
catalog's columns, the writer, the sort keys, the unit JSON and `GET /api/statistics`. Border peaks (the
fraction of a unit's top images that peak on the map's edge, a mark of units that answer zero padding)
against hand-computed numbers and against brute force on a real build."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.atlas.schema import SCHEMA
from app.atlas.statistics import STATISTICS, UNIT_SORTS, FinishedLayer, border_peaks
from app.engine.histogram import Histogram
from tests.atlas_helpers import all_activations, brute_force_unit_stats, small_atlas
from tests.test_api import assert_error

K = 4


def finished(positions: list[list[int]], ids: list[list[int]], shape: tuple[int, int]) -> FinishedLayer:
    return FinishedLayer(summary={}, topk={"positions": np.array(positions), "image_ids": np.array(ids)},
                         histogram=Histogram(len(ids)), map_shape=shape)


def test_border_peaks_by_hand():
    # A 4 x 5 map: position p is (p // 5, p % 5); the border is row 0 or 3, column 0 or 4.
    layer = finished(positions=[[0, 6, 19], [6, 7, 12], [4, 13, -1], [-1, -1, -1], [15, 9, 8]],
                     ids=[[3, 1, 2], [0, 1, 2], [5, 6, -1], [-1, -1, -1], [0, 1, 2]], shape=(4, 5))
    # unit 0: (0,0) border, (1,1) inside, (3,4) border -> 2/3; unit 1: all inside -> 0; unit 2: (0,4) border,
    # (2,3) inside, one empty slot not counted -> 1/2; unit 3: no top image -> no value; unit 4: (3,0) border,
    # (1,4) border, (1,3) inside -> 2/3.
    values = border_peaks(layer)
    assert values[[0, 1, 2, 4]].tolist() == pytest.approx([2 / 3, 0.0, 0.5, 2 / 3])
    assert math.isnan(values[3])


@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (7, 2)])
def test_border_peaks_has_no_value_where_every_position_is_on_the_border(shape):
    assert np.isnan(border_peaks(finished([[0, 1]], [[0, 1]], shape))).all()


def test_the_catalog_has_a_column_per_declared_statistic_and_the_sorts_follow_the_declarations():
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    columns = [row[1] for row in db.execute("PRAGMA table_info(units)")]
    assert columns == ["layer", "unit", *(s.name for s in STATISTICS), "dead", "top_image"]
    assert UNIT_SORTS == ("unit", *(s.name for s in STATISTICS if s.order is not None))
    assert "border_peaks" in UNIT_SORTS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    layers = ["stem.0", "block4", "avgpool"]
    settings, model, dataset, atlas = small_atlas(tmp_path_factory.mktemp("statistics"), 40, layers, K)
    return settings, model, dataset, layers, atlas


def test_border_peaks_in_a_built_atlas_equal_brute_force(built):
    _, model, dataset, layers, atlas = built
    activations, _ = all_activations(model, dataset, layers, atlas.meta["batch_size"])
    for name in layers[:2]:
        layer = atlas.layer(name)
        h, w = activations[name].shape[2:]
        positions = brute_force_unit_stats(activations[name], K)["positions"]  # (units, k) flat y * w + x
        y, x = positions // w, positions % w
        expected = ((y == 0) | (y == h - 1) | (x == 0) | (x == w - 1)).mean(axis=1)
        stored = [atlas.unit(layer, unit)["border_peaks"] for unit in range(layer.units)]
        assert stored == pytest.approx(expected.tolist(), abs=1e-12), name
        assert 0 < expected.mean() < 1  # the check can tell a wrong answer: edges and insides both occur


def test_a_map_too_small_for_a_border_has_no_value_in_the_catalog_and_the_api(built):
    settings, _, _, _, atlas = built
    layer = atlas.layer("avgpool")  # (192, 1, 1): every position is the border
    assert all(atlas.unit(layer, unit)["border_peaks"] is None for unit in range(layer.units))
    with TestClient(create_app(settings)) as client:
        unit = client.get(f"/api/models/shapes-cnn/layers/avgpool/units/0?dataset={atlas.dataset}").json()
        assert unit["stats"]["border_peaks"] is None and unit["stats"]["max_max"] is not None


def test_the_api_lists_every_statistic_and_serves_and_sorts_by_each(built):
    settings, _, _, _, atlas = built
    with TestClient(create_app(settings)) as client:
        listed = client.get("/api/statistics").json()
        assert [s["id"] for s in listed["statistics"]] == [s.name for s in STATISTICS]
        assert [s["id"] for s in listed["sorts"]] == list(UNIT_SORTS)
        border = next(s for s in listed["statistics"] if s["id"] == "border_peaks")
        assert border == {"id": "border_peaks", "label": "peaks on the border", "format": "percent",
                          "sortable": True, "description": border["description"]}
        base = f"/api/models/shapes-cnn/layers/block4/units?dataset={atlas.dataset}"
        unit = client.get(f"/api/models/shapes-cnn/layers/block4/units/3?dataset={atlas.dataset}").json()
        assert set(unit["stats"]) == {s.name for s in STATISTICS}
        assert unit["kind"] == "channel"
        assert unit["border_peaks"] == unit["stats"]["border_peaks"] == atlas.unit(atlas.layer("block4"), 3)[
            "border_peaks"]
        for key in UNIT_SORTS:
            page = client.get(base, params={"sort": key, "order": "desc"}).json()["units"]
            values = [row[key] for row in page]
            assert values == sorted(values, reverse=True), key
            assert all(row["kind"] == "channel" for row in page)


def test_an_atlas_built_before_a_statistic_was_declared_asks_for_a_rebuild(built, monkeypatch):
    """A new statistic needs no format bump: an atlas without its column is stale (409 with the command), never
    asked for a column it lacks (a 500)."""
    settings, _, _, _, atlas = built
    extra = STATISTICS[0].__class__("mean_to_max", "mean over max", "a statistic declared after the build",
                                    lambda layer: layer.summary["mean_mean"] / layer.summary["max_max"])
    monkeypatch.setattr("app.atlas.registry.STATISTICS", (*STATISTICS, extra))
    with TestClient(create_app(settings)) as client:
        assert_error(client.get("/api/models/shapes-cnn/layers/block4/units/0", params={"dataset": atlas.dataset}),
                     409, "atlas_missing", "built by an older Fovea", "fovea index shapes-cnn")
