"""Class activation maps of an image: `GET /api/images/{id}/cam` (the JSON twin of the image page) and
`GET /api/methods`, the method registry."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.api.caching import NOT_MODIFIED, not_modified
from app.api.compute import COMPUTE, batch_headers
from app.api.deps import ModelCallsDep, ModelInputsDep, ProgressBoardDep, ProgressToken, SettingsDep, StoreDep
from app.api.disconnect import client_gone
from app.api.encoding import FastJSONResponse, encode_maps
from app.api.errors import ErrorResponse
from app.api.image_refs import ImageRef, get_image
from app.api.schemas import CamAnswer, MethodList
from app.engine.cam import METHODS
from app.engine.cam.registry import DEFAULT_METHODS
from app.errors import RequestCancelled
from app.settings import Settings
from app.store.store import LoadedModel, ModelStore
from app.studio.explain import METRICS, CamRequest, Explanation, explain
from app.studio.inputs import InputCache
from app.studio.model_calls import ModelCalls
from app.studio.progress import RequestProgress

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["cams"])
ERRORS = {
    404: {"model": ErrorResponse, "description": "Unknown image, model or layer (with the valid values)."},
    409: {"model": ErrorResponse, "description": "The model failed to load."},
    422: {"model": ErrorResponse, "description": "Unknown method, metric or target class (with the valid values), "
                                                 "a layer too wide for the perturbation methods, or a request "
                                                 "that computed past the cam_max_seconds setting."},
}
# Answers depend only on the request and the model's weights, up to the rounding of a shared batched pass
# (app/studio/batching.py), so the ETag is weak: clients revalidate, and a match costs no pass.
REVALIDATE = "no-cache"


@router.get("/methods", response_model=MethodList,
            summary="Every CAM method: id, name, description, paper, and what it costs")
def list_methods() -> FastJSONResponse:
    return FastJSONResponse({"methods": [{**method.describe(), "default": method.id in DEFAULT_METHODS}
                                         for method in METHODS.values()]})


@router.get("/images/{image_id}/cam", response_model=CamAnswer, responses=ERRORS | NOT_MODIFIED,
            dependencies=[COMPUTE],
            summary="Class activation maps of one layer for one class, one per method, from one shared pass")
async def read_cams(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    model_inputs: ModelInputsDep,
    calls: ModelCallsDep,
    board: ProgressBoardDep,
    image: Annotated[ImageRef, Depends(get_image)],
    model: Annotated[str, Query(description="Model id.")],
    layer: Annotated[str | None, Query(description="Any layer with an (n, c, h, w) output; default: the "
                                                   "deepest of the model's default layers.")] = None,
    methods: Annotated[str, Query(description="Comma-separated method ids (see `/api/methods`).")] = "gradcam",
    target: Annotated[int | None, Query(description="Class index to explain; default: the top prediction.")] = None,
    relu: Annotated[bool, Query(description="Clamp the shown map at 0 (at the layer's resolution).")] = True,
    normalize: Annotated[bool, Query(description="Scale the shown map to [0, 1] by its own range.")] = True,
    metrics: Annotated[str, Query(description="Comma-separated metrics to score each map with: "
                                              + "; ".join(f"`{k}`: {v}" for k, v in METRICS.items()))] = "",
    progress_token: ProgressToken = None,
) -> FastJSONResponse:
    # The work runs in a worker thread; this coroutine watches the connection meanwhile, so a client that
    # gives up (a browser moving on from Score-CAM) stops the work at its next forward pass and frees the model.
    cam_request = CamRequest(layer=layer or "", methods=_split(methods), target=target, relu=relu, normalize=normalize,
                             metrics=_split(metrics))
    try:
        async with client_gone(request) as cancelled:
            with board.follow(progress_token) as progress:
                return await run_in_threadpool(_answer, request, store, settings, model_inputs, calls, image,
                                               model, cam_request, cancelled, progress)
    except RequestCancelled:
        log.info("CAM request stopped, its client went away: %s", request.url)
        raise


def _answer(request: Request, store: ModelStore, settings: Settings, model_inputs: InputCache, calls: ModelCalls,
            image: ImageRef, model: str, cam_request: CamRequest, cancelled: threading.Event,
            progress: RequestProgress) -> FastJSONResponse:
    loaded = store.ready(model)
    if not cam_request.layer:
        cam_request = replace(cam_request, layer=_default_layer(loaded))
    etag = _etag(image, loaded, cam_request, settings.cam_metric_steps)
    if cached := not_modified(request, etag, REVALIDATE):
        return cached
    batch = model_inputs.get(loaded, image.etag, image.load)
    explanation = explain(loaded, batch, cam_request, settings, image.object_mask, cancelled, progress, calls)
    return FastJSONResponse(_as_json(image, loaded, explanation, cam_request.normalize),
                            headers={"ETag": etag, "Cache-Control": REVALIDATE,
                                     **batch_headers(explanation.batch_size)})


def _split(values: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in values.split(",") if part.strip()))


def _default_layer(loaded: LoadedModel) -> str:
    defaults = [info.name for info in loaded.layers if info.default]
    return (defaults or [info.name for info in loaded.layers])[-1]


def _etag(image: ImageRef, loaded: LoadedModel, cam_request: CamRequest, metric_steps: int) -> str:
    key = json.dumps([__version__, image.etag, loaded.id, loaded.weights_sha256, cam_request.layer,
                      cam_request.methods, cam_request.target, cam_request.relu, cam_request.normalize,
                      cam_request.metrics, metric_steps])
    return f'W/"cam-{hashlib.sha256(key.encode()).hexdigest()[:32]}"'


def _as_json(image: ImageRef, loaded: LoadedModel, explanation: Explanation, normalized: bool) -> dict:
    """Raw maps as float32; shown maps scaled to [0, 1] as float16, which is plenty for display and halves
    the largest part of the answer."""
    result, probabilities = explanation.result, explanation.probabilities
    top = int(probabilities.argmax())
    return {
        "image": image.id, "model": loaded.id, "layer": result.layer, "layer_shape": list(result.layer_shape),
        "input_size": list(result.input_size),
        "target": _class(loaded, probabilities, result.target), "top": _class(loaded, probabilities, top),
        "split": result.split, "capture_seconds": result.seconds["capture"],
        "maps": [{"method": shown.method.id, "name": shown.method.name, "resolution": shown.method.resolution,
                  "seconds": result.seconds[shown.method.id],
                  "raw": encode_maps(result.maps[shown.method.id].raw.numpy()),
                  "map": encode_maps(shown.shown.numpy(), "float16" if normalized else "float32"),
                  "metrics": shown.metrics} for shown in explanation.maps],
        **({"ground_truth": explanation.ground_truth} if explanation.ground_truth is not None else {}),
    }


def _class(loaded: LoadedModel, probabilities, index: int) -> dict:
    return {"class": index, "label": loaded.labels[index], "probability": float(probabilities[index])}
