"""Turn PIL images into the normalised tensors a model expects.

The geometry and the numbers are torchvision's (`transforms.functional` on PIL images: resize, centre crop,
to_tensor, normalize), written out here so that a process that only serves models never imports torchvision,
which costs about 1.7 s of CPU at every start (it imports torch._dynamo); tests/test_preprocess.py checks them
against torchvision's, pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

Resampling = Image.Resampling


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]  # (h, w) fed to the model
    resize: int | None  # shorter side before the centre crop; None: resize straight to `size` when needed
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One image -> (3, h, w) float tensor."""
        pixels = to_tensor(self.view(image))
        mean, std = torch.tensor(self.mean).view(-1, 1, 1), torch.tensor(self.std).view(-1, 1, 1)
        return pixels.sub_(mean).div_(std)

    def view(self, image: Image.Image) -> Image.Image:
        """The RGB image exactly as the model sees it, before normalisation: what a map covers."""
        return self.fit(image if image.mode == "RGB" else image.convert("RGB"))  # no copy of a large upload

    def fit(self, image: Image.Image, resampling: Resampling = Resampling.BILINEAR) -> Image.Image:
        """Any image resized and centre-cropped to the model's input geometry: the RGB image bilinearly
        (`view`), a mask or label image with NEAREST, so that both cover the same pixels."""
        if self.resize is not None:
            return center_crop(resize_shorter_side(image, self.resize, resampling), self.size)
        return resize(image, self.size, resampling)

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self(image) for image in images])


def resize(image: Image.Image, size: tuple[int, int], resampling: Resampling = Resampling.BILINEAR) -> Image.Image:
    """`image` at (h, w) `size`; the same image when it already is."""
    if (image.height, image.width) == tuple(size):
        return image
    return image.resize((size[1], size[0]), resampling)


def resize_shorter_side(image: Image.Image, side: int, resampling: Resampling = Resampling.BILINEAR) -> Image.Image:
    """`image` scaled so that its shorter side is `side`, the longer one truncated to an integer."""
    short, long = sorted((image.width, image.height))
    size = (int(side * long / short), side) if image.width <= image.height else (side, int(side * long / short))
    return resize(image, size, resampling)


def center_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The (h, w) `size` middle of `image`; a side that is shorter than the crop is padded with zeros, split as
    torchvision does (the extra pixel of an odd difference after the image)."""
    height, width = size
    top = _crop_start(image.height, height)
    left = _crop_start(image.width, width)
    return image.crop((left, top, left + width, top + height))  # PIL fills what lies outside with zeros


def _crop_start(length: int, crop: int) -> int:
    if crop > length:
        return -((crop - length) // 2)
    return int(round((length - crop) / 2.0))  # Python's rounding, half to even, as torchvision's


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a (3, h, w) float tensor in [0, 1]."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return pixels.permute(2, 0, 1).contiguous().to(torch.get_default_dtype()).div(255)
