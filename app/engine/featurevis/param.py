"""Image parameterisations: what the optimiser changes, and the RGB image in [0, 1] it stands for.

`FourierImage` is Lucid's (Olah et al., "Feature Visualization", Distill 2017; lucid/optvis/param/spatial.py
`fft_image` and color.py `to_valid_rgb`): each channel is an inverse real FFT of a spectrum scaled by 1/f, so
that steps move low frequencies as much as high ones, and colours are decorrelated by the square root of a
colour covariance (prior.py: ImageNet's, Lucid's constants, or the model's own dataset's) before a sigmoid.
`MacoImage` is MACO's (Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization", NeurIPS 2023): only the spectrum's phase is optimised, its magnitude held at the
dataset's mean, so the image keeps natural images' energy at every frequency. `PixelImage` (raw pixels
through a sigmoid) is the plain baseline, and what the tests use where the arithmetic must be seen.

Every parameterisation starts item i from values of its own seed, so a unit renders alike in any batch."""

from __future__ import annotations

import math

import torch

from app.engine.featurevis.prior import LUCID, ImagePrior

SPECTRUM_INIT_STD = 0.01  # Lucid's `sd` for the spectrum's initial values


def initial(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """(len(seeds), *shape) starting values, item i drawn from its own seed: a unit starts from the same values
    in any batch, so batching never changes what it renders."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds])


START_MARGIN = 0.02  # a starting image is kept this far inside (0, 1), where the sigmoid still has a slope


def start_logits(images: torch.Tensor) -> torch.Tensor:
    """What a sigmoid must be given to reproduce (n, 3, h, w) images in [0, 1]."""
    return torch.logit(images.clamp(START_MARGIN, 1 - START_MARGIN))


def decorrelated(images: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """The values in the decorrelated colour space that `recorrelate` and the sigmoid turn into `images`."""
    return torch.einsum("nchw,dc->ndhw", start_logits(images), torch.linalg.inv(color.double()).to(images))


class PixelImage(torch.nn.Module):
    """(n, 3, h, w) logits of pixels; the image is their sigmoid. `start`: images to begin from, instead of
    each seed's noise."""

    def __init__(self, seeds: list[int], size: tuple[int, int], start: torch.Tensor | None = None):
        super().__init__()
        logits = initial(seeds, (3, *size)) * SPECTRUM_INIT_STD if start is None else start_logits(start)
        self.logits = torch.nn.Parameter(logits)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


def frequency_scale(size: tuple[int, int], decay: float = 1.0) -> torch.Tensor:
    """(h, w // 2 + 1) factors 1 / max(f, 1 / max(h, w)) ** decay of the real FFT's frequencies f (cycles per
    pixel), as Lucid's `rfft2d_freqs` and `fft_image` compute them."""
    height, width = size
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    frequencies = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(frequencies, min=1.0 / max(height, width)) ** decay


def recorrelate(image: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """(n, 3, h, w) values in the decorrelated colour space -> RGB logits: pixel = color @ value."""
    return torch.einsum("nchw,dc->ndhw", image, color.to(image))


class FourierImage(torch.nn.Module):
    """(n, 3, h, w // 2 + 1) complex spectra, scaled by 1/f, inverse-FFT'd, colour-recorrelated, sigmoid."""

    def __init__(self, seeds: list[int], size: tuple[int, int], prior: ImagePrior = LUCID, decay: float = 1.0,
                 decorrelate: bool = True, start: torch.Tensor | None = None):
        super().__init__()
        self.size, self.decorrelate = size, decorrelate
        scale = frequency_scale(size, decay)
        if start is None:
            spectrum = initial(seeds, (3, size[0], size[1] // 2 + 1, 2)) * SPECTRUM_INIT_STD
        else:  # forward() run backwards: the spectrum whose image is `start`
            values = decorrelated(start, prior.color) if decorrelate else start_logits(start)
            spectrum = torch.view_as_real(torch.fft.rfft2(values * 4.0, norm="ortho") / scale.to(values.device))
            spectrum = spectrum.contiguous()
        self.spectrum = torch.nn.Parameter(spectrum)
        self.register_buffer("scale", scale)
        self.register_buffer("color", prior.color.clone())

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0  # Lucid's scale of the result
        return torch.sigmoid(recorrelate(image, self.color) if self.decorrelate else image)


class MacoImage(torch.nn.Module):
    """(n, 3, h, w // 2 + 1) phases; the magnitude is the prior's. The inverse FFT is standardised per image
    (zero mean, unit variance: only the phase moves, so this fixes the contrast MACO's magnitude implies),
    recorrelated with the prior's colours, and squashed by a sigmoid, as the paper's reference code does."""

    def __init__(self, seeds: list[int], size: tuple[int, int], prior: ImagePrior, start: torch.Tensor | None = None):
        super().__init__()
        if prior.magnitude is None or tuple(prior.magnitude.shape) != (3, size[0], size[1] // 2 + 1):
            raise ValueError(f"MACO needs the magnitude spectrum of the dataset's images at {size[0]}x{size[1]}")
        self.size = size
        if start is None:  # the paper's start: uniform phases
            uniform = torch.stack([torch.rand((3, size[0], size[1] // 2 + 1),
                                              generator=torch.Generator().manual_seed(seed)) for seed in seeds])
            phase = (uniform * 2.0 - 1.0) * math.pi
        else:  # the phases of the start images (their magnitudes give way to the prior's)
            phase = torch.fft.rfft2(decorrelated(start, prior.color), norm="ortho").angle()
        self.phase = torch.nn.Parameter(phase)
        self.register_buffer("magnitude", prior.magnitude.clone())
        self.register_buffer("color", prior.color.clone())

    def forward(self) -> torch.Tensor:
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        flat = image.flatten(1)
        image = ((flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + 1e-8)).view_as(image)
        return torch.sigmoid(recorrelate(image, self.color))
