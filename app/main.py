"""Entry point for running the server: `fovea serve`, or `uvicorn app.main:create_app --factory` (which
leaves out the read timeout below, and takes uvicorn's own keep-alive flag)."""

from __future__ import annotations

import gc
import logging

import uvicorn

from app.api.app import create_app
from app.http_protocol import with_read_timeout
from app.model_worker import LOADING_THREADS, ModelWorker
from app.settings import Settings

__all__ = ["create_app", "serve"]
log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """The server, with its model worker (`app/model_worker.py`) unless the `model_worker` setting is off; the
    worker starts loading at once, beside the front, and each loads its models on one thread."""
    worker = ModelWorker(settings).start() if settings.model_worker else None
    try:
        uvicorn.run(create_app(settings, after_start=freeze_startup_heap, model_worker=worker,
                               loading_threads=LOADING_THREADS if worker else 0), host=settings.host,
                    port=settings.port, log_level=settings.log_level, timeout_keep_alive=settings.keep_alive_seconds,
                    http=with_read_timeout(settings.read_timeout_seconds))
    finally:
        if worker is not None:  # the lifespan stopped it, unless the app never started
            worker.stop()


def freeze_startup_heap() -> None:
    """Keep what startup built (modules, models, the app: about 400,000 objects) out of the garbage collector's
    oldest generation. Each full collection scanned them all, and under load one took 150-200 ms with the GIL
    held, stalling every request in flight; after the freeze one takes about 17 ms (docs/benchmarks.md, Load)."""
    gc.collect()
    gc.freeze()
    log.info("startup heap frozen: %d objects left out of full collections", gc.get_freeze_count())
