"""Units that fire on an image: percentile against the unit's own dataset distribution, by hand and
through the API."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import app.studio.progress as progress
from app.atlas.fired import rank_fired_units
from tests.test_api import assert_error
from tests.test_cam_api import decode
from tests.test_images_api import client, root  # noqa: F401  (module-scoped fixtures: one atlas, one server)


def test_percentiles_by_hand():
    pooled = np.array([[0.0, 5.0, 1.0],
                       [0.0, 6.0, 2.0],
                       [0.0, 7.0, 3.0],
                       [0.0, 8.0, 4.0]], dtype=np.float16)
    # Unit 0 is dead (value 0 ties all four: 0.5); unit 1 at 6.6 is above two of four (0.5) with a big value;
    # unit 2 at 3.0 is above two and ties one (2.5 / 4 = 0.625): it ranks first although its value is smaller.
    ranked = rank_fired_units(pooled, np.array([0.0, 6.6, 3.0]), limit=3)
    assert [row["unit"] for row in ranked] == [2, 1, 0]
    assert [row["percentile"] for row in ranked] == [0.625, 0.5, 0.5]
    assert ranked[1]["z"] == pytest.approx((np.float16(6.6) - 6.5) / np.std([5, 6, 7, 8]), rel=1e-6)
    assert ranked[2]["z"] == 0.0  # no spread: no z-score
    assert rank_fired_units(pooled, np.array([9.0, 9.0, 9.0]), limit=1)[0]["percentile"] == 1.0


def test_a_dataset_image_is_ranked_among_the_others_and_any_atlas_is_read_a_chunk_at_a_time(monkeypatch):
    """Excluding row 1 gives what ranking against the other rows gives (its top unit reaches 100%, not the
    (n - 0.5) / n a tie with itself allowed); chunks of 2 rows give what one pass gives, z-scores included."""
    import app.atlas.fired as fired

    rng = np.random.default_rng(0)
    pooled = rng.gamma(2.0, 1.0, (7, 5)).astype(np.float16)
    pooled[:, 4] = 1.5  # a unit with no spread: z 0
    pooled[1, 0] = pooled[:, 0].max() + 1  # the image is unit 0's top image
    image = pooled[1].astype(np.float32)
    others = rank_fired_units(np.delete(pooled, 1, axis=0), image, limit=5)
    excluded = rank_fired_units(pooled, image, limit=5, exclude=1)
    assert [row["unit"] for row in excluded] == [row["unit"] for row in others]
    for a, b in zip(excluded, others):
        assert a["percentile"] == b["percentile"] and a["z"] == pytest.approx(b["z"], rel=1e-5, abs=1e-6)
    assert max(row["percentile"] for row in excluded) == 1.0 > max(
        row["percentile"] for row in rank_fired_units(pooled, image, limit=5))
    assert next(row for row in excluded if row["unit"] == 4)["z"] == 0.0
    monkeypatch.setattr(fired, "CHUNK_ROWS", 2)
    chunked = rank_fired_units(pooled, image, limit=5, exclude=1)
    ranks = lambda rows: [(row["unit"], row["percentile"]) for row in rows]  # noqa: E731
    assert ranks(chunked) == ranks(excluded)
    assert [row["z"] for row in chunked] == pytest.approx([row["z"] for row in excluded], rel=1e-5)


def test_fired_units_of_a_dataset_image_match_its_pooled_row(client, root):  # noqa: F811
    body = client.get("/api/images/demo:3/units", params={"model": "shapes-cnn", "layer": "block4",
                                                          "limit": 10}).json()
    assert body["dataset"] == "demo" and len(body["units"]) == 10
    pooled = np.load(next((root / "data" / "atlases" / "shapes-cnn" / "demo").glob("layer-*.pooled.npy")))
    percentiles = [row["percentile"] for row in body["units"]]
    assert percentiles == sorted(percentiles, reverse=True)
    assert body["compared"] == body["images"] - 1 == len(pooled) - 1  # ranked among the others, not itself
    for row in body["units"]:
        assert row["spatial_mean"] == pytest.approx(float(pooled[3, row["unit"]]), rel=2e-3, abs=1e-3)
        others = np.delete(pooled[:, row["unit"]], 3).astype(np.float32)
        value = np.float32(np.float16(row["spatial_mean"]))
        assert row["percentile"] == pytest.approx(((others < value).sum() + 0.5 * (others == value).sum())
                                                  / len(others))
        assert row["link"] == f"/m/shapes-cnn/block4/{row['unit']}?dataset=demo"
        assert row["spatial_max"] >= row["spatial_mean"]


def test_fired_units_errors(client):  # noqa: F811
    params = {"model": "shapes-cnn", "layer": "block4"}
    assert_error(client.get("/api/images/demo:3/units", params={**params, "layer": "block3"}), 404, "layer_not_found",
                 "block4")  # not indexed: the message lists the indexed layers
    assert_error(client.get("/api/images/demo:3/units", params={**params, "layer": "nope"}), 404, "layer_not_found")
    assert_error(client.get("/api/images/demo:3/units", params={"model": "shapes-mobilenet", "layer": "features"}), 409,
                 "atlas_missing", "fovea index shapes-mobilenet")
    assert_error(client.get("/api/images/demo:3/units", params={**params, "limit": 0}), 422, "invalid_input")


@pytest.mark.parametrize("path, params", [
    ("/api/images/demo:3/predictions", {"model": "shapes-cnn"}),
    ("/api/images/demo:3/units", {"model": "shapes-cnn", "layer": "block4"}),
], ids=["predictions", "fired-units"])
def test_a_quick_request_that_finds_the_model_busy_says_it_waits(client, path, params, monkeypatch):  # noqa: F811
    """Another request holds the model (a Score-CAM, say): a followed request reports `waiting` until the
    model is free, then answers, and its token is forgotten."""
    monkeypatch.setattr(progress, "FINISHED_SECONDS", 60.0)  # a loaded machine may take seconds to poll again
    loaded = client.app.state.store.ready("shapes-cnn")
    token = f"quick-{path.rsplit('/', 1)[-1]}"
    answers = []
    with loaded.lock:
        worker = threading.Thread(target=lambda: answers.append(
            client.get(path, params=params, headers={"X-Progress-Token": token})))
        worker.start()
        deadline = time.monotonic() + 30
        while (polled := client.get(f"/api/progress/{token}")).status_code != 200 \
                or polled.json()["task"] != "waiting":
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.02)
    worker.join(30)
    assert answers[0].status_code == 200, answers[0].text
    assert client.get(f"/api/progress/{token}").json()["task"] == "finished"  # for a moment, then forgotten
    assert_error(client.get(path, params=params, headers={"X-Progress-Token": "no"}), 422, "invalid_input",
                 "X-Progress-Token")


def test_fired_units_with_maps_carry_each_units_live_map_and_top_map(client):  # noqa: F811
    """One request draws the image page's strip: each listed unit's map on this image (what the activation
    endpoint computes live), its map on its top dataset image (the atlas's) and its dataset maximum."""
    params = {"model": "shapes-cnn", "layer": "block4", "limit": 5}
    plain = client.get("/api/images/demo:3/units", params=params).json()
    body = client.get("/api/images/demo:3/units", params={**params, "maps": True}).json()
    units = [row["unit"] for row in body["units"]]
    assert units == [row["unit"] for row in plain["units"]]
    assert [row["rank"] for row in body["units"]] == [1, 2, 3, 4, 5]
    assert "maps" not in plain and body["maps"]["shape"] == [5, 7, 7] and body["top_maps"]["shape"] == [5, 7, 7]
    maps, top_maps = decode(body["maps"]), decode(body["top_maps"])
    for index, row in enumerate(body["units"]):
        live = client.get(f"/api/models/shapes-cnn/layers/block4/units/{row['unit']}/activation",
                          params={"image": 3}).json()
        np.testing.assert_allclose(maps[index], decode(live["map"])[0], rtol=1e-5, atol=1e-6)
        assert row["spatial_max"] == pytest.approx(float(maps[index].max()), rel=1e-5)
        unit = client.get(f"/api/models/shapes-cnn/layers/block4/units/{row['unit']}").json()
        assert row["max_max"] == unit["max_max"] and row["top_image"] == unit["top_image"]
        top = decode(client.get(f"/api/models/shapes-cnn/layers/block4/units/{row['unit']}/maps").json())
        np.testing.assert_array_equal(top_maps[index], top[0])


def test_one_named_unit_wherever_it_ranks(client):  # noqa: F811
    """The unit page's "on your image" card asks for one unit: the same row as in the full ranking."""
    params = {"model": "shapes-cnn", "layer": "block4"}
    everything = client.get("/api/images/demo:3/units", params={**params, "limit": 256}).json()
    assert everything["units_total"] == 192 and len(everything["units"]) == 192
    last = everything["units"][-1]
    body = client.get("/api/images/demo:3/units", params={**params, "unit": last["unit"], "maps": 1}).json()
    (row,) = body["units"]
    assert row == {**last, "max_max": row["max_max"], "top_image": row["top_image"], "visualized": row["visualized"]}
    assert row["rank"] == 192 and body["maps"]["shape"] == [1, 7, 7]
    assert_error(client.get("/api/images/demo:3/units", params={**params, "unit": 192}), 404, "not_found", "0 to 191")
    assert_error(client.get("/api/images/demo:3/units", params={**params, "unit": -1}), 422, "invalid_input",
                 "'-1' is not a unit index")
