"""Score-CAM runs one masked pass per distinct mask of a live channel, and no more: a dead channel gets
none, channels whose masks coincide share one; the map still equals the channel-by-channel formula."""

from __future__ import annotations

import torch
from torch import nn

from app.engine.cam import compute_cams
from app.engine.cam.score import channel_masks


def model() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.Conv2d(1, 5, 1)
    with torch.no_grad():  # channels: dead, x, x, 2x (the same mask three times), 3 - x (the reversed mask)
        layer.weight.copy_(torch.tensor([0.0, 1.0, 1.0, 2.0, -1.0]).reshape(5, 1, 1, 1))
        layer.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0]))
    return nn.Sequential(layer, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).eval()


def test_one_pass_per_distinct_live_mask_and_the_formula_holds():
    net = model()
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    seen: list[int] = []
    handle = net.register_forward_pre_hook(lambda _module, inputs: seen.append(len(inputs[0])))
    try:
        result = compute_cams(net, image, "0", ["scorecam"], target=2)
    finally:
        handle.remove()
    assert sum(seen) == 1 + 2  # the shared pass, then the masks of x (and 2x) and of 3 - x; none for the dead

    with torch.no_grad():
        activations = net[0](image)[0]
        expected = torch.zeros(2, 2)
        for k, mask in enumerate(channel_masks(activations)):
            weight = net(image * mask).softmax(dim=1)[0, 2]
            expected += weight * activations[k]
    torch.testing.assert_close(result.maps["scorecam"].raw, expected)
