"""Images to study: uploads (stored content-addressed, deduplicated, kept across restarts) and dataset
images, under one id scheme (app/api/image_refs.py); their bytes, and a model's predictions on them."""

from __future__ import annotations

import re
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from app.api.caching import IMMUTABLE, NOT_MODIFIED, image_doc, model_view_png, not_modified
from app.api.compute import COMPUTE, batch_headers
from app.api.deps import (
    MODEL_UNAVAILABLE,
    AtlasesDep,
    DictionariesDep,
    IndexerDep,
    ModelCallsDep,
    ModelViewsDep,
    ProgressBoardDep,
    ProgressToken,
    SettingsDep,
    StoreDep,
    UploadsDep,
)
from app.api.encoding import FastJSONResponse, encode_maps
from app.api.errors import HOST_REFUSED, ErrorResponse, error_doc
from app.api.features import dictionary_of, unit_maps
from app.api.image_refs import ImageRef, get_image
from app.api.indices import UnitIndex
from app.api.links import unit_page
from app.api.routers.units import DatasetQuery, KindQuery, find_atlas
from app.api.schemas import FiredUnits, ImageInfo, Predictions, UploadReceipt
from app.atlas.fired import rank_fired_units
from app.atlas.kinds import CHANNEL
from app.atlas.labels import layer_labels
from app.atlas.visualize import Target, page_render_settings, rendered_units
from app.errors import InvalidInput, PayloadTooLarge
from app.studio.progress import WAITING
from app.uploads.decode import MEDIA_TYPES

router = APIRouter(prefix="/api/images", tags=["images"])
READ_ERRORS = {404: {"model": ErrorResponse, "description": "Unknown image id (with the two valid forms)."},
               422: {"model": ErrorResponse, "description": "A parameter out of range, or a dataset image id "
                                                            "not written in plain digits."}}
UPLOAD_ERRORS = {
    200: {"model": UploadReceipt, "description": "These bytes were uploaded before: the same id, `new` false."},
    400: {"model": ErrorResponse, "description": f"A body that is not valid multipart form data. {HOST_REFUSED}"},
    413: {"model": ErrorResponse, "description": "Over the upload_max_bytes or upload_max_pixels setting."},
    415: {"model": ErrorResponse, "description": "Not an image in an accepted format (JPEG, PNG, WebP, GIF, BMP, "
                                                 "TIFF), judged by content."},
    422: {"model": ErrorResponse, "description": "No `file` field, an empty file, or damaged image data."},
}
_CHUNK = 1 << 20


@router.post("", status_code=201, response_model=UploadReceipt, responses=UPLOAD_ERRORS,
             response_description="New bytes, stored under their id.",
             summary="Upload an image (multipart field `file`); the same bytes always get the same id")
def upload_image(uploads: UploadsDep, file: UploadFile) -> JSONResponse:
    data = _read_limited(file, uploads.max_bytes)
    upload, new = uploads.add(data)
    # The id is shared by everyone who sends these bytes; the file name and time are this upload's own.
    receipt = {"id": upload.id, "new": new, **upload.as_dict(), "name": _display_name(file.filename),
               "uploaded": time.time()}
    return JSONResponse(receipt, status_code=201 if new else 200, headers={"Location": f"/api/images/{upload.id}"})


@router.get("/{image_id}", response_model=ImageInfo, responses=READ_ERRORS,
            summary="What an image id names: source, size, format (for an upload, what its bytes say: no file name, "
                    "which is its uploader's own)")
def read_image_info(image: Annotated[ImageRef, Depends(get_image)]) -> FastJSONResponse:
    if image.source == "dataset":
        picture = image.load()
        return FastJSONResponse({**image.info, "width": picture.width, "height": picture.height})
    return FastJSONResponse({**image.info, "id": image.id})


@router.get("/{image_id}/file", response_class=Response,
            responses=READ_ERRORS | MODEL_UNAVAILABLE | NOT_MODIFIED
            | image_doc("The bytes as stored, or with `model` the model's view as a PNG.", *MEDIA_TYPES.values()),
            summary="The image's bytes as stored, or as a model sees it (resized and cropped, PNG)")
def read_image_file(
    request: Request,
    store: StoreDep,
    views: ModelViewsDep,
    image: Annotated[ImageRef, Depends(get_image)],
    model: Annotated[str | None, Query(description="Return the model's view of the image, as a PNG.")] = None,
) -> Response:
    if model is None:
        if cached := not_modified(request, image.etag, IMMUTABLE):
            return cached
        return Response(image.data(), media_type=image.media_type,
                        headers={"ETag": image.etag, "Cache-Control": IMMUTABLE})
    return model_view_png(request, store, views, model, image.etag.strip('"'), image.load, IMMUTABLE)


@router.get("/{image_id}/predictions", response_model=Predictions, responses=READ_ERRORS | MODEL_UNAVAILABLE,
            dependencies=[COMPUTE], summary="A model's top classes on the image")
