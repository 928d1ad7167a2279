"""A model's dictionaries (`fovea dictionary`): their figures, and whether an atlas has their features."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api.deps import AtlasesDep, DictionariesDep, get_ready_model
from app.api.encoding import FastJSONResponse
from app.api.features import dictionary_json
from app.api.routers.units import ERRORS, DatasetQuery
from app.api.schemas import DictionaryList
from app.atlas.reader import Atlas
from app.atlas.registry import AtlasRegistry
from app.errors import AtlasMissing
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models/{model}", tags=["dictionaries"])


@router.get("/dictionaries", response_model=DictionaryList, responses=ERRORS,
            summary="The model's dictionaries, their figures, and whether an atlas has their features")
def list_dictionaries(model: Annotated[LoadedModel, Depends(get_ready_model)], dictionaries: DictionariesDep,
                      registry: AtlasesDep, dataset: DatasetQuery = None) -> FastJSONResponse:
    atlas = _atlas_or_none(registry, model.id, dataset)
    return FastJSONResponse({"model": model.id, "dataset": atlas.dataset if atlas else None,
                             "dictionaries": [dictionary_json(model.id, stored, atlas)
                                              for stored in dictionaries.of_model(model)]})


def _atlas_or_none(registry: AtlasRegistry, model_id: str, dataset: str | None) -> Atlas | None:
    try:
        return registry.get(model_id, dataset)
    except AtlasMissing:
        if dataset is not None:
            raise
        return None
