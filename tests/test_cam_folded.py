"""Batch norms folded into the convolutions before them, for the inference passes of Score-CAM and of the
curves: the same function (by hand on one pixel, and on resnet18), the model untouched, and the model
itself wherever folding does not apply."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from app.engine.cam import compute_cams, winograd
from app.engine.cam import engine as cam_engine
from app.engine.cam.folded import folded_forward
from app.engine.cam.tail import Program
from app.engine.cam.winograd import WinogradConv2d
from app.engine.hooks import hook_count
from tests.test_cam_invariants import assert_untouched, snapshot


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval().requires_grad_(False)
    with torch.no_grad():  # running statistics other than the initial 0 and 1, so that folding shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def image(n: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def layers(forward, kind) -> int:
    """How many modules of `kind` a folded forward (or a model) calls."""
    modules = forward.values.values() if isinstance(forward, Program) else forward.modules()
    return sum(type(m) is kind for m in modules)


def test_one_pixel_by_hand():
    """conv: 2x + 1; batch norm: (y - 1) / sqrt(4) * 3 + 0.5. At x = 1: y = 3, then 3.5. Folded: 3x + 0.5."""
    conv, norm = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1, eps=0.0)
    with torch.no_grad():
        conv.weight.fill_(2.0), conv.bias.fill_(1.0)
        norm.running_mean.fill_(1.0), norm.running_var.fill_(4.0), norm.weight.fill_(3.0), norm.bias.fill_(0.5)
    model = nn.Sequential(conv, norm).eval()
    x = torch.ones(1, 1, 1, 1)
    forward = folded_forward(model, x)
    assert isinstance(forward, Program) and layers(forward, nn.BatchNorm2d) == 0
    (folded,) = [m for m in forward.values.values() if type(m) is nn.Conv2d]
    assert folded.weight.item() == 3.0 and folded.bias.item() == 0.5
    assert forward(x).item() == model(x).item() == 3.5


def test_resnet18_folds_every_batch_norm_and_computes_the_same(resnet, monkeypatch):
    monkeypatch.setattr(winograd, "_MIN_MULTIPLY_ADDS", 0)  # this small batch would run them directly
    before = snapshot(resnet)
    forward = folded_forward(resnet, image())
    assert layers(forward, nn.BatchNorm2d) == 0
    # The 3x3 convolutions of layers 2-4 with 128 or more channels in and out (3 each) go to Winograd.
    assert layers(forward, WinogradConv2d) == 9
    assert layers(forward, nn.Conv2d) + 9 == layers(resnet, nn.Conv2d)
    batch = image(3, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(forward(batch), resnet(batch), rtol=1e-4, atol=1e-5)
    assert_untouched(resnet, before)


def test_score_cam_maps_are_the_same_folded_or_not(resnet, monkeypatch):
    used = []
    monkeypatch.setattr(cam_engine, "folded_forward", lambda model, x: used.append(folded_forward(model, x))
                        or used[-1])
    folded = compute_cams(resnet, image(), "layer3", ["scorecam"], score_batch_size=64)
    assert isinstance(used[0], Program)  # it did fold
    plain = compute_cams(resnet, image(), "layer3", ["scorecam"], score_batch_size=64, inference=resnet)
    torch.testing.assert_close(folded.maps["scorecam"].raw, plain.maps["scorecam"].raw, rtol=1e-4, atol=1e-5)
    assert hook_count(resnet) == 0


class ConvReadTwice(nn.Module):
    """The convolution's output feeds the batch norm and a skip connection: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.after = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        y = self.conv(x)
        return self.after(self.norm(y) + y)


def test_a_convolution_read_elsewhere_keeps_its_batch_norm():
    torch.manual_seed(0)
    model = ConvReadTwice().eval()
    with torch.no_grad():
        model.norm.running_mean.fill_(0.3)
    forward = folded_forward(model, image())
    assert layers(forward, nn.BatchNorm2d) == 1  # `after`'s pair folded, `norm` kept
    with torch.no_grad():
        torch.testing.assert_close(forward(image(2)), model(image(2)), rtol=1e-4, atol=1e-5)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)

    def forward(self, x):
        if x.sum() > 0:  # symbolic tracing cannot follow this
            x = -x
        return self.norm(self.conv(x)).mean((2, 3))


def test_a_chain_of_two_batch_norms_folds_the_first():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.BatchNorm2d(2), nn.Flatten()).eval()
    with torch.no_grad():
        model[2].running_mean.fill_(0.5)
    forward = folded_forward(model, image())
    assert layers(forward, nn.BatchNorm2d) == 1
    with torch.no_grad():
        torch.testing.assert_close(forward(image(2)), model(image(2)), rtol=1e-4, atol=1e-5)


def test_half_precision_folds_in_float32():
    """gamma / sqrt(var + eps) with a tiny variance: float16 arithmetic gives a weight of 512.0; computed in
    float32 and then stored as float16, 512.5, the float16 nearest the exact value (and so for the bias)."""
    conv, norm = nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1, eps=1e-5)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        norm.running_mean.fill_(0.1), norm.running_var.fill_(1e-6), norm.weight.fill_(1.7), norm.bias.fill_(0.2)
    model = nn.Sequential(conv, norm).eval().half()
    forward = folded_forward(model, torch.ones(1, 1, 1, 1, dtype=torch.half))
    (folded,) = [m for m in forward.values.values() if type(m) is nn.Conv2d]
    mean, var, gamma, beta = (t.double().item() for t in (norm.running_mean, norm.running_var, norm.weight,
                                                           norm.bias))  # as stored, in float16
    scale = gamma / (var + 1e-5) ** 0.5
    assert folded.weight.dtype == torch.half
    assert folded.weight.item() == torch.tensor(scale).half().item() == 512.5
    assert folded.bias.item() == torch.tensor(beta - mean * scale).half().item()


def test_folding_per_request_leaves_no_generated_code_behind(resnet):
    """A GraphModule per request would add its source to linecache (and torch's code cache) every time."""
    import linecache

    folded_forward(resnet, image())
    before = len(linecache.cache)
    for seed in range(3):
        folded_forward(resnet, image(seed=seed))
    assert len(linecache.cache) == before


@pytest.mark.parametrize("make", [
    lambda: DataDependent().eval(),  # not traceable
    lambda: nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.Flatten()).train(),  # batch statistics
    lambda: nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2, track_running_stats=False), nn.Flatten()).eval(),
    lambda: nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten()).eval(),  # nothing to fold
], ids=["untraceable", "training", "no-running-statistics", "no-batch-norm"])
def test_the_model_itself_runs_where_nothing_can_be_folded(make):
    model = make()
    assert folded_forward(model, image()) is model


def test_the_trace_is_kept_weakly():
    import gc
    import weakref

    from app.engine.cam import folded

    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.Flatten()).eval()
    folded_forward(model, image())
    assert model in folded._GRAPHS
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None  # the kept graph holds no reference to the model
