"""MobileNetV3-Small (Howard et al. 2019) as torchvision lays it out: the same modules under the same names, the
same parameters, the same initialisation and the same forward pass (tests/test_demo_mobilenet.py compares
them, output for output). The demo model is built from it, so that a server with the demo models never
imports torchvision, whose import (it pulls torch._dynamo) costs every process 1.7 CPU-seconds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of `divisor` not below 90% of `value` (the TensorFlow reference's channel rounding)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class Conv2dNormActivation(nn.Sequential):
    """Convolution (no bias), batch norm and an optional activation; padding keeps the size at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None = nn.ReLU):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.01),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Channel weights from the pooled map: 1x1 convolutions with a ReLU between and a hard sigmoid after."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


@dataclass(frozen=True)
class Bottleneck:
    """One inverted residual block of the paper's table 2."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    squeeze_excite: bool
    hard_swish: bool
    stride: int


SMALL = [  # MobileNetV3-Small, width 1.0
    Bottleneck(16, 3, 16, 16, True, False, 2),
    Bottleneck(16, 3, 72, 24, False, False, 2),
    Bottleneck(24, 3, 88, 24, False, False, 1),
    Bottleneck(24, 5, 96, 40, True, True, 2),
    Bottleneck(40, 5, 240, 40, True, True, 1),
    Bottleneck(40, 5, 240, 40, True, True, 1),
    Bottleneck(40, 5, 120, 48, True, True, 1),
    Bottleneck(48, 5, 144, 48, True, True, 1),
    Bottleneck(48, 5, 288, 96, True, True, 2),
    Bottleneck(96, 5, 576, 96, True, True, 1),
    Bottleneck(96, 5, 576, 96, True, True, 1),
]


class InvertedResidual(nn.Module):
    """Expand (1x1), filter depthwise, squeeze-excite, project (1x1, linear); a shortcut where shapes allow."""

    def __init__(self, spec: Bottleneck):
        super().__init__()
        activation = nn.Hardswish if spec.hard_swish else nn.ReLU
        layers: list[nn.Module] = []
        if spec.expanded != spec.in_channels:
            layers.append(Conv2dNormActivation(spec.in_channels, spec.expanded, 1, activation=activation))
        layers.append(Conv2dNormActivation(spec.expanded, spec.expanded, spec.kernel, spec.stride,
                                           groups=spec.expanded, activation=activation))
        if spec.squeeze_excite:
            layers.append(SqueezeExcitation(spec.expanded, make_divisible(spec.expanded // 4)))
        layers.append(Conv2dNormActivation(spec.expanded, spec.out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = spec.stride == 1 and spec.in_channels == spec.out_channels
        self.out_channels = spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


class MobileNetV3(nn.Module):
    def __init__(self, blocks: list[Bottleneck], last_channel: int, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        last_conv = 6 * blocks[-1].out_channels
        self.features = nn.Sequential(
            Conv2dNormActivation(3, blocks[0].in_channels, 3, 2, activation=nn.Hardswish),
            *(InvertedResidual(spec) for spec in blocks),
            Conv2dNormActivation(blocks[-1].out_channels, last_conv, 1, activation=nn.Hardswish),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        for module in self.modules():  # torchvision's initialisation, in its order, for the same trained weights
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v3_small(num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV3:
    return MobileNetV3(SMALL, last_channel=1024, num_classes=num_classes, dropout=dropout)
