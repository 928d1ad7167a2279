"""Notes on units: read them, and write one unless the deployment is read-only (`FOVEA_READ_ONLY`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from app.api.deps import MODEL_UNAVAILABLE, NotesDep, SettingsDep, get_layer, get_ready_model
from app.api.encoding import FastJSONResponse
from app.api.errors import ErrorResponse
from app.api.indices import UnitIndex
from app.api.schemas import Note, NoteIn, NoteList
from app.engine.layers import LayerInfo
from app.errors import InvalidInput, ReadOnly, check_unit
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models/{model}/layers/{layer}/units/{unit}/notes", tags=["notes"])
ERRORS = {404: {"model": ErrorResponse, "description": "Unknown model, layer or unit."}, **MODEL_UNAVAILABLE}


@router.get("", response_model=NoteList, responses=ERRORS, summary="Notes written on a unit, oldest first")
def read_notes(model: Annotated[LoadedModel, Depends(get_ready_model)],
               layer: Annotated[LayerInfo, Depends(get_layer)], notes: NotesDep, settings: SettingsDep,
               unit: Annotated[UnitIndex, Path(description="Channel index.")]) -> FastJSONResponse:
    check_unit(layer.name, unit, layer.shape[0])
    return FastJSONResponse({"notes": notes.for_unit(model.id, layer.name, unit), "writable": not settings.read_only,
                             "max_chars": settings.note_max_chars})


@router.post("", response_model=Note, status_code=201,
             responses={**ERRORS, 403: {"model": ErrorResponse, "description": "The deployment is read-only."},
                        413: {"model": ErrorResponse, "description": "The body is too large."},
                        422: {"model": ErrorResponse, "description": "Empty or too long text."}},
             summary="Write a note (a label of your own) on a unit")
def write_note(model: Annotated[LoadedModel, Depends(get_ready_model)],
               layer: Annotated[LayerInfo, Depends(get_layer)], notes: NotesDep, settings: SettingsDep,
               unit: Annotated[UnitIndex, Path(description="Channel index.")], note: NoteIn) -> FastJSONResponse:
    if settings.read_only:
        raise ReadOnly("this Fovea is read-only (FOVEA_READ_ONLY): notes cannot be written")
    check_unit(layer.name, unit, layer.shape[0])
    text, author = note.text.strip(), note.author.strip()
    if not text or not author:
        raise InvalidInput("a note needs some text and an author that are not only spaces")
    if len(text) > settings.note_max_chars:
        raise InvalidInput(f"a note is at most {settings.note_max_chars} characters (the note_max_chars setting); "
                           f"this one has {len(text)}", length=len(text), max=settings.note_max_chars)
    return FastJSONResponse(notes.add(model.id, layer.name, unit, text, author), status_code=201)
