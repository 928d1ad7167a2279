"""A unit is (model, layer, kind, index): the atlas records each indexed layer's kind, the reader looks a
layer up by kind, the API takes `?kind=` and names the kind in every unit it returns, and the pages' paths
carry a kind other than a channel (a channel's paths are the ones links have always had)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.api.links import layer_page, unit_page
from app.atlas.kinds import CHANNEL
from app.atlas.layout import catalog
from app.atlas.reader import Atlas
from app.errors import InvalidInput, LayerNotFound
from tests.atlas_helpers import small_atlas
from tests.test_api import assert_error


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    settings, _, _, atlas = small_atlas(tmp_path_factory.mktemp("kinds"), 20, ["block3", "block4"], 3)
    return settings, atlas


def test_the_atlas_records_each_layer_as_channels(built):
    _, atlas = built
    with sqlite3.connect(catalog(atlas.folder)) as db:
        assert db.execute("SELECT name, kind FROM layers ORDER BY idx").fetchall() == [("block3", CHANNEL),
                                                                                         ("block4", CHANNEL)]
    assert atlas.layer("block4") is atlas.layer("block4", CHANNEL) is atlas.by_kind[CHANNEL, "block4"]


def test_a_layer_is_looked_up_by_kind(built, tmp_path):
    _, atlas = built
    copy = tmp_path / "copy"
    shutil.copytree(atlas.folder, copy)
    with sqlite3.connect(catalog(copy)) as db:  # as a later kind will write: the same layer, other units
        db.execute("INSERT INTO layers (idx, name, kind, type, units, height, width) "
                   "SELECT 9, name, 'feature', type, 32, height, width FROM layers WHERE name = 'block4'")
    db.close()
    reopened = Atlas(copy)
    feature = reopened.layer("block4", "feature")
    assert (feature.idx, feature.kind, feature.units) == (9, "feature", 32)
    assert reopened.layer("block4").kind == CHANNEL and list(reopened.layers) == ["block3", "block4"]
    assert reopened.kinds("block4") == [CHANNEL, "feature"] and reopened.kinds("block3") == [CHANNEL]
    with pytest.raises(LayerNotFound, match="no feature units.*its kinds: channel$"):
        reopened.layer("block3", "feature")
    with pytest.raises(LayerNotFound, match="no neuron units.*its kinds: channel, feature$"):
        reopened.layer("block4", "neuron")
    with pytest.raises(InvalidInput, match="not a kind of unit"):
        reopened.layer("block4", "Neuron!")


def test_the_api_takes_the_kind_and_names_it(built):
    settings, atlas = built
    base = "/api/models/shapes-cnn/layers/block4/units"
    query = {"dataset": atlas.dataset}
    with TestClient(create_app(settings)) as client:
        page = client.get(base, params=query).json()
        assert page["kind"] == CHANNEL and {unit["kind"] for unit in page["units"]} == {CHANNEL}
        assert client.get(base, params={**query, "kind": CHANNEL}).json() == page
        unit = client.get(f"{base}/2", params=query).json()
        assert unit["kind"] == CHANNEL and unit["page"] == f"/m/shapes-cnn/block4/2?dataset={atlas.dataset}"
        assert client.get(f"{base}/2", params={**query, "kind": CHANNEL}).json() == unit
        for path in (base, f"{base}/2", f"{base}/2/maps"):  # a kind this layer lacks; no kind at all
            assert_error(client.get(path, params={**query, "kind": "neuron"}), 404, "layer_not_found", "neuron",
                         "its kinds: channel")
            assert client.get(path, params={**query, "kind": "Neuron!"}).status_code == 422


def test_page_paths_carry_a_kind_other_than_a_channel():
    assert unit_page("m", "features.3", 7, "demo") == "/m/m/features.3/7?dataset=demo"
    assert unit_page("m", "features.3", 7, "demo", CHANNEL) == "/m/m/features.3/7?dataset=demo"
    assert unit_page("m", "features.3", 7, "demo", "feature") == "/m/m/features.3/feature/7?dataset=demo"
    assert layer_page("m", "features.3", "demo") == "/m/m/features.3?dataset=demo"
    assert layer_page("m", "features.3", "demo", "feature") == "/m/m/features.3/feature?dataset=demo"


def test_an_atlas_from_before_kinds_is_stale_not_a_crash(built, tmp_path):
    """A format-3 catalog (no `kind` column): the registry reads only its metadata, lists it as stale, and a
    request for it answers 409 with the rebuild command (it was a sqlite3 error while listing the model's
    atlases, found when the load bench opened last week's data directory)."""
    settings, atlas = built
    old = atlas.folder.parent / "old"
    shutil.copytree(atlas.folder, old)
    with sqlite3.connect(catalog(old)) as db:
        db.executescript("""
            CREATE TABLE layers_v3 AS SELECT idx, name, type, units, height, width FROM layers;
            DROP TABLE layers; ALTER TABLE layers_v3 RENAME TO layers;
            UPDATE meta SET value = '3' WHERE key = 'format';""")
    db.close()
    try:
        with TestClient(create_app(settings)) as client:
            listed = client.get("/api/models/shapes-cnn/atlases")
            assert listed.status_code == 200 and [a["dataset"] for a in listed.json()["atlases"]] == [atlas.dataset]
            assert_error(client.get("/api/models/shapes-cnn/layers/block4/units", params={"dataset": "old"}), 409,
                         "atlas_missing", "built by an older Fovea")
            current = client.get("/api/models/shapes-cnn/layers/block4/units/0", params={"dataset": atlas.dataset})
            assert current.status_code == 200
    finally:
        shutil.rmtree(old)
