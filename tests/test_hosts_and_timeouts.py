"""Exposure: the server answers only Host headers that name it (a DNS-rebinding page cannot read a server
on localhost), and `fovea serve` closes connections that stall: a client that says nothing, sends half a
request head, or stops sending a body is cut off after read_timeout_seconds; an idle connection after an
answer after keep_alive_seconds; a client that keeps sending is never cut off."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.api.trusted_hosts import host_name
from app.settings import Settings
from tests.conftest import WITHOUT_MODEL_WORKER
from tests.live_server import live_server
from tests.test_api import assert_error
from tests.test_uploads import encode, gradient

READ_TIMEOUT, KEEP_ALIVE = 1.0, 2.0  # apart, so that each case shows which of the two closed it
SLACK = 1.0  # the event loop's and a busy machine's share


@pytest.fixture
def app_for(settings_for, card_dir):
    def make(**settings) -> TestClient:
        return TestClient(create_app(settings_for(card_dir).model_copy(update=settings)))

    return make


def test_the_default_hosts_are_this_machine_and_the_named_host(monkeypatch):
    monkeypatch.delenv("FOVEA_ALLOWED_HOSTS")  # the tests' conftest adds TestClient's `testserver`
    assert Settings().trusted_hosts() == ["localhost", "127.0.0.1", "::1"]
    assert Settings(host="0.0.0.0").trusted_hosts() == ["localhost", "127.0.0.1", "::1"]
    assert Settings(host="Fovea.Lab.Example").trusted_hosts()[-1] == "fovea.lab.example"
    monkeypatch.setenv("FOVEA_ALLOWED_HOSTS", " fovea.example , *.lab.example,")
    assert Settings().allowed_hosts == ["fovea.example", "*.lab.example"]


@pytest.mark.parametrize(("header", "host"), [("localhost:8000", "localhost"), ("[::1]:8000", "::1"), ("[::1]", "::1"),
                                              ("127.0.0.1", "127.0.0.1"), ("LocalHost.", "localhost"), ("", "")])
def test_host_names_are_read_without_port_or_final_dot(header, host):
    assert host_name(header) == host


def test_a_request_for_another_host_is_refused(app_for):
    with app_for(allowed_hosts=["localhost", "127.0.0.1", "::1", "*.lab.example"]) as client:
        for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "gpu.lab.example"):
            assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
        for host in ("attacker.example", "localhost.attacker.example", "lab.example", "testserver", "[::2]:8000"):
            for path in ("/api/health", "/", "/static/js/app.js", "/openapi.json"):
                error = assert_error(client.get(path, headers={"Host": host}), 400, "invalid_host", repr(host),
                                     "allowed_hosts")
                assert error["detail"]["host"] == host
    with app_for(allowed_hosts=["*"]) as client:
        assert client.get("/api/health", headers={"Host": "anything.example"}).status_code == 200


def test_the_schema_declares_the_host_refusal(app_for):
    with app_for() as client:
        spec = client.get("/openapi.json").json()
    assert all("400" in operation["responses"] for path in spec["paths"].values() for operation in path.values())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("timeouts") / "data"
    data.mkdir()
    env = {"FOVEA_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT), "FOVEA_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE),
           "FOVEA_AUTO_INDEX_DEMO": "false", "FOVEA_ALLOWED_HOSTS": "localhost", **WITHOUT_MODEL_WORKER}
    with live_server(data, "--no-builtin-models", env=env) as base:
        yield base.removeprefix("http://").split(":")


def seconds_until_closed(sock: socket.socket, limit: float = 10.0) -> float:
    """How long until the server closes `sock` (reading and dropping whatever it answers)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def connect(server) -> socket.socket:
    host, port = server
    return socket.create_connection((host, int(port)), timeout=5)


def head(path: str, method: str = "GET", **headers: str) -> bytes:
    fields = [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def in_parallel(*checks) -> list:
    """Run the (slow, waiting) checks at once; their results in order."""
    results = [None] * len(checks)

    def run(index, check):
        try:
            results[index] = check()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, check)) for i, check in enumerate(checks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def test_stalled_connections_are_closed(server):
    def silent():
        with connect(server) as sock:
            return seconds_until_closed(sock)

    def half_a_head():
        with connect(server) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n")
            return seconds_until_closed(sock)

    def trickled_head():  # a byte every 0.3 s: each byte would restart an idle timer, never this deadline
        with connect(server) as sock:
            started = time.monotonic()
            try:
                for byte in b"GET /api/health HTTP/1.1\r\nX-Slow: " + b"x" * 100:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.3)
            except OSError:  # closed while we were still sending: what is asked for
                return time.monotonic() - started
            return time.monotonic() - started + seconds_until_closed(sock)

    def half_a_body():
        with connect(server) as sock:
            sock.sendall(head("/api/images", "POST", Content_Type="multipart/form-data; boundary=x",
                              Content_Length="1000") + b"--x\r\n")
            return seconds_until_closed(sock)

    def idle_after_an_answer():
        with connect(server) as sock:
            sock.sendall(head("/api/health"))
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            return seconds_until_closed(sock)

    def half_a_head_after_an_answer():  # idle for less than the keep-alive, then a head that stops half-way
        with connect(server) as sock:
            sock.sendall(head("/api/health"))
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(KEEP_ALIVE / 2)
            sock.sendall(b"GET /api/health HTTP/1.1\r\n")
            return seconds_until_closed(sock)

    silent_s, half_s, trickled_s, body_s, idle_s, next_s = in_parallel(
        silent, half_a_head, trickled_head, half_a_body, idle_after_an_answer, half_a_head_after_an_answer)
    for name, seconds, limit in (("silent", silent_s, READ_TIMEOUT), ("half a head", half_s, READ_TIMEOUT),
                                 ("trickled head", trickled_s, READ_TIMEOUT), ("half a body", body_s, READ_TIMEOUT),
                                 ("idle after an answer", idle_s, KEEP_ALIVE),
                                 ("half a head after an answer", next_s, READ_TIMEOUT)):
        assert limit - 0.2 <= seconds <= limit + SLACK, (name, seconds)


def test_a_client_that_keeps_sending_is_not_cut_off(server):
    """A body sent in pieces 0.5 s apart, for three times the read timeout, still gets its answer."""
    boundary = "fovea-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + encode(gradient(30, 30), "PNG") + \
        f"\r\n--{boundary}--\r\n".encode()
    pieces = [body[i:i + len(body) // 6 + 1] for i in range(0, len(body), len(body) // 6 + 1)]
    with connect(server) as sock:
        sock.sendall(head("/api/images", "POST", Content_Type=f"multipart/form-data; boundary={boundary}",
                          Content_Length=str(len(body))))
        started = time.monotonic()
        for piece in pieces:
            time.sleep(0.5)
            sock.sendall(piece)
        assert time.monotonic() - started > 2 * READ_TIMEOUT
        sock.settimeout(10)
        assert sock.recv(65536).split(b"\r\n")[0] in (b"HTTP/1.1 201 Created", b"HTTP/1.1 200 OK")


def test_a_live_server_refuses_other_hosts(server):
    host, port = server
    assert httpx.get(f"http://{host}:{port}/api/health", headers={"Host": f"localhost:{port}"}).status_code == 200
    refused = httpx.get(f"http://{host}:{port}/api/health", headers={"Host": "rebound.attacker.example"})
    assert_error(refused, 400, "invalid_host", "rebound.attacker.example")
