"""One namespace for every image a request can name: an upload (`3f9a...`, 20 hex digits) or an image of
an atlas dataset (`demo:17`, dataset name and id). Dataset images can be used wherever an upload can."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Path, Request
from PIL import Image
from pydantic import BeforeValidator, WithJsonSchema

from app.atlas.ground_truth import class_mask
from app.atlas.reader import Atlas
from app.errors import InvalidInput, NotFound
from app.uploads.decode import MEDIA_TYPES
from app.uploads.store import UPLOAD_ID, UploadStore

# A dataset image's id is written one way only: ASCII digits, no sign, space, point or leading zero, at most
# 9 of them. Python's int() also reads `١٧`, ` 17` and `017` (and pydantic `17.0`) as 17, and SQLite's
# integers stop at 2^63 (an OverflowError, so a 500): one image must have one id, and every id must fit.
DATASET_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")
DATASET_IMAGE = re.compile(r"([a-z0-9][a-z0-9-]*):(.*)", re.S)
IMAGE_ID_DESCRIPTION = "An upload id (20 hex digits) or a dataset image as `dataset:id`, e.g. `demo:17`."


def parse_dataset_index(text: str) -> int:
    """The image id `text` names within a dataset; ValueError naming the problem when it is not canonical."""
    if not DATASET_INDEX.fullmatch(text):
        raise ValueError(f"{text!r} is not a dataset image id: write it in ASCII digits with no sign, space, "
                         "decimal point or leading zero, at most 9 digits (e.g. 17)")
    return int(text)


def _canonical_index(value: object) -> object:
    return parse_dataset_index(value) if isinstance(value, str) else value


# The one declaration every route uses for a dataset image id, in a path or a query: add Path() or Query().
# (The schema is written out: FastAPI copies a nested Annotated's ge/le into it as unknown keywords.)
DatasetIndex = Annotated[int, BeforeValidator(_canonical_index),
                         WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 999_999_999})]


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
            index = parse_dataset_index(match.group(2))
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


def get_image(request: Request,
              image_id: Annotated[str, Path(description=IMAGE_ID_DESCRIPTION)]) -> ImageRef:
    return resolve_image(image_id, request.app.state.uploads, request.app.state.atlases.for_dataset)


def _read(atlas: Atlas, index: int) -> bytes:
    try:
        return atlas.image_path(index).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"image {index} of dataset {atlas.dataset!r} is gone from disk", image=index) from None
