"""Run `fovea serve` as a real process on a free port, for end-to-end tests over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

# The logs of the servers running now, by base URL: a failing test's report shows their ends (tests/conftest.py).
RUNNING_LOGS: dict[str, Path] = {}

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(data_dir: Path, *extra_args: str, env: dict[str, str] | None = None, timeout: float = 90.0,
                device: str = "cpu"):
    """The server's base URL, once it answers `/api/health`."""
    with live_server_process(data_dir, *extra_args, env=env, timeout=timeout, device=device) as (base, _process):
        yield base


@contextmanager
def live_server_process(data_dir: Path, *extra_args: str, env: dict[str, str | None] | None = None,
                        timeout: float = 90.0, program: list[str] | None = None, cwd: Path | None = None,
                        device: str = "cpu"):
    """(base URL, the server's `Popen`), for callers that also watch the process (its memory, its exit).

    `program` replaces `python -m app serve` (an installed `fovea serve`); `env` entries set to None are removed;
    `device` is the server's (tests run on the CPU; a benchmark on a GPU machine says `auto`)."""
    port = free_port()
    command = [*(program or [sys.executable, "-m", "app", "serve"]), "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir), "--device", device, *extra_args]
    log = open(data_dir.parent / f"server-{port}.log", "w+")
    environment = {key: value for key, value in {**os.environ, **(env or {})}.items() if value is not None}
    # A process group of its own, as a server started from a terminal has: a test may signal the whole group.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=cwd,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    RUNNING_LOGS[base] = Path(log.name)
    try:
        # One client for every poll: each httpx.get makes a client, whose TLS context costs 23 ms of CPU to load.
        with httpx.Client(base_url=base, timeout=1) as poll:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited with {process.returncode}:\n{log.read()}")
                try:
                    if poll.get("/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not answer within {timeout} s")
                time.sleep(0.2)
        yield base, process
    finally:
        RUNNING_LOGS.pop(base, None)
        workers = model_workers(process.pid)  # none left to find if the test killed the server itself
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    # Every stop checks the model worker's: uvicorn raises SIGTERM again after its shutdown, so only the app's
    # lifespan can stop the worker and remove its socket's folder (app/model_worker.py).
    for pid, folder in workers:
        assert gone(pid, 10) and not folder.exists(), f"the model worker {pid} outlived its server, or its {folder}"


def children(pid: int) -> list[int]:
    """The processes `pid` started that are still its children (Linux; none elsewhere)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(status.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(status.parent.name))
        except OSError:  # a process that ended while we looked
            continue
    return found


def model_workers(server: int) -> list[tuple[int, Path]]:
    """(pid, socket folder) of the server's model worker, if it has one now: `python -m app.model_worker SOCKET`."""
    found = []
    for pid in children(server):
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "app.model_worker" in arguments:
            found.append((pid, Path(arguments[arguments.index("app.model_worker") + 1]).parent))
    return found


def gone(pid: int, timeout: float) -> bool:
    """Whether `pid` exits within `timeout` s (a zombie that nobody has reaped yet counts as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
