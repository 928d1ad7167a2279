"""`fovea visualize`: feature visualisations of whole layers, rendered a batch of units at a time by the
engine (app/engine/featurevis/) and kept as per-unit annotations (`feature-visualisation`, scoped to the
model's weights, its variant naming the render settings). Each batch is written in one transaction, so a
run that is killed resumes from the units it finished, and ends with the images an uninterrupted run makes:
it renders the same batches, and a batch's images depend only on its units, their seeds and the settings.
(In another batch a unit reaches about the same activation, within 2% on the demo, but the optimisation
carries the kernels' rounding by batch size into other pixels; the first image stored is kept.)

Besides the image that drives a unit most: its negative image (the unit minimised), and its facets (its top
images clustered by the layer's activations on them, one image per facet started from the facet's mean
image, rendered together in one batch).

A dictionary's feature is rendered through the direction objective: the direction in channel space whose dot
product drives it (app/engine/dictionary `drivers`); its images are kept under its kind, their variant naming
the dictionary's digest (a dictionary learned again renders anew)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image, PngImagePlugin

from app.atlas.annotations import FEATURE_VISUALISATION, Annotation, Annotations, scope_of
from app.atlas.dictionary_store import StoredDictionary
from app.atlas.image_prior import render_prior
from app.atlas.kinds import CHANNEL
from app.atlas.reader import Atlas
from app.atlas.registry import AtlasRegistry
from app.engine.devices import bfloat16_pays
from app.engine.dictionary import encode_maps
from app.engine.featurevis import channel, direction, render
from app.engine.featurevis.facets import cluster
from app.engine.featurevis.objectives import Objective
from app.engine.featurevis.prior import ImagePrior
from app.engine.featurevis.render import RenderSettings
from app.engine.preprocess import resize, to_tensor
from app.engine.probe import layer_output
from app.errors import InvalidInput
from app.settings import Settings
from app.store.store import LoadedModel

Progress = Callable[[int, int], None]  # (units done, units in all)


@dataclass(frozen=True)
class Target:
    """What a layer's renderings drive: its channels, or the features of one of its dictionaries."""

    layer: str
    dictionary: StoredDictionary | None = None

    @property
    def kind(self) -> str:
        return self.dictionary.kind if self.dictionary else CHANNEL

    def units(self, model: LoadedModel) -> int:
        return self.dictionary.dictionary.size if self.dictionary else model.layer(self.layer).shape[0]

    def objective(self, units: list[int]) -> Objective:
        if self.dictionary is None:
            return channel(units)
        return direction(self.dictionary.dictionary.drivers()[units].detach())

    def reached(self, activations: torch.Tensor, units: list[int]) -> list[float]:
        """Each item's spatial mean on its unit (item i serving units[i])."""
        if self.dictionary is not None:
            activations = encode_maps(self.dictionary.on(activations.device), activations.float())
        return activations[torch.arange(len(units)), torch.tensor(units)].mean(dim=(1, 2)).tolist()

    def name(self, variant_name: str) -> str:
        return variant_name if self.dictionary is None else f"{variant_name}-dictionary{self.dictionary.digest}"


def variant(settings: RenderSettings, negative: bool = False) -> str:
    """What names one set of renderings of a unit: every setting the image depends on."""
    height, width = settings.size
    prior = "" if settings.param == "pixels" else f"-prior{settings.prior.digest}"  # pixels use no prior
    redirect = f"-redirect{settings.redirect_steps}" if settings.redirect_steps else ""
    bfloat16 = "-bf16" if settings.precision == "bfloat16" else ""  # float32's names are those of before
    return (f"{settings.param}-{height}x{width}-{settings.steps}steps-lr{settings.rate:g}"
            f"-{'transforms' if settings.transforms else 'plain'}{redirect}"
            f"{prior}-seed{settings.seed}{bfloat16}{'-negative' if negative else ''}")


def default_render_settings(settings: Settings, model: LoadedModel, prior: ImagePrior) -> RenderSettings:
    """What a page asks for when it names no settings: the visualization_steps setting, the model's input
    size, Lucid's Fourier image, seed 0, and the visualization_precision setting on the model's device."""
    side = max(model.preprocessing.size)
    return RenderSettings(steps=settings.visualization_steps, size=(side, side), seed=0, param="fft", prior=prior,
                          precision=render_precision(settings.visualization_precision, model))


def page_render_settings(settings: Settings, atlases: AtlasRegistry, model: LoadedModel) -> RenderSettings:
    """The defaults with the model's own image prior (its default atlas's): what a page asks for, and what a
    first start renders."""
    side = max(model.preprocessing.size)
    return default_render_settings(settings, model, render_prior(atlases, model, (side, side), "fft"))


def rendered_units(model: LoadedModel, target: Target, settings: Settings, render_settings: RenderSettings
                   ) -> set[int]:
    """The units of `target` whose rendering with `render_settings` is stored and can be asked for (its size
    within the visualization_max_size setting): those a page can show without starting an optimisation."""
    if render_settings.size[0] > settings.visualization_max_size:
        return set()
    store = Annotations(settings.data_dir, model.id, FEATURE_VISUALISATION)
    return store.done(render_scope(model), target.layer, target.name(variant(render_settings)), target.kind)


def render_precision(setting: str, model: LoadedModel) -> str:
    """`auto`: bfloat16 where it runs the model faster on its device (devices.bfloat16_pays), else float32."""
    if setting == "auto":
        return "bfloat16" if bfloat16_pays(model.device, model.module) else "float32"
    return setting


def facet_variant(settings: RenderSettings, dataset: str, facets: int, index: int) -> str:
    """Facet `index` of `facets`, clustered from the top images of the model's atlas of `dataset`."""
    return f"{variant(settings)}-facets{facets}-of-{dataset}-{index}"


