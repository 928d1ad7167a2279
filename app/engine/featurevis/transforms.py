"""Random transforms applied to the image before each step, so the optimum is an image the unit answers
however it is shifted, scaled or turned, rather than a high-frequency pattern that fools one exact pixel grid
(Lucid's `transform.standard_transforms`: pad, jitter, random scale, random rotation, jitter). In torch
(no kornia); every random draw comes from the caller's generator, so a seed gives the same images."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def pad(width: int, value: float = 0.5) -> Transform:
    return lambda images, _generator: F.pad(images, (width,) * 4, mode="constant", value=value)


def jitter(distance: int) -> Transform:
    """Crop `distance` pixels off in total, at an offset drawn per call (all images alike, as Lucid)."""
    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        dy, dx = (int(v) for v in torch.randint(0, distance + 1, (2,), generator=generator))
        height, width = images.shape[-2:]
        return images[..., dy:height - distance + dy, dx:width - distance + dx]
    return apply


def random_affine(scales: Sequence[float] = (1.0,), degrees: Sequence[float] = (0.0,)) -> Transform:
    """Scale by one of `scales` and rotate by one of `degrees` (drawn per call), about the centre, bilinear."""
    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        scale = scales[int(torch.randint(len(scales), (1,), generator=generator))]
        angle = math.radians(degrees[int(torch.randint(len(degrees), (1,), generator=generator))])
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype, device=images.device)
        grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return apply


def compose(transforms: Sequence[Transform]) -> Transform:
    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for transform in transforms:
            images = transform(images, generator)
        return images
    return apply


def standard_transforms() -> Transform:
    """Lucid's standard set: pad 12, jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4."""
    return compose([pad(12), jitter(8), random_affine(scales=[1 + (i - 5) / 50 for i in range(11)],
                                                      degrees=list(range(-10, 11))), jitter(4)])
