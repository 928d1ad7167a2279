"""The units API over a real atlas: grid pages, sorting, a unit's data, maps, images and every error."""

from __future__ import annotations

import base64
import io
import shutil
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.atlas.schema import ATLAS_FORMAT
from app.demo.dataset import write_split
from app.settings import Settings
from app.store.store import load_store
from tests.conftest import DEMO_MODELS_ONLY
from tests.test_api import assert_error

BASE = "/api/models/shapes-cnn"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("units-api")
    settings = Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False,
                        **DEMO_MODELS_ONLY)
    write_split(root / "demo", "heldout", 40)
    model = load_store(settings).ready("shapes-cnn")
    index_model(model, scan_folder(root / "demo" / "heldout" / "images", name="demo"), settings,
                layers=["block3", "block4"], k=6)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_units_grid_sorted_and_paged(client):
    page = client.get(f"{BASE}/layers/block4/units", params={"sort": "max_max", "order": "desc", "limit": 10,
                                                             "maps": True}).json()
    assert page["units_total"] == 192 and len(page["units"]) == 10 and page["map_shape"] == [7, 7]
    maxima = [unit["max_max"] for unit in page["units"]]
    assert maxima == sorted(maxima, reverse=True)
    assert page["units"][0]["page"] == f"/m/shapes-cnn/block4/{page['units'][0]['unit']}?dataset=demo"
    maps = np.frombuffer(base64.b64decode(page["top_maps"]["data"]), dtype="<f4").reshape(page["top_maps"]["shape"])
    assert maps.shape == (10, 7, 7)
    assert maps.reshape(10, -1).max(1) == pytest.approx(maxima, rel=1e-3)  # float16 maps of the top image
    rest = client.get(f"{BASE}/layers/block4/units", params={"offset": 190}).json()
    assert [unit["unit"] for unit in rest["units"]] == [190, 191]


def test_unit_detail(client):
    detail = client.get(f"{BASE}/layers/block4/units/3").json()
    assert detail["unit"] == 3 and detail["units_total"] == 192
    assert len(detail["top"]) == 6 and [t["rank"] for t in detail["top"]] == list(range(6))
    values = [t["value"] for t in detail["top"]]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(detail["max_max"])
    assert sum(c["count"] for c in detail["class_histogram"]) == 6
    assert all(0 <= s["unit"] < 192 and s["unit"] != 3 for s in detail["similar"])
    assert sum(detail["histogram"]["counts"]) + detail["histogram"]["zeros"] > 0
    assert len(client.get(f"{BASE}/layers/block4/units/3", params={"k": 2}).json()["top"]) == 2
    maps = client.get(f"{BASE}/layers/block4/units/3/maps").json()
    assert maps["shape"] == [6, 7, 7] and maps["range"][1] == pytest.approx(values[0], rel=1e-3)


