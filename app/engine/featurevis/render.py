"""The optimisation: a batch of parameterised images, each step transformed, normalised as the model takes
its inputs, run only as far as the target layer (the rest of the model never runs), scored by the objective,
and stepped by Adam. The model is not changed: its weights are frozen at load and only the images' parameters
are optimised; the one hook that stops the pass at the layer lives for one call (app/engine/hooks.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from app.engine.featurevis.objectives import Objective
from app.engine.featurevis.param import FourierImage, MacoImage, PixelImage
from app.engine.featurevis.prior import LUCID, ImagePrior
from app.engine.featurevis.relu import redirected_relus
from app.engine.featurevis.transforms import Transform, standard_transforms
from app.engine.probe import run_to

Progress = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class RenderSettings:
    """What a rendering depends on besides the model, layer and objective: recorded with each image."""

    steps: int = 256
    size: tuple[int, int] = (128, 128)
    param: Literal["fft", "maco", "pixels"] = "fft"
    learning_rate: float | None = None  # None: the parameterisation's own (LEARNING_RATES)
    transforms: bool = True
    # Lucid's redirected ReLU gradient (relu.py) for the first steps: units dead on the starting image get a
    # gradient that wakes them. Lucid keeps it all the way; once units are awake it changes little and costs
    # as much as the rest of a step on a CPU (resnet18 layer3, channels-last: 12 -> 24 ms per unit per step).
    redirect_steps: int = 16
    seed: int = 0
    # The model's pass to the layer in bfloat16 (autocast; the images, their transforms, the objective and Adam
    # stay float32): 3.6x faster on a CPU with AMX (resnet18 to layer3, 140 px), gradients within bf16's
    # rounding (cosine 0.98 to float32's). Where it would be slower, float32 (devices.bfloat16_pays).
    precision: Literal["float32", "bfloat16"] = "float32"
    # The colours (and MACO's magnitudes) of the model's images; named in the variant by its digest.
    prior: ImagePrior = field(default=LUCID, repr=False)

    @property
    def rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else LEARNING_RATES[self.param]


# Adam's step size per parameterisation, chosen on the demo models' default layers at 128 steps
# (docs/benchmarks.md, "Feature visualisation"); MACO's is the paper's 1.0, for phases in radians.
LEARNING_RATES = {"fft": 0.2, "maco": 1.0, "pixels": 0.1}


def render(model: nn.Module, layer: str, objective: Objective, items: list[int], settings: RenderSettings,
           to_input: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str = "cpu",
           progress: Progress | None = None, checkpoint: Callable[[], None] | None = None,
           start: torch.Tensor | None = None) -> torch.Tensor:
    """(len(items), 3, h, w) images in [0, 1] on the CPU, item i optimised for item i of `objective`. `items`
    name the batch's items (the units rendered): each starts from values of its own seed (settings.seed and
    the item), and the transforms are drawn alike for all, so a step of an item is the same alone or in any
    batch to the rounding of the kernels chosen by batch size. Over many steps the optimisation carries that
    rounding on: the same batch always renders the same images, another batch images of about the same
    activation but other pixels (docs/distributed.md). `to_input` maps images to what the
    model takes (normalisation, memory format); `checkpoint()` runs before each step and may raise to stop;
    `start`: (len(items), 3, h, w) images in [0, 1] to begin from instead of noise (a facet's mean image).
    The caller holds the model's lock."""
    generator = torch.Generator().manual_seed(settings.seed)  # the transforms': the same for every batch
    seeds = [settings.seed * 1_000_003 + item for item in items]
    image = parameterisation(settings, seeds, start).to(device)
    transform: Transform | None = standard_transforms() if settings.transforms else None
    optimizer = torch.optim.Adam(image.parameters(), lr=settings.rate)
    bfloat16 = settings.precision == "bfloat16"
    for step in range(settings.steps):
        if checkpoint is not None:
            checkpoint()
        optimizer.zero_grad(set_to_none=True)
        pictures = image()
        if transform is not None:
            pictures = transform(pictures, generator)
        redirect = step < settings.redirect_steps
        with torch.enable_grad(), redirected_relus() if redirect else nullcontext():
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bfloat16):
                activations = run_to(model, layer, to_input(pictures))
            loss = objective(activations.float()).sum()
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1, settings.steps)
    with torch.no_grad():
        return image().detach().cpu()


def parameterisation(settings: RenderSettings, seeds: list[int], start: torch.Tensor | None = None) -> nn.Module:
    if settings.param == "fft":
        return FourierImage(seeds, settings.size, settings.prior, start=start)
    if settings.param == "maco":
        return MacoImage(seeds, settings.size, settings.prior, start=start)
    return PixelImage(seeds, settings.size, start=start)
