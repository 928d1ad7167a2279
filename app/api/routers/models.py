"""Models and their layers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api.deps import StoreDep, get_layer, get_model
from app.api.errors import ErrorResponse
from app.api.schemas import LayerOut, ModelDetail, ModelSummary, layer_out, model_detail, model_summary
from app.engine.layers import LayerInfo
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models", tags=["models"])
NOT_FOUND = {404: {"model": ErrorResponse, "description": "Unknown model or layer."}}


@router.get("", response_model=list[ModelSummary], summary="All models, with their load status")
def list_models(store: StoreDep) -> list[ModelSummary]:
    return [model_summary(model) for model in store]


@router.get("/{model}", response_model=ModelDetail, responses=NOT_FOUND,
            summary="One model: its card, status, labels and explorable layers with shapes")
def read_model(model: Annotated[LoadedModel, Depends(get_model)]) -> ModelDetail:
    return model_detail(model)


@router.get("/{model}/layers/{layer}", response_model=LayerOut,
            responses=NOT_FOUND | {409: {"model": ErrorResponse, "description": "The model failed to load."}},
            summary="One layer of a model")
def read_layer(layer: Annotated[LayerInfo, Depends(get_layer)]) -> LayerOut:
    return layer_out(layer)
