"""`fovea visualize`: feature visualisations of whole layers, rendered a batch of units at a time by the
engine (app/engine/featurevis/) and kept as per-unit annotations (`feature-visualisation`, scoped to the
model's weights, its variant naming the render settings). Each batch is written in one transaction, so a
run that is killed resumes from the units it finished, and ends with the images an uninterrupted run makes
(each unit's image depends only on its own seed and the settings, not on its batch).

Besides the image that drives a unit most: its negative image (the unit minimised), and its facets (its top
images clustered by the layer's activations on them, one image per facet started from the facet's mean
image, rendered together in one batch)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image, PngImagePlugin
from torchvision.transforms import functional as TF

from app.atlas.annotations import FEATURE_VISUALISATION, Annotation, Annotations, scope_of
from app.atlas.reader import Atlas
from app.engine.featurevis import channel, render
from app.engine.featurevis.facets import cluster
from app.engine.featurevis.prior import ImagePrior
from app.engine.featurevis.render import RenderSettings
from app.engine.probe import layer_output
from app.errors import InvalidInput
from app.settings import Settings
from app.store.store import LoadedModel

Progress = Callable[[int, int], None]  # (units done, units in all)


def variant(settings: RenderSettings, negative: bool = False) -> str:
    """What names one set of renderings of a unit: every setting the image depends on."""
    height, width = settings.size
    prior = "" if settings.param == "pixels" else f"-prior{settings.prior.digest}"  # pixels use no prior
    redirect = f"-redirect{settings.redirect_steps}" if settings.redirect_steps else ""
    return (f"{settings.param}-{height}x{width}-{settings.steps}steps-lr{settings.rate:g}"
            f"-{'transforms' if settings.transforms else 'plain'}{redirect}"
            f"{prior}-seed{settings.seed}{'-negative' if negative else ''}")


def default_render_settings(settings: Settings, model: LoadedModel, prior: ImagePrior) -> RenderSettings:
    """What a page asks for when it names no settings: the visualization_steps setting, the model's input
    size, Lucid's Fourier image, seed 0."""
    side = max(model.preprocessing.size)
    return RenderSettings(steps=settings.visualization_steps, size=(side, side), seed=0, param="fft", prior=prior)


def facet_variant(settings: RenderSettings, dataset: str, facets: int, index: int) -> str:
    """Facet `index` of `facets`, clustered from the top images of the model's atlas of `dataset`."""
    return f"{variant(settings)}-facets{facets}-of-{dataset}-{index}"


def visualize_layer(model: LoadedModel, layer: str, data_dir, settings: RenderSettings, units: list[int] | None = None,
                    batch_size: int = 32, progress: Progress | None = None,
                    cancel: threading.Event | None = None, steps_progress: Progress | None = None,
                    checkpoint: Callable[[], None] | None = None, negative: bool = False) -> list[int]:
    """Render `units` of `layer` (default: all) that are not stored yet; returns the units rendered now.
    `progress` hears the units done, `steps_progress` each batch's optimisation steps; `checkpoint()` runs
    before each step and may raise to stop (the batch in progress is not stored). `negative`: the images
    that drive each unit lowest instead."""
    info = model.layer(layer)
    channels = info.shape[0]
    wanted = list(range(channels)) if units is None else units
    outside = [unit for unit in wanted if not 0 <= unit < channels]
    if outside:
        raise InvalidInput(f"{layer} has units 0 to {channels - 1}; not {outside[:5]}", layer=layer, units=outside)
    store = Annotations(data_dir, model.id, FEATURE_VISUALISATION)
    scope, name = render_scope(model), variant(settings, negative)
    done = store.done(scope, layer, name)
    todo = [unit for unit in wanted if unit not in done]
    finished = len(wanted) - len(todo)
    if progress is not None:
        progress(finished, len(wanted))
    for start in range(0, len(todo), batch_size):
        if cancel is not None and cancel.is_set():
            break
        batch = todo[start:start + batch_size]
        objective = -channel(batch) if negative else channel(batch)
        images, answers = _render(model, layer, objective, batch, batch, settings, steps_progress, checkpoint)
        store.write(scope, [Annotation(layer, unit, _png(image, {"activation": f"{answer:.6g}", "settings": name}),
                                       variant=name) for unit, image, answer in zip(batch, images, answers)])
        finished += len(batch)
        if progress is not None:
            progress(finished, len(wanted))
    return [unit for unit in todo if unit in store.done(scope, layer, name)]


