"""One CAM request on one image: checks its cost against the settings, runs the engine under the model's
lock, and post-processes each raw map for display. The API only encodes what this returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from app.engine.cam import CamResult, compute_cams, postprocess
from app.engine.cam.base import NO_EXTRA_FORWARDS, CamMethod
from app.engine.cam.engine import resolve_methods
from app.errors import InvalidInput
from app.settings import Settings
from app.store.store import LoadedModel


@dataclass(frozen=True)
class CamRequest:
    layer: str
    methods: tuple[str, ...]
    target: int | None = None  # None: the top prediction
    relu: bool = True
    normalize: bool = True


@dataclass(frozen=True)
class ShownMap:
    method: CamMethod
    shown: torch.Tensor  # (H, W) at the input's resolution, post-processed as the request asked


@dataclass(frozen=True)
class Explanation:
    result: CamResult  # raw maps, logits, target, timings
    probabilities: torch.Tensor  # (classes,)
    maps: list[ShownMap]  # in the order requested


def explain(model: LoadedModel, image: Image.Image, request: CamRequest, settings: Settings) -> Explanation:
    methods = resolve_methods(request.methods)
    channels = model.layer(request.layer).shape[0]
    costly = [m.id for m in methods if m.extra_forwards != NO_EXTRA_FORWARDS]
    if costly and channels > settings.cam_max_channels:
        raise InvalidInput(
            f"{', '.join(costly)} would run the model once per channel of {request.layer!r} ({channels:,} channels), "
            f"over the cam_max_channels setting ({settings.cam_max_channels:,}); pick an earlier layer or another "
            "method", layer=request.layer, channels=channels, limit=settings.cam_max_channels, methods=costly)
    batch = model.as_input(model.preprocessing(image).unsqueeze(0))
    with model.lock:
        result = compute_cams(model.module, batch, request.layer, [m.id for m in methods], request.target,
                              score_batch_size=settings.cam_score_batch_size,
                              ablation_batch_size=settings.cam_ablation_batch_size)
    maps = [ShownMap(method, postprocess(result.maps[method.id].raw, result.input_size, relu=request.relu,
                                         normalize=request.normalize)) for method in methods]
    return Explanation(result=result, probabilities=result.logits.softmax(dim=0), maps=maps)
