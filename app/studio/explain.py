"""One CAM request on one image: checks its cost against the settings, runs the engine under the model's
lock within the request's time budget, post-processes each raw map for display and, on request, scores
each map's faithfulness. The API only encodes what this returns."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from app.atlas.ground_truth import mask_to_input
from app.engine.cam import CamResult, compute_cams, metrics, postprocess
from app.engine.cam.base import NO_EXTRA_FORWARDS, PER_CHANNEL, CamMethod, TaskProgress, unheard
from app.engine.cam.engine import resolve_methods
from app.engine.cam.folded import folded_forward
from app.errors import InvalidInput, RequestCancelled, WorkLimitExceeded
from app.settings import Settings
from app.store.store import LoadedModel
from app.studio.model_calls import ModelCalls
from app.studio.progress import MAPS, SCORING, WAITING

# Metric groups a request can ask for: each is a few forward passes per map, or (pointing) none.
METRICS = {
    "deletion": "RISE deletion AUC: probability as the most salient pixels are zeroed (lower is better)",
    "insertion": "RISE insertion AUC: probability as they are put back into a blurred image (higher is better)",
    "confidence": "Grad-CAM++ average drop and increase in confidence on the image times the map",
    "pointing": "pointing game and energy share on the object's mask (dataset images with masks only)",
}
ObjectMask = Callable[[str], np.ndarray | None]  # class label -> the object's mask at the image's own size


@dataclass(frozen=True)
class CamRequest:
    layer: str
    methods: tuple[str, ...]
    target: int | None = None  # None: the top prediction
    relu: bool = True
    normalize: bool = True
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShownMap:
    method: CamMethod
    shown: torch.Tensor  # (H, W) at the input's resolution, post-processed as the request asked
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Explanation:
    result: CamResult  # raw maps, logits, target, timings
    probabilities: torch.Tensor  # (classes,)
    maps: list[ShownMap]  # in the order requested
    ground_truth: dict | None = None  # with "pointing": whether an object mask exists, and the tolerance
    batch_size: int = 1  # requests whose images shared the pass (micro-batching, `model_calls.py`)


class Budget:
    """Stops a request's work between forward passes: once its client has gone (`cancelled` set by the API),
    or `seconds` after `start()` (the settings' `cam_max_seconds`). Waiting for the model's lock is free."""

    def __init__(self, seconds: float, cancelled: threading.Event | None = None):
        self.seconds = seconds
        self.cancelled = cancelled or threading.Event()
        self.deadline = math.inf

    def start(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def __call__(self) -> None:
        if self.cancelled.is_set():
            raise RequestCancelled("the client closed the connection; the request stopped")
        if time.monotonic() > self.deadline:
            raise WorkLimitExceeded(
                f"the request computed for longer than the cam_max_seconds setting ({self.seconds:g} s) allows; "
                "ask for fewer or cheaper methods or metrics, or an earlier layer", limit_seconds=self.seconds)


def explain(model: LoadedModel, batch: torch.Tensor, request: CamRequest, settings: Settings,
            object_mask: ObjectMask | None = None, cancelled: threading.Event | None = None,
            progress: TaskProgress = unheard, calls: ModelCalls | None = None) -> Explanation:
    """`batch`: the image as the model takes it, (1, c, H, W) (`LoadedModel.as_input`). Setting `cancelled`
    stops the work at its next forward pass (RequestCancelled); so does running past `cam_max_seconds`
    (WorkLimitExceeded). `progress(task, done, total)` hears where the work is (`progress.py`). With `calls`,
    a request of the shared pass alone (gradient methods, no metrics) shares it with concurrent ones."""
    methods = resolve_methods(request.methods)
    _check_metrics(request.metrics)
    _check_cost(model, request.layer, methods, settings)
    budget = Budget(settings.cam_max_seconds, cancelled)
    if calls is not None and not request.metrics and all(m.extra_forwards == NO_EXTRA_FORWARDS for m in methods):
        def ready() -> None:  # the model is ours: as the unbatched path, the budget starts and is checked once
            budget.start()
            budget()  # a client gone while it waited, or no time at all; one shared pass is too short to stop
            progress(MAPS)

        batched = calls.cams(model, batch, request.layer, tuple(m.id for m in methods), request.target,
                             waiting=lambda: progress(WAITING), ready=ready)
        result = batched.value
        maps = [ShownMap(m, postprocess(result.maps[m.id].raw, result.input_size, relu=request.relu,
                                        normalize=request.normalize)) for m in methods]
        return Explanation(result=result, probabilities=result.logits.softmax(dim=0), maps=maps,
                           batch_size=batched.size)
    with model.exclusive(waiting=lambda: progress(WAITING)):
        budget.start()
        budget()  # a client that left while the request waited for the model
        progress(MAPS)
        # Score-CAM and the curves run the model hundreds of times: batch norms folded (`folded.py`), once.
        many_passes = any(m.extra_forwards == PER_CHANNEL for m in methods) or \
            {metrics.DELETION, metrics.INSERTION} & set(request.metrics)
        forward = folded_forward(model.module, batch) if many_passes else model.module
        result = compute_cams(model.module, batch, request.layer, [m.id for m in methods], request.target,
                              score_batch_size=settings.cam_score_batch_size,
                              ablation_batch_size=settings.cam_ablation_batch_size, checkpoint=budget,
                              inference=forward, progress=progress)
        ground_truth, mask = _object_mask(model, result, request.metrics, object_mask)
        scored = _ScoringForward(forward, budget, progress,
                                 len(methods) * _metric_inputs(result.input_size, request.metrics, settings))
        maps = []
        for method in methods:
            raw = result.maps[method.id].raw
            shown = postprocess(raw, result.input_size, relu=request.relu, normalize=request.normalize)
            saliency = shown if request.relu and request.normalize else postprocess(raw, result.input_size)
            maps.append(ShownMap(method, shown, _score(scored, batch, saliency, result.target, request.metrics,
                                                       mask, ground_truth, settings)))
    return Explanation(result=result, probabilities=result.logits.softmax(dim=0), maps=maps,
                       ground_truth=ground_truth)


class _ScoringForward:
    """The metrics' forward passes: within the request's budget, each batch counted for its progress."""

    def __init__(self, forward: metrics.Model, budget: Budget, progress: TaskProgress, total: int):
        self.forward, self.budget, self.progress, self.total = forward, budget, progress, total
        self.done = 0
        if total:
            progress(SCORING, 0, total)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        self.budget()
        logits = self.forward(inputs)
        self.done += len(inputs)
        self.progress(SCORING, self.done, self.total)
        return logits


def _metric_inputs(size: tuple[int, int], asked: tuple[str, ...], settings: Settings) -> int:
    """Images the model scores per map for the metrics asked for."""
    curves = sum(name in asked for name in (metrics.DELETION, metrics.INSERTION))
    return (curves * metrics.curve_inputs(size, settings.cam_metric_steps)
            + (metrics.CONFIDENCE_INPUTS if "confidence" in asked else 0))


def _check_metrics(asked: tuple[str, ...]) -> None:
    for metric in asked:
        if metric not in METRICS:
            raise InvalidInput(f"unknown metric {metric!r}; valid metrics are {', '.join(METRICS)}",
                               metric=str(metric), valid=list(METRICS))


def _check_cost(model: LoadedModel, layer: str, methods: list[CamMethod], settings: Settings) -> None:
    channels = model.layer(layer).shape[0]
    costly = [m.id for m in methods if m.extra_forwards != NO_EXTRA_FORWARDS]
    if costly and channels > settings.cam_max_channels:
        raise InvalidInput(
            f"{', '.join(costly)} would run the model once per channel of {layer!r} ({channels:,} channels), "
            f"over the cam_max_channels setting ({settings.cam_max_channels:,}); pick an earlier layer or another "
            "method", layer=layer, channels=channels, limit=settings.cam_max_channels, methods=costly)


def _object_mask(model: LoadedModel, result: CamResult, asked: tuple[str, ...],
                 object_mask: ObjectMask | None) -> tuple[dict | None, torch.Tensor | None]:
    """The target's object mask at the input's resolution, for the pointing metrics, and what to say about it."""
    if "pointing" not in asked:
        return None, None
    label = model.labels[result.target]
    found = object_mask(label) if object_mask is not None else None
    if found is None:
        reason = ("only dataset images with object masks (the demo dataset's) can be scored" if object_mask is None
                  else f"the image has no object mask for {label!r}")
        return {"available": False, "reason": reason}, None
    mask = torch.from_numpy(mask_to_input(found, model.preprocessing))
    if not mask.any():
        return {"available": False, "reason": f"the {label} lies outside what the model sees (its crop)"}, None
    tolerance = metrics.pointing_tolerance(result.input_size)
    return {"available": True, "label": label, "tolerance": tolerance, "mask_pixels": int(mask.sum())}, mask


def _score(model: metrics.Model, batch: torch.Tensor, saliency: torch.Tensor, target: int,
           asked: tuple[str, ...], mask: torch.Tensor | None, ground_truth: dict | None, settings: Settings) -> dict:
    """The metrics asked for, on the map ReLU'd, upsampled and scaled to [0, 1] (what the papers score)."""
    scores: dict = {}
    curves = [name for name in (metrics.DELETION, metrics.INSERTION) if name in asked]
    if curves:
        found = metrics.deletion_insertion(model, batch, saliency.to(batch.device), target,
                                           steps=settings.cam_metric_steps,
                                           batch_size=settings.cam_metric_batch_size, which=curves)
        scores.update({name: {"auc": curve.auc, "curve": curve.scores, "step": curve.step}
                       for name, curve in found.items()})
    if "confidence" in asked:
        change = metrics.confidence_change(model, batch, saliency.to(batch.device), target)
        scores["confidence"] = {"original": change.original, "explained": change.explained, "drop": change.drop,
                                "increase": change.increase}
    if mask is not None:
        pointing = metrics.pointing_game(saliency, mask, ground_truth["tolerance"])
        energy = metrics.energy_pointing_game(saliency, mask)
        scores["pointing"] = {"hit": pointing.hit, "maxima": pointing.maxima, "energy_mask": energy.mask,
                              "energy_box": energy.box}
    return scores
