"""Request dependencies: the validation chain model -> layer, each step raising a domain error."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.engine.layers import LayerInfo
from app.store.store import LoadedModel, ModelStore


def get_store(request: Request) -> ModelStore:
    return request.app.state.store


def get_model(model: Annotated[str, Path(description="Model id, as in its card.")],
              store: Annotated[ModelStore, Depends(get_store)]) -> LoadedModel:
    return store.get(model)


def get_ready_model(model: Annotated[LoadedModel, Depends(get_model)],
                    store: Annotated[ModelStore, Depends(get_store)]) -> LoadedModel:
    return store.ready(model.id)


def get_layer(layer: Annotated[str, Path(description="Dotted module path, e.g. `layer4.1`.")],
              model: Annotated[LoadedModel, Depends(get_ready_model)]) -> LayerInfo:
    return model.layer(layer)
