"""Every CAM method's raw map on a hand-weighted model, against numbers worked out by hand.

The model: a 1x1 convolution with kernels [1, 2] and no bias (layer "conv": A0 = x, A1 = 2x), a ReLU,
global average pooling over the 4x4 map, and a linear layer without bias, W = [[3, -1], [1, 1]].
Its input x (4x4) and the masks derived from it:

    x = [[ 1, 2, 0, -1],     P = [x > 0]      R = relu(x) = P * x
         [ 0, 1, 3,  0],     (8 ones)         (sum 12, mean 0.75)
         [-2, 0, 1,  1],
         [ 0, 1, 0,  2]]     sum x = 9, mean x = 9/16

Pooled: mean relu(A0) = 12/16 = 0.75, mean relu(A1) = 1.5. Logits: y0 = 3*0.75 - 1.5 = 0.75 and
y1 = 0.75 + 1.5 = 2.25, so the top class is 1. The gradient at the layer is G_k = W[t, k] / 16 * P
(the ReLU passes it where A_k > 0, which is where x > 0 since both kernels are positive).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from app.engine.cam import METHODS, compute_cams, postprocess

X = torch.tensor([[1.0, 2, 0, -1], [0, 1, 3, 0], [-2, 0, 1, 1], [0, 1, 0, 2]])
P = (X > 0).float()
R = X.clamp(min=0)


class TinyCam(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[3.0, -1.0], [1.0, 1.0]]))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def tiny_cam(inplace: bool = False) -> TinyCam:
    return TinyCam(inplace).eval().requires_grad_(False)


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


# Target 1: G0 = G1 = P/16.
#   gradcam:   w_k = mean G_k = 8/256 = 1/32 -> (A0 + A1)/32 = 3x/32
#   gradcampp: alpha_k = G^2 / (2G^2 + S_k G^3) = 1 / (2 + S_k/16) on P, S0 = sum A0 = 9, S1 = 18:
#              alpha0 = 16/41, alpha1 = 16/50; w_k = 8 * (1/16) * alpha_k = (8/41, 4/25)
#              -> 8/41 x + 4/25 * 2x = (8/41 + 8/25) x = 528/1025 x
#   xgradcam:  w0 = sum(G0 A0)/S0 = (12/16)/9 = 1/12, w1 = (24/16)/18 = 1/12 -> 3x/12 = x/4
#   hirescam:  sum_k G_k A_k = P (x + 2x)/16 = 3R/16;  layercam: relu(G) = G -> 3R/16
#   eigencam:  rows (x_ij, 2 x_ij) are rank one along (1, 2)/sqrt5: projection sqrt5 (x - 9/16), oriented
#              with the channel sum 3x
#   eigengradcam: G*A = (R/16, 2R/16), rank one: sqrt5 (R - 0.75)/16
#   scorecam:  both channels scale to the same mask (x + 2)/5; masked input x(x + 2)/5 has
#              mean relu = (3+8+3+15+3+3+3+8)/5/16 = 0.575, logits (3*0.575 - 1.15, 0.575 + 1.15) =
#              (0.575, 1.725): p1 = sigmoid(1.15) for both channels -> 3 p1 x
#   ablationcam: zeroing A0 gives y1 = 1.5, zeroing A1 gives 0.75: w = (0.75/2.25, 1.5/2.25) -> x/3 + 4x/3
#   saliency:  d y1 / dx = (1 + 2) P/16 -> 3P/16
#   guided-gradcam: guided gradient: (1/16, 1/16) clamped stays, through the ReLU mask and the kernels:
#              3P/16; times relu(gradcam) = 3R/32 -> 9R/512
TARGET_1 = {
    "gradcam": 3 * X / 32,
    "gradcampp": 528 / 1025 * X,
    "xgradcam": X / 4,
    "hirescam": 3 * R / 16,
    "layercam": 3 * R / 16,
    "eigencam": math.sqrt(5) * (X - 9 / 16),
    "eigengradcam": math.sqrt(5) * (R - 0.75) / 16,
    "scorecam": 3 * sigmoid(1.15) * X,
    "ablationcam": 5 * X / 3,
    "saliency": 3 * P / 16,
    "guided-gradcam": 9 * R / 512,
}

# Target 0: G0 = 3P/16, G1 = -P/16, y0 = 0.75.
#   gradcam:   w = (3/32, -1/32) -> 3x/32 - 2x/32 = x/32
#   gradcampp: alpha0 = 1/(2 + 9*3/16) = 16/59, w0 = 8 * 3/16 * 16/59 = 24/59; w1 = 0 (relu(G1) = 0) -> 24x/59
#   xgradcam:  w0 = (3*12/16)/9 = 1/4, w1 = (-24/16)/18 = -1/12 -> x/4 - 2x/12 = x/12
#   hirescam:  (3R - 2R)/16 = R/16;  layercam: relu(G0) A0 = 3R/16
#   eigengradcam: G*A = (3R/16, -2R/16), rank one along (3, -2)/sqrt13: projection (9 + 4)(R - 0.75)/(16 sqrt13)
#              = sqrt13 (R - 0.75)/16, oriented with the channel sum R/16
#   scorecam:  the same mask, p0 = sigmoid(-1.15) -> 3 p0 x
#   ablationcam: zeroing A0 gives -1.5, zeroing A1 gives 2.25: w = (2.25/0.75, -1.5/0.75) = (3, -2) -> 3x - 4x
#   saliency:  (3 - 2) P/16;  guided-gradcam: (3/16, -1/16) clamps to (3/16, 0): 3P/16, times R/32 -> 3R/512
TARGET_0 = {
    "gradcam": X / 32,
    "gradcampp": 24 / 59 * X,
    "xgradcam": X / 12,
    "hirescam": R / 16,
    "layercam": 3 * R / 16,
    "eigencam": math.sqrt(5) * (X - 9 / 16),
    "eigengradcam": math.sqrt(13) * (R - 0.75) / 16,
    "scorecam": 3 * sigmoid(-1.15) * X,
    "ablationcam": -X,
    "saliency": P / 16,
    "guided-gradcam": 3 * R / 512,
}


def test_every_method_has_golden_numbers():
    assert set(TARGET_1) == set(METHODS) == set(TARGET_0)


@pytest.mark.parametrize("target, expected", [(None, TARGET_1), (0, TARGET_0)], ids=["top", "target0"])
@pytest.mark.parametrize("method", list(METHODS))
def test_raw_maps_by_hand(method, target, expected):
    result = compute_cams(tiny_cam(), X.view(1, 1, 4, 4), "conv", [method], target=target)
    assert result.target == (1 if target is None else 0)
    assert torch.allclose(result.logits, torch.tensor([0.75, 2.25]))
    found = result.maps[method]
    # 2e-4: Grad-CAM++ and XGrad-CAM keep their denominators off zero with 1e-6 and 1e-7.
    assert torch.allclose(found.raw, expected[method], rtol=2e-4, atol=1e-7), found.raw
    assert found.raw.dtype == torch.float32 and found.raw.device.type == "cpu"
    assert (found.min, found.max) == (float(found.raw.min()), float(found.raw.max()))


def test_all_methods_in_one_call_match_one_by_one():
    together = compute_cams(tiny_cam(), X.view(1, 1, 4, 4), "conv", list(METHODS), target=0)
    assert list(together.maps) == list(METHODS)
    for method, found in together.maps.items():
        assert torch.allclose(found.raw, TARGET_0[method], rtol=2e-4, atol=1e-7), method


def test_a_following_inplace_relu_does_not_rewrite_the_captured_layer():
    """With ReLU(inplace=True) after "conv", a captured reference (not a copy) would read relu(x): EigenCAM
    would become sqrt5 (R - 0.75) instead of sqrt5 (x - 9/16) (pytorch/captum#156)."""
    result = compute_cams(tiny_cam(inplace=True), X.view(1, 1, 4, 4), "conv", list(METHODS))
    for method, found in result.maps.items():
        assert torch.allclose(found.raw, TARGET_1[method], rtol=2e-4, atol=1e-7), method


def test_postprocess_by_hand():
    raw = torch.tensor([[0.0, 4.0], [8.0, -4.0]])
    # ReLU first: [[0, 4], [8, 0]]. Bilinear 2 -> 4 with align_corners=False samples source coordinates
    # (i + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]: weights (1, 0), (.75, .25), (.25, .75),
    # (0, 1). Rows: [0, 1, 3, 4] and [8, 6, 2, 0]; between them .75/.25 and .25/.75 mixes.
    expected = torch.tensor([[0.0, 1, 3, 4], [2, 2.25, 2.75, 3], [6, 4.75, 2.25, 1], [8, 6, 2, 0]])
    assert torch.allclose(postprocess(raw, size=(4, 4), normalize=False), expected)
    assert torch.allclose(postprocess(raw, size=(4, 4)), expected / 8)
    assert torch.equal(postprocess(raw, relu=False, normalize=False), raw)
    assert torch.allclose(postprocess(raw, relu=False), (raw + 4) / 12)
    assert torch.equal(postprocess(torch.full((2, 2), 3.0)), torch.zeros(2, 2))  # constant: zeros, not NaN
    assert raw[1, 1] == -4.0  # the input is not modified
