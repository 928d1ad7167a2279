"""One namespace for every image a request can name: an upload (`3f9a...`, 20 hex digits) or an image of
an atlas dataset (`demo:17`, dataset name and id). Dataset images can be used wherever an upload can."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Path
from PIL import Image

from app.api.deps import AtlasesDep, UploadsDep
from app.api.indices import parse_index
from app.atlas.ground_truth import class_mask
from app.atlas.reader import Atlas
from app.errors import InvalidInput, NotFound
from app.uploads.decode import MEDIA_TYPES
from app.uploads.store import UPLOAD_ID, UploadStore

DATASET_IMAGE = re.compile(r"([a-z0-9][a-z0-9-]*):(.*)", re.S)
IMAGE_ID_DESCRIPTION = "An upload id (20 hex digits) or a dataset image as `dataset:id`, e.g. `demo:17`."


@dataclass(frozen=True)
class ImageRef:
    id: str
    source: str  # "upload" or "dataset"
    etag: str  # the bytes behind an id never change: uploads are content-addressed, datasets fingerprinted
    media_type: str
    info: dict
    load: Callable[[], Image.Image]  # the upright RGB image
    data: Callable[[], bytes]  # the file as stored
    # class label -> the object's mask, for datasets that ship masks (the demo's); None for uploads
    object_mask: Callable[[str], np.ndarray | None] | None = None


def resolve_image(image_id: str, uploads: UploadStore, dataset_atlas: Callable[[str], Atlas]) -> ImageRef:
    if UPLOAD_ID.fullmatch(image_id):
        upload = uploads.get(image_id)
        return ImageRef(id=image_id, source="upload", etag=f'"{upload.sha256[:32]}"',
                        media_type=MEDIA_TYPES[upload.format], info={"source": "upload", **upload.as_dict()},
                        load=lambda: uploads.image(image_id), data=lambda: uploads.data(image_id))
    if match := DATASET_IMAGE.fullmatch(image_id):
        dataset = match.group(1)
        try:
            index = parse_index(match.group(2), "a dataset image id")
        except ValueError as exc:
            raise InvalidInput(f"image {image_id!r}: {exc}", image=image_id) from None
        atlas = dataset_atlas(dataset)
        row = atlas.image(index)
        path = atlas.image_path(index)
        info = {"source": "dataset", "id": image_id, "dataset": dataset, "index": index, "name": path.name,
                "label": row["label"]}
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return ImageRef(id=image_id, source="dataset", etag=f'"{atlas.meta["fingerprint"][:16]}-{index}"',
                        media_type=media_type, info=info, load=lambda: atlas.load_image(index),
                        data=lambda: _read(atlas, index),
                        object_mask=lambda label: class_mask(atlas.dataset_root, row["path"], label))
    raise NotFound(f"no image {image_id!r}: an image id is an upload id (20 hex digits, from POST /api/images) "
                   "or a dataset image written `dataset:id`, e.g. `demo:17`", image=image_id)


def get_image(image_id: Annotated[str, Path(description=IMAGE_ID_DESCRIPTION)], uploads: UploadsDep,
              atlases: AtlasesDep) -> ImageRef:
    return resolve_image(image_id, uploads, atlases.for_dataset)


def _read(atlas: Atlas, index: int) -> bytes:
    try:
        return atlas.image_path(index).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"image {index} of dataset {atlas.dataset!r} is gone from disk", image=index) from None
