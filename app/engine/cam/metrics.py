"""How good is one saliency map? Faithfulness: does the model's confidence follow the map (deletion,
insertion, average drop and increase in confidence)? Localisation: does the map fall on the object
(pointing game, energy-based pointing game)?

Shared conventions: `image` is the model's normalised input (1, 3, H, W) on its device, in any memory
format; `saliency` is an (H, W) map at the input's resolution as `postprocess` gives it (ReLU'd, upsampled,
scaled to [0, 1]); `target` is a class index; a score is the target's softmax probability. Forward passes
run under `torch.inference_mode` in batches built in the image's memory format; the model is never changed
and the caller holds its lock. Each function scores one image: averaging over a dataset is the caller's.
Definitions, references and the choices made are in docs/cam-methods.md ("Faithfulness metrics").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from app.engine.cam.capture import check_count, check_target, memory_format_of
from app.errors import InvalidInput

Model = Callable[[torch.Tensor], torch.Tensor]  # the model, or any function of a batch of its inputs

DELETION, INSERTION = "deletion", "insertion"
CONFIDENCE_INPUTS = 2  # the image and the image times the map, in one batch
# RISE's insertion substrate: gkern(klen=11, nsig=5) in their evaluation notebook.
BLUR_LENGTH, BLUR_SIGMA = 11, 5.0
# The pointing game's tolerance: 15 pixels at 224 (Zhang et al. 2016, sec. 5.1).
POINTING_TOLERANCE_AT_224 = 15


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve: the target's probability with 0, step, 2 step, ... pixels changed,
    the last point with all of them; `auc` is its area with the points spaced uniformly on [0, 1]."""

    scores: list[float]
    auc: float
    step: int  # pixels changed between two points


@dataclass(frozen=True)
class ConfidenceChange:
    """Grad-CAM++'s comparison of the image with its explanation map E = image * saliency."""

    original: float  # Y: the target's probability on the image
    explained: float  # O: on E
    drop: float  # max(0, Y - O) / Y, 0 when Y is 0
    increase: bool  # O > Y


@dataclass(frozen=True)
class Pointing:
    hit: bool
    maxima: int  # positions tied at the map's maximum; 0 for a constant map, which points nowhere


@dataclass(frozen=True)
class EnergyShare:
    """The share of the map's energy (sum of its values) on the object: its mask, and its bounding box as
    Score-CAM measures it."""

    mask: float
    box: float


# Deletion and insertion (Petsiuk et al., RISE, BMVC 2018, https://arxiv.org/abs/1806.07421).

def deletion_insertion(model: Model, image: torch.Tensor, saliency: torch.Tensor, target: int, *, steps: int,
                       batch_size: int, which: Iterable[str] = (DELETION, INSERTION)) -> dict[str, Curve]:
    """RISE's causal metrics for one map. Deletion turns pixels, most salient first, into the zero
    substrate (zeros of the normalised tensor: the dataset's mean colour); insertion starts from the
    blurred image (`rise_blur`) and puts the original pixels back. Each step changes ceil(H*W / steps)
    pixels (all channels), so 224 steps on a 224x224 image is RISE's step of 224 pixels; a curve has
    ceil(H*W / step) + 1 points. Curve images run `batch_size` at a time."""
    size = _check_image(image)
    saliency = _check_map(saliency, size)
    check_count("steps", steps)
    which = list(dict.fromkeys([which] if isinstance(which, str) else which))
    for name in which or [None]:
        if name not in (DELETION, INSERTION):
            raise InvalidInput(f"unknown curve {name!r}; choose deletion, insertion or both", which=str(name),
                               valid=[DELETION, INSERTION])
    step = curve_step(size, steps)
    curves = {}
    for name in which:
        start, finish = (image, torch.zeros_like(image)) if name == DELETION else (rise_blur(image), image)
        curves[name] = causal_curve(model, start, finish, saliency, target, step=step, batch_size=batch_size)
    return curves


def causal_curve(model: Model, start: torch.Tensor, finish: torch.Tensor, saliency: torch.Tensor, target: int,
                 *, step: int, batch_size: int) -> Curve:
    """RISE's `CausalMetric`: point i is `start` with its i * step most salient pixels (all channels) taken
    from `finish`, scored by the model; both are (1, c, H, W). Pixels are ranked by `salience_rank`."""
    size = _check_image(start)
    if finish.shape != start.shape:
        raise ValueError(f"finish must have the shape of start {tuple(start.shape)}, got {tuple(finish.shape)}")
    saliency = _check_map(saliency, size)
    check_count("step", step)
    check_count("batch_size", batch_size)
    start, finish = start.detach(), finish.detach()  # out= below refuses inputs that require grad
    rank = salience_rank(saliency).to(start.device)[None, None]  # (1, 1, H, W)
    points = _points(size, step)
    changed = torch.arange(points, device=start.device) * step  # the last point's count may pass H*W: all
    buffer = torch.empty((min(batch_size, points), *start.shape[1:]), dtype=start.dtype, device=start.device,
                         memory_format=memory_format_of(start))
    scores: list[float] = []
    for first in range(0, points, batch_size):
        counts = changed[first:first + batch_size]
        batch = buffer[:len(counts)]
        torch.where(rank < counts[:, None, None, None], finish, start, out=batch)
        scores += probabilities(model, batch, target).tolist()
    return Curve(scores=scores, auc=area_under_curve(scores), step=step)


