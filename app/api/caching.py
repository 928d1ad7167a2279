"""Conditional GETs: a response whose ETag the client already holds is answered 304 with no body."""

from __future__ import annotations

from fastapi import Request, Response

IMMUTABLE = "public, max-age=31536000, immutable"


def not_modified(request: Request, etag: str, cache_control: str) -> Response | None:
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache_control})
    return None
