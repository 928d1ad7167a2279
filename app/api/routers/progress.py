"""`GET /api/progress/{token}`: how far a request that a client follows (`X-Progress-Token`) has got."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import ProgressBoardDep
from app.api.errors import ErrorResponse
from app.api.schemas import ProgressOut
from app.errors import NotFound
from app.studio.progress import TOKEN_PATTERN

router = APIRouter(prefix="/api", tags=["progress"])


@router.get("/progress/{token}", response_model=ProgressOut,
            summary="How far a followed request has got: its task and images done of total",
            responses={404: {"model": ErrorResponse, "description": "No request with this token is in flight."}})
async def read_progress(
    board: ProgressBoardDep, token: Annotated[str, Path(pattern=TOKEN_PATTERN, description="The client's token.")],
) -> ProgressOut:
    # A coroutine on purpose: it must answer while every worker thread is busy computing.
    found = board.get(token)
    if found is None:
        raise NotFound(f"no request with progress token {token!r} is in flight (it has ended, or never began)",
                       token=token)
    return ProgressOut(**found)
