"""Ablation-CAM's split: only the layers after the target layer re-run, with the same maps as whole-model
re-runs; models that cannot be split fall back; a trace never disturbs another thread's forward pass."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch
import torchvision
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from app.engine.cam import compute_cams
from app.engine.cam import engine as cam_engine
from app.engine.cam import tail as cam_tail
from app.engine.hooks import hook_count


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval().requires_grad_(False)


def image(size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def whole_model_reruns(model, x, layer, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(cam_engine, "tail_for", lambda *_: None)
        return compute_cams(model, x, layer, ["ablationcam"], **kwargs)


@pytest.mark.parametrize("layer", ["layer4", "layer3.1", "layer3.0.conv2", "layer2.0.relu", "maxpool"])
def test_split_and_whole_model_reruns_agree(resnet, layer, monkeypatch):
    """Stages, blocks, a convolution inside a block (its skip connection crosses the split), a ReLU module
    called twice per block (its first call is the layer), the stem."""
    x = image()
    split = compute_cams(resnet, x, layer, ["ablationcam"], ablation_batch_size=48)
    whole = whole_model_reruns(resnet, x, layer, monkeypatch, ablation_batch_size=48)
    assert split.split and not whole.split
    torch.testing.assert_close(split.maps["ablationcam"].raw, whole.maps["ablationcam"].raw, rtol=1e-4, atol=1e-5)
    assert hook_count(resnet) == 0


def test_the_split_runs_only_the_layers_after_the_layer(resnet):
    calls: dict[str, int] = {}
    modules = dict(resnet.named_modules())

    def count(name: str):
        return lambda *_: calls.__setitem__(name, calls.get(name, 0) + 1)

    handles = [modules[name].register_forward_hook(count(name))
               for name in ("conv1", "layer2.1.conv2", "layer3", "layer4.1.conv2", "fc")]
    try:
        compute_cams(resnet, image(), "layer3", ["ablationcam"], ablation_batch_size=64)  # 256 channels: 4 batches
    finally:
        for handle in handles:
            handle.remove()
    # The first use checks the traced graph against the model (2 passes); the shared pass is the 3rd.
    # Then a 2-image batch check and at most 4 batches run layer4 and fc only.
    assert calls["conv1"] == calls["layer2.1.conv2"] == calls["layer3"] == 3
    assert 3 < calls["layer4.1.conv2"] == calls["fc"] <= 3 + 1 + 4


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1))
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        features = self.features(x)
        if features.mean() > 1e9:  # control flow on data: symbolic tracing fails
            features = -features
        return self.head(features.relu().mean((2, 3)))


class BatchFromInput(DataDependent):
    def forward(self, x):
        n = x.shape[0]  # traced as a value before the split: the graph's tail keeps the shared pass's 1
        return self.head(self.features(x).relu().mean((2, 3)).reshape(n, -1))


class Plain(DataDependent):
    def forward(self, x):
        return self.head(self.features(x).relu().mean((2, 3)))


@pytest.mark.parametrize("model_class, splits", [(Plain, True), (DataDependent, False), (BatchFromInput, False)])
def test_models_that_cannot_be_split_fall_back(model_class, splits):
    torch.manual_seed(0)
    model = model_class().eval().requires_grad_(False)
    reference = Plain().eval().requires_grad_(False)
    reference.load_state_dict(model.state_dict())
    x = image(12)
    result = compute_cams(model, x, "features.0", ["ablationcam", "gradcam"], ablation_batch_size=4)
    assert result.split is splits
    expected = compute_cams(reference, x, "features.0", ["ablationcam", "gradcam"])
    for method in ("ablationcam", "gradcam"):
        torch.testing.assert_close(result.maps[method].raw, expected.maps[method].raw, rtol=1e-4, atol=1e-6)
    assert hook_count(model) == 0


def test_the_trace_is_kept_weakly():
    model = Plain().eval().requires_grad_(False)
    compute_cams(model, image(12), "features.0", ["ablationcam"])
    assert model in cam_tail._TAILS and cam_tail._TAILS[model]["features.0"] is not None
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None  # the cached graph holds the model's submodules, not the model


class TracedWhileAnotherThreadRuns(Plain):
    """While fx traces it, another thread runs a forward pass of an unrelated model."""

    def forward(self, x):
        if is_fx_symbolic_tracing():
            worker = threading.Thread(target=self.neighbour_forward)
            worker.start()
            worker.join()
        return super().forward(x)

    def neighbour_forward(self):
        try:
            self.neighbour_output = self.neighbour(self.neighbour_input)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            self.neighbour_output = exc


def test_tracing_does_not_disturb_other_threads():
    """fx patches nn.Module.__call__ for the whole process while it traces; without the tracer's thread
    check the neighbour's forward would be traced into this graph and fail."""
    model = TracedWhileAnotherThreadRuns().eval().requires_grad_(False)
    neighbour = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)).eval()
    object.__setattr__(model, "neighbour", neighbour)  # not a submodule: an unrelated model
    model.neighbour_input = torch.randn(1, 3, 8, 8)
    result = compute_cams(model, image(12), "features.0", ["ablationcam"])
    assert result.split
    assert isinstance(model.neighbour_output, torch.Tensor)
    torch.testing.assert_close(model.neighbour_output, neighbour(model.neighbour_input))
