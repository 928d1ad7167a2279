"""Dataset images by id: the files an atlas was built on, served for galleries."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse

from app.api.caching import NOT_MODIFIED, image_doc, model_view_png
from app.api.deps import MODEL_UNAVAILABLE, AtlasesDep, ModelViewsDep, StoreDep
from app.api.encoding import FastJSONResponse
from app.api.errors import ErrorResponse
from app.api.indices import DatasetIndex
from app.api.schemas import DatasetSamples
from app.errors import NotFound
from app.uploads.decode import MEDIA_TYPES

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
CACHED = "public, max-age=86400"


@router.get("/{dataset}/samples", response_model=DatasetSamples,
            responses={404: {"model": ErrorResponse, "description": "No atlas uses the dataset."}},
            summary="A few images of a dataset to start from (the first of each class), and the models with an "
                    "atlas on it")
def read_samples(
    registry: AtlasesDep,
    dataset: Annotated[str, Path(description="Atlas dataset name.")],
    limit: Annotated[int, Query(ge=1, le=100, description="How many images at most.")] = 12,
) -> FastJSONResponse:
    atlas = registry.for_dataset(dataset)
    return FastJSONResponse({"dataset": atlas.dataset, "models": registry.models_with(dataset), "images": [
        {"id": f"{atlas.dataset}:{row['id']}", "index": row["id"], "label": row["label"],
         "url": f"/api/datasets/{atlas.dataset}/images/{row['id']}", "page": f"/image/{atlas.dataset}:{row['id']}"}
        for row in atlas.samples(limit)]})


@router.get("/{dataset}/images/{image_id}", response_class=Response,
            responses={404: {"model": ErrorResponse, "description": "Unknown dataset, image id or model."},
                       422: {"model": ErrorResponse, "description": "An image id not written as one (ASCII "
                                                                     "digits), or an image that cannot be decoded."},
                       **MODEL_UNAVAILABLE, **NOT_MODIFIED,
                       **image_doc("The file as stored, or with `model` the model's view as a PNG.",
                                   *MEDIA_TYPES.values())},
            summary="The bytes of one dataset image")
def read_image(
    request: Request,
    atlases: AtlasesDep,
    store: StoreDep,
    views: ModelViewsDep,
    dataset: Annotated[str, Path(description="Atlas dataset name.")],
    image_id: Annotated[DatasetIndex, Path(description="Image id within the dataset.")],
    model: Annotated[str | None, Query(description="Return the image as this model sees it (resized and "
                                                   "cropped, as a PNG): what its activation maps cover.")] = None,
) -> Response:
    atlas = atlases.for_dataset(dataset)
    path = atlas.image_path(image_id)
    if not path.is_file():
        raise NotFound(f"image {image_id} of dataset {dataset!r} is gone from disk ({path.name})", image=image_id)
    # Ids name files of a fingerprinted dataset; a changed dataset gets rebuilt atlases, not new bytes here.
    tag = f"{atlas.meta['fingerprint'][:16]}-{image_id}"
    if model is None:
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type, headers={"ETag": f'"{tag}"', "Cache-Control": CACHED})
    return model_view_png(request, store, views, model, tag, lambda: atlas.load_image(image_id), CACHED)
