"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3), for the many inference passes on a CPU.

A direct 3x3 convolution spends 9 multiplications on each output per input channel. Winograd's algorithm
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016,
https://arxiv.org/abs/1509.09308) computes a 4x4 block of outputs from a 6x6 input tile with 36: the
tile and the filter are each taken to a 6x6 transform domain (V = B^T d B, U = G g G^T), multiplied there
element by element and summed over input channels, which for a layer is 36 independent matrix products,
and taken back (Y = A^T M A). The same function up to float32 rounding, with 4x fewer multiplications in
the products. PyTorch's CPU convolutions are oneDNN's direct kernels (its x86 Winograd kernels need
AVX-512), which leave this on the table: on an AVX2 CPU, resnet18's 3x3 convolutions with 128 to 512
channels run 1.4x to 2.1x faster this way, the ones with 64 channels 1.1x to 1.5x slower (their
transforms cost more than the products save), so only convolutions with at least `MIN_CHANNELS` in and
out are converted (`bench/winograd_convs.py`, docs/benchmarks.md).

The transforms are the paper's (interpolation points 0, 1, -1, 2, -2 and infinity); in float32 they
agree with the direct convolution to about 1e-5 of the output's range (2e-5 at most in the tests); an
infinite input spreads NaN over its tiles, where the direct convolution gives infinities. The
filters are transformed per request, like the folded weights, in one matrix product (about 25 ms for a
512 x 512 layer).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

TILE = 4  # outputs per tile side
_SPAN = TILE + 2  # input tile side for a 3x3 filter
MIN_CHANNELS = 128
# Tiles per matrix product: enough rows to keep the products efficient, few enough that a chunk's
# transformed tiles stay in cache (resnet18 at 224: 6 images at 28x28, 16 at 14x14, 64 at 7x7).
_ROWS_PER_CHUNK = 256
# Below this many direct multiply-adds a call's fixed cost (some twenty tensor operations) outweighs the
# saving: 32 images of 128 channels at 7x7 (0.23e9) took 5.6 ms this way against 3.6 ms directly.
_MIN_MULTIPLY_ADDS = 2**29

_B_T = torch.tensor([[4, 0, -5, 0, 1, 0],
                     [0, -4, -4, 1, 1, 0],
                     [0, 4, -4, -1, 1, 0],
                     [0, -2, -1, 2, 1, 0],
                     [0, 2, -1, -2, 1, 0],
                     [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0],
                   [-1 / 6, -1 / 6, -1 / 6],
                   [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6],
                   [1 / 24, -1 / 12, 1 / 6],
                   [0, 0, 1]], dtype=torch.float64)
_A_T = torch.tensor([[1, 1, 1, 1, 1, 0],
                     [0, 1, -1, 2, -2, 0],
                     [0, 1, 1, 4, 4, 0],
                     [0, 1, -1, 8, -8, 1]], dtype=torch.float64)


def winograd_applies(conv: nn.Module, device: torch.device) -> bool:
    """A float32 3x3 'same' convolution, stride 1, on the CPU, with at least MIN_CHANNELS in and out, and no
    hooks of its own (the conversion would skip them)."""
    return (type(conv) is nn.Conv2d and device.type == "cpu" and conv.weight.dtype == torch.float32
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
            and not conv._forward_hooks and not conv._forward_pre_hooks)


class WinogradConv2d(nn.Module):
    """`conv` (see `winograd_applies`) computed by F(4x4, 3x3), or by `conv` itself where a call is too
    small to gain; inference only, no gradients. The transformed filter (36 x in x out, 4x the weights) is
    built once, here."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.direct = conv  # for calls too small to gain
        self.min_multiply_adds = _MIN_MULTIPLY_ADDS
        # U = G g G^T for every (in, out) pair in one product: flattened, g (9) -> U (36) is the Kronecker
        # product; the filters are laid out (9, in x out) first so that it writes (36, in, out) directly.
        weights = conv.weight.detach().float().permute(2, 3, 1, 0).reshape(9, -1)
        filters = torch.kron(_G, _G).to(weights) @ weights
        self.register_buffer("filters", filters.view(_SPAN * _SPAN, conv.in_channels, conv.out_channels),
                             persistent=False)
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias, persistent=False)
        self.register_buffer("b_t", _B_T.float(), persistent=False)
        self.register_buffer("a_t", _A_T.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, in, H, W) -> (n, out, H, W), in the input's memory format (as the direct convolution does: a
        model may `view` its output)."""
        n, channels, height, width = x.shape
        out_channels = self.bias.shape[0]
        if n * height * width * channels * out_channels * 9 < self.min_multiply_adds:
            return self.direct(x)
        rows, cols = -(-height // TILE), -(-width // TILE)
        # Zero border of 1 (the convolution's padding) plus whatever completes the last tiles.
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, cols * TILE + 1 - width, 1, rows * TILE + 1 - height))
        out = torch.empty((n, rows, TILE, cols, TILE, out_channels), dtype=x.dtype, device=x.device)
        chunk = max(1, -(-_ROWS_PER_CHUNK // (rows * cols)))
        for start in range(0, n, chunk):
            part = padded[start:start + chunk]
            images = part.shape[0]
            s_image, s_row, s_col, s_channel = part.stride()
            tiles = part.as_strided((_SPAN, _SPAN, images, rows, cols, channels),
                                    (s_row, s_col, s_image, TILE * s_row, TILE * s_col, s_channel))
            # Each transform is applied along one tile axis, then the other: 12 multiply-adds per value
            # where the 36 x 36 Kronecker product would take 36.
            half = (self.b_t @ tiles.reshape(_SPAN, -1)).view(_SPAN, _SPAN, -1)
            transformed = torch.matmul(self.b_t, half).view(_SPAN * _SPAN, -1, channels)  # (36, tiles, in)
            products = torch.bmm(transformed, self.filters)  # (36, tiles, out)
            half = (self.a_t @ products.view(_SPAN, -1)).view(TILE, _SPAN, -1)
            blocks = torch.matmul(self.a_t, half).view(TILE, TILE, images, rows, cols, out_channels)
            torch.add(blocks.permute(2, 3, 0, 4, 1, 5), self.bias, out=out[start:start + images])
        result = out.view(n, rows * TILE, cols * TILE, out_channels)[:, :height, :width].permute(0, 3, 1, 2)
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return result.contiguous(memory_format=layout)  # no copy for whole tiles in channels-last


@contextmanager
def every_call(converted: Iterable[WinogradConv2d]) -> Iterator[None]:
    """Within the block, `converted` compute every call by Winograd, however small: a check on one image
    then checks the arithmetic the batches will run."""
    converted = list(converted)
    for conv in converted:
        conv.min_multiply_adds = 0
    try:
        yield
    finally:
        for conv in converted:
            conv.min_multiply_adds = _MIN_MULTIPLY_ADDS
