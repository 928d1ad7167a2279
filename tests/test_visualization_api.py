"""A unit's feature visualisation over HTTP: rendered on request when none is stored for the settings, then
kept (the second answer is the same bytes, with no rendering); its JSON names the settings, the activation
reached and the dataset's best; limits are settings and a bad request is a 4xx naming the problem."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.app import create_app
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


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"param": "pixels"}, 422, "param"), ({"steps": 51}, 422, "visualization_max_steps"), ({"size": 65}, 422, "visualization_max_size"),
    ({"size": 8}, 422, "size"), ({"steps": 0}, 422, "steps"), ({"seed": -1}, 422, "seed")])
def test_bad_requests_name_the_problem(client, params, status, words):
    assert_error(client.get(f"{BASE}/1/visualization", params=params), status, "invalid_input", words)


def test_a_unit_outside_the_layer_is_a_404(client):
    assert_error(client.get(f"{BASE}/96/visualization.png"), 404, "not_found", "0 to 95")
