"""Concurrent requests on one model, each taking the model's lock as the API does, get the same maps as
the same requests made one after another; and the input's memory format does not change a map."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torchvision

from app.engine.cam import METHODS, compute_cams
from app.engine.hooks import hook_count

REQUESTS = [  # (methods, target): every method, a different target each
    (["gradcam", "layercam"], 1),
    (["scorecam"], 2),
    (["ablationcam", "hirescam"], None),
    (["guided-gradcam", "saliency"], 5),
    (["eigencam", "eigengradcam"], 7),
    (["gradcampp", "xgradcam"], 3),
    (["ablationcam", "gradcam"], 9),
    (["saliency", "scorecam", "eigencam"], 0),
]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval().requires_grad_(False)


def image(seed: int) -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)).contiguous(
        memory_format=torch.channels_last)


def test_concurrent_requests_match_sequential_ones(model):
    lock = threading.Lock()  # LoadedModel.lock

    def request(index: int):
        methods, target = REQUESTS[index]
        with lock:
            return compute_cams(model, image(index), "layer3", methods, target=target, score_batch_size=64)

    sequential = [request(i) for i in range(len(REQUESTS))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(request, range(len(REQUESTS))))
    assert {m for methods, _ in REQUESTS for m in methods} == set(METHODS)
    for alone, together in zip(sequential, concurrent):
        assert alone.target == together.target and list(alone.maps) == list(together.maps)
        for method in alone.maps:
            assert torch.equal(alone.maps[method].raw, together.maps[method].raw), method
    assert hook_count(model) == 0


@pytest.mark.parametrize("layer", ["layer4", "layer2.1.conv1"])
def test_channels_last_and_contiguous_inputs_give_the_same_maps(model, layer):
    x = image(11)
    channels_last = compute_cams(model, x, layer, list(METHODS), score_batch_size=64)
    contiguous = compute_cams(model, x.contiguous(), layer, list(METHODS), score_batch_size=64)
    assert channels_last.target == contiguous.target
    for method, found in channels_last.maps.items():
        expected = contiguous.maps[method].raw
        scale = float(expected.abs().max())
        torch.testing.assert_close(found.raw, expected, rtol=1e-3, atol=1e-4 * scale, msg=method)


def test_two_models_traced_and_run_in_parallel():
    """Each model has its own lock, so two requests do run at once: one model's first Ablation-CAM traces it
    (fx patches nn.Module.__call__ process-wide meanwhile) while the other model runs forward passes."""

    def fresh(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torchvision.models.resnet18(weights=None, num_classes=10).eval().requires_grad_(False)

    def requests(models, locks):
        def request(index: int):
            which = index % 2
            with locks[which]:
                return compute_cams(models[which], image(index), "layer3", ["ablationcam", "gradcam"])
        return request

    sequential = [requests([fresh(0), fresh(1)], [threading.Lock()] * 2)(i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(requests([fresh(0), fresh(1)], [threading.Lock(), threading.Lock()]), range(6)))
    for alone, together in zip(sequential, parallel):
        assert together.split
        for method in alone.maps:
            assert torch.equal(alone.maps[method].raw, together.maps[method].raw), method
