"""Units of a layer, read from the model's atlas: grid summaries, a unit's page data, its top-k maps."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    MODEL_UNAVAILABLE,
    AtlasesDep,
    DictionariesDep,
    IndexerDep,
    RendererDep,
    SettingsDep,
    get_layer,
    get_ready_model,
)
from app.api.encoding import FastJSONResponse, encode_maps
from app.api.errors import ErrorResponse, error_doc
from app.api.features import dictionary_of, feature_json
from app.api.indices import UnitIndex
from app.api.links import unit_page
from app.api.schemas import AtlasList, UnitDetail, UnitMaps, UnitPage
from app.atlas.background import BackgroundIndexer
from app.atlas.kinds import CHANNEL, KIND_DESCRIPTION, KIND_PATTERN
from app.atlas.labels import has_labels, layer_labels, unit_labels
from app.atlas.reader import Atlas, AtlasLayer
from app.atlas.registry import AtlasRegistry
from app.atlas.statistics import STATISTICS, UNIT_SORTS
from app.atlas.visualize import Target, page_render_settings, rendered_units
from app.engine.layers import LayerInfo, clamp_input
from app.engine.probe import ReceptiveField
from app.errors import AtlasMissing, InvalidInput, LayerNotFound
from app.store.store import LoadedModel

router = APIRouter(prefix="/api/models/{model}", tags=["units"])
ERRORS = {
    404: {"model": ErrorResponse, "description": "Unknown model, layer or unit (with the valid range)."},
    409: {"model": ErrorResponse, "description": "The model failed to load, or no atlas yet (with the command that "
                                                 "builds it), or being built."},
    422: {"model": ErrorResponse, "description": "A parameter out of range."},
}
DatasetQuery = Annotated[str | None, Query(description="Atlas dataset; default: `demo`, else the newest.")]
KindQuery = Annotated[str, Query(pattern=KIND_PATTERN, description=f"Kind of unit: {KIND_DESCRIPTION}.")]


async def get_atlas(model: Annotated[LoadedModel, Depends(get_ready_model)], atlases: AtlasesDep, indexer: IndexerDep,
                    dataset: DatasetQuery = None) -> Atlas:
    """On the event loop, as the model and layer lookups are: a directory listing and a stat (an atlas's first
    open reads its small metadata table), cheaper than a hop to a worker thread and back."""
    return find_atlas(model, atlases, indexer, dataset)


def find_atlas(model: LoadedModel, atlases: AtlasRegistry, indexer: BackgroundIndexer | None,
               dataset: str | None) -> Atlas:
    """The model's atlas on `dataset` (default: its first); while that one is being built, the 409 says how far."""
    try:
        return atlases.get(model.id, dataset)
    except AtlasMissing as missing:
        status = indexer.status(model.id) if indexer else None
        if status is not None and status.state in ("queued", "building") and dataset in (None, status.dataset):
            step = "labelling units, " if status.step == "labels" else ""
            where = (f"{step}{status.done} of {status.total} images" if status.total
                     else "waiting for its turn" if status.state == "queued" else "preparing the images")
            raise AtlasMissing(f"the {status.dataset!r} atlas of {model.id!r} is being built: {where}",
                               model=model.id, dataset=status.dataset, building=True, done=status.done,
                               total=status.total) from None
        raise missing from None


async def get_indexed_layer(model: Annotated[LoadedModel, Depends(get_ready_model)],
                            layer: Annotated[LayerInfo, Depends(get_layer)],
                            atlas: Annotated[Atlas, Depends(get_atlas)], registry: AtlasesDep,
                            kind: KindQuery = CHANNEL) -> AtlasLayer:
    """The layer's units of `kind` in the request's atlas; when another of the model's atlases has the layer,
    the 404 says which."""
    try:
        return atlas.layer(layer.name, kind)
    except LayerNotFound as missing:
        others = [name for name in registry.datasets(model.id)
                  if name != atlas.dataset and (kind, layer.name) in registry.get(model.id, name).by_kind]
        if not others:
            raise
        raise LayerNotFound(f"{missing.message}. It is indexed in the {', '.join(map(repr, others))} atlas: ask "
                            f"with ?dataset={others[0]}", **missing.detail, datasets=others) from None


def receptive_field_json(field: ReceptiveField) -> dict:
    return {"method": field.method, "input_size": list(field.input_size), "map_size": list(field.map_size),
            "size": list(field.size), "corner": list(field.corner)}


def crop_box(field: ReceptiveField, y: int, x: int) -> dict:
    """The receptive field of map position (y, x) as fractions of the model's view of the image."""
    top, left, bottom, right = field.box(y, x)
    height, width = field.input_size
    return {"x": left / width, "y": top / height, "w": (right - left) / width, "h": (bottom - top) / height}