def test_dataset_images(client):
    detail = client.get(f"{BASE}/layers/block4/units/0").json()
    response = client.get(detail["top"][0]["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG") and response.headers["etag"]


def test_errors(client):
    assert_error(client.get(f"{BASE}/layers/block4/units/192"), 404, "not_found", "valid units are 0 to 191")
    assert_error(client.get(f"{BASE}/layers/block4/units/191000/maps"), 404, "not_found", "0 to 191")
    assert_error(client.get(f"{BASE}/layers/block4/units/-1/maps"), 422, "invalid_input", "'-1' is not a unit index")
    assert_error(client.get(f"{BASE}/layers/stem/units"), 404, "layer_not_found", "indexed layers: block3, block4",
                 "To add it: `fovea index shapes-cnn --dataset ", " --layers block3 block4 stem`")
    assert_error(client.get(f"{BASE}/layers/nope/units"), 404, "layer_not_found", "'nope'")
    assert_error(client.get("/api/models/nope/layers/block4/units"), 404, "model_not_found")
    assert_error(client.get("/api/models/shapes-mobilenet/layers/features/units"), 409, "atlas_missing",
                 "fovea index shapes-mobilenet --dataset demo` (the demo's shapes) or "
                 "`fovea index shapes-mobilenet --dataset PATH` (a folder of your images)")
    assert_error(client.get(f"{BASE}/layers/block4/units", params={"dataset": "elsewhere"}), 409, "atlas_missing",
                 "'elsewhere'", "atlases available: demo")
    assert_error(client.get(f"{BASE}/layers/block4/units/3", params={"k": 7}), 422, "invalid_input", "kept (6)")
    assert_error(client.get(f"{BASE}/layers/block4/units", params={"offset": 192}), 422, "invalid_input", "192 units")
    assert_error(client.get(f"{BASE}/layers/block4/units", params={"limit": 0}), 422, "invalid_input", "limit")
    assert_error(client.get(f"{BASE}/layers/block4/units", params={"sort": "loudness"}), 422, "invalid_input", "sort")
    assert_error(client.get(f"{BASE}/layers/block4/units/abc"), 422, "invalid_input", "unit")
    assert_error(client.get("/api/datasets/demo/images/40"), 404, "not_found", "valid ids are 0 to 39")
    assert_error(client.get("/api/datasets/other/images/0"), 404, "not_found", "'other'")
    assert_error(client.get("/api/datasets/demo/images/-3"), 422, "invalid_input", "image_id")
    # Dataset names never reach a path: anything but a plain name is unknown.
    assert_error(client.get(f"{BASE}/layers/block4/units", params={"dataset": "../../demo"}), 404, "not_found",
                 "'../../demo'")
    assert_error(client.get("/api/datasets/..%2Fdemo/images/0"), 404, "not_found")


def test_an_atlas_of_an_older_format_asks_for_a_rebuild(client):
    data = client.app.state.settings.data_dir
    stale = data / "atlases" / "shapes-cnn" / "old"
    shutil.copytree(data / "atlases" / "shapes-cnn" / "demo", stale)
    with sqlite3.connect(stale / "atlas.sqlite") as db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
    db.close()
    try:
        assert_error(client.get(f"{BASE}/layers/block4/units", params={"dataset": "old"}), 409, "atlas_missing",
                     "'old' atlas of model 'shapes-cnn' was built by an older Fovea",
                     "fovea index shapes-cnn --dataset PATH")
        assert [a["dataset"] for a in client.get(f"{BASE}/atlases").json()["atlases"]] == ["demo"]
    finally:
        shutil.rmtree(stale)


def test_unit_detail_crops_to_the_receptive_field(client):
    detail = client.get(f"{BASE}/layers/block3/units/5").json()
    field = detail["receptive_field"]
    # block3 of shapes-cnn: 61 px square (3x3 stride-2 stem, then 3x3 convs and 2x2 pools), one cell per 8 px.
    assert field["method"] == "gradient" and field["size"] == [61, 61] and field["map_size"] == [14, 14]
    for item in detail["top"]:
        centre_x, centre_y = (item["x"] + 0.5) * 8, (item["y"] + 0.5) * 8
        crop = item["crop"]
        assert crop["x"] * 112 <= centre_x <= (crop["x"] + crop["w"]) * 112
        assert crop["y"] * 112 <= centre_y <= (crop["y"] + crop["h"]) * 112
        assert crop["w"] <= 61 / 112 + 1e-9 and crop["h"] <= 61 / 112 + 1e-9
        assert item["url"].endswith("?model=shapes-cnn") and not item["original_url"].endswith("?model=shapes-cnn")
    deepest = client.get(f"{BASE}/layers/block4/receptive-field").json()
    assert deepest["size"][0] >= 112  # wider than the image: crops are the whole image


def test_activation_on_any_image_matches_the_atlas(client):
    detail = client.get(f"{BASE}/layers/block4/units/3").json()
    top = detail["top"][0]
    live = client.get(f"{BASE}/layers/block4/units/3/activation", params={"image": top["image"]})
    assert live.status_code == 200 and live.headers["etag"] and "immutable" in live.headers["cache-control"]
    body = live.json()
    values = np.frombuffer(base64.b64decode(body["map"]["data"]), dtype="<f4").reshape(body["map"]["shape"])
    assert values.shape == (1, 7, 7)
    assert body["max"] == pytest.approx(top["value"], rel=1e-5)  # the atlas's spatial max, recomputed
    assert body["argmax"] == {"y": top["y"], "x": top["x"]} and body["crop"] == top["crop"]
    assert body["map"]["range"] == [pytest.approx(float(values.min())), pytest.approx(float(values.max()))]
    again = client.get(f"{BASE}/layers/block4/units/3/activation", params={"image": top["image"]},
                       headers={"If-None-Match": live.headers["etag"]})
    assert again.status_code == 304
    # Any image, not only the unit's top ones; any layer of the model, not only indexed ones.
    other = client.get(f"{BASE}/layers/stem.0/units/0/activation", params={"image": 39}).json()
    assert other["map"]["shape"] == [1, 56, 56]


def test_activation_png_overlay(client):
    response = client.get(f"{BASE}/layers/block4/units/3/activation.png",
                          params={"image": 0, "colormap": "inferno", "opacity": 0.7})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    from PIL import Image

    picture = Image.open(io.BytesIO(response.content))
    assert picture.size == (112, 112) and picture.mode == "RGB"
    view = client.get("/api/datasets/demo/images/0", params={"model": "shapes-cnn"})
    assert view.status_code == 200 and view.headers["content-type"] == "image/png" and view.headers["etag"]
    assert Image.open(io.BytesIO(view.content)).size == (112, 112)
    transparent = client.get(f"{BASE}/layers/block4/units/3/activation.png", params={"image": 0, "opacity": 0})
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(transparent.content))),
                          np.asarray(Image.open(io.BytesIO(view.content))))  # opacity 0: the model's view


