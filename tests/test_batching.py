"""Micro-batching (app/studio/batching.py, model_calls.py): concurrent calls that run the same pass share one
batch, each caller gets its own item's answer, a bad item fails only its own call; batched CAMs equal
single-image ones; and over real HTTP, 16 concurrent clients of the predictions, the units that fire and the
gradient CAMs, arriving while the model is busy, get the answers sequential requests get, up to the rounding of
kernels chosen by batch size (which on a max-pool's near-tie can move a gradient: tests/test_cam_api.py)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.api.compute import BATCH_SIZE_HEADER
from app.engine.cam import compute_cams, compute_cams_batch
from app.engine.cam.registry import METHODS
from app.errors import InvalidInput
from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.store import LoadedModel, load_store
from app.studio.batching import Batcher
from app.studio.model_calls import ModelCalls

SHARED_PASS_ONLY = [m.id for m in METHODS.values() if m.extra_forwards == "none"]


@contextmanager
def held(lock: threading.Lock):
    """`lock(waiting)` for the batcher: the test's own lock, so it decides when the model is free."""
    with lock:
        yield


def test_calls_that_queue_behind_a_busy_model_share_one_batch():
    batcher, model, runs = Batcher(window=0.0, max_size=16), threading.Lock(), []

    def run(items):
        runs.append(list(items))
        return [item * 10 for item in items]

    with ThreadPoolExecutor(6) as pool:
        model.acquire()  # busy: the first call leads a group and waits; the others join it
        futures = [pool.submit(batcher.run, "key", i, run, lambda waiting: held(model)) for i in range(6)]
        time.sleep(0.3)
        assert runs == []
        model.release()
        answers = [future.result(timeout=10) for future in futures]
    assert [a.value for a in answers] == [0, 10, 20, 30, 40, 50] and {a.size for a in answers} == {6}
    assert runs == [[0, 1, 2, 3, 4, 5]]


def test_groups_split_at_the_batch_size_and_by_key():
    batcher, model, runs = Batcher(window=0.0, max_size=4), threading.Lock(), []

    def run(items):
        runs.append(sorted(items))
        return list(items)

    keys = ["a"] * 6 + ["b"] * 2
    with ThreadPoolExecutor(8) as pool:
        model.acquire()
        futures = [pool.submit(batcher.run, key, f"{key}{i}", run, lambda waiting: held(model))
                   for i, key in enumerate(keys)]
        time.sleep(0.3)
        model.release()
        assert [f.result(timeout=10).value for f in futures] == [f"{key}{i}" for i, key in enumerate(keys)]
    assert sorted(len(batch) for batch in runs) == [2, 2, 4]  # a's 4 and 2, b's 2
    assert all(len({item[0] for item in batch}) == 1 for batch in runs)  # never two keys in one batch


def test_a_bad_item_fails_its_own_call_only():
    batcher, model = Batcher(window=0.0, max_size=16), threading.Lock()

    def run(items):
        if "bad" in items:
            raise InvalidInput("a bad item")
        return [item.upper() for item in items]

    with ThreadPoolExecutor(3) as pool:
        model.acquire()
        futures = [pool.submit(batcher.run, "key", item, run, lambda waiting: held(model))
                   for item in ("one", "bad", "two")]
        time.sleep(0.3)
        model.release()
        assert futures[0].result(timeout=10).value == "ONE" and futures[2].result(timeout=10).value == "TWO"
        with pytest.raises(InvalidInput, match="a bad item"):
            futures[1].result(timeout=10)


def test_a_lone_call_waits_the_window_and_a_full_group_does_not():
    batcher, free = Batcher(window=0.3, max_size=2), lambda waiting: held(threading.Lock())
    started = time.perf_counter()
    answer = batcher.run("key", 1, lambda items: list(items), free)
    assert answer.value == 1 and answer.size == 1 and 0.3 <= time.perf_counter() - started < 2.0
    batcher = Batcher(window=30.0, max_size=2)
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda i: batcher.run("key", i, lambda items: list(items), free), range(2)))
    assert [a.size for a in answers] == [2, 2] and time.perf_counter() - started < 5.0  # full: no window


