"""Live probes of a unit: its activation map on any dataset image (raw values, or a PNG overlay), and the
receptive field that turns a map position into an image crop."""

from __future__ import annotations

import hashlib
import io
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image

from app.api.deps import get_layer, get_ready_model
from app.api.errors import ErrorResponse
from app.api.routers.units import crop_box, encode_maps, get_atlas, receptive_field_json
from app.atlas.reader import Atlas
from app.engine.layers import LayerInfo
from app.engine.overlay import COLORMAPS, overlay
from app.errors import InvalidInput, NotFound
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models/{model}/layers/{layer}", tags=["units"])
ERRORS = {
    404: {"model": ErrorResponse, "description": "Unknown model, layer, unit or image (with the valid range)."},
    409: {"model": ErrorResponse, "description": "No atlas on the dataset yet (with the command that builds it)."},
    422: {"model": ErrorResponse, "description": "A parameter out of range, or an image that cannot be decoded."},
}
ImageQuery = Annotated[int, Query(ge=0, description="Dataset image id.")]
IMMUTABLE = "public, max-age=31536000, immutable"


@router.get("/receptive-field", responses=ERRORS, summary="Where a position of the layer looks in the input")
def read_receptive_field(model: Annotated[LoadedModel, Depends(get_ready_model)],
                         layer: Annotated[LayerInfo, Depends(get_layer)]) -> dict:
    return {"model": model.id, "layer": layer.name, **receptive_field_json(model.receptive_field(layer.name))}


def _unit_map(model: LoadedModel, layer: LayerInfo, atlas: Atlas, unit: int, image_id: int) -> np.ndarray:
    if not 0 <= unit < layer.units:
        raise NotFound(f"unit {unit} is out of range: valid units are 0 to {layer.units - 1}", unit=unit,
                       valid=[0, layer.units - 1])
    path = atlas.image_path(image_id)
    try:
        with Image.open(path) as image:
            return model.layer_output(layer.name, image)[unit].numpy()
    except FileNotFoundError:
        raise NotFound(f"image {image_id} of dataset {atlas.dataset!r} is gone from disk ({path.name})",
                       image=image_id) from None
    except (OSError, Image.DecompressionBombError, ValueError) as error:
        raise InvalidInput(f"image {image_id} of dataset {atlas.dataset!r} cannot be decoded: {error}",
                           image=image_id) from None


def _etag(model: LoadedModel, atlas: Atlas, *parts) -> str:
    """Weights, dataset fingerprint and the request's own parameters decide the answer completely."""
    key = "|".join(str(p) for p in (model.weights_sha256 or model.card.weights.torchvision,
                                    atlas.meta["fingerprint"], *parts))
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def _cached(request: Request, etag: str) -> Response | None:
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
    return None


@router.get("/units/{unit}/activation", responses=ERRORS,
            summary="The unit's activation map on any dataset image, computed live (raw values and range)")
def read_activation(
    request: Request,
    model: Annotated[LoadedModel, Depends(get_ready_model)],
    layer: Annotated[LayerInfo, Depends(get_layer)],
    atlas: Annotated[Atlas, Depends(get_atlas)],
    unit: Annotated[int, Path(description="Channel index.")],
    image: ImageQuery,
) -> Response:
    etag = _etag(model, atlas, layer.name, unit, image, "json")
    if cached := _cached(request, etag):
        return cached
    values = _unit_map(model, layer, atlas, unit, image)
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)  # the first maximum, as the atlas takes it
    field = model.receptive_field(layer.name)
    body = {"model": model.id, "layer": layer.name, "unit": unit, "dataset": atlas.dataset, "image": image,
            "map": encode_maps(values[None]), "max": float(values[y, x]), "argmax": {"y": int(y), "x": int(x)},
            "crop": crop_box(field, int(y), int(x)), "receptive_field": receptive_field_json(field),
            "view_url": f"/api/datasets/{atlas.dataset}/images/{image}?model={model.id}"}
    return JSONResponse(body, headers={"ETag": etag, "Cache-Control": IMMUTABLE})


@router.get("/units/{unit}/activation.png", responses={**ERRORS, 200: {"content": {"image/png": {}}}},
            response_class=Response, summary="The unit's activation map on a dataset image as a PNG overlay")
def read_activation_png(
    request: Request,
    model: Annotated[LoadedModel, Depends(get_ready_model)],
    layer: Annotated[LayerInfo, Depends(get_layer)],
    atlas: Annotated[Atlas, Depends(get_atlas)],
    unit: Annotated[int, Path(description="Channel index.")],
    image: ImageQuery,
    colormap: Annotated[Literal[COLORMAPS], Query()] = "viridis",
    opacity: Annotated[float, Query(ge=0, le=1)] = 0.5,
    scale: Annotated[Literal["image", "unit"], Query(
        description="`image`: 0 to this map's max; `unit`: 0 to the unit's max over the dataset.")] = "image",
) -> Response:
    etag = _etag(model, atlas, layer.name, unit, image, colormap, opacity, scale, "png")
    if cached := _cached(request, etag):
        return cached
    values = _unit_map(model, layer, atlas, unit, image)
    high = float(values.max()) if scale == "image" else atlas.unit(atlas.layer(layer.name), unit)["max_max"]
    with Image.open(atlas.image_path(image)) as original:
        picture = overlay(model.preprocessing.view(original), values, 0.0, max(high, 1e-6), colormap, opacity)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png", headers={"ETag": etag, "Cache-Control": IMMUTABLE})