def is_saturated(row) -> bool:
    """Several images reach the unit's maximum exactly: a clamp (ReLU6, say) caps it."""
    return row["images_at_max"] > 1 and row["max_max"] > 0


def saturation(model: LoadedModel, layer: str, row) -> dict | None:
    """What the unit page says of a saturated unit: how many images tie at the cap, how they are ordered,
    and where to see the values before the clamp."""
    if not is_saturated(row):
        return None
    return {"images_at_max": row["images_at_max"], "value": row["max_max"], "tie_break": "spatial mean",
            "before_clamp": clamp_input(model.layers, layer)}


def unit_summary(model_id: str, layer: AtlasLayer, dataset: str, row, label: dict | None = None) -> dict:
    return {
        "unit": row["unit"],
        "kind": layer.kind,
        **{statistic.name: row[statistic.name] for statistic in STATISTICS if statistic.sortable},
        "dead": bool(row["dead"]),
        "saturated": is_saturated(row),
        "top_image": row["top_image"],
        "page": unit_page(model_id, layer.name, row["unit"], dataset, layer.kind),
        "label": label,
    }


def labels_for(registry: AtlasRegistry, model_id: str, atlas: Atlas, layer: AtlasLayer, unit: int,
               iou_threshold: float, auc_threshold: float) -> dict | None:
    """The unit's labels from the atlas shown, or else from the first other atlas of the model that has
    concept labels and the layer (a model dissected on Broden, browsed on ImageNet)."""
    others = (registry.get(model_id, name) for name in registry.datasets(model_id) if name != atlas.dataset)
    for candidate in (atlas, *others):
        indexed = candidate.by_kind.get((layer.kind, layer.name))
        if has_labels(candidate) and indexed is not None and unit < indexed.units:
            return unit_labels(candidate, indexed, unit, iou_threshold, auc_threshold)
    return None


@router.get("/atlases", response_model=AtlasList, responses={404: error_doc("Unknown model."), **MODEL_UNAVAILABLE},
            summary="The model's finished atlases, and any build in progress")
def list_atlases(model: Annotated[LoadedModel, Depends(get_ready_model)], registry: AtlasesDep,
                 indexer: IndexerDep, renderer: RendererDep) -> FastJSONResponse:
    atlases = []
    for position, name in enumerate(registry.datasets(model.id)):
        meta = registry.get(model.id, name).meta
        atlases.append({**{key: meta[key] for key in ("dataset", "images", "readable", "unreadable", "layers", "k",
                                                       "created", "seconds", "classes")},
                        "labels": bool(meta.get("dissection")),
                        "default": position == 0})  # what a link without ?dataset= shows
    status = indexer.status(model.id) if indexer else None
    rendering = renderer.status.get(model.id) if renderer else None
    return FastJSONResponse({"model": model.id, "atlases": atlases,
                             "build": None if status is None else status.__dict__,
                             "rendering": None if rendering is None else rendering.__dict__})


@router.get("/layers/{layer}/units", response_model=UnitPage, responses=ERRORS,
            summary="A summary of every unit of a layer, sortable")
