"""`compute_cams`: checks the request, runs the shared pass once, then each method; returns a frozen result.

Per-request state is the returned value, never an attribute of anything long-lived. The model is never
changed: no mode toggles, no module swaps, no weight or requires_grad edits; the caller holds its lock.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
from torch import nn

from app.engine.cam.base import (
    NO_EXTRA_FORWARDS,
    PER_CHANNEL,
    PER_CHANNEL_AFTER_LAYER,
    CamMethod,
    Rerun,
    TaskProgress,
    unheard,
)
from app.engine.cam.capture import Shared, capture, capture_batch, check_count, memory_format_of, output_hook
from app.engine.cam.fallbacks import WHOLE_MODEL_ABLATION, fall_back
from app.engine.cam.folded import Forward, folded_forward
from app.engine.cam.registry import METHODS
from app.engine.cam.tail import Tail, outputs_agree, tail_for
from app.errors import InvalidInput, LayerNotFound, did_you_mean


@dataclass(frozen=True)
class CamMap:
    """One method's raw signed map, float32 on the CPU: (h, w) at the layer's resolution, or (H, W) at the
    input's for the input-resolution methods; with its range, for scaling maps consistently."""

    raw: torch.Tensor
    min: float
    max: float

    @classmethod
    def of(cls, raw: torch.Tensor) -> CamMap:
        raw = raw.detach().to("cpu", torch.float32, copy=True)  # shares no storage with the evidence
        return cls(raw=raw, min=float(raw.min()), max=float(raw.max()))


@dataclass(frozen=True)
class CamResult:
    layer: str
    layer_shape: tuple[int, int, int]  # (c, h, w)
    input_size: tuple[int, int]  # (H, W)
    logits: torch.Tensor  # (classes,) float32 on the CPU
    target: int  # the class explained: the requested one or the top prediction
    maps: dict[str, CamMap]  # method id -> map, in the order requested
    seconds: dict[str, float]  # "capture" (the shared pass) and each method id -> wall time
    split: bool  # Ablation-CAM re-ran only the layers after the target layer (False: the whole model)


def compute_cams(model: nn.Module, image: torch.Tensor, layer: str, methods: str | Iterable[str],
                 target: int | None = None, *, score_batch_size: int = 32, ablation_batch_size: int = 128,
                 checkpoint: Callable[[], None] | None = None, inference: Forward | None = None,
                 progress: TaskProgress = unheard) -> CamResult:
    """Class activation maps of `layer` for `target` (default: the top prediction), one per method id.

    `image`: (1, 3, H, W) normalised, on the model's device, in any memory format (the model's preferred
    one is fastest). The gradient methods share one forward and one backward pass; Guided Grad-CAM adds one
    backward; Score-CAM and Ablation-CAM add batched forward passes of `score_batch_size` and
    `ablation_batch_size` images. `checkpoint()` is called first, then before each method and each of those
    batches: whatever it raises stops the work there (a client gone, a time limit), with the model left as
    it was. `inference`: the model's function for Score-CAM's masked passes (default: the model with its
    batch norms folded, `folded_forward`). `progress(method_id, done, total)` hears each method begin (0 of
    0) and, before each of those batches and at their end, how many of its extra inputs have run. The caller
    holds the model's lock.
    """
    chosen = resolve_methods(methods)
    layer_module = find_layer(model, layer)
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be a (1, c, H, W) tensor, got {getattr(image, 'shape', type(image))}")
    check_count("score_batch_size", score_batch_size)
    check_count("ablation_batch_size", ablation_batch_size)
    checkpoint = checkpoint or _carry_on
    checkpoint()  # a request that waited for the model may be over already
    started = time.perf_counter()
    tail = tail_for(model, layer, image) if any(m.extra_forwards == PER_CHANNEL_AFTER_LAYER for m in chosen) \
        else None
    shared = capture(model, layer, image, target, tail=tail,
                     gradients=any(m.needs_gradients for m in chosen),
                     input_gradient=any(m.needs_input_gradient for m in chosen),
                     guided=any(m.needs_guided_gradient for m in chosen))
    # Score-CAM's masked passes run the model with its batch norms folded: the same function, less work.
    if inference is None:
        inference = folded_forward(model, image) if any(m.extra_forwards == PER_CHANNEL for m in chosen) else model
    rerun = _rerun(inference, model, layer_module, image, shared, tail, score_batch_size, ablation_batch_size,
                   checkpoint)
    seconds = {"capture": time.perf_counter() - started}
    maps = {}
    for method in chosen:
        checkpoint()
        progress(method.id)
        started = time.perf_counter()
        reporting = replace(rerun, progress=functools.partial(progress, method.id))
        maps[method.id] = CamMap.of(method.compute(shared.evidence, reporting))
        seconds[method.id] = time.perf_counter() - started
    evidence = shared.evidence
    return CamResult(layer=layer, layer_shape=tuple(evidence.activations.shape), input_size=evidence.input_size,
                     logits=evidence.logits.cpu(), target=evidence.target, maps=maps,
                     seconds=seconds, split=rerun.split)