def curve_step(size: tuple[int, int], steps: int) -> int:
    """Pixels changed between two points of a curve of `steps` steps on an image of `size` (H, W)."""
    return math.ceil(size[0] * size[1] / steps)


def curve_inputs(size: tuple[int, int], steps: int) -> int:
    """How many images the model scores for one such curve: its points."""
    return _points(size, curve_step(size, steps))


def _points(size: tuple[int, int], step: int) -> int:
    return math.ceil(size[0] * size[1] / step) + 1


def salience_rank(saliency: torch.Tensor) -> torch.Tensor:
    """(H, W) -> (H, W) int64: each pixel's place when ordered by saliency, highest first (0 for the most
    salient). Ties keep row-major order (a stable sort), so equal values are changed top row first, left
    to right; RISE's reversed numpy argsort leaves their order to its sorting algorithm."""
    order = torch.sort(saliency.flatten(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return rank.reshape(saliency.shape)


def area_under_curve(scores: list[float]) -> float:
    """The trapezoid rule with the points spaced uniformly on [0, 1] (RISE's `auc`)."""
    if len(scores) < 2:
        raise ValueError("a curve needs at least two points")
    return (sum(scores) - scores[0] / 2 - scores[-1] / 2) / (len(scores) - 1)


def rise_kernel(length: int = BLUR_LENGTH, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """(length, length) float64, RISE's `gkern`: `scipy.ndimage.gaussian_filter` of a centred dirac, in torch.
    scipy runs a Gaussian truncated at 4 sigma (41 taps for sigma 5) over the length-11 array with its
    default 'reflect' border, so the tails fold back in: the kernel sums to 1 but is far flatter than a
    Gaussian (0.0077 in the corners, 0.0088 in the centre: nearly an 11x11 box). Separable: an outer product."""
    radius = int(4 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets.double() / sigma) ** 2)
    taps /= taps.sum()
    positions = torch.arange(length)[:, None] + offsets[None]  # (length, taps): what each output reads
    period = positions.remainder(2 * length)  # 'reflect': d c b a | a b c d | d c b a, repeating
    reflected = torch.where(period < length, period, 2 * length - 1 - period)
    line = (taps * (reflected == length // 2)).sum(dim=1)
    return torch.outer(line, line)


def rise_blur(image: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """Each channel of (n, c, H, W) convolved with `kernel` (default `rise_kernel()`), zero padding of half
    its size as RISE's `conv2d(x, kern, padding=klen // 2)`: borders fade towards zero (the mean colour). In
the image's memory format."""
    kernel = rise_kernel() if kernel is None else kernel
    channels = image.shape[1]
    weight = kernel.to(image.device, image.dtype).expand(channels, 1, *kernel.shape)
    with torch.no_grad():
        blurred = F.conv2d(image, weight, padding=(kernel.shape[0] // 2, kernel.shape[1] // 2), groups=channels)
    return blurred.contiguous(memory_format=memory_format_of(image))  # conv2d may pick another layout


# Average drop and increase in confidence (Chattopadhay et al., Grad-CAM++, WACV 2018,
# https://arxiv.org/abs/1710.11063, sec. 5.1).

def confidence_change(model: Model, image: torch.Tensor, saliency: torch.Tensor, target: int) -> ConfidenceChange:
    """Y on the image and O on E = image * saliency (the normalised tensor times the map, broadcast over
    channels), in one batch of two. The paper reports 100 x the mean drop and the percentage of increases
    over a dataset."""
    size = _check_image(image)
    saliency = _check_map(saliency, size).to(image.device, image.dtype)
    image = image.detach()  # out= below refuses inputs that require grad
    batch = torch.empty((CONFIDENCE_INPUTS, *image.shape[1:]), dtype=image.dtype, device=image.device,
                        memory_format=memory_format_of(image))
    batch[0] = image[0]
    torch.mul(image, saliency, out=batch[1:])
    original, explained = probabilities(model, batch, target).tolist()
    drop = max(0.0, original - explained) / original if original > 0 else 0.0
    return ConfidenceChange(original=original, explained=explained, drop=drop, increase=explained > original)


def probabilities(model: Model, batch: torch.Tensor, target: int) -> torch.Tensor:
    """(n,) float32 softmax probabilities of `target` on a batch of inputs."""
    with torch.inference_mode():
        logits = model(batch).float()
    check_target(target, logits.shape[1])
    return logits.softmax(dim=1)[:, target].cpu()


# The pointing game (Zhang et al., Top-down Neural Attention by Excitation Backprop, ECCV 2016,
# https://arxiv.org/abs/1608.00507) and its energy-based variant (Wang et al., Score-CAM, CVPR workshops
# 2020, https://arxiv.org/abs/1910.01279, sec. 4.2).

def pointing_tolerance(size: tuple[int, int], pixels_at_224: int = POINTING_TOLERANCE_AT_224) -> int:
    """The paper's tolerance scaled to an input of `size` (H, W): pixels_at_224 * min(H, W) / 224, halves
    rounded up (8 pixels at 112)."""
    return math.floor(pixels_at_224 * min(size) / 224 + 0.5)


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor, tolerance: int) -> Pointing:
    """A hit when the map's maximum lies within `tolerance` pixels (Euclidean, between pixel centres) of the
    object's mask. Tied maxima: a hit when any of them is. A constant map has no maximum to point with: a
    miss."""
    mask = _check_mask(mask, saliency.shape)
    saliency = _check_map(saliency, tuple(mask.shape))
    if bool(saliency.max() == saliency.min()):
        return Pointing(hit=False, maxima=0)
    maxima = saliency == saliency.max()
    near = dilate(mask.to(saliency.device), tolerance)
    return Pointing(hit=bool((maxima & near).any()), maxima=int(maxima.sum()))


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) bool -> (H, W) bool: every pixel within `radius` of a mask pixel (a disc: dy^2 + dx^2 <=
    radius^2). Counts of 0/1 products are exact in float32, so "> 0" is exact."""
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral) or radius < 0:
        raise InvalidInput(f"tolerance must be a non-negative integer, got {radius!r}", tolerance=repr(radius))
    if radius == 0:
        return mask.clone()
    offsets = torch.arange(-radius, radius + 1, device=mask.device)
    disc = (offsets[:, None] ** 2 + offsets[None] ** 2 <= radius ** 2).float()
    touched = F.conv2d(mask.float()[None, None], disc[None, None], padding=radius)
    return touched[0, 0] > 0


def energy_pointing_game(saliency: torch.Tensor, mask: torch.Tensor) -> EnergyShare:
    """sum(saliency on the region) / sum(saliency), for the object's mask and for its bounding box (Score-CAM
    uses the box; the mask is the stricter measure). The map must be non-negative; an all-zero map scores 0."""
    mask = _check_mask(mask, saliency.shape)
    saliency = _check_map(saliency, tuple(mask.shape)).double()
    if bool((saliency < 0).any()):
        raise InvalidInput("the energy-based pointing game needs a non-negative map: postprocess it with relu=True")
    total = float(saliency.sum())
    if total == 0:
        return EnergyShare(mask=0.0, box=0.0)
    mask = mask.to(saliency.device)
    return EnergyShare(mask=float(saliency[mask].sum()) / total,
                       box=float(saliency[bounding_box(mask)].sum()) / total)


def bounding_box(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: the smallest axis-aligned rectangle holding every pixel of a non-empty mask."""
    rows, columns = mask.any(dim=1), mask.any(dim=0)
    box = torch.zeros_like(mask)
    top, bottom = _span(rows)
    left, right = _span(columns)
    box[top:bottom + 1, left:right + 1] = True
    return box


def _span(present: torch.Tensor) -> tuple[int, int]:
    found = torch.nonzero(present).flatten()
    return int(found[0]), int(found[-1])


def _check_image(image: torch.Tensor) -> tuple[int, int]:
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be a (1, c, H, W) tensor, got {getattr(image, 'shape', type(image))}")
    return tuple(image.shape[2:])


def _check_map(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    saliency = torch.as_tensor(saliency)
    if tuple(saliency.shape) != tuple(size):
        raise InvalidInput(f"the saliency map is {tuple(saliency.shape)}; it must be (H, W) = {tuple(size)}, the "
                           "input's size: postprocess it with size=", shape=list(saliency.shape), size=list(size))
    if not bool(torch.isfinite(saliency).all()):
        raise InvalidInput("the saliency map has NaN or infinite values")
    return saliency.detach().float()


def _check_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    if tuple(mask.shape) != tuple(size):
        raise InvalidInput(f"the object mask is {tuple(mask.shape)}; it must match the map's {tuple(size)}",
                           shape=list(mask.shape), size=list(size))
    mask = mask.bool()
    if not bool(mask.any()):
        raise InvalidInput("the object mask is empty: the pointing games need an object in the image")
    return mask
