"""The images API: uploads by multipart (content-addressed, deduplicated, kept across restarts), image
info and bytes, predictions, dataset images under the same ids, and every refusal as a JSON 4xx while
the server keeps serving."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.app import create_app
from app.atlas.datasets import scan_folder
from app.settings import Settings
from tests.conftest import DEMO_MODELS_ONLY
from tests.test_api import assert_error
from tests.test_uploads import encode, gradient, png_header_only


def settings_in(root) -> Settings:
    return Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False,
                    upload_max_bytes=200_000, upload_max_pixels=1_000_000, **DEMO_MODELS_ONLY)


@pytest.fixture(scope="module")
def root(demo_atlas_root):
    return demo_atlas_root


@pytest.fixture(scope="module")
def client(root):
    with TestClient(create_app(settings_in(root))) as test_client:
        yield test_client


def upload(client, data: bytes, name: str = "picture.png"):
    return client.post("/api/images", files={"file": (name, data, "application/octet-stream")})


def test_upload_then_read_back(client):
    data = encode(gradient(40, 30), "PNG")
    response = upload(client, data, name="../../secret/holiday.png")
    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert len(body["id"]) == 20 and body["format"] == "PNG" and (body["width"], body["height"]) == (40, 30)
    assert body["name"] == "holiday.png"
    assert response.headers["location"] == f"/api/images/{body['id']}"
    again = upload(client, data, name="copy.png")
    assert again.status_code == 200 and again.json()["id"] == body["id"] and again.json()["new"] is False
    assert again.json()["name"] == "copy.png"
    info = client.get(f"/api/images/{body['id']}").json()
    assert info["source"] == "upload" and info["width"] == 40
    file = client.get(f"/api/images/{body['id']}/file")
    assert file.content == data and file.headers["content-type"] == "image/png"
    assert "immutable" in file.headers["cache-control"]
    assert client.get(f"/api/images/{body['id']}/file", headers={"If-None-Match": file.headers["etag"]}).status_code \
        == 304
    view = Image.open(io.BytesIO(client.get(f"/api/images/{body['id']}/file",
                                            params={"model": "shapes-cnn"}).content))
    assert view.size == (112, 112)


def test_an_upload_of_bytes_sent_before_describes_this_upload(client):
    """The id is shared (content-addressed); the answer's file name and time are the uploader's own, and
    what the shared id shows names no uploader's file."""
    data = encode(gradient(33, 21), "PNG")
    first = upload(client, data, name="alice-private-scan.png").json()
    time.sleep(0.01)
    second = upload(client, data, name="C:\\Users\\bob\\holiday.png")
    assert second.status_code == 200 and second.json()["id"] == first["id"] and second.json()["new"] is False
    assert second.json()["name"] == "holiday.png" and second.json()["uploaded"] > first["uploaded"]
    assert "alice" not in second.text
    info = client.get(f"/api/images/{first['id']}")
    assert "alice" not in info.text and "holiday" not in info.text
    assert set(info.json()) == {"source", "id", "sha256", "format", "mode", "width", "height", "frames", "bytes"}


def test_predictions_on_an_upload_and_a_dataset_image(client):
    image_id = upload(client, encode(gradient(50, 50), "JPEG")).json()["id"]
    for name in (image_id, "demo:3"):
        body = client.get(f"/api/images/{name}/predictions", params={"model": "shapes-cnn", "k": 3}).json()
        probabilities = [row["probability"] for row in body["predictions"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-6 and all(isinstance(row["label"], str) for row in body["predictions"])
    everything = client.get(f"/api/images/{image_id}/predictions", params={"model": "shapes-cnn", "k": 1000}).json()
    assert len(everything["predictions"]) == everything["classes"]
    assert sum(row["probability"] for row in everything["predictions"]) == pytest.approx(1, abs=1e-5)


def test_a_dataset_image_is_an_image_like_an_upload(client, root):
    info = client.get("/api/images/demo:3").json()
    assert info["source"] == "dataset" and info["dataset"] == "demo" and info["index"] == 3
    file = client.get("/api/images/demo:3/file")
    files = sorted(scan_folder(root / "demo" / "heldout" / "images").files)
    assert file.status_code == 200 and file.content == (root / "demo" / "heldout" / "images" / files[3]).read_bytes()


@pytest.mark.parametrize("data,status,code", [
    (b"", 422, "invalid_input"),
    (b"just some text", 415, "unsupported_media_type"),
    (encode(gradient(16, 16), "ICO"), 415, "unsupported_media_type"),
    (png_header_only(5000, 5000), 413, "payload_too_large"),
    (np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes(), 413, "payload_too_large"),
], ids=["zero-bytes", "text", "ico", "too-many-pixels", "too-many-bytes"])
def test_bad_uploads_are_refused_and_the_server_keeps_serving(client, data, status, code):
    assert_error(upload(client, data), status, code)
    assert client.get("/api/health").status_code == 200


def test_truncated_and_corrupt_uploads_are_refused(client):
    noise = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    jpeg = encode(Image.fromarray(noise), "JPEG")
    assert_error(upload(client, jpeg[: len(jpeg) // 2]), 422, "invalid_input")
    png = bytearray(encode(gradient(32, 32), "PNG"))
    png[60:80] = b"\0" * 20
    assert_error(upload(client, bytes(png)), 422, "invalid_input")


def test_a_body_far_over_the_limit_is_refused_while_streaming(client):
    chunks = (b"x" * 65536 for _ in range(100))  # 6.5 MB, no Content-Length: chunked
    response = client.post("/api/images", content=chunks,
                           headers={"content-type": "multipart/form-data; boundary=abc"})
    assert_error(response, 413, "payload_too_large")


def test_missing_file_field_is_a_422(client):
    assert_error(client.post("/api/images", files={"picture": ("a.png", b"123")}), 422, "invalid_input")


@pytest.mark.parametrize("image_id", ["nonsense", "0123456789abcdef0123", "demo:99999", "nodataset:1", "DEMO:1"])
def test_unknown_images_are_404s_naming_them(client, image_id):
    response = client.get(f"/api/images/{image_id}/predictions", params={"model": "shapes-cnn"})
    error = assert_error(response, 404, "not_found")
    assert image_id.split(":")[0] in error["message"] or "99999" in error["message"]


def test_bad_prediction_parameters(client):
    image_id = upload(client, encode(gradient(20, 20), "PNG")).json()["id"]
    assert_error(client.get(f"/api/images/{image_id}/predictions", params={"model": "nope"}), 404,
                 "model_not_found")
    assert_error(client.get(f"/api/images/{image_id}/predictions", params={"model": "shapes-cnn", "k": 0}), 422,
                 "invalid_input")
    assert_error(client.get(f"/api/images/{image_id}/predictions"), 422, "invalid_input", "model")


def test_uploads_survive_a_restart(root):
    data = encode(gradient(24, 24), "WEBP", lossless=True)
    with TestClient(create_app(settings_in(root))) as first:
        image_id = upload(first, data).json()["id"]
    with TestClient(create_app(settings_in(root))) as second:
        assert second.get(f"/api/images/{image_id}/file").content == data
        assert second.get(f"/api/images/{image_id}/predictions", params={"model": "shapes-cnn"}).status_code == 200