def compute_cams_batch(model: nn.Module, images: torch.Tensor, layer: str, methods: list[Iterable[str]],
                       targets: list[int | None]) -> list[CamResult]:
    """`compute_cams` of n images at once (n, 3, H, W), image i with its own `methods[i]` and `targets[i]`,
    for methods that need only the shared pass (`extra_forwards` none): one forward and one backward for all
    (app/engine/cam/capture.py, `capture_batch`). The caller holds the model's lock."""
    if not len(images) == len(methods) == len(targets):
        raise ValueError(f"{len(images)} images, {len(methods)} method lists and {len(targets)} targets: one each")
    chosen = [resolve_methods(ids) for ids in methods]
    every = {method.id: method for methods_of_image in chosen for method in methods_of_image}.values()
    if costly := [m.id for m in every if m.extra_forwards != NO_EXTRA_FORWARDS]:
        raise ValueError(f"{', '.join(costly)} run the model again for each image: use compute_cams")
    find_layer(model, layer)
    started = time.perf_counter()
    evidences = capture_batch(model, layer, images, targets,
                              gradients=any(m.needs_gradients for m in every),
                              input_gradient=any(m.needs_input_gradient for m in every),
                              guided=any(m.needs_guided_gradient for m in every))
    seconds = time.perf_counter() - started
    results = []
    for evidence, methods_of_image in zip(evidences, chosen):
        maps, timings = {}, {"capture": seconds}
        for method in methods_of_image:
            started = time.perf_counter()
            maps[method.id] = CamMap.of(method.compute(evidence, _NO_RERUN))
            timings[method.id] = time.perf_counter() - started
        results.append(CamResult(layer=layer, layer_shape=tuple(evidence.activations.shape),
                                 input_size=evidence.input_size, logits=evidence.logits.cpu(),
                                 target=evidence.target, maps=maps, seconds=timings, split=False))
    return results


def _never(_batch: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("a method of the shared pass alone asked for another pass")


# What a method of the shared pass alone is given for re-runs: it never calls them.
_NO_RERUN = Rerun(from_input=_never, from_layer=_never, split=False, memory_format=torch.contiguous_format,
                  layer_dtype=torch.float32, layer_memory_format=torch.contiguous_format, score_batch_size=1,
                  ablation_batch_size=1)


def resolve_methods(methods: str | Iterable[str]) -> list[CamMethod]:
    """The registry entries for `methods` (ids, duplicates dropped, order kept)."""
    ids = [methods] if isinstance(methods, str) else list(methods)
    valid = list(METHODS)
    if not ids:
        raise InvalidInput(f"no CAM method requested; valid methods are {', '.join(valid)}", valid=valid)
    for method in ids:
        if method not in METHODS:
            raise InvalidInput(f"unknown CAM method {method!r}; valid methods are {', '.join(valid)}",
                               method=str(method), valid=valid)
    return [METHODS[method] for method in dict.fromkeys(ids)]


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module named `layer` (its `named_modules()` path), or LayerNotFound with the closest names."""
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        close, hint = did_you_mean(layer, modules)
        raise LayerNotFound(f"the model has no layer {layer!r}{hint}", layer=str(layer), suggestions=close)
    return modules[layer]


def _carry_on() -> None:
    """The default checkpoint: never stops."""


def _rerun(forward: Forward, model: nn.Module, layer_module: nn.Module, image: torch.Tensor, shared: Shared,
           tail: Tail | None, score_batch_size: int, ablation_batch_size: int,
           checkpoint: Callable[[], None]) -> Rerun:
    memory_format = memory_format_of(image)

    def from_input(batch: torch.Tensor) -> torch.Tensor:
        checkpoint()
        with torch.inference_mode():
            return forward(batch)

    def split_run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return tail.run(batch, shared.frontier)

    def from_layer_split(batch: torch.Tensor) -> torch.Tensor:
        checkpoint()
        return split_run(batch)

    def from_layer_whole(batch: torch.Tensor) -> torch.Tensor:
        """The whole model on copies of the image, the layer's (first) output replaced by `batch`."""
        checkpoint()
        inputs = image.detach().expand(len(batch), *image.shape[1:]).contiguous(memory_format=memory_format)
        replaced: list[bool] = []

        def replace(_output):
            if replaced:
                return None
            replaced.append(True)
            return batch

        with output_hook(layer_module, replace), torch.inference_mode():
            return model(inputs)

    rerun = Rerun(from_input=from_input, from_layer=from_layer_whole, split=False, memory_format=memory_format,
                  layer_dtype=shared.layer_dtype, layer_memory_format=shared.layer_memory_format,
                  score_batch_size=score_batch_size, ablation_batch_size=ablation_batch_size)
    if tail is None:
        return rerun
    if _split_runs_batches(rerun, split_run, shared):  # a probe, not a step of the work
        return replace(rerun, from_layer=from_layer_split, split=True)
    fall_back(model, WHOLE_MODEL_ABLATION, "its split graph does not run a batch of ablated copies (code that fixes "
              "the batch size, such as x.view(1, -1), or writes in place into an earlier value)")
    return rerun


def _split_runs_batches(rerun: Rerun, from_layer, shared: Shared) -> bool:
    """Whether the split graph, given two copies of the layer's output, reproduces the logits twice: code
    that fixes the batch size from the input (`x.view(1, -1)`) or writes in place into an upstream value
    fails here and sends Ablation-CAM to whole-model re-runs instead."""
    evidence = shared.evidence
    try:
        found = from_layer(rerun.layer_batch(evidence.activations, 2))
    except Exception:  # any user code can fail on a batch it never saw
        return False
    return outputs_agree(evidence.logits.expand(2, -1), found)
