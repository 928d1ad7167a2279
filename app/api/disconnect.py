"""Long work stops when its client goes away: while a route's work runs in a worker thread, a coroutine polls
the connection and sets an event the work checks between its steps (a browser moving on from Score-CAM, or
from a unit whose feature visualisation is still rendering, frees the model)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1


@asynccontextmanager
async def client_gone(request: Request) -> AsyncIterator[threading.Event]:
    """An event set once the request's client has disconnected, watched while the block runs."""
    gone = threading.Event()
    watcher = asyncio.create_task(_watch(request, gone))
    try:
        yield gone
    finally:
        watcher.cancel()


async def _watch(request: Request, gone: threading.Event) -> None:
    try:
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_SECONDS)
    except Exception:  # a connection that cannot be read is as good as gone
        log.exception("watching a request's connection failed; stopping the request")
    gone.set()
