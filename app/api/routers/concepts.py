"""Concepts: a model's detectors summary on an atlas with concept labels (NetDissect's report: labelled
units per layer and category, unique concepts), and a concept's mask on an atlas image as the model sees it
(drawn over a unit's top images)."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response
from PIL import Image

from app.api.deps import AtlasesDep, SettingsDep, get_ready_model
from app.api.encoding import FastJSONResponse
from app.api.errors import ErrorResponse
from app.api.indices import DatasetIndex
from app.api.routers.units import DatasetQuery
from app.api.schemas import ConceptSummary
from app.atlas.concepts import concepts_of
from app.atlas.ground_truth import mask_to_input
from app.atlas.labels import detector_summary, has_labels
from app.atlas.reader import Atlas
from app.atlas.registry import AtlasRegistry
from app.errors import NotFound
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models/{model}/concepts", tags=["concepts"])
ERRORS = {404: {"model": ErrorResponse, "description": "Unknown model, concept or image, or an atlas without "
                                                       "concept labels."},
          409: {"model": ErrorResponse, "description": "The model failed to load, or it has no atlas of that dataset "
                                                       "(with the command that builds one)."}}
MASK_COLOUR = (255, 255, 255)


def labelled_atlas(registry: AtlasRegistry, model: LoadedModel, dataset: str | None) -> Atlas:
    """The named atlas, or the model's first atlas with concept labels; a 404 that says how to make one."""
    if dataset is not None:
        atlas = registry.get(model.id, dataset)
        if not has_labels(atlas):
            raise NotFound(f"the {dataset!r} atlas of {model.id!r} has no concept labels: its images have no "
                           f"concept masks or classes (docs/concepts.md)", model=model.id, dataset=dataset)
        return atlas
    for name in registry.datasets(model.id):
        atlas = registry.get(model.id, name)
        if has_labels(atlas):
            return atlas
    raise NotFound(f"no atlas of {model.id!r} has concept labels: run `fovea dissect {model.id} --dataset PATH` "
                   f"on a dataset with concept masks or classes (docs/concepts.md)", model=model.id)


@router.get("", response_model=ConceptSummary, responses=ERRORS,
            summary="The model's detectors: labelled units per layer and category, unique concepts")
def concept_summary(model: Annotated[LoadedModel, Depends(get_ready_model)], registry: AtlasesDep,
                    settings: SettingsDep, dataset: DatasetQuery = None) -> FastJSONResponse:
    atlas = labelled_atlas(registry, model, dataset)
    return FastJSONResponse({"model": model.id, **detector_summary(atlas, settings.dissection_iou_threshold,
                                                                         settings.selectivity_auc_threshold)})


@router.get("/{concept}/masks/{image}.png", responses={**ERRORS, 200: {"content": {"image/png": {}}}},
            response_class=Response, summary="A concept's pixels on an atlas image, as the model sees the image")
def concept_mask(model: Annotated[LoadedModel, Depends(get_ready_model)], registry: AtlasesDep,
                 concept: Annotated[str, Path(description="`category:name`, e.g. `shape:square`.", max_length=200)],
                 image: Annotated[DatasetIndex, Path(description="Dataset image id.")],
                 dataset: DatasetQuery = None) -> Response:
    atlas = labelled_atlas(registry, model, dataset)
    known = {row["id"] for row in atlas.query("SELECT id FROM concepts")}
    if concept not in known:
        raise NotFound(f"no concept {concept!r} in the {atlas.dataset!r} atlas", concept=concept,
                       concepts=sorted(known)[:50])
    atlas.image(image)  # a 404 naming the range when the id is not the atlas's
    source = concepts_of(atlas.dataset_root)
    number = next((i for i, c in enumerate(source.concepts) if c.id == concept), None) if source else None
    if number is None:
        raise NotFound(f"the concept labels of {atlas.dataset!r} are no longer on disk at {atlas.dataset_root.parent}",
                       concept=concept)
    found = source.regions(atlas.image(image)["path"])
    height, width = model.preprocessing.size
    mask = np.zeros((height, width), dtype=bool)
    if found is not None:
        regions, region_concepts = found
        inside = [i for i, concepts in enumerate(region_concepts) if number in concepts]
        mask = mask_to_input(np.isin(regions, inside), model.preprocessing)
    pixels = np.zeros((*mask.shape, 4), dtype=np.uint8)
    pixels[mask] = (*MASK_COLOUR, 255)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="RGBA").save(out, format="PNG", optimize=False)
    return Response(out.getvalue(), media_type="image/png", headers={"Cache-Control": "max-age=3600"})
