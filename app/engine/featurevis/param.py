"""Image parameterisations: what the optimiser changes, and the RGB image in [0, 1] it stands for.

`FourierImage` is Lucid's (Olah et al., "Feature Visualization", Distill 2017; lucid/optvis/param/spatial.py
`fft_image` and color.py `to_valid_rgb`): each channel is an inverse real FFT of a spectrum scaled by 1/f, so
that steps move low frequencies as much as high ones, and colours are decorrelated by the square root of the
ImageNet colour covariance before a sigmoid. `PixelImage` (raw pixels through a sigmoid) is the plain baseline,
and what the tests use where the arithmetic must be seen."""

from __future__ import annotations

import torch

# Square root of ImageNet's RGB colour covariance, by SVD (lucid/optvis/param/color.py,
# `color_correlation_svd_sqrt`), scaled so its largest column has norm 1 (`max_norm_svd_sqrt`).
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
SPECTRUM_INIT_STD = 0.01  # Lucid's `sd` for the spectrum's initial values


def initial(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """(len(seeds), *shape) starting values, item i drawn from its own seed: a unit starts from the same values
    in any batch, so batching never changes what it renders."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds])


class PixelImage(torch.nn.Module):
    """(n, 3, h, w) logits of pixels; the image is their sigmoid."""

    def __init__(self, seeds: list[int], size: tuple[int, int]):
        super().__init__()
        self.logits = torch.nn.Parameter(initial(seeds, (3, *size)) * SPECTRUM_INIT_STD)

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


class FourierImage(torch.nn.Module):
    """(n, 3, h, w // 2 + 1) complex spectra, scaled by 1/f, inverse-FFT'd, colour-decorrelated, sigmoid."""

    def __init__(self, seeds: list[int], size: tuple[int, int], decay: float = 1.0, decorrelate: bool = True):
        super().__init__()
        self.size, self.decorrelate = size, decorrelate
        spectrum = initial(seeds, (3, size[0], size[1] // 2 + 1, 2)) * SPECTRUM_INIT_STD
        self.spectrum = torch.nn.Parameter(spectrum)
        self.register_buffer("scale", frequency_scale(size, decay))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0  # Lucid's scale of the result
        if self.decorrelate:
            image = torch.einsum("nchw,dc->ndhw", image, COLOR_CORRELATION.to(image))
        return torch.sigmoid(image)
