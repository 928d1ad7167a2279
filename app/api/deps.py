"""Request dependencies: the validation chain model -> layer, each step raising a domain error. The steps
only look things up in memory, so they are `async` and run on the event loop: as plain `def` functions each
would cost a request a hop to a worker thread, which under load costs more than the lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from app.api.errors import error_doc
from app.engine.layers import LayerInfo
from app.store.store import LoadedModel, ModelStore
from app.studio.progress import TOKEN_PATTERN

# A token of the client's choosing, sent with a request that may run long or wait for a busy model.
ProgressToken = Annotated[str | None, Header(
    alias="X-Progress-Token", pattern=TOKEN_PATTERN,
    description="A token of the client's choosing: while the request runs, `GET /api/progress/{token}` says how "
                "far it has got (or that it waits for the model). A header, so that the URL (and its cached "
                "answer) stays the same.")]


# For `responses=` of every route that runs a model (get_ready_model, or store.ready).
MODEL_UNAVAILABLE = {409: error_doc("The model failed to load (its error says why).")}


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_model(model: Annotated[str, Path(description="Model id, as in its card.")],
                    store: Annotated[ModelStore, Depends(get_store)]) -> LoadedModel:
    return store.get(model)


async def get_ready_model(model: Annotated[LoadedModel, Depends(get_model)],
                          store: Annotated[ModelStore, Depends(get_store)]) -> LoadedModel:
    return store.ready(model.id)


async def get_layer(layer: Annotated[str, Path(description="Dotted module path, e.g. `layer4.1`.")],
                    model: Annotated[LoadedModel, Depends(get_ready_model)]) -> LayerInfo:
    return model.layer(layer)