def test_a_call_whose_ready_check_fails_leaves_the_batch():
    """`ready()` runs once the model is held: a client gone while it waited fails its own call, and the
    batch runs without its item."""
    batcher, model, runs = Batcher(window=0.0, max_size=16), threading.Lock(), []

    def ready(item):
        def check():
            if item == "gone":
                raise InvalidInput("the client went away")
        return check

    def run(items):
        runs.append(list(items))
        return list(items)

    with ThreadPoolExecutor(3) as pool:
        model.acquire()
        futures = [pool.submit(batcher.run, "key", item, run, lambda waiting: held(model), ready=ready(item))
                   for item in ("one", "gone", "two")]
        time.sleep(0.3)
        model.release()
        assert [futures[i].result(timeout=10).size for i in (0, 2)] == [2, 2]
        with pytest.raises(InvalidInput, match="went away"):
            futures[1].result(timeout=10)
    assert runs == [["one", "two"]]


def test_a_lock_that_fails_fails_every_call_of_the_group():
    @contextmanager
    def broken(waiting):
        raise RuntimeError("the model is gone")
        yield

    batcher = Batcher(window=0.2, max_size=16)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.run, "key", i, lambda items: list(items), broken) for i in range(3)]
        for future in futures:
            with pytest.raises(RuntimeError, match="the model is gone"):
                future.result(timeout=10)


def test_a_model_whose_images_interact_is_never_batched():
    """A batch norm on batch statistics would mix the clients' images: such a model runs every call alone."""
    calls = ModelCalls(Settings(device="cpu"))
    plain = LoadedModel(id="plain", card_path=Path("plain.toml"), module=torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))
    mixing = LoadedModel(id="mixing", card_path=Path("mixing.toml"),
                         module=torch.nn.Sequential(torch.nn.BatchNorm2d(3, track_running_stats=False)).eval())
    assert calls._key(plain, "probabilities") == calls._key(plain, "probabilities")
    assert calls._key(mixing, "probabilities") != calls._key(mixing, "probabilities")


def test_batched_cams_equal_single_image_cams():
    """Four demo scenes, each with its own target and methods, in one pass: the same targets, logits and
    maps as each alone, up to rounding."""
    from app.demo.render import render
    from app.demo.scenes import sample_scene

    model = load_store(Settings(device="cpu", builtin_models=False, model_dirs=[BUILTIN_MODEL_DIR])).ready("shapes-cnn")
    images = [model.as_input(model.preprocessing(_picture(render(sample_scene(0, "heldout", i, 112))[0])).unsqueeze(0))
              for i in range(4)]
    methods = [SHARED_PASS_ONLY, ["gradcam"], ["layercam", "hirescam"], ["saliency", "guided-gradcam"]]
    targets = [None, 3, 5, None]
    batch = torch.cat(images).contiguous(memory_format=model.memory_format)
    with model.lock:
        batched = compute_cams_batch(model.module, batch, "block3", methods, targets)
        alone = [compute_cams(model.module, image, "block3", ids, target)
                 for image, ids, target in zip(images, methods, targets)]
    for got, want, ids in zip(batched, alone, methods):
        assert got.target == want.target and list(got.maps) == list(dict.fromkeys(ids))
        torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
        for method in got.maps:
            scale = float(want.maps[method].raw.abs().max())
            torch.testing.assert_close(got.maps[method].raw, want.maps[method].raw, rtol=0, atol=1e-4 * scale)
    with pytest.raises(ValueError, match="scorecam"):
        compute_cams_batch(model.module, batch, "block3", [["scorecam"]] * 4, targets)


def _picture(array):
    from PIL import Image

    return Image.fromarray(array)


ENDPOINTS = {
    "predictions": lambda i: (f"/api/images/demo:{i}/predictions", {"model": "shapes-cnn", "k": 10}),
    "units": lambda i: (f"/api/images/demo:{i}/units", {"model": "shapes-cnn", "layer": "block4", "limit": 8}),
    "cam": lambda i: (f"/api/images/demo:{i}/cam", {"model": "shapes-cnn", "layer": "block4",
                                                    "methods": "gradcam,layercam,xgradcam", "target": i % 10}),
}