def test_activation_errors(client):
    assert_error(client.get(f"{BASE}/layers/block4/units/192/activation", params={"image": 0}), 404, "not_found",
                 "0 to 191")
    assert_error(client.get(f"{BASE}/layers/block4/units/1/activation", params={"image": 40}), 404, "not_found",
                 "valid ids are 0 to 39")
    assert_error(client.get(f"{BASE}/layers/block4/units/1/activation"), 422, "invalid_input", "image")
    assert_error(client.get(f"{BASE}/layers/nope/units/1/activation", params={"image": 0}), 404,
                 "layer_not_found")
    assert_error(client.get(f"{BASE}/layers/block4/units/1/activation.png", params={"image": 0, "colormap": "x"}),
                 422, "invalid_input", "colormap")
    assert_error(client.get(f"{BASE}/layers/block4/units/1/activation.png", params={"image": 0, "opacity": 2}),
                 422, "invalid_input", "opacity")
    assert_error(client.get("/api/datasets/demo/images/0", params={"model": "nope"}), 404, "model_not_found")
    # The unit's dataset-wide scale needs the layer in the atlas; the image's own scale does not.
    assert_error(client.get(f"{BASE}/layers/stem.0/units/1/activation.png", params={"image": 0, "scale": "unit"}),
                 404, "layer_not_found", "indexed layers: block3, block4")
    assert client.get(f"{BASE}/layers/block4/units/1/activation.png",
                      params={"image": 0, "scale": "unit"}).status_code == 200


def test_first_start_rebuilds_demo_atlases_of_an_older_format(client):
    from app.atlas.first_run import demo_models_without_atlas

    state = client.app.state
    assert demo_models_without_atlas(state.store, state.atlases) == ["shapes-mobilenet"]  # it has none
    catalog = state.settings.data_dir / "atlases" / "shapes-cnn" / "demo" / "atlas.sqlite"
    with sqlite3.connect(catalog) as db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
    db.close()
    try:
        assert demo_models_without_atlas(state.store, state.atlases) == ["shapes-cnn", "shapes-mobilenet"]
    finally:
        with sqlite3.connect(catalog) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(ATLAS_FORMAT),))
        db.close()


def test_probes_of_a_corrupt_or_missing_image_are_4xx(client):
    atlas = client.app.state.atlases.get("shapes-cnn")
    path = atlas.image_path(38)
    original = path.read_bytes()
    try:
        path.write_bytes(original[:40])  # truncated
        for url, params in ((f"{BASE}/layers/block4/units/1/activation", {"image": 38}),
                            (f"{BASE}/layers/block4/units/1/activation.png", {"image": 38}),
                            ("/api/datasets/demo/images/38", {"model": "shapes-cnn"})):
            assert_error(client.get(url, params=params), 422, "invalid_input", "cannot be decoded")
        path.unlink()
        assert_error(client.get(f"{BASE}/layers/block4/units/1/activation", params={"image": 38}), 404, "not_found",
                     "gone from disk")
    finally:
        path.write_bytes(original)
    assert_error(client.get(f"{BASE}/layers/nope/receptive-field"), 404, "layer_not_found")


def test_a_unit_read_never_waits_for_the_model(tmp_path):
    """The receptive field a unit page crops by is computed when the atlas is built: a fresh server's first
    read of a layer answers while another request holds the model (a Score-CAM may hold it for minutes)."""
    import threading

    root = tmp_path
    settings = Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False)
    write_split(root / "demo", "heldout", 6)
    model = load_store(settings).ready("shapes-cnn")
    index_model(model, scan_folder(root / "demo" / "heldout" / "images", name="demo"), settings,
                layers=["block3"], k=2)
    expected = model.receptive_field("block3")
    with TestClient(create_app(settings)) as client:
        served = client.app.state.store.ready("shapes-cnn")
        assert "block3" not in served._receptive_fields  # a fresh server: nothing computed yet
        answers = []
        with served.lock:  # another request holds the model
            reader = threading.Thread(target=lambda: answers.append(client.get(f"{BASE}/layers/block3/units/1")))
            reader.start()
            reader.join(timeout=30)
            assert answers, "the unit read waited for the model's lock"
        assert answers[0].status_code == 200
        assert answers[0].json()["receptive_field"]["size"] == list(expected.size)


def test_a_build_under_way_is_named_only_for_its_own_dataset(client):
    """While the demo atlas is being built, a page asking for that atlas hears how far it has got; one asking for
    another dataset hears that that one does not exist, with the atlases there are."""
    from app.api.routers.units import find_atlas
    from app.atlas.background import BuildStatus
    from app.errors import AtlasMissing

    class Building:
        def status(self, model_id):
            return BuildStatus(model=model_id, dataset="demo-next", state="building", done=5, total=40)

    state = client.app.state
    model = state.store.ready("shapes-cnn")
    with pytest.raises(AtlasMissing, match="'demo-next' atlas of 'shapes-cnn' is being built: 5 of 40 images"):
        find_atlas(model, state.atlases, Building(), "demo-next")
    with pytest.raises(AtlasMissing, match="'elsewhere' atlas of model 'shapes-cnn' does not exist yet") as missing:
        find_atlas(model, state.atlases, Building(), "elsewhere")
    assert missing.value.detail["available"] == ["demo"]
    answer = client.get("/api/models/shapes-cnn/layers/block4/units", params={"dataset": "elsewhere"})
    assert_error(answer, 409, "atlas_missing", "does not exist yet")
    assert answer.json()["error"]["detail"]["available"] == ["demo"]
