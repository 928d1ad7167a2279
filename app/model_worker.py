"""The model worker: the process in which `fovea serve` runs model work (`app/api/forwarding.py` says why).

It is the same app, with the same settings, served on a Unix socket in a folder only this user can open,
less the first-start jobs (the front process builds and renders, and shows their progress). `fovea serve`
starts it beside the front, the front's lifespan waits for it before serving and stops it when shutting
down; meanwhile the front restarts it if it dies (forwarded requests answer 503 until it is back). A worker
whose front has gone (even killed) removes its folder and exits by itself. Model work runs
at a lower CPU priority (`model_worker_nice`), so the reads that the front answers go first.

Run as `python -m app.model_worker SOCKET`, with the settings as JSON on its standard input.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from app.allocator import tune_allocator
from app.settings import Settings

log = logging.getLogger(__name__)
RESTART_SECONDS = 1.0  # between a worker's death and its replacement; doubled while each dies young
RESTART_MAX_SECONDS = 60.0
YOUNG_SECONDS = 30.0  # a worker that dies sooner than this after its start is crashing, not unlucky
PARENT_POLL_SECONDS = 1.0
# The front and its worker load their models at the same moment: each on one thread, not two processes of
# PyTorch's spinning threads on the same cores (docs/benchmarks.md, Start-up).
LOADING_THREADS = 1


class ModelWorker:
    """The front's handle on its worker process: start, wait until it answers, keep it running, stop."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._folder = Path(tempfile.mkdtemp(prefix="fovea-model-worker-"))  # mode 0700: this user only
        self.socket = self._folder / "worker.sock"
        self._process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor = threading.Thread(target=self._supervise, name="fovea-model-worker", daemon=True)

    def start(self) -> ModelWorker:
        self._spawn()
        self._supervisor.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # A session of its own: a Ctrl+C in the terminal, or a signal to the front's process group, reaches the
            # front alone, which stops the worker; the worker, stopped at once beside it, would be restarted.
            self._process = subprocess.Popen(self._command(), stdin=subprocess.PIPE, start_new_session=True)
            try:
                with self._process.stdin as settings_pipe:
                    settings_pipe.write(self._settings.model_dump_json().encode())
            except BrokenPipeError:  # it exited before reading them: wait_ready and the supervisor say so
                pass

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "app.model_worker", str(self.socket)]

    def _supervise(self) -> None:
        delay = 0.0
        while True:
            started = time.monotonic()
            code = self._process.wait()
            if self._stopping.is_set():
                return
            delay = restart_delay(delay, time.monotonic() - started)
            log.error("the model worker exited with %s; starting another in %g s", code, delay)
            if self._stopping.wait(delay):
                return
            self._spawn()

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Returns once the worker answers; raises if it does not within `timeout` s (loading every model), or
        if the process it waits for exits first (a worker that cannot start would be restarted for ever)."""
        deadline, process = time.monotonic() + timeout, self._process
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=5) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"the model worker exited with {process.returncode} before it answered "
                                       "(its log is above)")
                try:
                    if client.get("http://fovea-model-worker/api/health",
                                  headers={"host": "127.0.0.1"}).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"the model worker did not answer within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the worker and removes its socket's folder (again: harmless)."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)


def restart_delay(previous: float, lived: float) -> float:
    """Seconds before the next worker, after one that ran `lived` s and was started `previous` s after the one
    before: 1 s, doubled while each dies young (a worker that cannot load its models would otherwise be
    restarted, and log its failure, every second), up to a minute."""
    if lived >= YOUNG_SECONDS or previous == 0.0:
        return RESTART_SECONDS
    return min(2 * previous, RESTART_MAX_SECONDS)


def worker_settings(settings: Settings) -> Settings:
    """The front's settings, less its first-start jobs, and any Host: the front checked it, and no one else can
    reach the worker's socket."""
    return settings.model_copy(update={"auto_index_demo": False, "auto_visualize_demo": False,
                                       "allowed_hosts": ["*"]})


def _exit_with_parent(socket: Path) -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    shutil.rmtree(socket.parent, ignore_errors=True)  # the front died before it could
    os._exit(0)  # nobody can reach this socket any more


def main(socket: str) -> None:
    tune_allocator()  # as `fovea` does, before torch is imported: this process runs the forward passes
    import uvicorn

    from app.api.app import create_app
    from app.main import freeze_startup_heap

    settings = worker_settings(Settings(**json.loads(sys.stdin.read())))
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s [model worker]: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(Path(socket),), name="fovea-parent-watch", daemon=True).start()
    if settings.model_worker_nice:
        os.nice(settings.model_worker_nice)
    app = create_app(settings, after_start=freeze_startup_heap, loading_threads=LOADING_THREADS)
    uvicorn.run(app, uds=socket, log_level=settings.log_level,
                timeout_keep_alive=settings.keep_alive_seconds, access_log=False)  # the front logs each request


if __name__ == "__main__":
    main(sys.argv[1])
