"""A unit's feature visualisation: `GET .../units/{unit}/visualization` (what it is: its settings, the
activation it reaches, the dataset's best for comparison, and the PNG's address) and `.../visualization.png`.
One that is not stored yet for the settings asked is rendered on request (a compute slot, the model's lock,
followed with a progress token), stored as `fovea visualize` stores it, and kept."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.api.caching import IMMUTABLE, image_doc
from app.api.compute import COMPUTE
from app.api.deps import AtlasesDep, ProgressBoardDep, ProgressToken, SettingsDep, get_layer, get_ready_model
from app.api.disconnect import client_gone
from app.api.errors import error_doc
from app.api.indices import UnitIndex
from app.api.schemas import Visualization
from app.atlas.annotations import FEATURE_VISUALISATION, Annotations, scope_of
from app.atlas.image_prior import render_prior
from app.atlas.visualize import variant, visualize_layer
from app.engine.featurevis.render import RenderSettings
from app.engine.layers import LayerInfo
from app.errors import AtlasMissing, InvalidInput, LayerNotFound, RequestCancelled, check_unit
from app.settings import Settings
from app.store.store import LoadedModel
from app.studio.progress import RENDERING, WAITING

router = APIRouter(prefix="/api/models/{model}/layers/{layer}/units/{unit}", tags=["units"])
ERRORS = {404: error_doc("Unknown model, layer or unit (with the valid range)."),
          409: error_doc("The model failed to load."),
          422: error_doc("Steps or size over the visualization_max_steps or visualization_max_size setting.")}
Steps = Annotated[int | None, Query(ge=1, description="Optimisation steps (default: the visualization_steps "
                                                      "setting).")]
Size = Annotated[int | None, Query(ge=16, description="Image side in pixels (default: the model's input size).")]
Seed = Annotated[int, Query(ge=0, le=2**31 - 1, description="Seed of the starting image and the transforms.")]
Param = Annotated[Literal["fft", "maco"], Query(
    description="Parameterisation: Lucid's Fourier image (fft) or MACO's phase-only one (maco); both draw on the "
                "colours (and MACO on the magnitude spectrum) of the model's atlas images.")]


@dataclass(frozen=True)
class Rendered:
    """A unit's feature visualisation as a request asks for it: stored, or rendered first."""

    model: LoadedModel
    layer: LayerInfo
    unit: int
    settings: RenderSettings
    png: bytes


async def get_rendered(request: Request, settings: SettingsDep, board: ProgressBoardDep,
                       model: Annotated[LoadedModel, Depends(get_ready_model)],
                       layer: Annotated[LayerInfo, Depends(get_layer)],
                       unit: Annotated[UnitIndex, Path(description="Channel index.")],
                       atlases: AtlasesDep, steps: Steps = None, size: Size = None, seed: Seed = 0,
                       param: Param = "fft", progress_token: ProgressToken = None) -> Rendered:
    render_settings = _settings(settings, model, layer, unit, steps, size, seed, param)
    prior = await run_in_threadpool(render_prior, atlases, model, render_settings.size, param)  # reads images once
    render_settings = replace(render_settings, prior=prior)
    png = await _ensure(request, settings, board, model, layer, unit, render_settings, progress_token)
    return Rendered(model, layer, unit, render_settings, png)


@router.get("/visualization", response_model=Visualization, responses=ERRORS, dependencies=[COMPUTE],
            summary="The unit's feature visualisation: settings, reached activation, the dataset's best, the PNG")
async def read_visualization(atlases: AtlasesDep, found: Annotated[Rendered, Depends(get_rendered)]) -> Visualization:
    model, layer, unit, render_settings = found.model, found.layer, found.unit, found.settings
    query = (f"?steps={render_settings.steps}&size={render_settings.size[0]}&seed={render_settings.seed}"
             f"&param={render_settings.param}")
    return Visualization(model=model.id, layer=layer.name, unit=unit, variant=variant(render_settings),
                         steps=render_settings.steps, size=render_settings.size[0], seed=render_settings.seed,
                         param=render_settings.param, colors=render_settings.prior.source,
                         activation=float(Image.open(io.BytesIO(found.png)).text["activation"]),
                         dataset_best=_dataset_best(atlases, model, layer, unit),
                         png=f"/api/models/{model.id}/layers/{layer.name}/units/{unit}/visualization.png{query}")


@router.get("/visualization.png", response_class=Response, dependencies=[COMPUTE],
            responses={**image_doc("The unit's feature visualisation.", "image/png"), **ERRORS},
            summary="The unit's feature visualisation as a PNG")
async def read_visualization_png(found: Annotated[Rendered, Depends(get_rendered)]) -> Response:
    return Response(found.png, media_type="image/png", headers={"Cache-Control": IMMUTABLE})


def _settings(settings: Settings, model: LoadedModel, layer: LayerInfo, unit: int, steps: int | None,
              size: int | None, seed: int, param: str) -> RenderSettings:
    """The render settings a request asks for, once its unit and its limits are checked."""
    check_unit(layer.name, unit, layer.shape[0])
    steps = steps or settings.visualization_steps
    side = size or max(model.preprocessing.size)
    if steps > settings.visualization_max_steps:
        raise InvalidInput(f"steps={steps} is over the visualization_max_steps setting "
                           f"({settings.visualization_max_steps})", steps=steps, limit=settings.visualization_max_steps)
    if side > settings.visualization_max_size:
        raise InvalidInput(f"size={side} is over the visualization_max_size setting "
                           f"({settings.visualization_max_size})", size=side, limit=settings.visualization_max_size)
    return RenderSettings(steps=steps, size=(side, side), seed=seed, param=param)


async def _ensure(request: Request, settings: Settings, board, model: LoadedModel, layer: LayerInfo, unit: int,
                  render_settings: RenderSettings, token: str | None) -> bytes:
    """The stored image, rendered first in a worker thread when there is none; a client that goes away stops
    the rendering at its next step (nothing is stored)."""
    store = Annotations(settings.data_dir, model.id, FEATURE_VISUALISATION)
    scope, name = scope_of(FEATURE_VISUALISATION, model.weights_sha256 or "", None), variant(render_settings)
    png = await run_in_threadpool(store.read, scope, layer.name, unit, name)
    if png is None:
        async with client_gone(request) as gone:
            with board.follow(token) as progress:
                progress(WAITING)
                await run_in_threadpool(
                    visualize_layer, model, layer.name, settings.data_dir, render_settings, units=[unit],
                    batch_size=1, steps_progress=lambda done, total: progress(RENDERING, done, total),
                    checkpoint=lambda: _stop_if(gone))
        png = await run_in_threadpool(store.read, scope, layer.name, unit, name)
    return png


def _stop_if(gone) -> None:
    if gone.is_set():
        raise RequestCancelled("the client closed the connection; the rendering stopped")


def _dataset_best(atlases, model: LoadedModel, layer: LayerInfo, unit: int) -> float | None:
    """The largest spatial mean of any image of the model's default atlas, when it indexed the layer."""
    try:
        atlas = atlases.get(model.id)
        return float(atlas.unit(atlas.layer(layer.name), unit)["mean_max"])
    except (AtlasMissing, LayerNotFound):
        return None
