"""One layer's output on given images, and where in the input a position of that layer looks.

Both run the model only as far as the layer: the forward pass is abandoned once the layer has produced
its output. The caller holds the model's lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from app.engine.hooks import forward_hooks


class _Reached(Exception):
    """Raised inside the hook to stop the forward pass at the layer."""


def layer_output(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) output of `layer` on `images`, computed without gradients and detached from any later
    in-place change."""
    with torch.no_grad():
        return run_to(model, layer, images).clone()


def run_to(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """`layer`'s output on `images`, in the caller's autograd mode, the forward pass abandoned at the layer."""
    captured: list[torch.Tensor] = []

    def stop(_name: str, output) -> None:
        captured.append(output)
        raise _Reached

    try:
        with forward_hooks(model, [layer], stop):
            model(images)
    except _Reached:
        return captured[0]
    raise RuntimeError(f"the forward pass never reached layer {layer!r}")


@dataclass(frozen=True)
class ReceptiveField:
    """Where position (y, x) of a layer's map looks in the input: found from the support of the input
    gradient at the map's centre (`method` "gradient"), or, when that cannot be computed, a fixed fraction
    of the image centred on the position (`method` "fixed")."""

    method: str
    input_size: tuple[int, int]  # (height, width) of the model input
    map_size: tuple[int, int]
    size: tuple[float, float]  # (height, width) of the box in input pixels; may exceed the image
    corner: tuple[float, float]  # the box's top-left corner relative to the centre of the position's cell

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) in input pixels of position (y, x), clipped to the image."""
        edges = []
        for axis, position in ((0, y), (1, x)):
            start = (position + 0.5) * self.input_size[axis] / self.map_size[axis] + self.corner[axis]
            edges.append((max(round(start), 0), min(round(start + self.size[axis]), self.input_size[axis])))
        (top, bottom), (left, right) = edges
        return top, left, bottom, right


FIXED_FRACTION = 0.5  # of the image's height and width, when no receptive field can be computed


def fixed_receptive_field(input_size: tuple[int, int], map_size: tuple[int, int]) -> ReceptiveField:
    size = tuple(FIXED_FRACTION * side for side in input_size)
    return ReceptiveField("fixed", input_size, map_size, size, (-size[0] / 2, -size[1] / 2))


def receptive_field(model: nn.Module, layer: str, input_size: tuple[int, int],
                    device: torch.device | str = "cpu") -> ReceptiveField:
    """The input region that can influence a position of `layer`: the pixels with a nonzero gradient of the
    layer's centre position (all channels) on random inputs, where many ReLU paths are open at once.
    Computed with `torch.autograd.grad`, so no parameter's `.grad` changes."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((4, 3, *input_size), generator=generator).to(device).requires_grad_(True)
    try:
        with torch.enable_grad():
            output = run_to(model, layer, images)
            h, w = output.shape[2:]
            (gradient,) = torch.autograd.grad(output[:, :, h // 2, w // 2].sum(), images)
    except (RuntimeError, TypeError, IndexError, ValueError):  # no gradient path, or not a map
        return fixed_receptive_field(input_size, _map_size(model, layer, input_size, device))
    support = gradient.abs().sum(dim=(0, 1)) > 0
    extents = []
    for axis, (found, cells) in enumerate(((support.any(dim=1), h), (support.any(dim=0), w))):
        pixels = found.nonzero().flatten()
        if len(pixels) == 0:
            return fixed_receptive_field(input_size, (h, w))
        centre = (cells // 2 + 0.5) * input_size[axis] / cells
        extents.append(_extent(int(pixels[0]), int(pixels[-1]) + 1, centre, input_size[axis]))
    (size_y, corner_y), (size_x, corner_x) = extents
    return ReceptiveField("gradient", input_size, (h, w), (size_y, size_x), (corner_y, corner_x))


def _extent(first: int, end: int, centre: float, side: int) -> tuple[float, float]:
    """(length, start relative to the centre) of the interval [first, end) seen inside [0, side). Where the
    image cuts it off, the field is taken as symmetric about the centre; cut on both sides, it covers the
    image from any position."""
    cut_low, cut_high = first == 0, end == side
    if cut_low and cut_high:
        return 2.0 * side, -float(side)
    if not cut_low and not cut_high:
        return float(end - first), first - centre
    half = end - centre if cut_low else centre - first
    return 2.0 * half, -half


def _map_size(model: nn.Module, layer: str, input_size: tuple[int, int], device) -> tuple[int, int]:
    output = layer_output(model, layer, torch.zeros((1, 3, *input_size), device=device))
    return tuple(output.shape[2:])


def images_interact(model: nn.Module) -> bool:
    """Whether one image's output can depend on the others in its batch: a batch norm that normalises by the
    batch's own statistics (training mode, or no running statistics kept). Such a model is never batched
    across requests."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats)
               for m in model.modules())