def test_sixteen_concurrent_clients_get_the_sequential_answers(scoring_server):
    """Each endpoint, 16 clients on 8 images at once (two per image) after each image alone: requests that
    arrive while the model is busy share its next pass, and every answer equals its image's sequential one.
    The model is held by a long CAM until two of them wait for it: with no batching window (the default), an
    idle model serves whoever comes first at once, so whether clients overlap would be the machine's timing."""
    with httpx.Client(base_url=scoring_server, timeout=120) as http:
        def fetch(request, token=None):
            path, params = request
            response = http.get(path, params=params, headers={"X-Progress-Token": token} if token else {})
            assert response.status_code == 200, response.text
            return int(response.headers[BATCH_SIZE_HEADER]), response.json()

        for name, endpoint in ENDPOINTS.items():
            requests = [endpoint(i) for i in range(8)]
            sequential = [fetch(request) for request in requests]
            assert all(size == 1 for size, _ in sequential), name
            tokens = [f"batching-{name}-{n:02d}" for n in range(16)]
            with ThreadPoolExecutor(16) as pool:
                with model_busy(scoring_server, http):
                    answers = list(map(pool.submit, [fetch] * 16, requests * 2, tokens))
                    _wait_until(partial(_waiting, http, tokens, 2), f"{name}: two requests waiting for the model")
                concurrent = [answer.result() for answer in answers]
            assert max(size for size, _ in concurrent) > 1, f"{name}: no request shared a batch"
            for (_, got), (_, want) in zip(concurrent, sequential * 2):
                _assert_same_answer(name, got, want)


# One map scored by deletion and insertion curves of one pixel per step (the scoring server's setting):
# 25,090 masked images, which hold the model for many seconds, until the client goes away.
SLOW_CAM = "/api/images/demo:1/cam?model=shapes-cnn&layer=block4&methods=gradcam&metrics=deletion,insertion"


@contextmanager
def model_busy(base: str, http: httpx.Client):
    """shapes-cnn busy scoring a CAM until the block ends; then its connection closes, and the server stops the
    work at its next forward pass and frees the model."""
    token = "batching-busy-model"
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as connection:
        connection.sendall(f"GET {SLOW_CAM} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Progress-Token: {token}\r\n\r\n"
                           .encode())
        _wait_until(lambda: _task(http, token) == "scoring", "the long CAM scoring")
        yield


def _task(http: httpx.Client, token: str) -> str | None:
    """What the request followed by `token` is doing now (None: not in flight)."""
    response = http.get(f"/api/progress/{token}")
    return response.json()["task"] if response.status_code == 200 else None


def _waiting(http: httpx.Client, tokens: list[str], count: int) -> bool:
    """Whether at least `count` of the requests followed by `tokens` wait for the model."""
    return sum(_task(http, token) == "waiting" for token in tokens) >= count


def _wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def _assert_same_answer(name: str, got: dict, want: dict) -> None:
    if name == "predictions":
        assert [row["class"] for row in got["predictions"]] == [row["class"] for row in want["predictions"]]
        np.testing.assert_allclose([row["probability"] for row in got["predictions"]],
                                   [row["probability"] for row in want["predictions"]], rtol=1e-5, atol=1e-6)
    elif name == "units":
        assert [row["unit"] for row in got["units"]] == [row["unit"] for row in want["units"]]
        for key in ("spatial_mean", "spatial_max", "percentile", "z"):
            np.testing.assert_allclose([row[key] for row in got["units"]], [row[key] for row in want["units"]],
                                       rtol=1e-4, atol=1e-5, err_msg=key)
    else:
        assert got["target"]["class"] == want["target"]["class"]
        for shown, expected in zip(got["maps"], want["maps"]):
            raw, wanted = _decode(shown["raw"]), _decode(expected["raw"])
            np.testing.assert_allclose(raw, wanted, rtol=0, atol=1e-2 * np.abs(wanted).max(), err_msg=shown["method"])


def _decode(encoded: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(encoded["data"]), dtype="<f4").reshape(encoded["shape"])
