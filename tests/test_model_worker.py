"""`fovea serve` answers reads itself and forwards model work to its model worker, a process of its own
(app/api/forwarding.py, app/model_worker.py): which routes go, what comes back, and what happens when either
process dies. (Every end-to-end test over a live server also goes through it: CAMs, progress polls, a client
that walks away from Score-CAM, the browser journeys, the schema fuzz; and each one's stop by SIGTERM checks
that the worker went with it and left no socket folder: tests/live_server.py.)"""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.routing import Match

import app.api.app as app_factory
from app.api.app import create_app
from app.api.forwarding import api_routes, runs_models
from app.api.routers import ROUTERS
from app.model_worker import ModelWorker, restart_delay, worker_settings
from app.settings import Settings
from tests.conftest import DEMO_MODELS_ONLY_ARGS, copy_demo_atlas
from tests.live_server import gone, live_server_process, model_workers

CAM = ("/api/images/demo:3/cam", {"model": "shapes-cnn", "layer": "block4", "methods": "gradcam"})
UNIT = "/api/models/shapes-cnn/layers/block4/units/5"


def route_for(method: str, path: str):
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}
    for route in api_routes(ROUTERS):
        if route.matches(scope)[0] is Match.FULL:
            return route
    raise AssertionError(f"no route answers {method} {path}")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/images/demo:3/cam"),
    ("GET", "/api/images/demo:3/predictions"),
    ("GET", "/api/images/upload-abc/units"),
    ("GET", "/api/models/shapes-cnn/layers/block4/units/5/activation.png"),
    ("GET", "/api/models/shapes-cnn/layers/block4/receptive-field"),
    ("GET", "/api/models/shapes-cnn/layers/block4/units/5/visualization.png"),
    ("GET", "/api/progress/some-token"),
])
def test_routes_that_run_a_model_or_follow_its_work_are_forwarded(method, path):
    assert runs_models(route_for(method, path))


@pytest.mark.parametrize(("method", "path"), [
    ("GET", UNIT),
    ("GET", "/api/models/shapes-cnn/layers/block4/units"),
    ("GET", "/api/datasets/demo/images/3"),
    ("POST", "/api/images"),
    ("GET", "/api/search"),
    ("GET", "/api/models/shapes-cnn/layers/block4/units/5/notes"),
    ("GET", "/api/health"),
])
def test_reads_and_writes_stay_in_the_front(method, path):
    assert not runs_models(route_for(method, path))


def model_worker(front: int, timeout: float = 60.0) -> tuple[int, Path]:
    """(pid, socket folder) of the front's model worker, once it has one (it is restarted after a kill)."""
    deadline = time.monotonic() + timeout
    while not (found := model_workers(front)):
        assert time.monotonic() < deadline, f"no model worker under process {front}"
        time.sleep(0.1)
    return found[0]


def nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the model worker through /proc")
def test_model_work_is_answered_by_the_worker_which_is_restarted_and_dies_with_its_front(
        shared_demo_atlas, tmp_path):
    root = copy_demo_atlas(shared_demo_atlas, tmp_path)
    with live_server_process(root / "data", *DEMO_MODELS_ONLY_ARGS,
                             env={"FOVEA_AUTO_INDEX_DEMO": "false"}) as (base, front), \
            httpx.Client(base_url=base, timeout=60) as http:
        worker, folder = model_worker(front.pid)
        assert nice(worker) == nice(front.pid) + 10  # model_worker_nice: the front's reads go first
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # no other user can reach the worker

        cam = http.get(CAM[0], params=CAM[1])
        assert cam.status_code == 200, cam.text
        assert cam.json()["layer"] == "block4" and cam.headers["fovea-batch-size"] == "1"
        assert len(cam.headers.get_list("date")) == 1  # the front's own, not the worker's as well
        assert http.get(CAM[0], params=CAM[1], headers={"If-None-Match": cam.headers["etag"]}).status_code == 304
        refused = http.get("/api/images/demo:3/cam", params={"model": "nope"})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"

        os.kill(worker, signal.SIGKILL)
        assert gone(worker, 10)
        down = http.get(CAM[0], params=CAM[1])
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "model_worker_unavailable" and down.headers["retry-after"] == "1"
        assert http.get(UNIT).status_code == 200  # reads never needed the worker

        deadline = time.monotonic() + 60
        while (again := http.get(CAM[0], params=CAM[1])).status_code == 503:
            assert time.monotonic() < deadline, "the model worker was not restarted"
            time.sleep(0.2)
        assert again.status_code == 200
        assert [m["raw"] for m in again.json()["maps"]] == [m["raw"] for m in cam.json()["maps"]]
        restarted, _ = model_worker(front.pid)
        assert restarted != worker

        os.kill(front.pid, signal.SIGKILL)  # no shutdown runs: the worker notices on its own
        assert gone(restarted, 10), "the model worker outlived its front"
        assert not folder.exists()



