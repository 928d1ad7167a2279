"""The faithfulness and localisation metrics of app/engine/cam/metrics.py: numbers worked out by hand on a
hand-weighted model, RISE's blur kernel against scipy and by hand, agreement with pytorch-grad-cam's
confidence metrics, and the engine's invariants (batch size, memory format, the model left untouched).

The hand model: a 1x1 convolution summing the three channels (weights 1, no bias), global average pooling,
and a linear layer with weights [[1], [0]] and no bias. So logits = (m, 0) with m the mean over pixels of the
channel sum s, and the probability of class 0 is sigmoid(m). The 2x3 image, row-major pixel index 0..5:

    s  = [ 1,  3, -1,  0,  2,  1]     (sum 6, m = 1)
    c0 = [ 0,  4, -1, -2,  2,  2]     c1 = [1, -1, 0, 2, 0, -1]     c2 = 0     (c0 + c1 + c2 = s)

c1 is nonzero, so a deletion that replaced channel 0 alone would leave a different sum.
The saliency map [[0.5, 1.0, 0.2], [0.5, 0.0, 0.9]] orders the pixels 1 (1.0), 5 (0.9), then the tie at 0.5
in row-major order, 0 before 3, then 2 (0.2), 4 (0.0): [1, 5, 0, 3, 2, 4], with s values [3, 1, 1, 0, -1, 2].
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from app.engine.cam import compute_cams, postprocess
from app.engine.cam.metrics import (
    Curve,
    area_under_curve,
    bounding_box,
    causal_curve,
    confidence_change,
    deletion_insertion,
    dilate,
    energy_pointing_game,
    pointing_game,
    pointing_tolerance,
    rise_blur,
    rise_kernel,
    salience_rank,
)
from app.errors import InvalidInput
from tests.test_cam_invariants import assert_untouched, snapshot

S = [1.0, 3, -1, 0, 2, 1]
C0 = [0.0, 4, -1, -2, 2, 2]
C1 = [1.0, -1, 0, 2, 0, -1]
IMAGE = torch.tensor([C0, C1, [0.0] * 6]).reshape(1, 3, 2, 3)
SALIENCY = torch.tensor([[0.5, 1.0, 0.2], [0.5, 0.0, 0.9]])


class ChannelSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.fc.weight.copy_(torch.tensor([[1.0], [0.0]]))

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def channel_sum() -> ChannelSum:
    return ChannelSum().eval().requires_grad_(False)


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


def auc(points: list[float]) -> float:
    return (sum(points) - points[0] / 2 - points[-1] / 2) / (len(points) - 1)


def test_the_image_and_model_are_as_described():
    assert IMAGE.sum(dim=1).flatten().tolist() == S
    assert channel_sum()(IMAGE).tolist() == [[1.0, 0.0]]


def test_pixels_are_ranked_by_saliency_with_ties_in_row_major_order():
    rank = salience_rank(SALIENCY)
    assert rank.tolist() == [[2, 0, 4], [3, 5, 1]]  # the order [1, 5, 0, 3, 2, 4], inverted
    assert salience_rank(torch.zeros(2, 3)).flatten().tolist() == [0, 1, 2, 3, 4, 5]


def test_deletion_by_hand_two_pixels_per_step():
    # steps=3 -> step = ceil(6 / 3) = 2 pixels; 3 steps, 4 points. Deleting pixels [1, 5] (s 3 + 1), then
    # [0, 3] (1 + 0), then [2, 4] (-1 + 2) leaves sums 6, 2, 1, 0: means 1, 1/3, 1/6, 0.
    curve = deletion_insertion(channel_sum(), IMAGE, SALIENCY, 0, steps=3, batch_size=4, which=["deletion"])
    assert list(curve) == ["deletion"]
    expected = [sigmoid(1), sigmoid(1 / 3), sigmoid(1 / 6), 0.5]
    assert curve["deletion"].step == 2
    assert curve["deletion"].scores == pytest.approx(expected, abs=1e-6)
    # AUC = (sum - first/2 - last/2) / 3 = (0.7311/2 + 0.5826 + 0.5416 + 0.25) / 3
    assert curve["deletion"].auc == pytest.approx(auc(expected), abs=1e-6)
    assert curve["deletion"].auc == pytest.approx((0.731059 / 2 + 0.582570 + 0.541571 + 0.25) / 3, abs=1e-5)


def test_deletion_by_hand_one_pixel_per_step_follows_the_tie_order():
    # steps=6 -> step 1: sums 6, 3, 2, 1 (pixel 0 deleted before 3), 1, 2 (pixel 2's -1 gone), 0.
    # Had pixel 3 gone before pixel 0, the fourth point would be sigmoid(2/6).
    curve = deletion_insertion(channel_sum(), IMAGE, SALIENCY, 0, steps=6, batch_size=3)["deletion"]
    expected = [sigmoid(total / 6) for total in (6, 3, 2, 1, 1, 2, 0)]
    assert curve.step == 1 and curve.scores == pytest.approx(expected, abs=1e-6)
    assert curve.auc == pytest.approx(auc(expected), abs=1e-6)


@pytest.mark.parametrize("steps, step, points", [(4, 2, 4), (5, 2, 4), (7, 1, 7), (1, 6, 2), (100, 1, 7)])
def test_step_is_the_pixels_over_steps_rounded_up(steps, step, points):
    curve = deletion_insertion(channel_sum(), IMAGE, SALIENCY, 0, steps=steps, batch_size=2)["deletion"]
    assert curve.step == step and len(curve.scores) == points
    assert curve.scores[0] == pytest.approx(sigmoid(1), abs=1e-6) and curve.scores[-1] == pytest.approx(0.5)


def test_insertion_by_hand_from_an_injected_substrate():
    # Substrate: channel 0 = 1 everywhere, so every pixel's sum is 1 (total 6). Inserting pixels [1, 5]
    # (s 3, 1) gives 6 - 2 + 4 = 8; then [0, 3] (1, 0): 8 - 2 + 1 = 7; then [2, 4] (-1, 2): 7 - 2 + 1 = 6.
    substrate = torch.zeros_like(IMAGE)
    substrate[:, 0] = 1
    curve = causal_curve(channel_sum(), substrate, IMAGE, SALIENCY, 0, step=2, batch_size=2)
    expected = [sigmoid(1), sigmoid(8 / 6), sigmoid(7 / 6), sigmoid(1)]
    assert curve.scores == pytest.approx(expected, abs=1e-6) and curve.auc == pytest.approx(auc(expected), abs=1e-6)


def test_insertion_starts_from_the_rise_blur_of_the_image():
    model = channel_sum()
    found = deletion_insertion(model, IMAGE, SALIENCY, 1, steps=3, batch_size=4)
    assert list(found) == ["deletion", "insertion"]
    expected = causal_curve(model, rise_blur(IMAGE), IMAGE, SALIENCY, 1, step=2, batch_size=4)
    assert found["insertion"] == expected
    # class 1 has logit 0: its probability is 1 - sigmoid(m), ending at the image's 1 - sigmoid(1)
    assert found["insertion"].scores[-1] == pytest.approx(1 - sigmoid(1), abs=1e-6)
    blurred_mean = float(rise_blur(IMAGE).sum(dim=1).mean())
    assert found["insertion"].scores[0] == pytest.approx(1 - sigmoid(blurred_mean), abs=1e-6)


def test_area_under_curve_is_the_uniform_trapezoid():
    assert area_under_curve([1.0, 0.0]) == 0.5
    assert area_under_curve([1.0, 0.5, 0.0]) == 0.5  # (1.5 - 0.5 - 0) / 2
    assert area_under_curve([0.0, 1.0, 1.0, 1.0]) == pytest.approx(5 / 6)  # (3 - 0 - 0.5) / 3
    with pytest.raises(ValueError):
        area_under_curve([1.0])


def test_rise_kernel_by_hand_for_three_taps():
    # sigma 0.5: radius int(4 * 0.5 + 0.5) = 2, taps exp(-2 k^2) for k = -2..2, divided by
    # Z = 1 + 2 e^-2 + 2 e^-8. On a length-3 dirac at 1 with scipy's 'reflect' border (d c b a | a b c d):
    # output 0 reads positions -2..2 -> 1, 0, 0, 1, 2, so it sums the taps at k = -2 and k = 1;
    # output 1 reads -1..3 -> 0, 0, 1, 2, 2: only k = 0. The line is [e^-2 + e^-8, 1, e^-2 + e^-8] / Z.
    z = 1 + 2 * math.exp(-2) + 2 * math.exp(-8)
    line = torch.tensor([math.exp(-2) + math.exp(-8), 1.0, math.exp(-2) + math.exp(-8)], dtype=torch.float64) / z
    assert torch.allclose(rise_kernel(3, 0.5), torch.outer(line, line), atol=1e-15)


def test_rise_kernel_is_nearly_flat_and_sums_to_one():
    kernel = rise_kernel()
    assert kernel.shape == (11, 11) and float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(kernel[5, 5]) == pytest.approx(0.0088326, abs=1e-7)
    assert float(kernel[0, 0]) == pytest.approx(0.0077366, abs=1e-7)
    assert torch.equal(kernel, kernel.T) and torch.allclose(kernel, kernel.flip(0), rtol=0, atol=1e-17)


@pytest.mark.parametrize("length, sigma", [(11, 5.0), (5, 1.0), (7, 0.7), (3, 2.0), (9, 3.0)])
def test_rise_kernel_matches_scipy_gaussian_filter_of_a_dirac(length, sigma):
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy comes with the test extra (grad-cam)")
    dirac = np.zeros((length, length))
    dirac[length // 2, length // 2] = 1
    assert np.allclose(rise_kernel(length, sigma).numpy(), ndimage.gaussian_filter(dirac, sigma), atol=1e-15)


def test_blur_is_per_channel_with_zero_padding():
    # A 3x3 box kernel (1/9) on constant channels: each output is the channel's value times the number of
    # in-bounds neighbours over 9: corners see 4, the middle column 6, on a 2x3 image.
    image = torch.tensor([1.0, -2.0, 0.5])[None, :, None, None].expand(1, 3, 2, 3)
    blurred = rise_blur(image, torch.full((3, 3), 1 / 9, dtype=torch.float64))
    counts = torch.tensor([[4.0, 6, 4], [4, 6, 4]]) / 9
    assert torch.allclose(blurred, image * counts, atol=1e-7)


def test_the_default_blur_is_rises_conv2d():
    image = torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    kern = torch.zeros(3, 3, 11, 11)
    for channel in range(3):
        kern[channel, channel] = rise_kernel().float()
    expected = nn.functional.conv2d(image, kern, padding=11 // 2)  # RISE's blur, evaluation notebook
    assert torch.allclose(rise_blur(image), expected, atol=1e-6)


def test_confidence_drop_by_hand():
    # E = image * saliency: channel sums s * saliency = [0.5, 3, -0.2, 0, 0, 0.9], sum 4.2, mean 0.7.
    # Y = sigmoid(1) = 0.7311, O = sigmoid(0.7) = 0.6682: drop = (Y - O) / Y = 0.0860, no increase.
    found = confidence_change(channel_sum(), IMAGE, SALIENCY, 0)
    assert found.original == pytest.approx(sigmoid(1), abs=1e-6)
    assert found.explained == pytest.approx(sigmoid(0.7), abs=1e-6)
    assert found.drop == pytest.approx((sigmoid(1) - sigmoid(0.7)) / sigmoid(1), abs=1e-6)
    assert found.drop == pytest.approx(0.0860, abs=1e-4) and found.increase is False


def test_confidence_increase_by_hand():
    # Keeping everything but pixel 2 (s = -1): sum 7, mean 7/6 > 1, so O > Y: drop 0, an increase.
    saliency = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    found = confidence_change(channel_sum(), IMAGE, saliency, 0)
    assert found.explained == pytest.approx(sigmoid(7 / 6), abs=1e-6)
    assert found.drop == 0.0 and found.increase is True
    # For class 1 the same map lowers the probability: 1 - sigmoid(7/6) < 1 - sigmoid(1).
    other = confidence_change(channel_sum(), IMAGE, saliency, 1)
    assert other.increase is False
    assert other.drop == pytest.approx((sigmoid(7 / 6) - sigmoid(1)) / (1 - sigmoid(1)), abs=1e-6)


def test_pointing_tolerance_scales_15_pixels_at_224():
    assert pointing_tolerance((224, 224)) == 15
    assert pointing_tolerance((112, 112)) == 8  # 7.5, halves rounded up
    assert pointing_tolerance((112, 300)) == 8  # the shorter side
    assert pointing_tolerance((100, 100)) == 7  # 6.70
    assert pointing_tolerance((448, 500)) == 30
    assert pointing_tolerance((32, 32)) == 2  # 2.14


def test_dilation_is_a_disc():
    mask = torch.zeros(7, 7, dtype=torch.bool)
    mask[3, 3] = True
    # dy^2 + dx^2 <= 4: the centre, 4 at distance 1, 4 diagonals (sqrt 2), 4 at distance 2 = 13 pixels;
    # the corners of the 5x5 square, (2, 1) and the like (sqrt 5) are out.
    disc = dilate(mask, 2)
    assert int(disc.sum()) == 13
    assert disc[1, 3] and disc[2, 2] and not disc[1, 2] and not disc[1, 1]
    assert torch.equal(dilate(mask, 0), mask)


def test_dilation_agrees_with_distances_on_a_random_mask():
    mask = torch.rand(17, 23, generator=torch.Generator().manual_seed(3)) > 0.93
    rows, columns = torch.meshgrid(torch.arange(17), torch.arange(23), indexing="ij")
    pixels = torch.stack([rows.flatten(), columns.flatten()], dim=1).float()
    inside = pixels[mask.flatten()]
    nearest = torch.cdist(pixels, inside).min(dim=1).values.reshape(17, 23)
    for radius in (1, 2, 3, 5):
        assert torch.equal(dilate(mask, radius), nearest <= radius), radius


def spot(row: int, column: int, size: int = 9) -> torch.Tensor:
    """A map with its single maximum at (row, column) and some lower values elsewhere."""
    found = torch.linspace(0, 0.5, size * size).reshape(size, size)
    found[row, column] = 1.0
    return found


def object_mask(size: int = 9) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[2:4, 2:5] = True  # rows 2-3, columns 2-4
    return mask


def test_pointing_game_hits_and_misses():
    mask = object_mask()
    assert pointing_game(spot(3, 4), mask, 0).hit  # inside
    assert not pointing_game(spot(5, 4), mask, 1).hit  # two rows below the last mask row
    assert pointing_game(spot(5, 4), mask, 2).hit  # exactly at the tolerance: a hit
    # Diagonal: (5, 6) is sqrt(2^2 + 2^2) = 2.83 from (3, 4): out at 2, in at 3 (a square window of 2 would
    # have let it in).
    assert not pointing_game(spot(5, 6), mask, 2).hit
    assert pointing_game(spot(5, 6), mask, 3).hit
    assert not pointing_game(spot(8, 0), mask, 4).hit


def test_pointing_game_ties_hit_when_any_maximum_is_close():
    far_and_near = spot(8, 8)
    far_and_near[3, 3] = 1.0
    found = pointing_game(far_and_near, object_mask(), 0)
    assert found.hit and found.maxima == 2
    both_far = spot(8, 8)
    both_far[0, 8] = 1.0
    assert pointing_game(both_far, object_mask(), 1) == type(found)(hit=False, maxima=2)


def test_a_constant_map_points_nowhere():
    for value in (0.0, 0.3, 1.0):
        found = pointing_game(torch.full((9, 9), value), object_mask(), 100)
        assert not found.hit and found.maxima == 0


def test_energy_pointing_game_by_hand():
    # Mask: (0, 0) and (1, 2); its bounding box rows 0-1, columns 0-2.
    saliency = torch.tensor([[0.5, 0.25, 0.0, 0.0],
                             [0.0, 0.0, 1.0, 0.25],
                             [0.0, 0.0, 0.0, 0.0],
                             [1.0, 0.0, 0.0, 0.0]])  # total 3
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 0] = mask[1, 2] = True
    found = energy_pointing_game(saliency, mask)
    assert found.mask == pytest.approx(1.5 / 3)  # 0.5 + 1.0
    assert found.box == pytest.approx(1.75 / 3)  # 0.5 + 0.25 + 1.0
    assert bounding_box(mask).sum() == 6
    assert energy_pointing_game(torch.zeros(4, 4), mask).mask == 0.0
    assert energy_pointing_game(torch.zeros(4, 4), mask).box == 0.0


def test_inputs_are_checked():
    model = channel_sum()
    with pytest.raises(InvalidInput, match=r"must be \(H, W\) = \(2, 3\)"):
        deletion_insertion(model, IMAGE, torch.zeros(3, 2), 0, steps=3, batch_size=2)
    with pytest.raises(InvalidInput, match="unknown curve 'erasure'"):
        deletion_insertion(model, IMAGE, SALIENCY, 0, steps=3, batch_size=2, which=["erasure"])
    with pytest.raises(InvalidInput, match="steps must be a positive integer"):
        deletion_insertion(model, IMAGE, SALIENCY, 0, steps=0, batch_size=2)
    with pytest.raises(InvalidInput, match="batch_size must be a positive integer"):
        deletion_insertion(model, IMAGE, SALIENCY, 0, steps=3, batch_size=0)
    with pytest.raises(InvalidInput, match="valid classes are 0 to 1"):
        confidence_change(model, IMAGE, SALIENCY, 2)
    with pytest.raises(InvalidInput, match="NaN"):
        confidence_change(model, IMAGE, torch.full((2, 3), float("nan")), 0)
    with pytest.raises(InvalidInput, match="empty"):
        pointing_game(SALIENCY, torch.zeros(2, 3, dtype=torch.bool), 1)
    with pytest.raises(InvalidInput, match="non-negative map"):
        energy_pointing_game(SALIENCY - 0.5, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(InvalidInput, match="tolerance"):
        pointing_game(SALIENCY, torch.ones(2, 3, dtype=torch.bool), -1)


# A real architecture without weights, fed as the store feeds a CPU model.

@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    from app.demo.render import render
    from app.demo.scenes import sample_scene

    pixels, _ = render(sample_scene(0, "heldout", 3, 64))
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((image - mean[:, None, None]) / std[:, None, None])[None].contiguous(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def gradcam_map(resnet, scene) -> tuple[torch.Tensor, int]:
    result = compute_cams(resnet, scene, "layer4", ["gradcam"], target=None)
    return postprocess(result.maps["gradcam"].raw, size=result.input_size), result.target


def test_batch_size_does_not_change_the_curves(resnet, scene, gradcam_map):
    saliency, target = gradcam_map
    one = deletion_insertion(resnet, scene, saliency, target, steps=20, batch_size=1)
    seven = deletion_insertion(resnet, scene, saliency, target, steps=20, batch_size=7)
    for name in ("deletion", "insertion"):
        assert len(one[name].scores) == 21
        assert one[name].scores == pytest.approx(seven[name].scores, abs=1e-7, rel=1e-5), name
    # The curves are not flat: the test could tell a wrong order from a right one.
    assert max(one["deletion"].scores) - min(one["deletion"].scores) > 1e-4


def test_channels_last_and_contiguous_inputs_agree(resnet, scene, gradcam_map):
    saliency, target = gradcam_map
    last = deletion_insertion(resnet, scene, saliency, target, steps=10, batch_size=4)
    plain = deletion_insertion(resnet, scene.contiguous(), saliency, target, steps=10, batch_size=4)
    for name in ("deletion", "insertion"):
        assert last[name].scores == pytest.approx(plain[name].scores, abs=1e-6, rel=1e-4)
    assert confidence_change(resnet, scene, saliency, target).explained == pytest.approx(
        confidence_change(resnet, scene.contiguous(), saliency, target).explained, abs=1e-6, rel=1e-4)


def test_curve_batches_keep_the_images_memory_format(scene):
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
            return x.mean(dim=(2, 3))

    saliency = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    deletion_insertion(Recorder(), scene, saliency, 0, steps=8, batch_size=4)
    confidence_change(Recorder(), scene, saliency, 0)
    assert seen and all(seen), seen


def test_the_model_is_left_untouched(resnet, scene, gradcam_map):
    saliency, target = gradcam_map
    before = snapshot(resnet)
    deletion_insertion(resnet, scene, saliency, target, steps=4, batch_size=3)
    confidence_change(resnet, scene, saliency, target)
    with pytest.raises(InvalidInput):
        deletion_insertion(resnet, scene, saliency, 1000, steps=4, batch_size=3)
    assert_untouched(resnet, before)


def test_curves_are_frozen_values():
    curve = causal_curve(channel_sum(), IMAGE, torch.zeros_like(IMAGE), SALIENCY, 0, step=3, batch_size=1)
    assert isinstance(curve, Curve) and len(curve.scores) == 3
    with pytest.raises(AttributeError):
        curve.auc = 0.0


def test_confidence_change_agrees_with_pytorch_grad_cam(resnet, scene, gradcam_map):
    pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not importable: install the test extra")
    cam_mult_image = pytest.importorskip("pytorch_grad_cam.metrics.cam_mult_image")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    saliency, target = gradcam_map
    ours = confidence_change(resnet, scene, saliency, target)
    arguments = (scene.contiguous(), saliency.numpy()[None], [ClassifierOutputSoftmaxTarget(target)], resnet)
    change = float(cam_mult_image.CamMultImageConfidenceChange()(*arguments)[0])
    assert abs(ours.explained - ours.original) > 1e-4  # a difference the comparison can see
    assert ours.explained - ours.original == pytest.approx(change, abs=1e-5, rel=1e-3)
    assert ours.drop * ours.original == pytest.approx(float(cam_mult_image.DropInConfidence()(*arguments)[0]),
                                                      abs=1e-5, rel=1e-3)
    assert float(ours.increase) == float(cam_mult_image.IncreaseInConfidence()(*arguments)[0])
