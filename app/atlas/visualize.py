"""`fovea visualize`: feature visualisations of whole layers, rendered a batch of units at a time by the
engine (app/engine/featurevis/) and kept as per-unit annotations (`feature-visualisation`, scoped to the
model's weights, its variant naming the render settings). Each batch is written in one transaction, so a
run that is killed resumes from the units it finished, and ends with the images an uninterrupted run makes
(each unit's image depends only on its own seed and the settings, not on its batch)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import torch
from PIL import Image, PngImagePlugin

from app.atlas.annotations import FEATURE_VISUALISATION, Annotation, Annotations, scope_of
from app.engine.featurevis import channel, render
from app.engine.featurevis.render import RenderSettings
from app.engine.probe import layer_output
from app.errors import InvalidInput
from app.store.store import LoadedModel

Progress = Callable[[int, int], None]  # (units done, units in all)


def variant(settings: RenderSettings) -> str:
    """What names one set of renderings of a unit: every setting the image depends on."""
    height, width = settings.size
    prior = "" if settings.param == "pixels" else f"-prior{settings.prior.digest}"  # pixels use no prior
    return (f"{settings.param}-{height}x{width}-{settings.steps}steps-lr{settings.rate:g}"
            f"-{'transforms' if settings.transforms else 'plain'}{'-redirect' if settings.redirect_relu else ''}"
            f"{prior}-seed{settings.seed}")


def visualize_layer(model: LoadedModel, layer: str, data_dir, settings: RenderSettings, units: list[int] | None = None,
                    batch_size: int = 32, progress: Progress | None = None,
                    cancel: threading.Event | None = None, steps_progress: Progress | None = None,
                    checkpoint: Callable[[], None] | None = None) -> list[int]:
    """Render `units` of `layer` (default: all) that are not stored yet; returns the units rendered now.
    `progress` hears the units done, `steps_progress` each batch's optimisation steps; `checkpoint()` runs
    before each step and may raise to stop (the batch in progress is not stored)."""
    info = model.layer(layer)
    channels = info.shape[0]
    wanted = list(range(channels)) if units is None else units
    outside = [unit for unit in wanted if not 0 <= unit < channels]
    if outside:
        raise InvalidInput(f"{layer} has units 0 to {channels - 1}; not {outside[:5]}", layer=layer, units=outside)
    store = Annotations(data_dir, model.id, FEATURE_VISUALISATION)
    scope, name = scope_of(FEATURE_VISUALISATION, model.weights_sha256 or "", None), variant(settings)
    done = store.done(scope, layer, name)
    todo = [unit for unit in wanted if unit not in done]
    mean, std = (torch.tensor(v, device=model.device).view(1, 3, 1, 1) for v in (model.preprocessing.mean,
                                                                                 model.preprocessing.std))

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return model.as_input((images - mean) / std)

    finished = len(wanted) - len(todo)
    if progress is not None:
        progress(finished, len(wanted))
    for start in range(0, len(todo), batch_size):
        if cancel is not None and cancel.is_set():
            break
        batch = todo[start:start + batch_size]
        with model.lock:
            images = render(model.module, layer, channel(batch), batch, settings, to_input, device=model.device,
                            progress=steps_progress, checkpoint=checkpoint)
            with torch.no_grad():  # what each image reaches, untransformed, at the size it was rendered
                reached = layer_output(model.module, layer, to_input(images.to(model.device)))
        answers = reached[torch.arange(len(batch)), torch.tensor(batch)].mean(dim=(1, 2)).tolist()
        store.write(scope, [Annotation(layer, unit, _png(image, {"activation": f"{answer:.6g}", "settings": name}),
                                       variant=name) for unit, image, answer in zip(batch, images, answers)])
        finished += len(batch)
        if progress is not None:
            progress(finished, len(wanted))
    return [unit for unit in todo if unit in store.done(scope, layer, name)]


def _png(image: torch.Tensor, text: dict[str, str]) -> bytes:
    """(3, h, w) in [0, 1] as PNG bytes, with `text` in tEXt chunks."""
    pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", pnginfo=info)
    return out.getvalue()
