"""Cross-method invariants, for every registry entry and on every error path: no hook left on any module,
the model exactly as it was (parameters, buffers, requires_grad, .grad, training flags, structure),
finite maps of the declared size."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from app.engine.cam import METHODS, CamMethod, compute_cams
from app.engine.hooks import hook_count
from app.errors import InvalidInput, LayerNotFound

LAYER = "layer3.0.conv2"  # inside a residual block: Ablation-CAM's split carries the skip connection across


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last)


def snapshot(model: nn.Module) -> dict:
    return {
        "structure": [(name, type(m), id(m)) for name, m in model.named_modules()],
        "training": [m.training for m in model.modules()],
        "parameters": {name: (p.detach().clone(), p.requires_grad, p.grad) for name, p in model.named_parameters()},
        "buffers": {name: b.clone() for name, b in model.named_buffers()},
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    assert hook_count(model) == 0
    after = snapshot(model)
    assert after["structure"] == before["structure"]
    assert after["training"] == before["training"]
    for name, (value, requires_grad, grad) in before["parameters"].items():
        now = after["parameters"][name]
        assert torch.equal(now[0], value) and now[1] == requires_grad and now[2] is None and grad is None, name
    for name, value in before["buffers"].items():
        assert torch.equal(after["buffers"][name], value), name


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_leaves_no_trace(model, image, method):
    before = snapshot(model)
    result = compute_cams(model, image, LAYER, [method], target=3, score_batch_size=64, ablation_batch_size=100)
    assert_untouched(model, before)
    found = result.maps[method]
    expected = result.layer_shape[1:] if METHODS[method].resolution == "layer" else result.input_size
    assert tuple(found.raw.shape) == tuple(expected)
    assert found.raw.dtype == torch.float32 and torch.isfinite(found.raw).all()
    assert result.target == 3 and result.layer_shape == (256, 4, 4) and result.input_size == (64, 64)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("target", [10, -1])
def test_a_target_out_of_range_names_the_range(model, image, method, target):
    before = snapshot(model)
    message = rf"target class {target} is out of range: valid classes are 0 to 9"
    with pytest.raises(InvalidInput, match=message) as error:
        compute_cams(model, image, LAYER, [method], target=target)
    assert error.value.detail == {"target": target, "valid": [0, 9]}
    assert_untouched(model, before)


def test_a_target_that_is_not_an_index(model, image):
    with pytest.raises(InvalidInput, match="is not a class index"):
        compute_cams(model, image, LAYER, ["gradcam"], target="cat")
    assert hook_count(model) == 0


def test_an_unknown_method_lists_the_valid_ids(model, image):
    before = snapshot(model)
    message = "unknown CAM method 'gradcam+'; valid methods are " + ", ".join(METHODS)
    with pytest.raises(InvalidInput, match=re.escape(message)) as error:
        compute_cams(model, image, LAYER, ["gradcam", "gradcam+"])
    assert error.value.detail == {"method": "gradcam+", "valid": list(METHODS)}
    with pytest.raises(InvalidInput, match="no CAM method requested"):
        compute_cams(model, image, LAYER, [])
    assert_untouched(model, before)


def test_an_unknown_layer_suggests_close_names(model, image):
    with pytest.raises(LayerNotFound, match=r"no layer 'layer3\.0\.conv3'; did you mean") as error:
        compute_cams(model, image, "layer3.0.conv3", ["gradcam"])
    assert "layer3.0.conv2" in error.value.detail["suggestions"]
    with pytest.raises(LayerNotFound):
        compute_cams(model, image, "", ["gradcam"])


def test_a_layer_without_a_map_is_refused(model, image):
    before = snapshot(model)
    with pytest.raises(InvalidInput, match=r"'fc' does not output an \(n, c, h, w\) map"):
        compute_cams(model, image, "fc", ["gradcam"])
    assert_untouched(model, before)


def test_bad_batch_sizes(model, image):
    with pytest.raises(InvalidInput, match="score_batch_size must be a positive integer"):
        compute_cams(model, image, LAYER, ["scorecam"], score_batch_size=0)
    with pytest.raises(InvalidInput, match="ablation_batch_size must be a positive integer"):
        compute_cams(model, image, LAYER, ["ablationcam"], ablation_batch_size=2.5)


class Boom(CamMethod):
    id = "boom"
    name = description = reference = "fails half-way"
    needs_gradients = True

    def compute(self, evidence, rerun):
        rerun.from_layer(rerun.layer_batch(evidence.activations, 2))  # a re-run, then a failure
        raise RuntimeError("boom")


def test_a_method_raising_half_way_leaves_no_trace(model, image, monkeypatch):
    monkeypatch.setitem(METHODS, "boom", Boom())
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        compute_cams(model, image, LAYER, ["gradcam", "guided-gradcam", "boom", "scorecam"])
    assert_untouched(model, before)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class UntraceableFailsOnBatches(nn.Module):
    """Data-dependent control flow (no fx trace: whole-model re-runs) and a failure on any batch above one,
    raised while the re-run's layer-replacing hook is in place."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        features = self.features(x)
        if features.sum() > -1:  # always true, but it depends on the data
            features = features * 1.0
        if x.shape[0] > 1:
            raise RuntimeError("failed on a batch")
        return self.head(features.mean((2, 3)))


@pytest.mark.parametrize("method", list(METHODS))
def test_a_forward_pass_raising_leaves_no_trace(method, monkeypatch):
    """The head fails after the hooked layer ran, with the guided ReLU hooks registered too."""
    model = SmallNet().eval().requires_grad_(False)
    compute_cams(model, torch.randn(1, 3, 8, 8), "features.0", [method])  # traced and checked while it works

    def fail(*_args):
        raise RuntimeError("failed after the layer")

    monkeypatch.setattr(model.head, "forward", fail)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="failed after the layer"):
        compute_cams(model, torch.randn(1, 3, 8, 8), "features.0", [method, "guided-gradcam"])
    assert_untouched(model, before)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_a_re_run_raising_leaves_no_trace(method):
    model = UntraceableFailsOnBatches().eval().requires_grad_(False)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="failed on a batch"):
        compute_cams(model, torch.randn(1, 3, 8, 8), "features.0", [method])
    assert_untouched(model, before)


class Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_a_checkpoint_is_asked_before_every_batch_and_can_stop_the_work(model, image, method):
    asked: list[int] = []
    compute_cams(model, image, LAYER, [method], score_batch_size=4, ablation_batch_size=4,
                 checkpoint=lambda: asked.append(1))
    assert len(asked) > 1 + 256 // 4 // 2  # the method, then its batches: 256 channels, fewer distinct masks

    def stop_at_the_third():
        asked.append(1)
        if len(asked) == 3:
            raise Stop

    asked.clear()
    before = snapshot(model)
    with pytest.raises(Stop):
        compute_cams(model, image, LAYER, [method], score_batch_size=4, ablation_batch_size=4,
                     checkpoint=stop_at_the_third)
    assert len(asked) == 3
    assert_untouched(model, before)
