"""Entry point for running the server: `fovea serve`, or `uvicorn app.main:create_app --factory` (which
leaves out the read timeout below, and takes uvicorn's own keep-alive flag)."""

from __future__ import annotations

import uvicorn

from app.api.app import create_app
from app.http_protocol import with_read_timeout
from app.settings import Settings

__all__ = ["create_app", "serve"]


def serve(settings: Settings) -> None:
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_keep_alive=settings.keep_alive_seconds, http=with_read_timeout(settings.read_timeout_seconds))
