"""The passes that requests run on a served model, micro-batched (`batching.py`): concurrent predictions on one
model, outputs of one layer (the units that fire on an image), and CAMs of one layer by the methods of the
shared pass alone (the gradient family) each run as one batch. A call alone runs as it would unbatched; in a
batch each image's answer is the same within the rounding of kernels chosen by batch size. A model whose
images interact in a batch (a batch norm on batch statistics) runs every call alone.

Feature visualisations rendered on request are batched too, on a batcher of their own: the units of one layer
asked for with the same settings at once (a layer grid's cells, several users) are optimised as one batch: in a
batch of 8 a unit costs this CPU about half its time alone (docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from app.atlas.visualize import Target, variant, visualize_layer
from app.engine.cam import CamResult, compute_cams_batch
from app.engine.featurevis.render import RenderSettings
from app.engine.probe import images_interact, layer_output
from app.settings import Settings
from app.store.store import LoadedModel
from app.studio.batching import Batched, Batcher

Waiting = Callable[[], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Render:
    """One request's unit, and how to tell its client the steps done and whether it is still there."""

    unit: int
    progress: Progress
    checkpoint: Callable[[], None]  # raises when the client has gone


class ModelCalls:
    def __init__(self, settings: Settings):
        self.batcher = Batcher(settings.batch_window_ms / 1000, settings.batch_max_size)
        self.renders = Batcher(settings.visualization_batch_window_ms / 1000, settings.visualization_batch_max_size)
        self._interacting: dict[int, bool] = {}  # by the module's id: whether its images interact

    def _key(self, model: LoadedModel, *parts) -> tuple:
        """What calls must share to share a pass: the model and the pass; a call of its own where the model's
        images interact."""
        module = model.module
        if id(module) not in self._interacting:
            self._interacting[id(module)] = images_interact(module)
        return (id(module), *parts) + ((object(),) if self._interacting[id(module)] else ())

    def probabilities(self, model: LoadedModel, image: Image.Image, waiting: Waiting) -> Batched:
        """(classes,) softmax of the model's scores on one image."""
        def run(images: list[torch.Tensor]) -> list[torch.Tensor]:
            with torch.no_grad():
                return list(model.module(model.as_input(torch.stack(images))).float().softmax(dim=1).cpu())

        return self.batcher.run(self._key(model, "probabilities"), model.preprocessing(image), run, model.exclusive,
                                waiting)

    def layer_output(self, model: LoadedModel, layer: str, image: Image.Image, waiting: Waiting) -> Batched:
        """(c, h, w) output of `layer` on one image, the pass stopped at the layer. (A unit's live map on a dataset
        image stays unbatched, `LoadedModel.layer_output`: its answer is cached as immutable.)"""
        model.layer(layer)

        def run(images: list[torch.Tensor]) -> list[torch.Tensor]:
            return list(layer_output(model.module, layer, torch.stack(images).to(model.device)).float().cpu())

        return self.batcher.run(self._key(model, "layer_output", layer), model.preprocessing(image), run,
                                model.exclusive, waiting)

    def cams(self, model: LoadedModel, batch: torch.Tensor, layer: str, methods: tuple[str, ...],
             target: int | None, waiting: Waiting, ready: Callable[[], None]) -> Batched:
        """`compute_cams` of one image (`batch`, (1, 3, H, W) as the model takes it) by methods of the shared
        pass alone (`extra_forwards` none): a CamResult. `ready()` runs when the pass is about to (it may
        raise: a client gone, a time limit)."""
        def run(items: list[tuple[torch.Tensor, tuple[str, ...], int | None]]) -> list[CamResult]:
            images = torch.cat([image for image, _, _ in items]).contiguous(memory_format=model.memory_format)
            return compute_cams_batch(model.module, images, layer, [m for _, m, _ in items], [t for _, _, t in items])

        return self.batcher.run(self._key(model, "cams", layer), (batch, methods, target), run, model.exclusive,
                                waiting, ready)

    def render(self, model: LoadedModel, target: Target, data_dir: Path, settings: RenderSettings, unit: int,
               negative: bool, progress: Progress, checkpoint: Callable[[], None]) -> Batched:
        """Render and store `unit`'s feature visualisation (`visualize_layer`), in one batch with the concurrent
        calls for other units of the same layer, kind and settings. `progress` hears the batch's steps;
        `checkpoint()` runs before the batch and before each step, and may raise to stop: a batch stops once
        every call's raises, and until then renders the units of calls gone too (they are stored all the same)."""
        def run(calls: list[_Render]) -> list[None]:
            def steps(done: int, total: int) -> None:
                for call in calls:
                    call.progress(done, total)

            def stop_when_all_stop() -> None:
                stopped = []
                for call in calls:
                    try:
                        call.checkpoint()
                    except Exception as error:
                        stopped.append(error)
                if len(stopped) == len(calls):
                    raise stopped[0]

            units = sorted({call.unit for call in calls})  # two clients of one unit: rendered once
            visualize_layer(model, target, data_dir, settings, units=units, batch_size=len(units), negative=negative,
                            steps_progress=steps, checkpoint=stop_when_all_stop)
            return [None] * len(calls)

        # The variant names every setting the image depends on (negative included); the digest, the dictionary.
        key = self._key(model, "render", target.layer, target.kind, target.name(variant(settings, negative)))
        return self.renders.run(key, _Render(unit, progress, checkpoint), run, model.exclusive, ready=checkpoint)
