"""Notes on units, channels and dictionaries' features alike: read them, and write one unless the deployment is
read-only (`FOVEA_READ_ONLY`). A feature's notes belong to the version of its dictionary they were written on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from starlette.concurrency import run_in_threadpool

from app.api.deps import MODEL_UNAVAILABLE, DictionariesDep, NotesDep, SettingsDep, get_layer, get_ready_model
from app.api.encoding import FastJSONResponse
from app.api.errors import ErrorResponse
from app.api.indices import UnitIndex
from app.api.routers.units import KindQuery
from app.api.schemas import Note, NoteIn, NoteList
from app.atlas.kinds import CHANNEL
from app.engine.layers import LayerInfo
from app.errors import InvalidInput, ReadOnly, check_unit
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models/{model}/layers/{layer}/units/{unit}/notes", tags=["notes"])
ERRORS = {404: {"model": ErrorResponse, "description": "Unknown model, layer, kind or unit."},
          409: {"model": ErrorResponse, "description": "The model failed to load, or the dictionary does not fit it."},
          **MODEL_UNAVAILABLE}
UnitPath = Annotated[UnitIndex, Path(description="Channel index, or feature index with `kind`.")]


@dataclass(frozen=True)
class NotedUnit:
    model: str
    layer: str
    kind: str
    unit: int
    dictionary: str  # the digest of the feature's dictionary; "" for a channel


async def get_noted_unit(model: Annotated[LoadedModel, Depends(get_ready_model)],
                         layer: Annotated[LayerInfo, Depends(get_layer)], dictionaries: DictionariesDep,
                         unit: UnitPath, kind: KindQuery = CHANNEL) -> NotedUnit:
    """The unit a note is on: a channel of the layer, or a feature of its stored dictionary `kind` (404 when there
    is none, 409 when it was learned on other weights)."""
    if kind == CHANNEL:
        check_unit(layer.name, unit, layer.shape[0])
        return NotedUnit(model.id, layer.name, kind, unit, "")
    stored = await run_in_threadpool(dictionaries.get, model, layer.name, kind)
    check_unit(f"{layer.name} ({kind})", unit, stored.dictionary.size)
    return NotedUnit(model.id, layer.name, kind, unit, stored.digest)


NotedUnitDep = Annotated[NotedUnit, Depends(get_noted_unit)]


@router.get("", response_model=NoteList, responses=ERRORS, summary="Notes written on a unit, oldest first")
def read_notes(noted: NotedUnitDep, notes: NotesDep, settings: SettingsDep) -> FastJSONResponse:
    return FastJSONResponse({"notes": notes.for_unit(noted.model, noted.layer, noted.unit, noted.kind,
                                                     noted.dictionary),
                             "writable": not settings.read_only, "max_chars": settings.note_max_chars})


@router.post("", response_model=Note, status_code=201,
             responses={**ERRORS, 403: {"model": ErrorResponse, "description": "The deployment is read-only."},
                        413: {"model": ErrorResponse, "description": "The body is too large."},
                        422: {"model": ErrorResponse, "description": "Empty or too long text."}},
             summary="Write a note (a label of your own) on a unit")
def write_note(noted: NotedUnitDep, notes: NotesDep, settings: SettingsDep, note: NoteIn) -> FastJSONResponse:
    if settings.read_only:
        raise ReadOnly("this Fovea is read-only (FOVEA_READ_ONLY): notes cannot be written")
    text, author = note.text.strip(), note.author.strip()
    if not text or not author:
        raise InvalidInput("a note needs some text and an author that are not only spaces")
    if len(text) > settings.note_max_chars:
        raise InvalidInput(f"a note is at most {settings.note_max_chars} characters (the note_max_chars setting); "
                           f"this one has {len(text)}", length=len(text), max=settings.note_max_chars)
    return FastJSONResponse(notes.add(noted.model, noted.layer, noted.unit, text, author, noted.kind,
                                      noted.dictionary), status_code=201)
