"""The demo's MobileNetV3-Small (app/demo/mobilenet.py) is torchvision's: the same modules under the same names,
the same initialisation from the same seed, and the same outputs from the demo's trained weights."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from app.demo.mobilenet import make_divisible, mobilenet_v3_small
from app.settings import BUILTIN_MODEL_DIR


def both(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    ours = mobilenet_v3_small(**kwargs)
    torch.manual_seed(seed)
    theirs = torchvision.models.mobilenet_v3_small(**kwargs)
    return ours, theirs


def test_the_modules_are_torchvisions_under_the_same_names():
    ours, theirs = both(num_classes=10)
    # repr names every module's class and arguments: strides, padding, groups, bias, eps, momentum, in-place.
    assert repr(ours) == repr(theirs)
    assert [(name, type(m).__name__) for name, m in ours.named_modules()] == \
        [(name, type(m).__name__) for name, m in theirs.named_modules()]
    assert [(name, b.shape) for name, b in ours.state_dict().items()] == \
        [(name, b.shape) for name, b in theirs.state_dict().items()]


def test_a_seed_initialises_both_alike():
    ours, theirs = both(seed=3)
    for (name, mine), other in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(mine, other), name


@pytest.mark.parametrize("size", [112, 67])
def test_the_demo_weights_give_the_same_outputs_and_maps(size):
    ours, theirs = both(num_classes=10)
    weights = load_file(str(BUILTIN_MODEL_DIR / "shapes-mobilenet.safetensors"))
    for model in (ours, theirs):
        model.load_state_dict(weights)
        model.eval()
    maps = {}
    for label, model in (("ours", ours), ("theirs", theirs)):
        for name in ("features.1", "features.4.block.2", "features.12"):
            model.get_submodule(name).register_forward_hook(
                lambda _m, _i, output, key=(label, name): maps.__setitem__(key, output.clone()))
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    for name in ("features.1", "features.4.block.2", "features.12"):
        assert torch.equal(maps["ours", name], maps["theirs", name]), name


def test_channel_rounding_is_the_reference_rule():
    assert [make_divisible(c) for c in (4, 30, 36, 60, 72, 144, 3)] == [8, 32, 40, 64, 72, 144, 8]
    assert make_divisible(18) == 24 and make_divisible(10) == 16  # 16 and 8 would lose more than 10%
