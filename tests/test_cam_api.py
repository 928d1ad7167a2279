"""The CAM API: `/api/methods`, and `/api/images/{id}/cam` giving the engine's raw maps, the shown maps the
options ask for, the target and top classes, revalidation by ETag, and every refusal as a JSON 4xx naming
the valid values. Concurrency over real HTTP: 8 threads get the maps sequential requests get."""

from __future__ import annotations

import base64
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.api.compute import BATCH_SIZE_HEADER
from app.atlas.ground_truth import class_mask, mask_to_input
from app.engine.cam import METHODS, compute_cams, metrics, postprocess
from app.settings import Settings
from app.studio.explain import CamRequest, explain
from app.studio.progress import FINISHED_SECONDS, MAPS, SCORING, WAITING
from tests.conftest import DEMO_MODELS_ONLY
from tests.test_api import assert_error

ALL_METHODS = list(METHODS)


def settings_in(root, **overrides) -> Settings:
    return Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False,
                    cam_metric_steps=16, **DEMO_MODELS_ONLY, **overrides)


@pytest.fixture(scope="module")
def root(demo_atlas_root):
    return demo_atlas_root


@pytest.fixture(scope="module")
def client(root):
    with TestClient(create_app(settings_in(root))) as test_client:
        yield test_client


def decode(encoded: dict) -> np.ndarray:
    dtype = {"float32": "<f4", "float16": "<f2"}[encoded["dtype"]]
    values = np.frombuffer(base64.b64decode(encoded["data"]), dtype=dtype).reshape(encoded["shape"]).astype("<f4")
    tolerance = 1e-6 if encoded["dtype"] == "float32" else 1e-3
    assert encoded["range"] == [pytest.approx(float(values.min()), abs=tolerance),
                                pytest.approx(float(values.max()), abs=tolerance)]
    return values


def engine_maps(client, image_id: str, layer: str, methods: list[str], target=None):
    loaded = client.app.state.store.ready("shapes-cnn")
    image = client.app.state.atlases.for_dataset("demo").load_image(int(image_id.split(":")[1]))
    batch = loaded.as_input(loaded.preprocessing(image).unsqueeze(0))
    with loaded.lock:
        return compute_cams(loaded.module, batch, layer, methods, target)


def test_methods_lists_the_registry(client):
    body = client.get("/api/methods").json()
    assert [m["id"] for m in body["methods"]] == ALL_METHODS and len(ALL_METHODS) >= 11
    for method in body["methods"]:
        assert method["name"] and method["description"] and "http" in method["reference"]


def test_every_method_in_one_request_matches_the_engine(client):
    response = client.get("/api/images/demo:3/cam", params={"model": "shapes-cnn", "layer": "block4",
                                                             "methods": ",".join(ALL_METHODS)})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = engine_maps(client, "demo:3", "block4", ALL_METHODS)
    assert body["layer"] == "block4" and body["input_size"] == [112, 112]
    assert body["layer_shape"] == list(expected.layer_shape)
    assert [m["method"] for m in body["maps"]] == ALL_METHODS
    assert body["target"]["class"] == expected.target == body["top"]["class"]
    assert body["target"]["label"] == client.app.state.store.ready("shapes-cnn").labels[expected.target]
    assert 0 < body["target"]["probability"] <= 1
    for shown in body["maps"]:
        raw = decode(shown["raw"])
        np.testing.assert_allclose(raw, expected.maps[shown["method"]].raw.numpy(), rtol=1e-5, atol=1e-6)
        assert raw.shape == ((112, 112) if shown["resolution"] == "input" else tuple(expected.layer_shape[1:]))
        assert decode(shown["map"]).shape == (112, 112) and shown["map"]["dtype"] == "float16"  # for display
        np.testing.assert_allclose(decode(shown["map"]), postprocess(torch.from_numpy(raw), (112, 112)).numpy(),
                                   atol=2.5e-4)  # half a float16 step below 1
        assert 0 <= shown["map"]["range"][0] and shown["map"]["range"][1] <= 1


