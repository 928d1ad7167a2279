"""A unit's feature visualisation: `GET .../units/{unit}/visualization` (what it is: its settings, the
activation it reaches, the dataset's best for comparison, and the PNG's address) and `.../visualization.png`,
its negative image (`negative=true`), and its facets (`.../visualization/facets` and each facet's PNG).
One that is not stored yet for the settings asked is rendered on request (a compute slot, the model's lock,
followed with a progress token; in one batch with the requests for other units of the layer that came at the
same time, app/studio/model_calls.py), stored as `fovea visualize` stores it, and kept."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.api.caching import IMMUTABLE, image_doc
from app.api.compute import batch_headers
from app.api.deps import (
    AtlasesDep,
    ComputeLimiterDep,
    DictionariesDep,
    ModelCallsDep,
    ProgressBoardDep,
    ProgressToken,
    SettingsDep,
    get_layer,
    get_ready_model,
)
from app.api.disconnect import client_gone
from app.api.errors import error_doc
from app.api.features import dictionary_of, indexed_digests
from app.api.indices import UnitIndex
from app.api.routers.units import KindQuery
from app.api.schemas import FacetMember, Visualization, VisualizationFacet, VisualizationFacets
from app.atlas.annotations import FEATURE_VISUALISATION, Annotations
from app.atlas.image_prior import render_prior
from app.atlas.kinds import CHANNEL
from app.atlas.visualize import (
    Facet,
    Target,
    default_render_settings,
    render_scope,
    variant,
    visualize_facets,
)
from app.engine.featurevis.prior import LUCID
from app.engine.featurevis.render import RenderSettings
from app.engine.layers import LayerInfo
from app.errors import AtlasMissing, InvalidInput, NotFound, RequestCancelled, check_unit
from app.settings import Settings
from app.store.store import LoadedModel
from app.studio.progress import RENDERING, WAITING

router = APIRouter(prefix="/api/models/{model}/layers/{layer}/units/{unit}", tags=["units"])
ERRORS = {404: error_doc("Unknown model, layer or unit (with the valid range); none stored with render=false."),
          409: error_doc("The model failed to load."),
          422: error_doc("Steps, size or facets over their visualization_max_* setting; MACO without an atlas.")}
Steps = Annotated[int | None, Query(ge=1, description="Optimisation steps (default: the visualization_steps "
                                                      "setting).")]
Size = Annotated[int | None, Query(ge=16, description="Image side in pixels (default: the model's input size).")]
Seed = Annotated[int, Query(ge=0, le=2**31 - 1, description="Seed of the starting image and the transforms.")]
Negative = Annotated[bool, Query(description="The image that drives the unit lowest instead.")]
Render = Annotated[bool, Query(description="false: a 404 when none is stored, instead of rendering it (for "
                                            "thumbnails that must not start an optimisation).")]
Facets = Annotated[int, Query(ge=1, description="How many facets to cluster the top images into (at most the "
                                                "visualization_max_facets setting).")]
Param = Annotated[Literal["fft", "maco"], Query(
    description="Parameterisation: Lucid's Fourier image (fft) or MACO's phase-only one (maco); both draw on the "
                "colours (and MACO on the magnitude spectrum) of the model's atlas images.")]


@dataclass(frozen=True)
class Asked:
    """The unit (a channel, or a dictionary's feature) and the render settings (its image prior included) a
    request asks for."""

    model: LoadedModel
    layer: LayerInfo
    target: Target
    unit: int
    settings: RenderSettings


async def get_request(settings: SettingsDep, atlases: AtlasesDep, dictionaries: DictionariesDep,
                      model: Annotated[LoadedModel, Depends(get_ready_model)],
                      layer: Annotated[LayerInfo, Depends(get_layer)],
                      unit: Annotated[UnitIndex, Path(description="The unit's index: a channel, or a feature.")],
                      steps: Steps = None, size: Size = None, seed: Seed = 0, param: Param = "fft",
                      kind: KindQuery = CHANNEL) -> Asked:
    """The unit and render settings a request asks for, its limits checked, with the model's image prior."""
    target = Target(layer.name, None if kind == CHANNEL else
                    await run_in_threadpool(dictionaries.get, model, layer.name, kind))
    check_unit(layer.name, unit, target.units(model))
    render_settings = _settings(settings, model, steps, size, seed, param)
    prior = await run_in_threadpool(render_prior, atlases, model, render_settings.size, param)  # reads images once
    return Asked(model, layer, target, unit, replace(render_settings, prior=prior))


RequestDep = Annotated[Asked, Depends(get_request)]


@dataclass(frozen=True)
class Png:
    content: bytes
    batch_size: int | None  # requests whose units were rendered in the pass that made it; None: it was stored

    def headers(self) -> dict[str, str]:
        return batch_headers(self.batch_size) if self.batch_size else {}


async def get_png(request: Request, settings: SettingsDep, board: ProgressBoardDep, limiter: ComputeLimiterDep,
                  calls: ModelCallsDep, asked: RequestDep,
                  negative: Negative = False, render: Render = True, progress_token: ProgressToken = None) -> Png:
    """The unit's image for the request: stored, or rendered first in a worker thread (unless `render` is
    false: then a 404), in one batch with the concurrent requests for other units of the layer; a client that
    goes away stops the rendering at its next step once its batch's other clients have gone too."""
    model, target, unit, render_settings = asked.model, asked.target, asked.unit, asked.settings
    store = Annotations(settings.data_dir, model.id, FEATURE_VISUALISATION)
    scope, name = render_scope(model), target.name(variant(render_settings, negative))
    png = await run_in_threadpool(store.read, scope, target.layer, unit, name, target.kind)
    if png is None and not render:
        raise NotFound(f"no feature visualisation of {target.layer}:{unit} ({target.kind}) is stored for these "
                       f"settings ({name}); ask without render=false to render it", unit=unit, variant=name)
    if png is not None:
        return Png(png, None)
    batched = await _rendering(request, board, limiter, progress_token, lambda progress, stop: calls.render(
        model, target, settings.data_dir, render_settings, unit, negative, progress, stop))
    return Png(await run_in_threadpool(store.read, scope, target.layer, unit, name, target.kind), batched.size)


async def get_facets(request: Request, settings: SettingsDep, board: ProgressBoardDep, limiter: ComputeLimiterDep,
                     atlases: AtlasesDep, dictionaries: DictionariesDep, asked: RequestDep, facets: Facets = 3,
                     progress_token: ProgressToken = None) -> list[Facet]:
    """The unit's facets in its default atlas: stored, or clustered and rendered first."""
    if facets > settings.visualization_max_facets:
        raise InvalidInput(f"facets={facets} is over the visualization_max_facets setting "
                           f"({settings.visualization_max_facets})", facets=facets,
                           limit=settings.visualization_max_facets)
    atlas = atlases.get(asked.model.id)
    indexed = atlas.layer(asked.layer.name, asked.target.kind)  # 404 naming the indexed layers or kinds
    dictionary_of(dictionaries, asked.model, atlas, asked.layer.name, asked.target.kind)  # 409: the atlas's is older
    atlas.check_unit(indexed, asked.unit)
    return await _rendering(request, board, limiter, progress_token, lambda progress, stop: visualize_facets(
        asked.model, atlas, asked.target, asked.unit, facets, settings.data_dir, asked.settings,
        steps_progress=progress, checkpoint=stop))


@router.get("/visualization", response_model=Visualization, responses=ERRORS,
            summary="The unit's feature visualisation: settings, reached activation, the dataset's best, the PNG")
async def read_visualization(response: Response, atlases: AtlasesDep, asked: RequestDep,
                             png: Annotated[Png, Depends(get_png)], negative: Negative = False) -> Visualization:
    model, layer, unit, render_settings = asked.model, asked.layer, asked.unit, asked.settings
    query = _query(asked) + ("&negative=true" if negative else "")
    response.headers.update(png.headers())
    return Visualization(model=model.id, layer=layer.name, kind=asked.target.kind, unit=unit,
                         variant=asked.target.name(variant(render_settings, negative)),
                         steps=render_settings.steps, size=render_settings.size[0], seed=render_settings.seed,
                         param=render_settings.param, precision=render_settings.precision,
                         colors=render_settings.prior.source, negative=negative,
                         activation=_activation(png.content), dataset_best=_dataset_best(atlases, asked),
                         png=f"{_base(asked)}/visualization.png{query}")


@router.get("/visualization.png", response_class=Response,
            responses={**image_doc("The unit's feature visualisation.", "image/png"), **ERRORS},
            summary="The unit's feature visualisation as a PNG")
async def read_visualization_png(png: Annotated[Png, Depends(get_png)]) -> Response:
    return Response(png.content, media_type="image/png", headers={"Cache-Control": IMMUTABLE, **png.headers()})


@router.get("/visualization/facets", response_model=VisualizationFacets, responses=ERRORS,
            summary="The unit's facets: its top images clustered, each cluster's visualisation started from its "
                    "mean image")
async def read_facets(atlases: AtlasesDep, asked: RequestDep, found: Annotated[list[Facet], Depends(get_facets)],
                      facets: Facets = 3) -> VisualizationFacets:
    atlas, render_settings = atlases.get(asked.model.id), asked.settings
    rows = atlas.top_images(atlas.layer(asked.layer.name, asked.target.kind), asked.unit)
    query = _query(asked) + f"&facets={facets}"
    return VisualizationFacets(
        model=asked.model.id, layer=asked.layer.name, kind=asked.target.kind, unit=asked.unit, dataset=atlas.dataset,
        asked=facets,
        steps=render_settings.steps, size=render_settings.size[0], seed=render_settings.seed,
        param=render_settings.param, precision=render_settings.precision,
        facets=[VisualizationFacet(
            index=facet.index, activation=_activation(facet.png),
            members=[FacetMember(rank=rank, image=f"{atlas.dataset}:{rows[rank]['image']}", value=rows[rank]["value"])
                     for rank in facet.members],
            png=f"{_base(asked)}/visualization/facets/{facet.index}.png{query}") for facet in found])


@router.get("/visualization/facets/{index}.png", response_class=Response,
            responses={**image_doc("One facet's visualisation.", "image/png"), **ERRORS},
            summary="One facet's visualisation as a PNG")
async def read_facet_png(found: Annotated[list[Facet], Depends(get_facets)],
                         index: Annotated[int, Path(ge=0, description="The facet's index.")]) -> Response:
    if index >= len(found):
        raise NotFound(f"the unit has {len(found)} facets: 0 to {len(found) - 1}", index=index)
    return Response(found[index].png, media_type="image/png", headers={"Cache-Control": IMMUTABLE})


def _base(asked: Asked) -> str:
    return f"/api/models/{asked.model.id}/layers/{asked.layer.name}/units/{asked.unit}"


def _query(asked: Asked) -> str:
    render_settings = asked.settings
    kind = "" if asked.target.kind == CHANNEL else f"&kind={asked.target.kind}"
    return (f"?steps={render_settings.steps}&size={render_settings.size[0]}&seed={render_settings.seed}"
            f"&param={render_settings.param}{kind}")


def _activation(png: bytes) -> float:
    return float(Image.open(io.BytesIO(png)).text["activation"])


def _settings(settings: Settings, model: LoadedModel, steps: int | None, size: int | None, seed: int,
              param: str) -> RenderSettings:
    """The render settings a request asks for (a page's defaults where it names none), once its limits are
    checked; the prior is the caller's to add."""
    defaults = default_render_settings(settings, model, LUCID)
    steps, side = steps or defaults.steps, size or defaults.size[0]
    if steps > settings.visualization_max_steps:
        raise InvalidInput(f"steps={steps} is over the visualization_max_steps setting "
                           f"({settings.visualization_max_steps})", steps=steps, limit=settings.visualization_max_steps)
    if side > settings.visualization_max_size:
        raise InvalidInput(f"size={side} is over the visualization_max_size setting "
                           f"({settings.visualization_max_size})", size=side, limit=settings.visualization_max_size)
    return replace(defaults, steps=steps, size=(side, side), seed=seed, param=param)


async def _rendering(request: Request, board, limiter, token: str | None, job):
    """`job(steps_progress, checkpoint)` in a worker thread on a compute slot (app/api/compute.py: taken here,
    not by the route, so that a stored image is answered without queueing behind model work), followed by
    the progress token; a client that goes away stops it at its next step."""
    async with client_gone(request) as gone:
        with board.follow(token) as progress:
            progress(WAITING)
            async with limiter:
                return await run_in_threadpool(job, lambda done, total: progress(RENDERING, done, total),
                                               lambda: _stop_if(gone))


def _stop_if(gone) -> None:
    if gone.is_set():
        raise RequestCancelled("the client closed the connection; the rendering stopped")


def _dataset_best(atlases, asked: Asked) -> float | None:
    """The largest spatial mean of any image of the model's default atlas, when it indexed the layer's units."""
    try:
        atlas = atlases.get(asked.model.id)
        indexed = atlas.layer(asked.layer.name, asked.target.kind)
        if asked.target.dictionary and indexed_digests(atlas).get((indexed.name, indexed.kind)) != \
                asked.target.dictionary.digest:
            return None  # the atlas holds another version of the dictionary
        return float(atlas.unit(indexed, asked.unit)["mean_max"])
    except (AtlasMissing, NotFound):  # no atlas, the layer or kind not in it, the unit out of its range
        return None
