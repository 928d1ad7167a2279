"""The first-start jobs give way to the model work pages wait for: while a request that runs a model is in
flight (in the server, or forwarded to its model worker), the background renderer and indexer wait between
their steps, and go on once it has been quiet for a moment. On two cores a background render beside it took a
page's render from 1.5 s to 3-9 s (docs/architecture.md)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.api.forwarding import ForwardModelWork
from app.api.routers import ROUTERS
from app.atlas.background import QUIET_SECONDS, BackgroundIndexer, Foreground
from app.atlas.first_renders import start_first_run_rendering
from app.atlas.registry import AtlasRegistry
from app.settings import Settings
from app.store.store import load_store
from tests.conftest import DEMO_MODELS_ONLY, copy_demo_atlas


class CountingForeground(Foreground):
    def __init__(self):
        super().__init__()
        self.entered = 0

    def working(self):
        self.entered += 1
        return super().working()


def returns_within(call, seconds: float) -> bool:
    done = threading.Event()
    threading.Thread(target=lambda: (call(), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_a_job_waits_while_a_page_waits_and_until_it_has_been_quiet():
    foreground = Foreground()
    assert returns_within(foreground.wait_until_quiet, 1.0)  # nothing in flight
    with foreground.working():
        assert not returns_within(foreground.wait_until_quiet, 0.5)
        cancel = threading.Event()
        cancel.set()
        assert returns_within(lambda: foreground.wait_until_quiet(cancel), 2.0)  # a job being stopped goes on
    ended = time.monotonic()
    assert returns_within(foreground.wait_until_quiet, 1.0 + QUIET_SECONDS)
    assert time.monotonic() - ended >= QUIET_SECONDS


def test_the_background_renderer_renders_nothing_while_a_page_waits(shared_demo_atlas, tmp_path):
    root = copy_demo_atlas(shared_demo_atlas, tmp_path)
    settings = Settings(data_dir=root / "data", device="cpu", auto_index_demo=False, auto_visualize_demo=True,
                        visualization_steps=2, **DEMO_MODELS_ONLY)
    foreground = Foreground()
    renderer = None
    try:
        with foreground.working():
            renderer = start_first_run_rendering(load_store(settings), AtlasRegistry(settings.data_dir), settings,
                                                 foreground)
            status = renderer.status["shapes-cnn"]
            time.sleep(2.0)  # alone, its first layer's 3 batches of 2 steps take well under a second
            assert status.state == "rendering" and status.done == 0, status
        deadline = time.monotonic() + 60
        while status.done == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status.done > 0, status  # once the page's work is over, it goes on
    finally:
        if renderer is not None:
            renderer.stop()


def test_the_background_indexer_waits_between_batches_while_a_page_waits():
    foreground, batches = Foreground(), []

    def build(model_id, dataset, progress, cancel, dissect_progress):
        for done in range(3):
            batches.append(time.monotonic())
            progress(done + 1, 3)

    with foreground.working():
        indexer = BackgroundIndexer(build, foreground)
        indexer.enqueue("m", "d", lambda: None)
        time.sleep(0.5)
        assert len(batches) == 1  # the first batch ran, the next waits
        released = time.monotonic()
    deadline = time.monotonic() + 10
    while indexer.status("m").state != "done" and time.monotonic() < deadline:
        time.sleep(0.02)
    indexer.stop()
    assert indexer.status("m").state == "done" and len(batches) == 3 and batches[1] >= released


def test_requests_that_run_a_model_count_and_reads_do_not(shared_demo_atlas, tmp_path):
    root = copy_demo_atlas(shared_demo_atlas, tmp_path)
    settings = Settings(data_dir=root / "data", device="cpu", auto_index_demo=False, auto_visualize_demo=False,
                        **DEMO_MODELS_ONLY)
    app = create_app(settings)
    app.state.foreground = spy = CountingForeground()
    with TestClient(app) as client:
        assert client.get("/api/models/shapes-cnn/layers/block4/units/5").status_code == 200
        assert spy.entered == 0
        answer = client.get("/api/images/demo:3/predictions", params={"model": "shapes-cnn"})
        assert answer.status_code == 200 and spy.entered == 1


def test_requests_forwarded_to_the_model_worker_count_and_reads_do_not(tmp_path):
    spy, inner = CountingForeground(), FastAPI()
    inner.get("/api/health")(lambda: {"ok": True})
    forwarding = ForwardModelWork(inner, routers=ROUTERS, socket=tmp_path / "no-worker.sock", timeout=1.0,
                                  foreground=spy)

    async def requests() -> None:
        transport = httpx.ASGITransport(app=forwarding)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            assert (await client.get("/api/health")).status_code == 200 and spy.entered == 0
            answer = await client.get("/api/images/demo:3/predictions", params={"model": "shapes-cnn"})
            assert answer.status_code == 503 and spy.entered == 1  # no worker here: counted while it was tried

    with ThreadPoolExecutor(1) as own_loop:  # a thread of its own: a browser test may have left this one a loop
        own_loop.submit(anyio.run, requests).result()
    assert returns_within(spy.wait_until_quiet, 1.0 + QUIET_SECONDS)  # and no longer once answered
