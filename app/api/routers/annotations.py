"""Per-unit annotations (app/atlas/annotations.py), served as stored: the declared kinds, and one unit's
annotation of a kind with the kind's media type. A job that computes a new kind declares it (ANNOTATION_KINDS)
and writes it; it needs no route of its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from app.api.caching import image_doc
from app.api.deps import AtlasesDep, SettingsDep, get_layer, get_ready_model
from app.api.errors import error_doc
from app.api.indices import UnitIndex
from app.api.routers.units import ERRORS, DatasetQuery, KindQuery
from app.api.schemas import AnnotationKindList
from app.atlas.annotations import KINDS, AnnotationKind, Annotations, scope_of
from app.atlas.kinds import CHANNEL
from app.engine.layers import LayerInfo
from app.errors import NotFound, check_unit
from app.store.store import LoadedModel

router = APIRouter(prefix="/api", tags=["annotations"])


@router.get("/annotations", response_model=AnnotationKindList, summary="The kinds of per-unit annotation")
def list_annotation_kinds() -> AnnotationKindList:
    return AnnotationKindList(kinds=[{"name": k.name, "version": k.version, "description": k.description,
                                      "media_type": k.media_type, "scope": k.scope} for k in KINDS.values()])


@router.get("/models/{model}/layers/{layer}/units/{unit}/annotations/{name}",
            responses={**image_doc("The annotation as stored, in its kind's media type (`GET /api/annotations`).",
                                   "application/json", "image/png"),
                       **ERRORS, 404: error_doc("Unknown model, layer, unit or kind, or not computed for this unit "
                                                "yet.")},
            response_class=Response, summary="One unit's annotation of a kind")
def read_annotation(
    settings: SettingsDep,
    atlases: AtlasesDep,
    model: Annotated[LoadedModel, Depends(get_ready_model)],
    layer: Annotated[LayerInfo, Depends(get_layer)],
    unit: Annotated[UnitIndex, Path(description="Unit index.")],
    name: Annotated[str, Path(description="Kind of annotation, as `GET /api/annotations` lists them.")],
    variant: Annotated[str, Query(max_length=200, description="Which of a unit's annotations of this kind.")] = "",
    dataset: DatasetQuery = None,
    kind: KindQuery = CHANNEL,
) -> Response:
    """A kind that depends on the weights alone (a feature visualisation) needs no atlas; one that depends on
    an atlas (a label) is read for the atlas asked for, as the unit pages are."""
    annotation = _kind(name)
    atlas = None
    if annotation.scope == "atlas":
        atlas = atlases.get(model.id, dataset)
        check_unit(layer.name, unit, atlas.layer(layer.name, kind).units)
    else:
        check_unit(layer.name, unit, layer.shape[0])
    value = Annotations(settings.data_dir, model.id, annotation).read(
        scope_of(annotation, model.weights_sha256 or "", atlas.meta if atlas else None), layer.name, unit, variant,
        kind)
    if value is None:
        raise NotFound(f"no {name} annotation of {layer.name}:{unit}{f' ({variant})' if variant else ''} yet",
                       annotation=name, unit=unit)
    return Response(value, media_type=annotation.media_type)


def _kind(name: str) -> AnnotationKind:
    if name not in KINDS:
        raise NotFound(f"no annotation kind {name!r}; kinds: {', '.join(KINDS) or 'none declared'}",
                       annotation=name, valid=list(KINDS))
    return KINDS[name]