def list_units(
    model: Annotated[LoadedModel, Depends(get_ready_model)],
    layer: Annotated[LayerInfo, Depends(get_layer)],
    atlas: Annotated[Atlas, Depends(get_atlas)],
    indexed: Annotated[AtlasLayer, Depends(get_indexed_layer)],
    settings: SettingsDep,
    atlases: AtlasesDep,
    dictionaries: DictionariesDep,
    sort: Annotated[Literal[UNIT_SORTS], Query(description="Statistic to sort by.")] = "unit",
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    offset: Annotated[int, Query(ge=0, description="First unit of the page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=4096, description="Units per page.")] = 4096,
    maps: Annotated[bool, Query(description="Include each unit's map on its top image.")] = False,
    visualized: Annotated[bool, Query(description="Say which listed units' feature visualisations at a page's "
                                                  "settings are stored (`visualized`).")] = False,
) -> FastJSONResponse:
    if offset >= max(indexed.units, 1):
        raise InvalidInput(f"offset {offset} is past the last unit; {layer.name} has {indexed.units} units",
                           offset=offset, units=indexed.units)
    rows = atlas.units(indexed, sort, order == "desc", offset, limit)
    labels = layer_labels(atlas, indexed, settings.dissection_iou_threshold, settings.selectivity_auc_threshold)
    page = {"model": model.id, "layer": layer.name, "kind": indexed.kind, "kinds": atlas.kinds(layer.name),
            "dataset": atlas.dataset,
            "units_total": indexed.units, "offset": offset, "sort": sort, "order": order,
            "map_shape": [indexed.height, indexed.width],
            "units": [unit_summary(model.id, indexed, atlas.dataset, row, labels.get(row["unit"])) for row in rows]}
    if maps:
        page["top_maps"] = encode_maps(atlas.top_maps(indexed, [row["unit"] for row in rows]))
    if visualized:  # the grid loads these at once and queues the others' renderings
        target = Target(layer.name, dictionary_of(dictionaries, model, atlas, layer.name, indexed.kind))
        done = rendered_units(model, target, settings, page_render_settings(settings, atlases, model))
        page["visualized"] = [row["unit"] for row in rows if row["unit"] in done]
    return FastJSONResponse(page)


@router.get("/layers/{layer}/units/{unit}", response_model=UnitDetail, responses=ERRORS,
            summary="One unit: statistics, top images, similar units")
async def read_unit(
    model: Annotated[LoadedModel, Depends(get_ready_model)],
    layer: Annotated[LayerInfo, Depends(get_layer)],
    atlas: Annotated[Atlas, Depends(get_atlas)],
    indexed: Annotated[AtlasLayer, Depends(get_indexed_layer)],
    registry: AtlasesDep,
    settings: SettingsDep,
    dictionaries: DictionariesDep,
    unit: Annotated[UnitIndex, Path(description="The unit's index: a channel, or a feature of a dictionary.")],
    k: Annotated[int | None, Query(ge=1, description="How many top images (default: all the atlas kept).")] = None,
) -> FastJSONResponse:
    """On the event loop: a few indexed reads of a finished atlas (well under a millisecond), where a hop to a
    worker thread and back cost about a millisecond more and, under load, queued reads behind each other
    (docs/benchmarks.md, Load)."""
    row = atlas.unit(indexed, unit)
    if k is not None and k > atlas.meta["k"]:
        raise InvalidInput(f"k={k} is more than this atlas kept ({atlas.meta['k']}); rebuild it with "
                           f"`fovea index {model.id} --k {k}`", k=k, max=atlas.meta["k"])
    top = atlas.top_images(indexed, unit)[: k or atlas.meta["k"]]
    labels = model.labels
    # The atlas's, from its build; only an atlas without one needs the model (and its lock: in a thread).
    field = atlas.receptive_field(indexed) or await run_in_threadpool(model.receptive_field, layer.name)
    images = f"/api/datasets/{atlas.dataset}/images"
    return FastJSONResponse({
        **unit_summary(model.id, indexed, atlas.dataset, row),
        "model": model.id,
        "layer": layer.name,
        "units_total": indexed.units,
        "dataset": atlas.dataset,
        "map_shape": [indexed.height, indexed.width],
        "stats": {statistic.name: row[statistic.name] for statistic in STATISTICS},
        "histogram": atlas.histogram(indexed, unit),
        "saturation": saturation(model, layer.name, row) if indexed.kind == CHANNEL else None,  # a clamp's, per channel
        "top": [{"rank": r["rank"], "image": r["image"], "value": r["value"], "y": r["y"], "x": r["x"],
                 "label": r["label"], "prediction": labels[r["prediction"]] if r["prediction"] is not None else None,
                 "confidence": r["confidence"], "crop": crop_box(field, r["y"], r["x"]),
                 "url": f"{images}/{r['image']}?model={model.id}", "original_url": f"{images}/{r['image']}"}
                for r in top],
        "receptive_field": receptive_field_json(field),
        "class_histogram": atlas.class_histogram(top),
        "similar": [{"unit": r["other"], "correlation": r["correlation"],
                     "page": unit_page(model.id, layer.name, r["other"], atlas.dataset, indexed.kind)}
                    for r in atlas.similar(indexed, unit)],
        "labels": labels_for(registry, model.id, atlas, indexed, unit, settings.dissection_iou_threshold,
                             settings.selectivity_auc_threshold),
        "feature": feature_json(model, atlas, indexed, unit, dictionaries),
    })


@router.get("/layers/{layer}/units/{unit}/maps", response_model=UnitMaps, responses=ERRORS,
            summary="The unit's raw activation maps on its top images (base64 float32, row-major)")
def read_unit_maps(
    atlas: Annotated[Atlas, Depends(get_atlas)],
    indexed: Annotated[AtlasLayer, Depends(get_indexed_layer)],
    unit: Annotated[UnitIndex, Path(description="Channel index.")],
) -> FastJSONResponse:
    atlas.check_unit(indexed, unit)
    count = len(atlas.top_images(indexed, unit))
    return FastJSONResponse({**encode_maps(atlas.maps(indexed, unit)[:count]),
                             "threshold": atlas.unit(indexed, unit)["quantile_995"]})
