"""Dataset images by id: the files an atlas was built on, served for galleries."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse

from app.api.errors import ErrorResponse
from app.errors import NotFound

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


@router.get("/{dataset}/images/{image_id}", response_class=FileResponse,
            responses={404: {"model": ErrorResponse, "description": "Unknown dataset or image id."}},
            summary="The bytes of one dataset image")
def read_image(request: Request, dataset: Annotated[str, Path(description="Atlas dataset name.")],
               image_id: Annotated[int, Path(ge=0, description="Image id within the dataset.")]) -> FileResponse:
    atlas = request.app.state.atlases.for_dataset(dataset)
    path = atlas.image_path(image_id)
    if not path.is_file():
        raise NotFound(f"image {image_id} of dataset {dataset!r} is gone from disk ({path.name})", image=image_id)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # Ids name files of a fingerprinted dataset; a changed dataset gets rebuilt atlases, not new bytes here.
    etag = f'"{atlas.meta["fingerprint"][:16]}-{image_id}"'
    return FileResponse(path, media_type=media_type,
                        headers={"ETag": etag, "Cache-Control": "public, max-age=86400"})
