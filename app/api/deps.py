"""Request dependencies: the app's shared state, typed (the only place that reads `request.app.state`), and
the validation chain model -> layer, each step raising a domain error. The steps only look things up in
memory, so they are `async` and run on the event loop: as plain `def` functions each would cost a request a
hop to a worker thread, which under load costs more than the lookup."""

from __future__ import annotations

from typing import Annotated

import anyio
import torch
from fastapi import Depends, Header, Path, Request

from app.api.errors import error_doc
from app.atlas.background import BackgroundIndexer
from app.atlas.dictionary_store import DictionaryStore
from app.atlas.first_renders import BackgroundRenderer
from app.atlas.notes import Notes
from app.atlas.registry import AtlasRegistry
from app.atlas.search import Search
from app.engine.layers import LayerInfo
from app.lru import LruCache
from app.settings import Settings
from app.store.store import LoadedModel, ModelStore
from app.studio.inputs import InputCache
from app.studio.model_calls import ModelCalls
from app.studio.progress import TOKEN_PATTERN, ProgressBoard
from app.uploads.store import UploadStore

# A token of the client's choosing, sent with a request that may run long or wait for a busy model.
ProgressToken = Annotated[str | None, Header(
    alias="X-Progress-Token", pattern=TOKEN_PATTERN,
    description="A token of the client's choosing: while the request runs, `GET /api/progress/{token}` says how "
                "far it has got (or that it waits for the model). A header, so that the URL (and its cached "
                "answer) stays the same.")]


# For `responses=` of every route that runs a model (get_ready_model, or store.ready).
MODEL_UNAVAILABLE = {409: error_doc("The model failed to load (its error says why).")}


# The app's shared state, set up by create_app and its lifespan (app/api/app.py).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_device(request: Request) -> torch.device:
    return request.app.state.device


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_atlases(request: Request) -> AtlasRegistry:
    return request.app.state.atlases


async def get_indexer(request: Request) -> BackgroundIndexer | None:
    """The first run's background indexer; None when the settings turn it off."""
    return request.app.state.indexer


async def get_renderer(request: Request) -> BackgroundRenderer | None:
    """The first run's background rendering of feature visualisations; None when off or with nothing to do."""
    return request.app.state.renderer


async def get_uploads(request: Request) -> UploadStore:
    return request.app.state.uploads


async def get_progress_board(request: Request) -> ProgressBoard:
    return request.app.state.progress


async def get_model_inputs(request: Request) -> InputCache:
    return request.app.state.model_inputs


async def get_model_calls(request: Request) -> ModelCalls:
    return request.app.state.model_calls


async def get_model_views(request: Request) -> LruCache:
    """PNG bytes of images as models see them, by ETag (app/api/caching.py)."""
    return request.app.state.model_views


async def get_dictionaries(request: Request) -> DictionaryStore:
    return request.app.state.dictionaries


async def get_compute_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.compute


async def get_notes(request: Request) -> Notes:
    return request.app.state.notes


async def get_search(request: Request) -> Search:
    return request.app.state.search


SettingsDep = Annotated[Settings, Depends(get_settings)]
DeviceDep = Annotated[torch.device, Depends(get_device)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
AtlasesDep = Annotated[AtlasRegistry, Depends(get_atlases)]
IndexerDep = Annotated[BackgroundIndexer | None, Depends(get_indexer)]
RendererDep = Annotated[BackgroundRenderer | None, Depends(get_renderer)]
UploadsDep = Annotated[UploadStore, Depends(get_uploads)]
ProgressBoardDep = Annotated[ProgressBoard, Depends(get_progress_board)]
ModelInputsDep = Annotated[InputCache, Depends(get_model_inputs)]
ModelCallsDep = Annotated[ModelCalls, Depends(get_model_calls)]
ModelViewsDep = Annotated[LruCache, Depends(get_model_views)]
ComputeLimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_compute_limiter)]
NotesDep = Annotated[Notes, Depends(get_notes)]
SearchDep = Annotated[Search, Depends(get_search)]
DictionariesDep = Annotated[DictionaryStore, Depends(get_dictionaries)]


async def get_model(model: Annotated[str, Path(description="Model id, as in its card.")],
                    store: StoreDep) -> LoadedModel:
    return store.get(model)


async def get_ready_model(model: Annotated[LoadedModel, Depends(get_model)], store: StoreDep) -> LoadedModel:
    return store.ready(model.id)


async def get_layer(layer: Annotated[str, Path(description="Dotted module path, e.g. `layer4.1`.")],
                    model: Annotated[LoadedModel, Depends(get_ready_model)]) -> LayerInfo:
    return model.layer(layer)
