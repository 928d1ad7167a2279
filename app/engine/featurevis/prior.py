"""What natural images of the model's world look like, in the two statistics the parameterisations draw on:
the square root of their RGB covariance (the colour space in which Lucid decorrelates) and their mean
magnitude spectrum (what MACO holds fixed). Lucid's constants are ImageNet's; a model trained on other
images (the demo's saturated shapes, CIFAR, X-rays) is better served by its own dataset's, estimated here
from images the caller reads (app/atlas/image_prior.py reads the model's atlas)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import torch

# Square root of ImageNet's RGB colour covariance, by SVD (lucid/optvis/param/color.py,
# `color_correlation_svd_sqrt`): its columns are the principal colour directions, each scaled by the square
# root of its variance; the first is luminance.
LUCID_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                 [0.27, 0.00, -0.05],
                                 [0.27, -0.09, 0.03]])


@dataclass(frozen=True, eq=False)
class ImagePrior:
    """`color`: (3, 3) square root of the RGB covariance, scaled so that its largest column has norm 1 (Lucid's
    `max_norm_svd_sqrt`); `magnitude`: (3, h, w // 2 + 1) mean magnitude of the images' orthonormal real
    FFT at one size, or None when not estimated; `source` says where both came from."""

    color: torch.Tensor
    magnitude: torch.Tensor | None
    source: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImagePrior) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    @cached_property
    def digest(self) -> str:
        """A short name for the numbers themselves, so that a rendering records which prior it used."""
        if self.magnitude is None and torch.equal(self.color, normalised_color(LUCID_COLOR_SQRT)):
            return "lucid"
        hasher = hashlib.sha256(self.color.to(torch.float32).numpy().tobytes())
        if self.magnitude is not None:
            hasher.update(self.magnitude.to(torch.float32).numpy().tobytes())
        return hasher.hexdigest()[:10]


def normalised_color(sqrt: torch.Tensor) -> torch.Tensor:
    return sqrt / sqrt.norm(dim=0).max()


LUCID = ImagePrior(normalised_color(LUCID_COLOR_SQRT), None, "Lucid's ImageNet colour covariance")


def estimate_prior(images: Iterable[torch.Tensor], source: str) -> ImagePrior:
    """The prior of (3, h, w) images in [0, 1], all of one size (the size renderings will have). Computed in
    float64 and in the order given, so the same images give the same numbers (and the same digest)."""
    count, pixel_sum, outer_sum, magnitude_sum = 0, torch.zeros(3, dtype=torch.float64), None, None
    pixels = 0
    for image in images:
        values = image.to(torch.float64)
        flat = values.reshape(3, -1)
        pixel_sum += flat.sum(dim=1)
        outer = flat @ flat.T
        outer_sum = outer if outer_sum is None else outer_sum + outer
        magnitude = torch.fft.rfft2(values, norm="ortho").abs()
        magnitude_sum = magnitude if magnitude_sum is None else magnitude_sum + magnitude
        pixels += flat.shape[1]
        count += 1
    if count == 0:
        raise ValueError("no images to estimate a prior from")
    mean = pixel_sum / pixels
    covariance = outer_sum / pixels - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending; symmetric, so SVD's vectors
    order = eigenvalues.argsort(descending=True)
    sqrt = eigenvectors[:, order] * eigenvalues[order].clamp(min=0).sqrt()
    sqrt = sqrt * torch.where(sqrt.sum(dim=0) < 0, -1.0, 1.0)  # one sign per direction, whatever the solver's
    return ImagePrior(normalised_color(sqrt).to(torch.float32), (magnitude_sum / count).to(torch.float32),
                      f"{count} images of {source}")