@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the model worker through /proc")
def test_ctrl_c_stops_the_front_and_its_worker_which_is_not_restarted(shared_demo_atlas, tmp_path):
    """A terminal's Ctrl+C signals its whole foreground process group: the worker is in a session of its own, so
    only the front gets it and stops the worker, which is not taken for a crash and restarted meanwhile."""
    root = copy_demo_atlas(shared_demo_atlas, tmp_path)
    with live_server_process(root / "data", *DEMO_MODELS_ONLY_ARGS,
                             env={"FOVEA_AUTO_INDEX_DEMO": "false"}) as (base, front):
        worker, folder = model_worker(front.pid)
        assert os.getsid(worker) == worker != os.getsid(front.pid)  # a session, so a process group, of its own
        os.killpg(front.pid, signal.SIGINT)  # as a terminal's Ctrl+C; the group's shutdowns would race
        front.wait(30)
        assert gone(worker, 10) and not folder.exists()
        log = (root / f"server-{base.rsplit(':', 1)[1]}.log").read_text()
        assert "starting another" not in log and log.count("Started server process") == 2, log


def test_the_first_start_jobs_begin_once_the_worker_answers(tmp_path, monkeypatch):
    """At its lower priority, a worker that starts beside the first start's atlas builds waits for them, and the
    server with it (36 s instead of 11 s to the first answer of a first start on two cores)."""
    events = []

    class Worker:  # what the lifespan asks of a started ModelWorker
        socket = tmp_path / "worker.sock"

        def wait_ready(self):
            events.append("the worker answers")

        def stop(self):
            events.append("the worker stops")

    monkeypatch.setattr(app_factory, "start_first_run_indexing", lambda *_: events.append("indexing"))
    monkeypatch.setattr(app_factory, "start_first_run_rendering", lambda *_: events.append("rendering"))
    settings = Settings(data_dir=tmp_path / "data", device="cpu", builtin_models=False, model_dirs=[])
    with TestClient(create_app(settings, model_worker=Worker()), base_url="http://127.0.0.1") as client:
        assert client.get("/api/health").status_code == 200
    assert events == ["the worker answers", "indexing", "rendering", "the worker stops"]


class ExitingWorker(ModelWorker):
    def _command(self) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit(3)"]


def test_a_worker_that_cannot_start_fails_the_start_at_once_instead_of_restarting_for_ever(tmp_path):
    worker = ExitingWorker(Settings(data_dir=tmp_path)).start()
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited with 3 before it answered"):
            worker.wait_ready(timeout=60)
        assert time.monotonic() - started < 30
    finally:
        worker.stop()


def test_the_worker_answers_any_host_the_front_let_through():
    """The front checks the Host header; the worker's socket is reachable from this user only, and its
    readiness check must pass whatever allowed_hosts says (a server on 0.0.0.0 allowing only its DNS name)."""
    front = Settings(host="0.0.0.0", allowed_hosts=["fovea.example.org"])
    assert worker_settings(front).trusted_hosts() == ["*"]


def test_a_worker_that_keeps_dying_young_is_restarted_less_and_less_often():
    delays, delay = [], 0.0
    for _ in range(8):
        delay = restart_delay(delay, lived=2.0)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert restart_delay(60.0, lived=3600.0) == 1  # one that ran a while was unlucky: back to a second
