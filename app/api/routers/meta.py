"""Health of the server."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app import __version__
from app.api.deps import get_store
from app.api.schemas import Health
from app.store.store import ModelStore

router = APIRouter(prefix="/api", tags=["meta"])


@router.get("/health", response_model=Health, summary="Server status and how many models loaded")
def health(request: Request, store: Annotated[ModelStore, Depends(get_store)]) -> Health:
    ready = sum(model.ready for model in store)
    return Health(status="ok", version=__version__, device=str(request.app.state.device),
                  models_ready=ready, models_failed=len(store) - ready)
