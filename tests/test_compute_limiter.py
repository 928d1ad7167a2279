"""Cheap reads never queue behind computation (issue 14, item 17). Routes that run a model take one of
`compute_concurrency` compute slots before they get a worker thread; a request waiting for a slot holds
none. So with every slot held by a request stuck on its model, and many more queued behind them (more
than anyio's 40 worker threads), a unit's JSON and an image's bytes are still answered."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings
from tests.conftest import DEMO_MODELS_ONLY

SLOTS, STUCK = 2, 48  # 48 compute requests: more than the 40 threads anyio lends plain `def` routes


def settings_in(root) -> Settings:
    return Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False,
                    compute_concurrency=SLOTS, **DEMO_MODELS_ONLY)


@pytest.fixture(scope="module")
def root(demo_atlas_root):
    return demo_atlas_root


def test_reads_are_answered_while_every_compute_slot_is_held_by_a_stuck_request(root):
    cheap = ["/api/models/shapes-cnn/layers/block4/units/3", "/api/datasets/demo/images/2",
             "/api/models/shapes-cnn/layers/block4/units?limit=16", "/api/images/demo:2/file", "/api/health"]
    with TestClient(create_app(settings_in(root))) as client, ThreadPoolExecutor(STUCK + len(cheap)) as pool:
        limiter = client.app.state.compute
        model = client.app.state.store.ready("shapes-cnn")
        for url in cheap:  # a layer's receptive field is computed once, with the model, on its first unit read
            assert client.get(url).status_code == 200
        model.lock.acquire()  # another request is using the model, for as long as this test says
        try:
            stuck = [pool.submit(client.get, f"/api/images/demo:{n % 8}/predictions", params={"model": "shapes-cnn"})
                     for n in range(STUCK)]
            deadline = time.monotonic() + 60
            while limiter.statistics().tasks_waiting < STUCK - SLOTS:  # every slot held, the rest queued
                assert time.monotonic() < deadline, limiter.statistics()
                time.sleep(0.02)
            assert limiter.borrowed_tokens == SLOTS
            # A followed request queued for a slot is on the progress board from its arrival: polls find it
            # starting, not a 404 (a browser logs each as an error).
            followed = pool.submit(client.get, "/api/images/demo:1/predictions", params={"model": "shapes-cnn"},
                                   headers={"X-Progress-Token": "queued-for-a-slot"})
            while (polled := client.get("/api/progress/queued-for-a-slot")).status_code != 200:
                assert time.monotonic() < deadline and polled.status_code == 404
                time.sleep(0.02)
            assert polled.json()["task"] == "starting"
            reads = [pool.submit(client.get, url) for url in cheap]
            for url, read in zip(cheap, reads):
                assert read.result(timeout=30).status_code == 200, url  # before the fix: stuck until the lock
            assert not any(request.done() for request in stuck)  # the reads did not wait for the model
        finally:
            model.lock.release()
        assert [request.result(timeout=120).status_code for request in stuck + [followed]] == [200] * (STUCK + 1)
        assert limiter.borrowed_tokens == 0
        assert client.get("/api/progress/queued-for-a-slot").json()["task"] == "finished"  # then forgotten