def visualize_layer(model: LoadedModel, layer: str | Target, data_dir, settings: RenderSettings,
                    units: list[int] | None = None, batch_size: int = 32, progress: Progress | None = None,
                    cancel: threading.Event | None = None, steps_progress: Progress | None = None,
                    checkpoint: Callable[[], None] | None = None, negative: bool = False) -> list[int]:
    """Render `units` of `layer` (its channels, or a Target's features; default: all) that are not stored yet;
    returns the units rendered now. `progress` hears the units done, `steps_progress` each batch's optimisation
    steps; `checkpoint()` runs before each step and may raise to stop (the batch in progress is not stored).
    `negative`: the images that drive each unit lowest instead."""
    target = layer if isinstance(layer, Target) else Target(layer)
    count = target.units(model)
    wanted = list(range(count)) if units is None else units
    outside = [unit for unit in wanted if not 0 <= unit < count]
    if outside:
        raise InvalidInput(f"{target.layer} has units 0 to {count - 1}; not {outside[:5]}", layer=target.layer,
                           units=outside)
    store = Annotations(data_dir, model.id, FEATURE_VISUALISATION)
    scope, name = render_scope(model), target.name(variant(settings, negative))
    done = store.done(scope, target.layer, name, target.kind)
    todo = [unit for unit in wanted if unit not in done]
    finished = len(wanted) - len(todo)
    if progress is not None:
        progress(finished, len(wanted))
    for start in range(0, len(todo), batch_size):
        if cancel is not None and cancel.is_set():
            break
        batch = todo[start:start + batch_size]
        objective = -target.objective(batch) if negative else target.objective(batch)
        images, answers = _render(model, target, objective, batch, batch, settings, steps_progress, checkpoint)
        store.write(scope, [Annotation(target.layer, unit, _png(image, {"activation": f"{answer:.6g}",
                                                                         "settings": name}),
                                       variant=name, kind=target.kind)
                            for unit, image, answer in zip(batch, images, answers)])
        finished += len(batch)
        if progress is not None:
            progress(finished, len(wanted))
    return [unit for unit in todo if unit in store.done(scope, target.layer, name, target.kind)]


@dataclass(frozen=True)
class Facet:
    index: int
    members: list[int]  # ranks among the unit's top images
    png: bytes


def visualize_facets(model: LoadedModel, atlas: Atlas, layer: str | Target, unit: int, facets: int, data_dir,
                     settings: RenderSettings, steps_progress: Progress | None = None,
                     checkpoint: Callable[[], None] | None = None) -> list[Facet]:
    """The unit's facets among its top images in `atlas` (the layer's spatial means on each image, clustered),
    each rendered from the mean of its images, all in one batch; stored, then read back."""
    target = layer if isinstance(layer, Target) else Target(layer)
    indexed = atlas.layer(target.layer, target.kind)
    rows = atlas.top_images(indexed, unit)
    labels = cluster(torch.from_numpy(atlas.pooled(indexed)[[row["image"] for row in rows]].astype("float32")),
                     facets).tolist()
    count = max(labels) + 1
    members = [[row["rank"] for row, label in zip(rows, labels) if label == index] for index in range(count)]
    store = Annotations(data_dir, model.id, FEATURE_VISUALISATION)
    scope = render_scope(model)
    names = [target.name(facet_variant(settings, atlas.dataset, facets, i)) for i in range(count)]
    stored = [store.read(scope, target.layer, unit, name, target.kind) for name in names]
    if any(png is None for png in stored):
        views = [to_tensor(resize(model.preprocessing.view(atlas.load_image(row["image"])), settings.size))
                 for row in rows]
        start = torch.stack([torch.stack([views[rank] for rank in ranks]).mean(dim=0) for ranks in members])
        images, answers = _render(model, target, target.objective([unit] * count), list(range(count)),
                                  [unit] * count, settings, steps_progress, checkpoint, start=start)
        stored = [_png(image, {"activation": f"{answer:.6g}", "settings": name, "members": json.dumps(ranks)})
                  for image, answer, name, ranks in zip(images, answers, names, members)]
        store.write(scope, [Annotation(target.layer, unit, png, variant=name, kind=target.kind)
                            for png, name in zip(stored, names)])
    return [Facet(index, ranks, png) for index, (ranks, png) in enumerate(zip(members, stored))]


def render_scope(model: LoadedModel) -> str:
    """What a unit's renderings are computed from: the model's weights."""
    return scope_of(FEATURE_VISUALISATION, model.weights_sha256 or "", None)


def _render(model: LoadedModel, target: Target, objective, items: list[int], units: list[int],
            settings: RenderSettings,
            steps_progress: Progress | None, checkpoint: Callable[[], None] | None,
            start: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """Images for batch items `items` (item i serving units[i]), and the spatial mean each reaches on its unit,
    untransformed, at the size it was rendered."""
    mean, std = (torch.tensor(v, device=model.device).view(1, 3, 1, 1) for v in (model.preprocessing.mean,
                                                                                 model.preprocessing.std))

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return model.as_input((images - mean) / std)

    with model.lock:
        images = render(model.module, target.layer, objective, items, settings, to_input, device=model.device,
                        progress=steps_progress, checkpoint=checkpoint,
                        start=None if start is None else start.to(model.device))
        with torch.no_grad():
            reached = layer_output(model.module, target.layer, to_input(images.to(model.device)))
    return images, target.reached(reached, units)


def _png(image: torch.Tensor, text: dict[str, str]) -> bytes:
    """(3, h, w) in [0, 1] as PNG bytes, with `text` in tEXt chunks."""
    pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", pnginfo=info)
    return out.getvalue()
