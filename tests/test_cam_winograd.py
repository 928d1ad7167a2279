"""Winograd F(4x4, 3x3) convolutions for the inference passes: the same function as the direct
convolution (by hand, and against torch on every shape the tiling treats differently), converted only
where it applies, and used by the folded forward on models with and without batch norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.engine.cam import winograd
from app.engine.cam.folded import folded_forward
from app.engine.cam.tail import Program
from app.engine.cam.winograd import WinogradConv2d, winograd_applies

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def every_call_by_winograd(monkeypatch):
    """The shapes here are small enough that a converted convolution would run directly: not in these tests."""
    monkeypatch.setattr(winograd, "_MIN_MULTIPLY_ADDS", 0)


def conv_with(weight: torch.Tensor, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.fill_(bias)
    return conv.eval()


def test_box_filter_by_hand():
    """A 3x3 box of ones on a 4x4 image of ones, zero padding, bias 0.5: each output counts the pixels
    its window covers, 4 at a corner, 6 along an edge, 9 inside, plus 0.5."""
    conv = conv_with(torch.ones(1, 1, 3, 3), bias=0.5)
    with torch.no_grad():
        out = WinogradConv2d(conv)(torch.ones(1, 1, 4, 4))
    expected = torch.tensor([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) + 0.5
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-5)


def test_a_one_hot_filter_shifts_the_image_by_hand():
    """Weight 1 at the filter's top-left, 0 elsewhere: a cross-correlation (what torch computes) gives
    out[y, x] = in[y - 1, x - 1], zero along the top row and left column; a true convolution would shift the
    other way. 5x6 is not a whole number of 4x4 tiles."""
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 0, 0] = 1.0
    image = torch.arange(30, dtype=torch.float32).reshape(1, 1, 5, 6)
    with torch.no_grad():
        out = WinogradConv2d(conv_with(weight))(image)[0, 0]
    expected = torch.zeros(5, 6)
    expected[1:, 1:] = image[0, 0, :-1, :-1]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("batch, channels_in, channels_out, height, width", [
    (2, 128, 128, 8, 8),  # whole tiles
    (3, 130, 140, 14, 14),  # tiles overhang; channel counts not powers of two
    (13, 16, 8, 28, 28),  # 49 tiles per image: chunks of 6 images, the last one short
    (1, 8, 8, 1, 1),  # one pixel: all border
    (2, 8, 4, 5, 11),  # not square
])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_agrees_with_the_direct_convolution(batch, channels_in, channels_out, height, width, layout):
    generator = torch.Generator().manual_seed(batch * height + width)
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=1).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.1)
        conv.bias.copy_(torch.randn(channels_out, generator=generator))
        x = torch.randn(batch, channels_in, height, width, generator=generator).contiguous(memory_format=layout)
        expected, found = conv(x), WinogradConv2d(conv)(x)
    assert found.shape == expected.shape and found.is_contiguous(memory_format=layout)  # as the direct one
    scale = float(expected.abs().max())
    torch.testing.assert_close(found, expected, rtol=0, atol=2e-5 * scale)


def test_a_convolution_without_bias():
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(WinogradConv2d(conv)(x), conv(x), rtol=0, atol=1e-5)


def hooked(conv: nn.Conv2d) -> nn.Conv2d:
    conv.register_forward_hook(lambda _module, _inputs, output: output * 2)
    return conv


def wide(**changes) -> nn.Conv2d:
    arguments = {"in_channels": 128, "out_channels": 128, "kernel_size": 3, "padding": 1, **changes}
    return nn.Conv2d(**arguments)


@pytest.mark.parametrize("conv, device, applies", [
    (wide(), CPU, True),
    (wide(in_channels=512, out_channels=256), CPU, True),
    (wide(), torch.device("cuda"), False),  # cuDNN chooses its own algorithms
    (wide(in_channels=64), CPU, False),  # the transforms cost what the products save
    (wide(out_channels=64), CPU, False),
    (wide(stride=2), CPU, False),
    (wide(kernel_size=1, padding=0), CPU, False),
    (wide(padding=0), CPU, False),
    (wide(dilation=2, padding=2), CPU, False),
    (wide(groups=2), CPU, False),
    (wide(padding_mode="reflect"), CPU, False),
    (hooked(wide()), CPU, False),  # the conversion would skip the hook
    (wide().double(), CPU, False),
    (wide().half(), CPU, False),
], ids=["wide", "wider", "cuda", "64-in", "64-out", "stride-2", "1x1", "no-padding", "dilated", "grouped",
        "reflect", "hooked", "float64", "float16"])
def test_which_convolutions_are_converted(conv, device, applies):
    assert winograd_applies(conv, device) is applies


class Plain(nn.Module):
    """No batch norm to fold, but two wide 3x3 convolutions (the second one's 7x7 input overhangs)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 128, 3, stride=2, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(128, 128, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 5))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def test_a_model_without_batch_norms_runs_its_wide_convolutions_by_winograd():
    torch.manual_seed(0)
    model = Plain().eval().requires_grad_(False)
    image = torch.randn(1, 3, 14, 14)
    forward = folded_forward(model, image)
    assert isinstance(forward, Program)
    assert sum(type(m) is WinogradConv2d for m in forward.values.values()) == 2
    batch = torch.randn(4, 3, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(forward(batch), model(batch), rtol=1e-4, atol=1e-5)
    assert all(type(m) is not WinogradConv2d for m in model.modules())  # the model itself is unchanged


def test_nothing_converted_when_no_convolution_is_wide_enough(monkeypatch):
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 129)
    model = Plain().eval()
    assert folded_forward(model, torch.randn(1, 3, 14, 14)) is model


def test_the_filter_transform_matches_its_definition():
    """U = G g G^T per filter (here computed in float64, one 3x3 matrix at a time), stored as (36, in, out)."""
    conv = nn.Conv2d(2, 3, 3, padding=1).eval()
    converted = WinogradConv2d(conv)
    g = winograd._G
    for i in range(2):
        for o in range(3):
            expected = (g @ conv.weight[o, i].detach().double() @ g.T).float().reshape(36)
            torch.testing.assert_close(converted.filters[:, i, o], expected)


def test_a_call_too_small_to_gain_runs_the_convolution_itself():
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    calls = []
    conv.register_forward_hook(lambda *_: calls.append(1))
    converted = WinogradConv2d(conv)
    x = torch.randn(2, 8, 6, 6)  # 2 x 36 pixels x 8 x 8 channels x 9 = 41,472 multiply-adds
    with torch.no_grad():
        converted.min_multiply_adds = 41_473
        small = converted(x)
        converted.min_multiply_adds = 41_472
        large = converted(x)
    assert len(calls) == 1  # the first call only
    torch.testing.assert_close(small, large, rtol=0, atol=1e-5)


def test_the_check_on_one_image_runs_the_winograd_arithmetic(monkeypatch):
    """One image is far below the size at which a converted convolution uses Winograd, yet the folded
    forward's check must test what the batches will run: with a broken input transform it must refuse."""
    monkeypatch.setattr(winograd, "_MIN_MULTIPLY_ADDS", 2**29)  # the real threshold
    broken = winograd._B_T.clone()
    broken[4, 5] = 1.0
    monkeypatch.setattr(winograd, "_B_T", broken)
    model = Plain().eval()
    assert folded_forward(model, torch.randn(1, 3, 14, 14)) is model


class Flattened(nn.Module):
    """A model that `view`s a convolution's output: it needs that output contiguous, as the store serves it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 128, 3, stride=2, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1))
        self.head = nn.Linear(128 * 7 * 7, 5)

    def forward(self, x):
        y = self.body(self.stem(x))
        return self.head(y.view(y.shape[0], -1))


def test_a_model_fed_contiguous_inputs_gets_contiguous_outputs_from_winograd():
    from app.engine.cam import compute_cams

    torch.manual_seed(0)
    model = Flattened().eval().requires_grad_(False)
    image = torch.randn(1, 3, 14, 14)  # contiguous: `view` fails on a channels-last output
    forward = folded_forward(model, image)
    assert isinstance(forward, Program)
    converted = compute_cams(model, image, "body", ["scorecam"], score_batch_size=8, inference=forward)
    plain = compute_cams(model, image, "body", ["scorecam"], score_batch_size=8, inference=model)
    torch.testing.assert_close(converted.maps["scorecam"].raw, plain.maps["scorecam"].raw, rtol=1e-4, atol=1e-5)
