"""Requests that run a model, answered by the model worker (`app/model_worker.py`), a process of their own.

A forward pass holds the GIL between its kernels, and in one process every read (a unit's JSON, an image's
bytes) waited for it under load (docs/benchmarks.md, Load). `fovea serve` therefore runs model work in a second
process, and this middleware forwards to it, over its private Unix socket, each request whose route runs a
model, streaming the answer back as it comes; everything else is answered here. A client that goes away closes
the forwarded connection, so the worker stops the work as it would for the client itself.

Which routes run a model is read from the routes: those that depend on the compute limiter (they run a model)
or on the progress board (their followers must reach the process that holds the work). A new model route is
forwarded without being listed anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anyio
import httpx
from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import get_compute_limiter, get_progress_board
from app.api.errors import error_doc, error_response
from app.atlas.background import Foreground

log = logging.getLogger(__name__)
MODEL_WORK = (get_compute_limiter, get_progress_board)
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailer", b"transfer-encoding", b"upgrade"})
NOT_FORWARDED = HOP_BY_HOP | {b"content-length"}  # of a request: none has a body
NOT_RETURNED = HOP_BY_HOP | {b"date", b"server"}  # of an answer: this server adds its own
WORKER_HOST = "fovea-model-worker"  # the socket is the address; the client's own Host header goes with each request


FORWARDING_ERRORS = {
    503: error_doc("The model worker is starting or restarting (`fovea serve`); `Retry-After` says when to ask "
                   "again."),
    504: error_doc("The model worker did not answer within the model_worker_timeout_seconds setting."),
}


def api_routes(routers: Sequence[APIRouter]) -> list[BaseRoute]:
    """The routes of `routers` in the order the app includes them, so that matches are tried as it tries."""
    return [route for router in routers for route in router.routes]


def document_forwarding(routers: Sequence[APIRouter]) -> None:
    """Adds the answers that forwarding can give to the schema of each forwarded route (once per route)."""
    for route in filter(runs_models, api_routes(routers)):
        for status, doc in FORWARDING_ERRORS.items():
            route.responses.setdefault(status, doc)


def runs_models(route: BaseRoute) -> bool:
    return isinstance(route, APIRoute) and _depends_on(route.dependant)


def _depends_on(dependant: Dependant) -> bool:
    return dependant.call in MODEL_WORK or any(_depends_on(d) for d in dependant.dependencies)


class ForwardModelWork:
    def __init__(self, app: ASGIApp, routers: Sequence[APIRouter], socket: Path, timeout: float,
                 foreground: Foreground):
        self.app, self._socket, self._timeout, self._foreground = app, socket, timeout, foreground
        self._routes = api_routes(routers)
        self._forwarded = {id(route) for route in self._routes if runs_models(route)}
        self._client: httpx.AsyncClient | None = None  # made in the server's event loop, on first use
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the access log already has each request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._runs_models(scope):
            with self._foreground.working():
                await self._forward(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _runs_models(self, scope: Scope) -> bool:
        """Whether the route that will answer this request runs a model: the first that matches it fully, as
        the router picks (a method the route lacks is answered here, with the 405)."""
        for route in self._routes:
            if route.matches(scope)[0] is Match.FULL:
                return id(route) in self._forwarded
        return False

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self._socket)),
                timeout=httpx.Timeout(self._timeout, connect=5.0))
        query = scope.get("query_string", b"")
        request = self._client.build_request(
            scope["method"],
            httpx.URL(f"http://{WORKER_HOST}", raw_path=scope.get("raw_path", scope["path"].encode())
                      + (b"?" + query if query else b"")),
            headers=[(name, value) for name, value in scope["headers"] if name.lower() not in NOT_FORWARDED])
        answering, failed = False, None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_cancel_when_gone, receive, tasks.cancel_scope)
            try:
                response = await self._client.send(request, stream=True)
                try:
                    await send({"type": "http.response.start", "status": response.status_code,
                                "headers": [(name, value) for name, value in response.headers.raw
                                            if name.lower() not in NOT_RETURNED]})
                    answering = True
                    async for chunk in response.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                finally:
                    await response.aclose()
            except httpx.TransportError as error:
                failed = error
            tasks.cancel_scope.cancel()
        if failed is None:
            return
        log.warning("forwarding %s to the model worker failed: %r", scope["path"], failed)
        if answering:
            return  # part of the answer is out: the server closes the connection, all that can say it broke
        timed_out = isinstance(failed, httpx.TimeoutException)
        answer = error_response(
            504 if timed_out else 503, "model_worker_timeout" if timed_out else "model_worker_unavailable",
            f"the model worker did not answer within {self._timeout:g} s (the model_worker_timeout_seconds "
            "setting)" if timed_out else "the model worker is not running (starting or restarting); try again",
            path=scope["path"])
        if not timed_out:
            answer.headers["Retry-After"] = "1"
        await answer(scope, receive, send)


async def _cancel_when_gone(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancels `scope` once the client has disconnected (forwarded requests carry no body to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
