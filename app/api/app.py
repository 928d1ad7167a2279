"""The application factory. Nothing heavy happens at import: models load in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app import __version__
from app.api.body_limit import BodyLimit
from app.api.compute import compute_limiter
from app.api.errors import COMMON_ERRORS, install_error_handlers
from app.api.followed import FollowFromArrival
from app.api.forwarding import ForwardModelWork, document_forwarding
from app.api.routers import ROUTERS
from app.api.trusted_hosts import TrustedHosts
from app.atlas.background import Foreground
from app.atlas.dictionary_store import DictionaryStore
from app.atlas.first_renders import start_first_run_rendering
from app.atlas.first_run import start_first_run_indexing
from app.atlas.notes import Notes
from app.atlas.registry import AtlasRegistry
from app.atlas.search import Search
from app.engine.devices import resolve_device
from app.lru import LruCache
from app.model_worker import ModelWorker
from app.settings import FRONTEND_DIR, Settings
from app.store.store import load_store
from app.studio.inputs import InputCache
from app.studio.model_calls import ModelCalls
from app.studio.progress import ProgressBoard
from app.uploads.store import UploadStore

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, after_start: Callable[[], None] | None = None,
               model_worker: ModelWorker | None = None, loading_threads: int = 0) -> FastAPI:
    """`after_start` runs once everything has loaded, before the first request (a process-wide step that
    only the process's owner may take, such as `fovea serve` freezing the heap). With a started
    `model_worker`, requests that run a model are forwarded to it (`forwarding.py`); the lifespan waits for
    it to answer before serving, and stops it on shutdown. `loading_threads` bounds the CPU threads that load the
    models (`load_store`): 1 where another process loads beside this one."""
    settings = settings or Settings()
    device = resolve_device(settings.device)  # fail here, before serving, when the device does not exist

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app.state.store = await run_in_threadpool(load_store, settings, loading_threads)
        app.state.atlases = AtlasRegistry(settings.data_dir)
        app.state.dictionaries = DictionaryStore(settings.data_dir)
        app.state.model_inputs = InputCache()
        app.state.model_calls = ModelCalls(settings)
        app.state.model_views = LruCache(settings.model_view_cache_bytes, weigh=len)
        app.state.compute = compute_limiter(settings.compute_concurrency)
        app.state.uploads = UploadStore(settings.data_dir / "uploads", settings.upload_max_bytes,
                                        settings.upload_max_pixels, settings.upload_max_decode_bytes,
                                        settings.upload_decode_concurrency)
        app.state.notes = Notes(settings.data_dir)
        app.state.search = Search()
        if model_worker is not None:
            await run_in_threadpool(model_worker.wait_ready)
        # The first-start jobs begin once the worker answers: at its lower priority it would otherwise wait for
        # them, and the server with it (a first start answered after 36 s instead of 10 s on two cores).
        app.state.indexer = start_first_run_indexing(app.state.store, app.state.atlases, settings, foreground)
        app.state.renderer = start_first_run_rendering(app.state.store, app.state.atlases, settings, foreground)
        if after_start is not None:
            after_start()
        try:
            yield
        finally:
            for job in (app.state.indexer, app.state.renderer, model_worker):
                if job is not None:
                    await run_in_threadpool(job.stop)

    app = FastAPI(
        title="Fovea",
        version=__version__,
        description="See what the neurons and features of convolutional networks respond to.",
        lifespan=lifespan,
        responses=COMMON_ERRORS,
    )
    app.state.settings = settings
    app.state.device = device
    # Requests that run a model, here or forwarded to the worker: the first-start jobs give way to them.
    app.state.foreground = foreground = Foreground()
    app.state.progress = ProgressBoard(settings.cam_max_followed)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, path="/api/images", limit=settings.upload_max_bytes)
    # A note's JSON: up to 4 bytes per character in UTF-8, 6 escaped, plus its author and keys.
    app.add_middleware(BodyLimit, path_suffix="/notes", limit=6 * settings.note_max_chars + 2048, multipart=False)
    app.add_middleware(FollowFromArrival, board=app.state.progress)  # inside the forwarding: in the process that works
    if model_worker is not None:
        app.add_middleware(ForwardModelWork, routers=ROUTERS, socket=model_worker.socket,
                           timeout=settings.model_worker_timeout_seconds, foreground=foreground)
    app.add_middleware(TrustedHosts, allowed=settings.trusted_hosts())  # added last: the outermost, checked first
    document_forwarding(ROUTERS)  # before the routers are included: FastAPI copies what they declare
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", RevalidatedStaticFiles(directory=FRONTEND_DIR), name="static")
    return app


class RevalidatedStaticFiles(StaticFiles):
    """Static files that clients revalidate: modules import each other by plain URLs, and revalidating keeps
    an upgraded front end coherent. (Not an `http` middleware: that wraps every request's `receive`, and
    routes then cannot see a client disconnect.)"""

    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response