def test_target_and_postprocessing_options(client):
    params = {"model": "shapes-cnn", "layer": "block2", "methods": "gradcam,hirescam", "target": 4,
              "relu": "false", "normalize": "false"}
    body = client.get("/api/images/demo:2/cam", params=params).json()  # a circle, explained as a cross
    expected = engine_maps(client, "demo:2", "block2", ["gradcam", "hirescam"], target=4)
    assert body["target"]["class"] == 4 and body["layer"] == "block2"
    for shown in body["maps"]:
        raw = expected.maps[shown["method"]].raw
        assert raw.min() < 0  # a non-top target on an early layer has signed evidence to keep
        np.testing.assert_allclose(decode(shown["map"]), postprocess(raw, (112, 112), relu=False,
                                                                     normalize=False).numpy(), atol=1e-6)


def test_defaults_are_gradcam_on_the_deepest_default_layer(client):
    body = client.get("/api/images/demo:0/cam", params={"model": "shapes-cnn"}).json()
    layers = client.app.state.store.ready("shapes-cnn").layers
    assert body["layer"] == [info.name for info in layers if info.default][-1]
    assert [m["method"] for m in body["maps"]] == ["gradcam"]


def test_an_upload_gets_maps_too(client):
    data = (client.app.state.atlases.for_dataset("demo").image_path(2)).read_bytes()
    image_id = client.post("/api/images", files={"file": ("scene.png", data)}).json()["id"]
    body = client.get(f"/api/images/{image_id}/cam", params={"model": "shapes-cnn", "methods": "layercam"}).json()
    reference = client.get("/api/images/demo:2/cam", params={"model": "shapes-cnn", "methods": "layercam"}).json()
    assert body["maps"][0]["raw"]["data"] == reference["maps"][0]["raw"]["data"]


def test_metrics_score_the_shown_map_as_the_engine_does(client):
    params = {"model": "shapes-cnn", "layer": "block4", "methods": "gradcam,scorecam",
              "metrics": "deletion,insertion,confidence,pointing"}
    body = client.get("/api/images/demo:3/cam", params=params).json()
    loaded = client.app.state.store.ready("shapes-cnn")
    atlas = client.app.state.atlases.for_dataset("demo")
    batch = loaded.as_input(loaded.preprocessing(atlas.load_image(3)).unsqueeze(0))
    label = loaded.labels[body["target"]["class"]]
    mask = torch.from_numpy(mask_to_input(class_mask(atlas.dataset_root, atlas.image(3)["path"], label),
                                          loaded.preprocessing))
    assert body["ground_truth"] == {"available": True, "label": label, "tolerance": 8, "mask_pixels": int(mask.sum())}
    for shown in body["maps"]:
        saliency = postprocess(torch.from_numpy(decode(shown["raw"])), (112, 112))
        curves = metrics.deletion_insertion(loaded.module, batch, saliency, body["target"]["class"], steps=16,
                                            batch_size=32)
        scores = shown["metrics"]
        for name in ("deletion", "insertion"):
            assert scores[name]["auc"] == pytest.approx(curves[name].auc, abs=1e-6)
            assert len(scores[name]["curve"]) == 17 and scores[name]["step"] == 112 * 112 // 16
        change = metrics.confidence_change(loaded.module, batch, saliency, body["target"]["class"])
        assert scores["confidence"]["drop"] == pytest.approx(change.drop, abs=1e-6)
        assert scores["confidence"]["original"] == pytest.approx(body["target"]["probability"], abs=1e-6)
        assert scores["pointing"]["hit"] == metrics.pointing_game(saliency, mask, 8).hit
        assert scores["pointing"]["energy_mask"] == pytest.approx(metrics.energy_pointing_game(saliency, mask).mask)
        assert 0 <= scores["pointing"]["energy_mask"] <= scores["pointing"]["energy_box"] <= 1


