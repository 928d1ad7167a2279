"""Entry point for running the server: `fovea serve`, or `uvicorn app.main:create_app --factory`."""

from __future__ import annotations

import uvicorn

from app.api.app import create_app
from app.settings import Settings

__all__ = ["create_app", "serve"]


def serve(settings: Settings) -> None:
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level)
