"""Layer discovery on real architectures (random weights): names, shapes, default selection, no hooks left."""

from __future__ import annotations

import pytest
import torch
import torchvision

from app.engine.hooks import hook_count
from app.engine.layers import discover_layers


def _discover(name: str, size: int = 224):
    model = torchvision.models.get_model(name, weights=None).eval()
    layers, output = discover_layers(model, torch.zeros(1, 3, size, size))
    return model, {info.name: info for info in layers}, output


def test_resnet18():
    model, layers, output = _discover("resnet18")
    assert output.shape == (1, 1000)
    defaults = [name for name, info in layers.items() if info.default]
    # The stem's conv1 -> bn1 -> relu, called in turn by the model's forward: the stem is seen after its ReLU.
    assert defaults == ["relu", "layer1.0", "layer1", "layer2.0", "layer2", "layer3.0", "layer3",
                        "layer4.0", "layer4"]
    assert layers["conv1"].shape == (64, 112, 112)
    assert layers["layer4"].shape == (512, 7, 7)
    assert layers["layer4"].type == "Sequential"
    assert layers["layer3.1.conv2"].shape == (256, 14, 14)
    assert layers["layer3.1.conv2"].type == "Conv2d" and not layers["layer3.1.conv2"].default
    assert layers["layer3.1.conv2"].parameters == 256 * 256 * 9
    assert layers["layer4"].parameters == sum(p.numel() for p in model.layer4.parameters())
    assert layers["avgpool"].shape == (512, 1, 1) and not layers["avgpool"].default
    assert "fc" not in layers  # a 2-d output is not a map
    assert "" not in layers  # nor is the model itself
    assert list(layers)[:6] == ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1"]  # data flow
    assert hook_count(model) == 0


def test_mobilenet_v3_small():
    model, layers, output = _discover("mobilenet_v3_small")
    assert output.shape == (1, 1000)
    defaults = [name for name, info in layers.items() if info.default]
    # features.0 and features.12 are conv-norm-activation blocks: the block stands for its conv.
    assert defaults == [f"features.{i}" for i in range(12)] + ["features"]
    assert layers["features"].shape == (576, 7, 7)  # the same tensor as features.12: the shallower name wins
    assert not layers["features.12"].default
    assert layers["features.1"].shape == (16, 56, 56)
    assert layers["features.9"].shape == (96, 7, 7)
    assert layers["features.4.block.2.fc1"].shape[1:] == (1, 1)  # squeeze-excitation maps are listed ...
    assert not layers["features.4.block.2.fc1"].default  # ... but not selected
    assert hook_count(model) == 0


def test_plain_conv_stacks_are_seen_after_their_activation():
    _, layers, _ = _discover("vgg11")
    defaults = [(name, info.type) for name, info in layers.items() if info.default]
    assert defaults[:3] == [("features.1", "ReLU"), ("features.4", "ReLU"), ("features.7", "ReLU")]
    assert defaults[-1] == ("features", "Sequential") and len(defaults) == 9
    assert not layers["features.0"].default  # the conv itself is still listed, for --layers


def test_demo_cnn_defaults():
    from app.demo.architectures import shapes_cnn

    layers, _ = discover_layers(shapes_cnn().eval(), torch.zeros(1, 3, 112, 112))
    # Conv-BN-ReLU inside a block: the ReLU; a block's last one is the block's own output.
    assert [info.name for info in layers if info.default] == [
        "stem", "block1", "block2.2", "block2", "block3.2", "block3", "block4.2", "block4"]


@pytest.mark.parametrize("size", [64, 96])
def test_shapes_follow_input_size(size):
    _, layers, _ = _discover("resnet18", size)
    assert layers["layer4"].shape == (512, size // 32, size // 32)


def test_hooks_removed_when_forward_fails():
    model = torchvision.models.get_model("resnet18", weights=None).eval()
    with pytest.raises(RuntimeError):
        discover_layers(model, torch.zeros(1, 1, 32, 32))  # wrong channel count
    assert hook_count(model) == 0


def test_blocks_of_a_module_list_are_selected():
    """EfficientNet-PyTorch keeps its blocks in an `nn.ModuleList` (`_blocks`) and loops over it: its blocks
    are chosen as a `Sequential` stage's would be, not only the stem and head convolutions."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self._depthwise_conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
            self._project_conv = nn.Conv2d(channels, channels, 1)

        def forward(self, x):
            return x + self._project_conv(self._depthwise_conv(x).relu())

    class LoopNet(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self._blocks = nn.ModuleList(Block(8) for _ in range(3))
            self._conv_head = nn.Conv2d(8, 16, 1)
            self._fc = nn.Linear(16, 2)

        def forward(self, x):
            x = self._conv_stem(x)
            for block in self._blocks:
                x = block(x)
            return self._fc(self._conv_head(x).mean((2, 3)))

    layers, _ = discover_layers(LoopNet().eval(), torch.zeros(1, 3, 32, 32))
    assert [info.name for info in layers if info.default] == [
        "_conv_stem", "_blocks.0", "_blocks.1", "_blocks.2", "_conv_head"]


def test_the_layer_before_a_clamp():
    """A saturated unit's page points at the values before the clamp (ReLU6) that caps them."""
    from app.engine.layers import clamp_input

    _, layers, _ = _discover("mobilenet_v2")
    infos = list(layers.values())
    assert layers["features.1.conv.0.2"].type == "ReLU6"
    assert clamp_input(infos, "features.1.conv.0.2") == "features.1.conv.0.1"  # the ReLU6 itself: its BN
    assert clamp_input(infos, "features.0") == "features.0.1"  # a conv-BN-ReLU6 block ends in its ReLU6
    assert clamp_input(infos, "features.0.1") is None  # a batch norm clamps nothing
    assert clamp_input(infos, "features.2") is None  # an inverted residual ends in a linear projection
    assert clamp_input(infos, "no.such.layer") is None