def test_pointing_needs_an_object_mask_and_says_so(client):
    params = {"model": "shapes-cnn", "methods": "gradcam", "metrics": "pointing,confidence"}
    data = client.app.state.atlases.for_dataset("demo").image_path(3).read_bytes()
    image_id = client.post("/api/images", files={"file": ("scene.png", data)}).json()["id"]
    body = client.get(f"/api/images/{image_id}/cam", params=params).json()
    assert body["ground_truth"]["available"] is False and "dataset images" in body["ground_truth"]["reason"]
    assert set(body["maps"][0]["metrics"]) == {"confidence"}
    atlas, labels = client.app.state.atlases.for_dataset("demo"), client.app.state.store.ready("shapes-cnn").labels
    absent = next(i for i, label in enumerate(labels)
                  if class_mask(atlas.dataset_root, atlas.image(3)["path"], label) is None)
    other = client.get("/api/images/demo:3/cam", params={**params, "target": absent}).json()
    assert other["ground_truth"]["available"] is False and "no object mask" in other["ground_truth"]["reason"]
    without = client.get("/api/images/demo:3/cam", params={"model": "shapes-cnn"}).json()
    assert "ground_truth" not in without and without["maps"][0]["metrics"] == {}


def test_a_held_etag_is_answered_304_without_a_pass(client):
    params = {"model": "shapes-cnn", "methods": "gradcam,eigencam"}
    first = client.get("/api/images/demo:0/cam", params=params)
    etag = first.headers["etag"]
    again = client.get("/api/images/demo:0/cam", params=params, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    for change in ({"target": 2}, {"metrics": "confidence"}):
        other = client.get("/api/images/demo:0/cam", params={**params, **change}, headers={"If-None-Match": etag})
        assert other.status_code == 200 and other.headers["etag"] != etag


@pytest.mark.parametrize(("params", "status", "code", "words"), [
    ({"methods": "gradcam,bogus"}, 422, "invalid_input", ("'bogus'", "scorecam")),
    ({"methods": ","}, 422, "invalid_input", ("no CAM method", "gradcam")),
    ({"layer": "block9"}, 404, "layer_not_found", ("'block9'",)),
    ({"target": 10}, 422, "invalid_input", ("10", "0 to 9")),
    ({"target": -1}, 422, "invalid_input", ("-1", "0 to 9")),
    ({"target": "star"}, 422, "invalid_input", ("target",)),
    ({"model": "nope"}, 404, "model_not_found", ("'nope'", "shapes-cnn")),
    ({"relu": "maybe"}, 422, "invalid_input", ("relu",)),
    ({"metrics": "deletion,auc"}, 422, "invalid_input", ("'auc'", "deletion, insertion, confidence, pointing")),
])
def test_bad_requests_name_the_problem(client, params, status, code, words):
    query = {"model": "shapes-cnn", **params}
    error = assert_error(client.get("/api/images/demo:0/cam", params=query), status, code, *words)
    if params.get("methods") == "gradcam,bogus":
        assert error["detail"]["valid"] == ALL_METHODS


def test_unknown_images_are_404(client):
    for image_id in ("0123456789abcdef0123", "demo:999", "nodataset:1", "..%2F..%2Fetc"):
        response = client.get(f"/api/images/{image_id}/cam", params={"model": "shapes-cnn"})
        assert response.status_code == 404, (image_id, response.text)
        assert response.json()["error"]["code"] == "not_found"


def test_layers_too_wide_for_the_perturbation_methods_are_refused(root):
    with TestClient(create_app(settings_in(root, cam_max_channels=16))) as narrow:
        error = assert_error(narrow.get("/api/images/demo:0/cam", params={
            "model": "shapes-cnn", "layer": "block4", "methods": "gradcam,scorecam,ablationcam"}),
            422, "invalid_input", "scorecam, ablationcam", "cam_max_channels")
        assert error["detail"]["limit"] == 16
        assert narrow.get("/api/images/demo:0/cam", params={"model": "shapes-cnn", "layer": "block4",
                                                             "methods": "gradcam"}).status_code == 200


def test_a_request_past_its_time_limit_stops_and_says_so(root):
    with TestClient(create_app(settings_in(root, cam_max_seconds=1e-9))) as hurried:
        for methods in ("scorecam", "gradcam"):  # each stops at its first checkpoint, and frees the model
            error = assert_error(hurried.get("/api/images/demo:0/cam", params={
                "model": "shapes-cnn", "layer": "block4", "methods": methods}),
                422, "work_limit_exceeded", "cam_max_seconds")
            assert error["detail"]["limit_seconds"] == 1e-9
        assert hurried.get("/api/images/demo:0/predictions", params={"model": "shapes-cnn"}).status_code == 200


@pytest.fixture(scope="module")
def server(scoring_server):
    """`fovea serve` over real HTTP on the demo atlas, with deletion and insertion curves of one pixel per step
    (tests/conftest.py)."""
    return scoring_server


def test_a_followed_request_reports_progress_and_a_client_that_goes_away_stops_it(server):
    """Every method with deletion and insertion curves of one pixel per step: minutes of work, followed by
    a progress token. While it runs, polls (answered although the work holds a worker thread) see it move
    on from its batches to scoring; then the client closes its connection, the server stops at its next
    forward pass, the token is forgotten, and the model (whose lock the work held) answers the next request."""
    slow = "/api/images/demo:1/cam?model=shapes-cnn&layer=block4&metrics=deletion,insertion&methods=" + ",".join(
        ALL_METHODS)
    token = "followed-request-1"
    with httpx.Client(base_url=server, timeout=60) as http:
        port = int(server.rsplit(":", 1)[1])
        seen = []
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(f"GET {slow} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Progress-Token: {token}\r\n\r\n"
                               .encode())
            deadline = time.monotonic() + 60
            while not seen or seen[-1]["task"] != "scoring" or seen[-1]["done"] == 0:
                assert time.monotonic() < deadline, seen[-5:]
                response = http.get(f"/api/progress/{token}")
                if response.status_code == 200:
                    seen.append(response.json())
                time.sleep(0.05)
        order = ["starting", "waiting", "maps", *ALL_METHODS, "scoring"]  # methods in the registry's order
        places = [order.index(s["task"]) for s in seen]
        assert places == sorted(places) and seen[-1]["total"] == len(ALL_METHODS) * 2 * (112 * 112 + 1)
        assert [s["seconds"] for s in seen] == sorted(s["seconds"] for s in seen)
        # The token is forgotten when its request ends (listed as finished for a moment first): the work stopped,
        # minutes before it could have finished.
        deadline = time.monotonic() + 60
        while (response := http.get(f"/api/progress/{token}")).status_code == 200:
            assert time.monotonic() < deadline and response.json()["task"] in ("scoring", "finished"), response.text
            time.sleep(0.05)
        assert_error(response, 404, "not_found", token, "in flight")
        started = time.monotonic()
        response = http.get("/api/images/demo:1/cam", params={"model": "shapes-cnn", "layer": "block4"})
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 30  # not queued behind the stopped request's scoring


def test_explain_reports_from_the_shared_pass_to_the_last_scored_image(client):
    loaded = client.app.state.store.ready("shapes-cnn")
    batch = loaded.as_input(loaded.preprocessing(client.app.state.atlases.for_dataset("demo").load_image(2))
                            .unsqueeze(0))
    events: list[tuple] = []
    explain(loaded, batch, CamRequest(layer="block4", methods=("gradcam", "scorecam"),
                                      metrics=("deletion", "insertion", "confidence", "pointing")),
            client.app.state.settings, progress=lambda *event: events.append(event))
    assert events[0] == (MAPS,)
    assert events[1:3] == [("gradcam",), ("scorecam",)]
    masked = [event for event in events if event[0] == "scorecam" and len(event) == 3]
    assert masked[0][1] == 0 and masked[-1][1] == masked[-1][2] and 0 < masked[-1][2] <= 192
    scored = events[events.index(masked[-1]) + 1:]
    # 2 maps, each: 2 curves of 16 steps (17 points) on 112 x 112, and confidence's batch of 2.
    assert scored[0] == (SCORING, 0, 72) and scored[-1] == (SCORING, 72, 72)
    assert all(event[0] == SCORING for event in scored)
    assert [event[1] for event in scored] == sorted(event[1] for event in scored)


def test_a_request_that_finds_the_model_busy_says_it_waits(client):
    loaded = client.app.state.store.ready("shapes-cnn")
    batch = loaded.as_input(loaded.preprocessing(client.app.state.atlases.for_dataset("demo").load_image(2))
                            .unsqueeze(0))
    events: list[tuple] = []
    reported = threading.Event()

    def progress(*event):
        events.append(event)
        reported.set()

    with loaded.lock:  # another request is using the model
        worker = threading.Thread(target=explain, args=(loaded, batch, CamRequest(layer="block4", methods=("gradcam",)),
                                                        client.app.state.settings), kwargs={"progress": progress})
        worker.start()
        assert reported.wait(30), "the request reported nothing while the model was busy"
        assert events == [(WAITING,)]
    worker.join(30)
    assert not worker.is_alive()
    assert events == [(WAITING,), (MAPS,), ("gradcam",)]


def test_a_progress_token_must_be_url_safe_and_unknown_tokens_are_404(client, monkeypatch):
    params = {"model": "shapes-cnn", "methods": "gradcam"}
    assert_error(client.get("/api/images/demo:0/cam", params=params, headers={"X-Progress-Token": "../etc"}),
                 422, "invalid_input", "X-Progress-Token")
    assert_error(client.get("/api/progress/short"), 422, "invalid_input", "token")
    assert_error(client.get("/api/progress/never-asked"), 404, "not_found", "never-asked")
    followed = client.get("/api/images/demo:0/cam", params=params, headers={"X-Progress-Token": "done-request"})
    assert followed.status_code == 200
    assert client.get("/api/progress/done-request").json()["task"] == "finished"  # a poll crossing the answer
    later = time.monotonic() + FINISHED_SECONDS + 0.1
    monkeypatch.setattr("app.studio.progress.time.monotonic", lambda: later)
    assert_error(client.get("/api/progress/done-request"), 404, "not_found", "done-request")


def test_eight_threads_over_http_get_the_maps_sequential_requests_get(server):
    """Requests of the shared pass alone (the gradient family) share batched passes when concurrent: their maps
    equal the sequential ones up to the rounding of kernels chosen by batch size, which here and there flips a
    max-pool's near-tie and moves a gradient (block2 of demo:7 for class 7: 0.46% of the map's largest value);
    the others, which run alone, are identical."""
    requests = [{"model": "shapes-cnn", "layer": layer, "methods": methods, "target": target}
                for layer, methods, target in [
                    ("block4", "gradcam,gradcampp", 0), ("block4", "scorecam", 3), ("block3", "layercam,eigencam", 5),
                    ("block4", "ablationcam", 1), ("block2", "hirescam,xgradcam", 7), ("block4", "saliency", 2),
                    ("block3", "guided-gradcam,eigengradcam", 9), ("block4", "gradcam,scorecam", 6)]]
    with httpx.Client(base_url=server, timeout=120) as http:
        def fetch(params):
            response = http.get(f"/api/images/demo:{params['target'] % 8}/cam", params=params)
            assert response.status_code == 200, response.text
            return int(response.headers[BATCH_SIZE_HEADER]), {m["method"]: decode(m["raw"])
                                                              for m in response.json()["maps"]}

        sequential = [fetch(params) for params in requests]
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(fetch, requests * 2))
    assert all(size == 1 for size, _ in sequential)
    for (size, maps), (_, expected) in zip(concurrent, sequential * 2):
        assert maps.keys() == expected.keys()
        for method, raw in maps.items():
            if size == 1:
                assert np.array_equal(raw, expected[method]), method
            else:
                np.testing.assert_allclose(raw, expected[method], rtol=0, atol=1e-2 * np.abs(raw).max(),
                                           err_msg=method)
