"""Turn PIL images into the normalised tensors a model expects."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import functional as TF


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]  # (h, w) fed to the model
    resize: int | None  # shorter side before the centre crop; None: resize straight to `size` when needed
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One image -> (3, h, w) float tensor."""
        return TF.normalize(TF.to_tensor(self.view(image)), list(self.mean), list(self.std))

    def view(self, image: Image.Image) -> Image.Image:
        """The RGB image exactly as the model sees it, before normalisation: what a map covers."""
        return self.fit(image if image.mode == "RGB" else image.convert("RGB"))  # no copy of a large upload

    def fit(self, image: Image.Image,
            interpolation: TF.InterpolationMode = TF.InterpolationMode.BILINEAR) -> Image.Image:
        """Any image resized and centre-cropped to the model's input geometry: the RGB image bilinearly
        (`view`), a mask or label image with NEAREST, so that both cover the same pixels."""
        if self.resize is not None:
            image = TF.resize(image, self.resize, interpolation=interpolation)
            image = TF.center_crop(image, list(self.size))
        elif (image.height, image.width) != self.size:
            image = TF.resize(image, list(self.size), interpolation=interpolation)
        return image

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self(image) for image in images])
