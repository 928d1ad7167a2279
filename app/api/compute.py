"""Model work on a capacity of its own. Plain `def` routes and their dependencies run on anyio's worker
threads, at most 40 at once for the whole app: requests waiting for a busy model would hold them all, and a
unit's JSON or an image's bytes would queue behind computation. So a route that runs a model first takes
one of `compute_concurrency` compute slots (`dependencies=[COMPUTE]`), and a request waiting for a slot
holds no thread."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import Depends, Request

from app.api.deps import ComputeLimiterDep


def compute_limiter(total: int) -> anyio.CapacityLimiter:
    """Made inside the app's event loop (the lifespan), where anyio can tell which loop it serves."""
    return anyio.CapacityLimiter(total)


async def compute_slot(request: Request, limiter: ComputeLimiterDep) -> AsyncIterator[None]:
    """A compute slot, the request counted as foreground work (waiting for a slot too) meanwhile."""
    borrower = object()  # the request's own token, whichever task FastAPI runs the exit in
    with request.app.state.foreground.working():
        await limiter.acquire_on_behalf_of(borrower)
        try:
            yield
        finally:
            limiter.release_on_behalf_of(borrower)


COMPUTE = Depends(compute_slot)

# Says how many requests shared the pass that answered this one (app/studio/batching.py); 1: it ran alone.
BATCH_SIZE_HEADER = "Fovea-Batch-Size"


def batch_headers(size: int) -> dict[str, str]:
    return {BATCH_SIZE_HEADER: str(size)}
