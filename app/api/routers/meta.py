"""Health of the server."""

from __future__ import annotations

from fastapi import APIRouter

from app import __version__
from app.api.deps import DeviceDep, StoreDep
from app.api.schemas import Health

router = APIRouter(prefix="/api", tags=["meta"])


@router.get("/health", response_model=Health, summary="Server status and how many models loaded")
def health(store: StoreDep, device: DeviceDep) -> Health:
    ready = sum(model.ready for model in store)
    return Health(status="ok", version=__version__, device=str(device),
                  models_ready=ready, models_failed=len(store) - ready)
