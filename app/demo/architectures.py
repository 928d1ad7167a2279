"""The demo's own architecture, loaded through a card as `app.demo.architectures:shapes_cnn`, exactly as a
user's module would be. A plain VGG-style network, so that the two demo models differ in kind (the other
demo model is MobileNetV3-Small, app/demo/mobilenet.py)."""

from __future__ import annotations

from torch import nn


def _conv_block(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class ShapesCNN(nn.Module):
    """stem (stride 2) -> four conv blocks with max-pooling between them -> global average pool -> linear.

    At 112 px the blocks see 56, 28, 14 and 7 px maps.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (24, 48, 96, 192)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.block1 = _conv_block(widths[0], widths[0], convs=1)
        self.pool1 = nn.MaxPool2d(2)
        self.block2 = _conv_block(widths[0], widths[1], convs=2)
        self.pool2 = nn.MaxPool2d(2)
        self.block3 = _conv_block(widths[1], widths[2], convs=2)
        self.pool3 = nn.MaxPool2d(2)
        self.block4 = _conv_block(widths[2], widths[3], convs=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = self.pool1(self.block1(self.stem(x)))
        x = self.pool2(self.block2(x))
        x = self.pool3(self.block3(x))
        x = self.block4(x)
        return self.fc(self.avgpool(x).flatten(1))


def shapes_cnn(num_classes: int = 10) -> ShapesCNN:
    return ShapesCNN(num_classes=num_classes)