@dataclass(frozen=True)
class Facet:
    index: int
    members: list[int]  # ranks among the unit's top images
    png: bytes


def visualize_facets(model: LoadedModel, atlas: Atlas, layer: str, unit: int, facets: int, data_dir,
                     settings: RenderSettings, steps_progress: Progress | None = None,
                     checkpoint: Callable[[], None] | None = None) -> list[Facet]:
    """The unit's facets among its top images in `atlas` (the layer's spatial means on each image, clustered),
    each rendered from the mean of its images, all in one batch; stored, then read back."""
    indexed = atlas.layer(layer)
    rows = atlas.top_images(indexed, unit)
    labels = cluster(torch.from_numpy(atlas.pooled(indexed)[[row["image"] for row in rows]].astype("float32")),
                     facets).tolist()
    count = max(labels) + 1
    members = [[row["rank"] for row, label in zip(rows, labels) if label == index] for index in range(count)]
    store = Annotations(data_dir, model.id, FEATURE_VISUALISATION)
    scope, names = render_scope(model), [facet_variant(settings, atlas.dataset, facets, i) for i in range(count)]
    stored = [store.read(scope, layer, unit, name) for name in names]
    if any(png is None for png in stored):
        views = [TF.to_tensor(TF.resize(model.preprocessing.view(atlas.load_image(row["image"])), list(settings.size)))
                 for row in rows]
        start = torch.stack([torch.stack([views[rank] for rank in ranks]).mean(dim=0) for ranks in members])
        images, answers = _render(model, layer, channel([unit] * count), list(range(count)), [unit] * count,
                                  settings, steps_progress, checkpoint, start=start)
        stored = [_png(image, {"activation": f"{answer:.6g}", "settings": name, "members": json.dumps(ranks)})
                  for image, answer, name, ranks in zip(images, answers, names, members)]
        store.write(scope, [Annotation(layer, unit, png, variant=name) for png, name in zip(stored, names)])
    return [Facet(index, ranks, png) for index, (ranks, png) in enumerate(zip(members, stored))]


def render_scope(model: LoadedModel) -> str:
    """What a unit's renderings are computed from: the model's weights."""
    return scope_of(FEATURE_VISUALISATION, model.weights_sha256 or "", None)


def _render(model: LoadedModel, layer: str, objective, items: list[int], units: list[int], settings: RenderSettings,
            steps_progress: Progress | None, checkpoint: Callable[[], None] | None,
            start: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """Images for batch items `items` (item i serving units[i]), and the spatial mean each reaches on its unit,
    untransformed, at the size it was rendered."""
    mean, std = (torch.tensor(v, device=model.device).view(1, 3, 1, 1) for v in (model.preprocessing.mean,
                                                                                 model.preprocessing.std))

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return model.as_input((images - mean) / std)

    with model.lock:
        images = render(model.module, layer, objective, items, settings, to_input, device=model.device,
                        progress=steps_progress, checkpoint=checkpoint,
                        start=None if start is None else start.to(model.device))
        with torch.no_grad():
            reached = layer_output(model.module, layer, to_input(images.to(model.device)))
    return images, reached[torch.arange(len(units)), torch.tensor(units)].mean(dim=(1, 2)).tolist()


def _png(image: torch.Tensor, text: dict[str, str]) -> bytes:
    """(3, h, w) in [0, 1] as PNG bytes, with `text` in tEXt chunks."""
    pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", pnginfo=info)
    return out.getvalue()