def read_predictions(
    store: StoreDep,
    board: ProgressBoardDep,
    calls: ModelCallsDep,
    image: Annotated[ImageRef, Depends(get_image)],
    model: Annotated[str, Query(description="Model id.")],
    k: Annotated[int, Query(ge=1, le=1000, description="How many classes (at most the model's classes).")] = 5,
    progress_token: ProgressToken = None,
) -> FastJSONResponse:
    loaded = store.ready(model)
    with board.follow(progress_token) as progress:
        batched = calls.probabilities(loaded, image.load(), waiting=lambda: progress(WAITING))
    probabilities = batched.value
    top = probabilities.topk(min(k, len(probabilities)))
    return FastJSONResponse({"image": image.id, "model": loaded.id, "classes": len(probabilities),
                             "predictions": [{"class": int(i), "label": loaded.labels[int(i)], "probability": float(p)}
                                             for p, i in zip(top.values, top.indices)]},
                            headers=batch_headers(batched.size))


@router.get("/{image_id}/units", response_model=FiredUnits,
            responses={**READ_ERRORS, **MODEL_UNAVAILABLE,
                       409: error_doc("The model failed to load, or no atlas for it yet (with the command).")},
            dependencies=[COMPUTE],
            summary="The units of a layer that fire on the image, against their own dataset distribution")
def read_fired_units(
    store: StoreDep,
    settings: SettingsDep,
    atlases: AtlasesDep,
    indexer: IndexerDep,
    board: ProgressBoardDep,
    calls: ModelCallsDep,
    dictionaries: DictionariesDep,
    image: Annotated[ImageRef, Depends(get_image)],
    model: Annotated[str, Query(description="Model id.")],
    layer: Annotated[str, Query(description="Dotted module path of an indexed layer, e.g. `block4`.")],
    dataset: DatasetQuery = None,
    limit: Annotated[int, Query(ge=1, le=256, description="How many units.")] = 12,
    unit: Annotated[UnitIndex | None, Query(description="Only this unit, wherever it ranks (`rank` says "
                                                        "where).")] = None,
    maps: Annotated[bool, Query(description="Also each listed unit's map on this image (`maps`) and on its top "
                                            "dataset image (`top_maps`), (units, h, w) raw values in list order; "
                                            "`max_max` is each unit's maximum over the dataset.")] = False,
    kind: KindQuery = CHANNEL,
    progress_token: ProgressToken = None,
) -> FastJSONResponse:
    loaded = store.ready(model)
    loaded.layer(layer)
    atlas = find_atlas(loaded, atlases, indexer, dataset)
    indexed = atlas.layer(layer, kind)
    stored = dictionary_of(dictionaries, loaded, atlas, layer, kind)
    if unit is not None:
        atlas.check_unit(indexed, unit)
    with board.follow(progress_token) as progress:
        batched = calls.layer_output(loaded, layer, image.load(), waiting=lambda: progress(WAITING))
    activations = unit_maps(stored, batched.value)  # (units, h, w)
    # A dataset image of the atlas's own dataset is ranked among the other images, not against itself too.
    own = image.info["index"] if image.source == "dataset" and image.info["dataset"] == atlas.dataset else None
    ranked = rank_fired_units(atlas.pooled(indexed), activations.mean(dim=(1, 2)).numpy(),
                              indexed.units if unit is not None else limit, exclude=own)
    rows = [{"rank": rank, **row} for rank, row in enumerate(ranked, 1) if unit is None or row["unit"] == unit]
    spatial_max = activations.amax(dim=(1, 2))
    labels = layer_labels(atlas, indexed, settings.dissection_iou_threshold, settings.selectivity_auc_threshold)
    body = {"image": image.id, "model": loaded.id, "layer": layer, "kind": kind, "dataset": atlas.dataset,
            "images": int(atlas.meta["images"]), "compared": int(atlas.meta["images"]) - (own is not None),
            "units_total": indexed.units,
            "measure": "spatial mean, percentile among the dataset's images",
            "units": [{**row, "spatial_max": float(spatial_max[row["unit"]]),
                       "link": unit_page(loaded.id, layer, row["unit"], atlas.dataset, kind),
                       "label": labels.get(row["unit"])} for row in rows]}
    if maps:  # the strip draws every unit without a request per unit
        listed = [row["unit"] for row in rows]
        page_settings = page_render_settings(settings, atlases, loaded)
        rendered = rendered_units(loaded, Target(layer, stored), settings, page_settings)
        for row in body["units"]:
            stats = atlas.unit(indexed, row["unit"])
            row.update(max_max=stats["max_max"], top_image=stats["top_image"], visualized=row["unit"] in rendered)
        body["maps"] = encode_maps(activations[listed].numpy())
        body["top_maps"] = encode_maps(atlas.top_maps(indexed, listed))
    return FastJSONResponse(body, headers=batch_headers(batched.size))


def _read_limited(file: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refusing as soon as they pass `limit` (never reads more than limit + 1 MiB)."""
    parts, size = [], 0
    while chunk := file.file.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the file is over {limit:,} bytes (upload_max_bytes)", limit=limit)
        parts.append(chunk)
    if not size:
        raise InvalidInput("the file is empty (0 bytes)")
    return b"".join(parts)


def _display_name(name: str | None) -> str:
    """The last path component of a client's file name, printable characters only, at most 200."""
    base = re.split(r"[\\/]", name or "")[-1]
    return "".join(ch for ch in base if ch.isprintable())[:200]
