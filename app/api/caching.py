"""Caching answers: a response whose ETag the client already holds is answered 304 with no body, and the
model view of an image, whose ETag its bytes and the model's input geometry decide."""

from __future__ import annotations

import io
from collections.abc import Callable

from fastapi import Request, Response
from PIL import Image

from app.lru import LruCache
from app.store.store import ModelStore

IMMUTABLE = "public, max-age=31536000, immutable"
# For `responses=` of every route that answers with an ETag.
NOT_MODIFIED = {304: {"description": "Not modified: If-None-Match names the current ETag (no body)."}}


def image_doc(description: str, *media_types: str) -> dict:
    """The 200 of a route that answers an image's bytes, for `responses=`."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": description, "content": {media_type: binary for media_type in media_types}}}


PNG = image_doc("A PNG image.", "image/png")


def not_modified(request: Request, etag: str, cache_control: str) -> Response | None:
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache_control})
    return None


def model_view_png(request: Request, store: ModelStore, views: LruCache, model_id: str, tag: str,
                   load: Callable[[], Image.Image], cache_control: str) -> Response:
    """An image as `model_id` sees it (resized and cropped, PNG): what its maps cover. `tag` names the
    image's bytes, which never change; the model's input geometry completes the ETag, which also keys the
    app's cache of views (`views`), so an image is decoded once per view while its view stays there."""
    preprocessing = store.ready(model_id).preprocessing
    etag = f'"{tag}-{model_id}-{preprocessing.size[0]}x{preprocessing.size[1]}-{preprocessing.resize}"'
    if cached := not_modified(request, etag, cache_control):
        return cached

    def encode() -> bytes:
        buffer = io.BytesIO()
        preprocessing.view(load()).save(buffer, format="PNG")
        return buffer.getvalue()

    png = views.get(etag, encode)
    return Response(png, media_type="image/png", headers={"ETag": etag, "Cache-Control": cache_control})
