"""A unit's feature visualisation over HTTP: rendered on request when none is stored for the settings, then
kept (the second answer is the same bytes, with no rendering); its JSON names the settings, the activation
reached and the dataset's best; limits are settings and a bad request is a 4xx naming the problem."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.app import create_app
from app.atlas.visualize import render_precision
from tests.atlas_helpers import small_atlas
from tests.test_api import assert_error

BASE = "/api/models/shapes-cnn/layers/block3/units"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings, _, _, atlas = small_atlas(tmp_path_factory.mktemp("visualization"), 12, ["block3"], 2)
    settings = settings.model_copy(update={"visualization_steps": 4, "visualization_max_steps": 50,
                                           "visualization_max_size": 64})
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_visualisation_is_rendered_on_request_then_kept(client, monkeypatch):
    body = client.get(f"{BASE}/7/visualization", params={"size": 32}).json()
    assert (body["unit"], body["steps"], body["size"], body["seed"], body["param"]) == (7, 4, 32, 0, "fft")
    precision = render_precision("auto", client.app.state.store.ready("shapes-cnn"))  # the setting's default
    assert body["precision"] == precision and ("-bf16" in body["variant"]) == (precision == "bfloat16")
    assert body["dataset_best"] > 0 and isinstance(body["activation"], float)
    assert body["colors"].startswith("12 images of dataset 'images-") and "-prior" in body["variant"]  # the atlas's
    png = client.get(body["png"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (32, 32)

    import app.atlas.visualize as job  # kept: a second ask renders nothing
    monkeypatch.setattr(job, "render", lambda *a, **k: pytest.fail("rendered again"))
    assert client.get(body["png"]).content == png.content
    assert client.get(f"{BASE}/7/visualization", params={"size": 32}).json() == body


def test_maco_renders_with_the_magnitude_spectrum_of_the_atlas_images(client):
    body = client.get(f"{BASE}/3/visualization", params={"size": 32, "param": "maco"}).json()
    assert body["param"] == "maco" and body["variant"].startswith("maco-32x32-4steps-lr1-")
    assert "param=maco" in body["png"] and client.get(body["png"]).status_code == 200
    fft = client.get(f"{BASE}/3/visualization", params={"size": 32}).json()
    assert fft["png"] != body["png"] and fft["variant"] != body["variant"]


def test_render_false_answers_only_what_is_stored(client):
    """Thumbnails ask with render=false: a 404 naming the way to render, never an optimisation."""
    missing = client.get(f"{BASE}/11/visualization.png", params={"size": 32, "render": "false"})
    assert_error(missing, 404, "not_found", "render=false")
    client.get(f"{BASE}/11/visualization.png", params={"size": 32})
    stored = client.get(f"{BASE}/11/visualization.png", params={"size": 32, "render": "false"})
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/png"


def test_the_image_page_s_strip_knows_which_visualisations_are_stored(client):
    """The units that fire on an image say whether their visualisation at the page's settings is stored, so the
    strip asks only for those (a thumbnail asked for and missing is a 404 in the browser's console)."""
    settings = client.app.state.settings.model_copy(update={"visualization_max_size": 112})  # the model's input
    with TestClient(create_app(settings)) as served:
        _strip_visualisations(served)
    # Where the page's size is over the visualization_max_size setting, none can be asked for, stored or not.
    dataset = client.get("/api/models/shapes-cnn/atlases").json()["atlases"][0]["dataset"]
    units = client.get(f"/api/images/{dataset}:3/units", params={"model": "shapes-cnn", "layer": "block3",
                                                                 "maps": True, "limit": 12}).json()["units"]
    assert not any(row["visualized"] for row in units)


def _strip_visualisations(client):
    dataset = client.get("/api/models/shapes-cnn/atlases").json()["atlases"][0]["dataset"]
    params = {"model": "shapes-cnn", "layer": "block3", "maps": True, "limit": 12}
    path = f"/api/images/{dataset}:3/units"
    before = client.get(path, params=params).json()["units"]
    unit = next(row["unit"] for row in before if not row["visualized"])
    assert client.get(f"{BASE}/{unit}/visualization.png").status_code == 200  # rendered at the page's settings
    after = {row["unit"]: row["visualized"] for row in client.get(path, params=params).json()["units"]}
    assert after[unit] and all(after[row["unit"]] for row in before if row["visualized"])
    for shown in (u for u, visualized in after.items() if visualized):
        assert client.get(f"{BASE}/{shown}/visualization.png", params={"render": "false"}).status_code == 200
    for missing in (u for u, visualized in after.items() if not visualized):
        assert client.get(f"{BASE}/{missing}/visualization.png", params={"render": "false"}).status_code == 404
    assert "visualized" not in client.get(path, params={**params, "maps": False}).json()["units"][0]


def test_the_negative_image_is_its_own_image(client):
    positive = client.get(f"{BASE}/5/visualization", params={"size": 32}).json()
    negative = client.get(f"{BASE}/5/visualization", params={"size": 32, "negative": "true"}).json()
    assert negative["negative"] is True and positive["negative"] is False
    assert negative["variant"] == positive["variant"] + "-negative" and negative["png"].endswith("&negative=true")
    assert negative["activation"] <= positive["activation"]
    assert client.get(negative["png"]).content != client.get(positive["png"]).content


def test_facets_cluster_the_top_images_and_each_has_an_image(client):
    body = client.get(f"{BASE}/9/visualization/facets", params={"size": 32, "facets": 2}).json()
    assert body["asked"] == 2 and 1 <= len(body["facets"]) <= 2 and body["dataset"].startswith("images-")
    ranks = sorted(member["rank"] for facet in body["facets"] for member in facet["members"])
    assert ranks == [0, 1]  # the atlas keeps 2 top images per unit: each in one facet
    assert body["facets"][0]["members"][0]["image"].startswith(body["dataset"] + ":")
    for facet in body["facets"]:
        png = client.get(facet["png"])
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (32, 32)
    beyond = client.get(f"{BASE}/9/visualization/facets/{len(body['facets'])}.png", params={"size": 32, "facets": 2})
    assert_error(beyond, 404, "not_found", "facets")
    assert_error(client.get(f"{BASE}/9/visualization/facets", params={"size": 32, "facets": 9}), 422, "invalid_input",
                 "visualization_max_facets")


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"param": "pixels"}, 422, "param"), ({"negative": "maybe"}, 422, "negative"), ({"facets": 0}, 422, "facets"),
    ({"steps": 51}, 422, "visualization_max_steps"), ({"size": 65}, 422, "visualization_max_size"),
    ({"size": 8}, 422, "size"), ({"steps": 0}, 422, "steps"), ({"seed": -1}, 422, "seed")])
def test_bad_requests_name_the_problem(client, params, status, words):
    route = "visualization/facets" if "facets" in params else "visualization"
    params = {"size": 32, **params}  # within the limits unless the case is about them
    assert_error(client.get(f"{BASE}/1/{route}", params=params), status, "invalid_input", words)


def test_a_unit_outside_the_layer_is_a_404(client):
    assert_error(client.get(f"{BASE}/96/visualization.png"), 404, "not_found", "0 to 95")
