"""Presentation steps for a raw map, kept out of the methods: ReLU, upsampling, min-max normalisation.

Each is an explicit option, so a caller can compare raw maps across images and methods (pytorch-grad-cam
normalises inside every call, which makes that impossible: jacobgil/pytorch-grad-cam#267).
"""

from __future__ import annotations

import torch

from app.engine.cam.base import upsample


def postprocess(raw: torch.Tensor, size: tuple[int, int] | None = None, relu: bool = True,
                normalize: bool = True) -> torch.Tensor:
    """(h, w) -> (H, W) float32, in this order: ReLU at the map's own resolution (as the papers define the
    CAMs); bilinear upsampling to `size` with align_corners=False (what cv2.resize does); scaling to
    [0, 1] by the map's minimum and maximum (a constant map becomes zeros). The input is not modified."""
    cam = raw.detach().float()
    if relu:
        cam = cam.clamp(min=0)
    if size is not None:
        cam = upsample(cam, size)
    if normalize:
        low, high = cam.min(), cam.max()
        cam = (cam - low) / (high - low) if high > low else torch.zeros_like(cam)
    return cam
