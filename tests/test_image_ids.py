"""A dataset image has exactly one id, wherever a request names it: `/api/datasets/{d}/images/{id}`, the
`?image=` of a unit's activation, and `dataset:id` in the shared image namespace. Any other spelling (a
sign, a space, a point, a leading zero, other scripts' digits, more digits than any dataset has) is a 422
naming the problem, never another name for an image and never a 500."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from tests.test_api import assert_error
from tests.test_images_api import settings_in

NOT_IDS = ["9223372036854775808", "18446744073709551616", "1" * 40, "1000000000", "017", "00", "+3", "-1",
           " 3", "3 ", "3.0", "3e0", "\u0663", "\uff13", "0x3", "3_0"]  # U+0663: Arabic-Indic 3; U+FF13: fullwidth 3
ACTIVATION = "/api/models/shapes-cnn/layers/block4/units/0/activation"


@pytest.fixture(scope="module")
def client(demo_atlas_root):
    with TestClient(create_app(settings_in(demo_atlas_root)), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("text", NOT_IDS)
def test_a_dataset_image_id_has_one_spelling_everywhere(client, text):
    for url, params in ((f"/api/datasets/demo/images/{quote(text)}", None),
                        (ACTIVATION, {"image": text}),
                        (f"{ACTIVATION}.png", {"image": text}),
                        (f"/api/images/{quote('demo:' + text)}", None),
                        (f"/api/images/{quote('demo:' + text)}/file", None)):
        error = assert_error(client.get(url, params=params), 422, "invalid_input", repr(text), "ASCII digits")
        assert "leading zero" in error["message"]


@pytest.mark.parametrize("text", NOT_IDS)
def test_a_unit_index_has_one_spelling_everywhere(client, text):
    unit = quote(text)
    for url, params in ((f"/api/models/shapes-cnn/layers/block4/units/{unit}", None),
                        (f"/api/models/shapes-cnn/layers/block4/units/{unit}/maps", None),
                        (f"/api/models/shapes-cnn/layers/block4/units/{unit}/activation", {"image": 3}),
                        ("/api/images/demo:3/units", {"model": "shapes-cnn", "layer": "block4", "unit": text})):
        error = assert_error(client.get(url, params=params), 422, "invalid_input", repr(text), "a unit index")
        assert "leading zero" in error["message"]


def test_the_canonical_id_serves_and_an_unknown_one_names_the_range(client):
    assert client.get("/api/datasets/demo/images/3").status_code == 200
    assert client.get("/api/datasets/demo/images/0").status_code == 200
    assert client.get(ACTIVATION, params={"image": 3}).json()["image"] == 3
    assert client.get("/api/images/demo:3").json()["index"] == 3
    for response in (client.get("/api/datasets/demo/images/999999999"), client.get(ACTIVATION, params={"image": 12}),
                     client.get("/api/images/demo:12")):
        assert_error(response, 404, "not_found", "valid ids are 0 to 11")


def test_the_schema_declares_the_id_range(client):
    spec = client.get("/openapi.json").json()
    path = spec["paths"]["/api/datasets/{dataset}/images/{image_id}"]["get"]["parameters"]
    query = spec["paths"]["/api/models/{model}/layers/{layer}/units/{unit}/activation"]["get"]["parameters"]
    for parameter in (next(p for p in path if p["name"] == "image_id"), next(p for p in query if p["name"] == "image")):
        assert parameter["schema"] == {"type": "integer", "minimum": 0, "maximum": 999_999_999,
                                       "title": parameter["schema"]["title"]}
