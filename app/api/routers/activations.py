"""Live probes of a unit: its activation map on any dataset image (raw values, or a PNG overlay), and the
receptive field that turns a map position into an image crop."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image

from app.api.caching import IMMUTABLE, NOT_MODIFIED, PNG, not_modified
from app.api.compute import COMPUTE
from app.api.deps import DictionariesDep, get_layer, get_ready_model
from app.api.encoding import FastJSONResponse, encode_maps
from app.api.errors import ErrorResponse
from app.api.features import dictionary_of, unit_maps
from app.api.indices import DatasetIndex, UnitIndex
from app.api.routers.units import KindQuery, crop_box, get_atlas, receptive_field_json
from app.api.schemas import LayerReceptiveField, UnitActivation
from app.atlas.dictionary_store import StoredDictionary
from app.atlas.kinds import CHANNEL
from app.atlas.reader import Atlas, AtlasLayer
from app.engine.layers import LayerInfo
from app.engine.overlay import COLORMAPS, overlay
from app.errors import check_unit
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models/{model}/layers/{layer}", tags=["units"])
ERRORS = {
    404: {"model": ErrorResponse, "description": "Unknown model, layer, unit or image (with the valid range)."},
    409: {"model": ErrorResponse, "description": "No atlas on the dataset yet (with the command that builds it)."},
    422: {"model": ErrorResponse, "description": "A parameter out of range, or an image that cannot be decoded."},
}


@router.get("/receptive-field", response_model=LayerReceptiveField, responses=ERRORS, dependencies=[COMPUTE],
            summary="Where a position of the layer looks in the input")
def read_receptive_field(model: Annotated[LoadedModel, Depends(get_ready_model)],
                         layer: Annotated[LayerInfo, Depends(get_layer)]) -> FastJSONResponse:
    return FastJSONResponse({"model": model.id, "layer": layer.name,
                             **receptive_field_json(model.receptive_field(layer.name))})


@dataclass(frozen=True)
class UnitOnImage:
    """A request's unit and dataset image, checked: the unit in range, the image id in the dataset."""

    model: LoadedModel
    layer: LayerInfo
    atlas: Atlas
    indexed: AtlasLayer | None  # the layer's units of the kind asked for in the atlas (None: not indexed)
    dictionary: StoredDictionary | None  # for a feature
    unit: int
    image: int

    def activation(self, picture: Image.Image) -> np.ndarray:
        """The unit's (h, w) map on the (loaded) image, computed live."""
        return unit_maps(self.dictionary, self.model.layer_output(self.layer.name, picture))[self.unit].numpy()

    def etag(self, *parts) -> str:
        """Weights, dataset fingerprint, unit (and its dictionary's digest), image and the request's options
        decide the answer completely."""
        kind = (self.dictionary.kind, self.dictionary.digest) if self.dictionary else ()
        key = "|".join(str(p) for p in (self.model.weights_id,
                                        self.atlas.meta["fingerprint"], self.layer.name, *kind, self.unit, self.image,
                                        *parts))
        return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def get_unit_on_image(model: Annotated[LoadedModel, Depends(get_ready_model)],
                      layer: Annotated[LayerInfo, Depends(get_layer)],
                      atlas: Annotated[Atlas, Depends(get_atlas)],
                      dictionaries: DictionariesDep,
                      unit: Annotated[UnitIndex, Path(description="The unit's index: a channel, or a feature.")],
                      image: Annotated[DatasetIndex, Query(description="Dataset image id.")],
                      kind: KindQuery = CHANNEL) -> UnitOnImage:
    """A channel needs no atlas of its layer (only of the dataset); a feature is a unit of an indexed kind."""
    indexed = atlas.by_kind.get((kind, layer.name))
    if kind != CHANNEL:
        indexed = atlas.layer(layer.name, kind)  # 404 naming the layer's kinds
    dictionary = dictionary_of(dictionaries, model, atlas, layer.name, kind)
    check_unit(layer.name, unit, indexed.units if dictionary else layer.units)
    atlas.image(image)  # 404 with the valid ids
    return UnitOnImage(model, layer, atlas, indexed, dictionary, unit, image)


@router.get("/units/{unit}/activation", response_model=UnitActivation, responses=ERRORS | NOT_MODIFIED,
            dependencies=[COMPUTE],
            summary="The unit's activation map on any dataset image, computed live (raw values and range)")
def read_activation(request: Request, probe: Annotated[UnitOnImage, Depends(get_unit_on_image)]) -> Response:
    etag = probe.etag("json")
    if cached := not_modified(request, etag, IMMUTABLE):
        return cached
    values = probe.activation(probe.atlas.load_image(probe.image))
    y, x = (int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape))  # the first maximum
    field = probe.model.receptive_field(probe.layer.name)
    body = {"model": probe.model.id, "layer": probe.layer.name, "kind": probe.dictionary.kind if probe.dictionary
            else CHANNEL, "unit": probe.unit, "dataset": probe.atlas.dataset,
            "image": probe.image, "map": encode_maps(values[None]), "max": float(values[y, x]),
            "argmax": {"y": y, "x": x}, "crop": crop_box(field, y, x), "receptive_field": receptive_field_json(field),
            "view_url": f"/api/datasets/{probe.atlas.dataset}/images/{probe.image}?model={probe.model.id}"}
    return JSONResponse(body, headers={"ETag": etag, "Cache-Control": IMMUTABLE})


@router.get("/units/{unit}/activation.png", responses={**ERRORS, **NOT_MODIFIED, **PNG},
            response_class=Response, dependencies=[COMPUTE],
            summary="The unit's activation map on a dataset image as a PNG overlay")
def read_activation_png(
    request: Request,
    probe: Annotated[UnitOnImage, Depends(get_unit_on_image)],
    colormap: Annotated[Literal[COLORMAPS], Query()] = "viridis",
    opacity: Annotated[float, Query(ge=0, le=1)] = 0.5,
    scale: Annotated[Literal["image", "unit"], Query(
        description="`image`: 0 to this map's max; `unit`: 0 to the unit's max over the dataset.")] = "image",
) -> Response:
    etag = probe.etag(colormap, opacity, scale, "png")
    if cached := not_modified(request, etag, IMMUTABLE):
        return cached
    atlas = probe.atlas
    original = atlas.load_image(probe.image)  # decoded once, for both the map and the picture
    values = probe.activation(original)
    high = float(values.max()) if scale == "image" else atlas.unit(probe.indexed or atlas.layer(probe.layer.name),
                                                                    probe.unit)["max_max"]
    picture = overlay(probe.model.preprocessing.view(original), values, 0.0, max(high, 1e-6), colormap, opacity)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png", headers={"ETag": etag, "Cache-Control": IMMUTABLE})
