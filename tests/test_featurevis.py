"""Feature visualisation's engine (app/engine/featurevis/): objectives, the Fourier parameterisation and its
constants against hand-computed numbers; a batched rendering in which item i serves unit i; the forward pass
stopped at the layer; the model unchanged and no hook left; the same seed, the same images."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.engine.featurevis import FourierImage, channel, direction, diversity, neuron, render
from app.engine.featurevis.param import MacoImage, frequency_scale
from app.engine.featurevis.prior import LUCID, ImagePrior, estimate_prior
from app.engine.featurevis.render import RenderSettings
from app.engine.hooks import hook_count

A = torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2)  # item 0: channels 0-3, 4-7, 8-11; item 1: 12-23


def test_objectives_by_hand():
    assert channel([0, 2])(A).tolist() == [-1.5, -21.5]  # -mean(0..3), -mean(20..23)
    assert neuron([1, 0])(A).tolist() == [-7.0, -15.0]  # the centre (1, 1) of a 2 x 2 map: its last value
    vectors = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    assert direction(vectors)(A).tolist() == [-(1.5 - 9.5), -2 * 17.5]
    total = channel([0, 2]) + 2 * neuron([1, 0])
    assert total(A).tolist() == [-1.5 - 14.0, -21.5 - 30.0] and "channel" in total.name
    assert (-channel([0, 2]))(A).tolist() == [1.5, 21.5]


def test_diversity_is_the_cosine_similarity_of_gram_matrices_to_the_other_items():
    same = torch.ones(3, 2, 2, 2)
    assert diversity()(same).tolist() == pytest.approx([2.0, 2.0, 2.0])  # two others, each similarity 1
    apart = torch.zeros(2, 2, 1, 1)
    apart[0, 0], apart[1, 1] = 1.0, 1.0  # Gram matrices with disjoint support
    assert diversity()(apart).tolist() == [0.0, 0.0]


def test_the_spectrum_is_scaled_by_one_over_frequency_as_lucid_does():
    scale = frequency_scale((4, 4))  # fy = 0, .25, -.5, -.25; fx = 0, .25, .5; f floored at 1/4
    assert scale[0].tolist() == pytest.approx([4.0, 4.0, 2.0])
    assert scale[1, 1] == pytest.approx(1 / math.sqrt(0.125)) and scale[2, 2] == pytest.approx(1 / math.sqrt(0.5))


def test_the_colour_decorrelation_is_lucids_matrix_with_its_largest_column_of_norm_one():
    svd_sqrt = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    largest = math.sqrt(0.26 ** 2 + 0.27 ** 2 + 0.27 ** 2)  # the first column's norm
    assert torch.allclose(LUCID.color, svd_sqrt / largest)
    assert LUCID.color.norm(dim=0).max() == pytest.approx(1.0)
    assert LUCID.digest == "lucid" and LUCID.magnitude is None


def test_a_prior_estimated_by_hand():
    """Two 2 x 2 images: one pure red, one with green 1 in its top row. Pixel mean (1/2, 1/4, 0); the RGB
    covariance is diag(1/4, 3/16, 0) (red and green never vary together here: red is 1 exactly where green
    is 0, except... computed below from the eight pixels)."""
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    green_top = torch.zeros(3, 2, 2)
    green_top[1, 0] = 1.0
    prior = estimate_prior([red, green_top], "hand")
    pixels = torch.cat([red.reshape(3, -1), green_top.reshape(3, -1)], dim=1).double()
    covariance = torch.cov(pixels, correction=0)
    assert torch.allclose((prior.color @ prior.color.T).double() / (prior.color @ prior.color.T).max(),
                          covariance / covariance.max(), atol=1e-6)  # the square root, up to the scaling
    assert prior.color.norm(dim=0).max() == pytest.approx(1.0)
    assert (prior.color.sum(dim=0) >= 0).all()  # one sign per direction
    # Mean magnitude, ortho: red's DC is 4 / 2 = 2 in channel 0 (half of it per image: 1); green_top's
    # channel 1 has DC 1 and a vertical frequency of magnitude 1.
    assert prior.magnitude[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert prior.magnitude[1].tolist() == [[0.5, 0.0], [0.5, 0.0]]
    assert prior.source == "2 images of hand"
    assert prior.digest == estimate_prior([red, green_top], "again").digest != LUCID.digest


def test_a_maco_image_keeps_the_priors_magnitude_and_optimises_only_the_phase():
    torch.manual_seed(0)
    magnitude = torch.rand(3, 8, 5) + 0.5
    prior = ImagePrior(LUCID.color, magnitude, "test")
    image = MacoImage([3, 4], (8, 8), prior)
    assert [name for name, _ in image.named_parameters()] == ["phase"]
    spectrum = torch.polar(image.magnitude.expand_as(image.phase), image.phase)
    back = torch.fft.rfft2(torch.fft.irfft2(spectrum, s=(8, 8), norm="ortho"), norm="ortho").abs()
    # Bins that are not their own conjugate (not the DC or Nyquist column) keep the prior's magnitude exactly.
    assert torch.allclose(back[:, :, :, 1:4], magnitude[:, :, 1:4].expand(2, 3, 8, 3), atol=1e-5)
    pictures = image()
    assert pictures.shape == (2, 3, 8, 8) and 0 < pictures.min() and pictures.max() < 1
    assert torch.equal(MacoImage([4], (8, 8), prior)(), pictures[1:])  # item i from its own seed
    with pytest.raises(ValueError, match="magnitude spectrum"):
        MacoImage([0], (16, 16), prior)


def test_a_fourier_image_by_hand():
    image = FourierImage([0], (4, 4), decorrelate=False)
    with torch.no_grad():
        image.spectrum.zero_()
        assert torch.equal(image(), torch.full((1, 3, 4, 4), 0.5))  # sigmoid(0)
        image.spectrum[0, 1, 0, 0, 0] = 2.0  # the green channel's DC: 2 * scale 4 / sqrt(16) (ortho) / 4
        assert torch.allclose(image()[0, 1], torch.full((4, 4), 1 / (1 + math.exp(-0.5))))


class Picker(nn.Module):
    """`pick` copies the input's channels (its 1 x 1 weights are the identity); `after` must never run."""

    def __init__(self):
        super().__init__()
        self.pick = nn.Conv2d(3, 3, 1, bias=False)
        self.after = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.pick.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x):
        return self.after(self.pick(x))


@pytest.fixture
def picker() -> nn.Module:
    torch.manual_seed(0)
    return Picker().eval().requires_grad_(False)


PRECISIONS = ["float32", "bfloat16"]  # the pass's; the images, transforms, objective and Adam stay float32
FAST = RenderSettings(steps=40, size=(16, 16), param="pixels", learning_rate=0.1, transforms=False)


def test_item_i_serves_unit_i_and_the_pass_stops_at_the_layer(picker):
    ran_after = []
    handle = picker.after.register_forward_hook(lambda *_: ran_after.append(True))
    try:
        steps = []
        images = render(picker, "pick", channel([0, 1, 2]), [0, 1, 2], FAST, to_input=lambda x: x,
                        progress=lambda done, total: steps.append((done, total)))
    finally:
        handle.remove()
    assert ran_after == [] and steps[-1] == (40, 40) and len(steps) == 40
    means = images.mean(dim=(2, 3))  # (item, channel)
    for unit in range(3):
        assert means[unit, unit] > 0.9  # pushed towards 1 by the sigmoid's gradient
        assert all(means[unit, unit] > means[other, unit] + 0.3 for other in range(3) if other != unit)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_model_is_unchanged_and_no_hook_is_left(picker, precision):
    before = {key: value.clone() for key, value in picker.state_dict().items()}
    render(picker, "pick", channel([0, 1]) + 0.1 * diversity(), [0, 1],
           RenderSettings(steps=3, size=(24, 24), precision=precision), to_input=lambda x: (x - 0.5) / 0.25)
    assert hook_count(picker) == 0 and not picker.training
    assert all(torch.equal(before[key], value) for key, value in picker.state_dict().items())
    assert not any(p.requires_grad or p.grad is not None for p in picker.parameters())


def test_the_same_seed_gives_the_same_images(picker):
    settings = RenderSettings(steps=4, size=(24, 24), seed=7)  # Fourier images and random transforms
    first = render(picker, "pick", neuron([0, 2]), [0, 2], settings, to_input=lambda x: x)
    again = render(picker, "pick", neuron([0, 2]), [0, 2], settings, to_input=lambda x: x)
    other = render(picker, "pick", neuron([0, 2]), [0, 2], RenderSettings(steps=4, size=(24, 24), seed=8),
                   to_input=lambda x: x)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == (2, 3, 24, 24) and 0 < first.min() and first.max() < 1


def test_a_checkpoint_can_stop_the_work(picker):
    class Stop(Exception):
        pass

    calls = []

    def checkpoint():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        render(picker, "pick", channel([0]), [0], FAST, to_input=lambda x: x, checkpoint=checkpoint)
    assert hook_count(picker) == 0


@pytest.mark.parametrize("precision", PRECISIONS)
def test_on_the_demo_cnn_each_rendered_image_drives_its_own_unit_most(tmp_path, precision):
    """Fourier images, Lucid's transforms, the model's own normalisation: after a short optimisation each
    unit answers its own image (in float32) more than the other units' images, whatever the pass's precision."""
    from app.engine.probe import layer_output
    from app.settings import Settings
    from app.store.store import load_store
    from tests.conftest import DEMO_MODELS_ONLY

    model = load_store(Settings(data_dir=tmp_path, device="cpu", **DEMO_MODELS_ONLY)).ready("shapes-cnn")
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (model.card.input.mean, model.card.input.std))
    # Not unit 80: it shares unit 3's features, and unit 3's image drove it as much as its own (a 1.06 margin in
    # float32; below 1 in bfloat16 on a CPU without native bfloat16). These four keep margins of 1.3 or more.
    units = [3, 17, 42, 90]
    with model.lock:
        images = render(model.module, "block3", channel(units), units,
                        RenderSettings(steps=24, size=(64, 64), learning_rate=0.05, precision=precision),
                        to_input=lambda x: model.as_input((x - mean) / std))
        answers = layer_output(model.module, "block3", model.as_input((images - mean) / std))[:, units].mean(dim=(2, 3))
    for i in range(len(units)):  # answers[image, unit]
        assert answers[i, i] > max(answers[j, i] for j in range(len(units)) if j != i), answers


def test_a_batch_of_units_renders_what_each_unit_renders_alone():
    """Same seed: batching never mixes units (each item starts from its own seed, the transforms are drawn
    alike for all, and nothing in the pass couples items)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3)).eval()
    model.requires_grad_(False)
    settings = RenderSettings(steps=6, size=(32, 32), seed=3)  # Fourier images and random transforms
    units = [5, 0, 3]
    batched = render(model, "3", channel(units), units, settings, to_input=lambda x: x)
    for i, unit in enumerate(units):
        alone = render(model, "3", channel([unit]), [unit], settings, to_input=lambda x: x)
        assert torch.allclose(batched[i], alone[0], atol=1e-4), unit


def test_the_pass_stopped_at_the_layer_gives_what_the_full_forward_gives(picker):
    from app.engine.probe import run_to

    x = torch.rand(2, 3, 8, 8)
    full = []
    handle = picker.pick.register_forward_hook(lambda _m, _i, output: full.append(output.clone()))
    try:
        picker(x)
    finally:
        handle.remove()
    assert torch.equal(run_to(picker, "pick", x), full[0])


def one_filter(weight: torch.Tensor) -> nn.Module:
    """A hand-set unit: one convolution with the given (1, 3, k, k) weights, then a ReLU (`"1"`). Without the
    ReLU a zero-mean filter's mean answer would not depend on any pixel away from the border."""
    conv = nn.Conv2d(3, 1, weight.shape[-1], bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return nn.Sequential(conv, nn.ReLU()).eval().requires_grad_(False)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_red_detector_renders_red(precision):
    model = one_filter(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))  # red minus the other two
    image = render(model, "1", channel([0]), [0], RenderSettings(steps=128, size=(48, 48), precision=precision),
                   to_input=lambda x: x)
    red, green, blue = image[0].mean(dim=(1, 2)).tolist()
    assert red > 0.6 and red > max(green, blue) + 0.2, (red, green, blue)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("degrees", [0, 30, 45, 90, 135])
def test_an_oriented_edge_filter_renders_stripes_of_its_orientation(degrees, precision):
    """A 7 x 7 Gabor filter of period 4 px (the same on every colour channel) at `degrees`: in the filter's
    frequency band (periods 3.2 to 5.3 px), the rendered image's dominant orientation lies within 10 degrees
    of the filter's. (Below the band, the 1/f spectrum's slow shading dominates the image.)"""
    angle = math.radians(degrees)
    ys, xs = torch.meshgrid(torch.arange(7.0) - 3, torch.arange(7.0) - 3, indexing="ij")
    along = xs * math.cos(angle) + ys * math.sin(angle)  # the coordinate the filter varies along
    gabor = torch.cos(2 * math.pi * along / 4) * torch.exp(-(xs ** 2 + ys ** 2) / 8)
    model = one_filter((gabor - gabor.mean()).expand(1, 3, 7, 7).clone())
    image = render(model, "1", channel([0]), [0], RenderSettings(steps=96, size=(64, 64), precision=precision),
                   to_input=lambda x: x)
    grey = image[0].mean(dim=0)
    power = torch.fft.fftshift(torch.fft.fft2(grey - grey.mean())).abs()
    fy, fx = torch.meshgrid(torch.arange(64) - 32, torch.arange(64) - 32, indexing="ij")
    power[(fx ** 2 + fy ** 2 < 12 ** 2) | (fx ** 2 + fy ** 2 > 20 ** 2)] = 0  # 64 / 16 = the filter's period
    # The band's dominant orientation: the circular mean of the frequencies' doubled angles (an orientation is
    # defined modulo 180 degrees), weighted by squared power, so that one noisy bin cannot decide it.
    doubled = 2 * torch.atan2(fy.float(), fx.float())
    weight = power ** 2
    sine, cosine = float((weight * doubled.sin()).sum()), float((weight * doubled.cos()).sum())
    found = math.degrees(math.atan2(sine, cosine)) / 2 % 180
    assert min(abs(found - degrees), 180 - abs(found - degrees)) <= 10, found


def test_no_hook_is_left_and_nothing_changes_when_an_objective_fails(picker):
    def broken(_activations):
        raise RuntimeError("an objective that fails")

    from app.engine.featurevis.objectives import Objective

    before = {key: value.clone() for key, value in picker.state_dict().items()}
    with pytest.raises(RuntimeError, match="fails"):
        render(picker, "pick", Objective(broken, "broken"), [0], FAST, to_input=lambda x: x)
    with pytest.raises(RuntimeError, match="channels"):  # an input the model cannot take: it fails in the pass
        render(picker, "after", channel([0]), [0], FAST, to_input=lambda x: x[:, :0])
    assert hook_count(picker) == 0 and not picker.training
    assert all(torch.equal(before[key], value) for key, value in picker.state_dict().items())


class Functional(nn.Module):
    """A model's ReLU written as a call in its forward, as many ResNets write it."""

    def __init__(self, call):
        super().__init__()
        self.call = call

    def forward(self, x):
        return self.call(x)


def relu_in_place_statement(x):
    x.relu_()  # the result unused: the caller relies on x itself
    return x


ACTIVATIONS = {"relu": nn.ReLU(), "relu-inplace": nn.ReLU(inplace=True), "relu6": nn.ReLU6(),
               "relu6-inplace": nn.ReLU6(inplace=True), "F.relu": Functional(F.relu),
               "F.relu-inplace": Functional(lambda x: F.relu(x, inplace=True)), "torch.relu": Functional(torch.relu),
               "x.relu_()": Functional(relu_in_place_statement), "F.relu6": Functional(F.relu6)}


@pytest.mark.parametrize("activation", ACTIVATIONS.values(), ids=ACTIVATIONS.keys())
def test_a_unit_dead_on_the_starting_image_wakes_with_the_redirected_relu(activation):
    """Behind a ReLU (or an EfficientNet-Lite's ReLU6), module or functional call, with a bias of -2, the unit
    is zero on the starting image (about 0.5 everywhere): its own gradient is zero and nothing moves; Lucid's
    redirected gradient moves it (relu.py)."""
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 1.0, 1.0]).view(1, 3, 1, 1))
        conv.bias.fill_(-2.0)
    model = nn.Sequential(conv, activation, nn.Conv2d(1, 1, 1)).eval().requires_grad_(False)
    reached = {}
    for redirect in (False, True):
        settings = RenderSettings(steps=30, size=(16, 16), param="pixels", transforms=False, learning_rate=0.2,
                                  redirect_steps=16 if redirect else 0)
        image = render(model, "1", channel([0]), [0], settings, to_input=lambda x: x)
        reached[redirect] = float(model[:2](image).mean())
    assert reached[False] == 0.0 and reached[True] > 0.5, reached
    assert hook_count(model) == 0


def test_the_redirected_relu_changes_only_the_backward_pass():
    from app.engine.featurevis.relu import redirected_relu

    x = torch.tensor([[-1.0, 2.0], [-3.0, -0.5]], requires_grad=True)  # row 1: every input negative
    out = redirected_relu(x)
    assert torch.equal(out, x.clamp(min=0))
    out.backward(torch.tensor([[1.0, 1.0], [-1.0, 1.0]]))
    # Row 0: some gradient gets through, so the ReLU's own (0 where x < 0). Row 1: none does, so the incoming
    # gradient, except where it would push a negative input lower (+1 on a negative input: descent lowers it).
    assert x.grad.tolist() == [[0.0, 1.0], [-1.0, 0.0]]


def test_the_redirected_relu6_blocks_only_what_pushes_further_out_of_range():
    from app.engine.featurevis.relu import redirected_relu6

    x = torch.tensor([[-1.0, 7.0, 3.0], [-1.0, 7.0, 8.0]], requires_grad=True)  # row 1: nothing in range
    out = redirected_relu6(x)
    assert torch.equal(out, x.clamp(0, 6))
    out.backward(torch.tensor([[1.0, 1.0, 1.0], [-1.0, 1.0, -1.0]]))
    # Row 0: the in-range input passes, so ReLU6's own gradient. Row 1: redirected: the negative input may
    # be pushed up (-1), the capped ones may be pushed down (+1) but not further up (-1 is blocked).
    assert x.grad.tolist() == [[0.0, 0.0, 1.0], [-1.0, 1.0, 0.0]]


def test_facets_cluster_by_pattern_the_top_images_first():
    from app.engine.featurevis.facets import cluster

    vectors = torch.tensor([[1.0, 0.1], [0.0, 3.0], [2.0, 0.0], [0.1, 1.0], [5.0, 0.4]])  # two directions
    labels = cluster(vectors, 2)
    assert labels.tolist() == [0, 1, 0, 1, 0]  # by direction, not length; the top image's facet is 0
    assert torch.equal(cluster(vectors, 2), labels)  # deterministic
    assert cluster(vectors, 4).max() == 3 and len(set(cluster(vectors, 4).tolist())) == 4
    assert cluster(torch.ones(3, 2), 3).tolist() == [0, 0, 0]  # one distinct pattern: one facet


def test_a_negative_objective_renders_the_colour_the_unit_dislikes():
    """Minimised before its ReLU (after it, any image that silences the unit is a minimum, and a silent unit
    has no gradient left to follow)."""
    model = one_filter(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))  # red minus the other two
    image = render(model, "0", -channel([0]), [0], RenderSettings(steps=64, size=(32, 32)), to_input=lambda x: x)
    red, green, blue = image[0].mean(dim=(1, 2)).tolist()
    assert red < 0.4 and red < min(green, blue) - 0.2, (red, green, blue)


@pytest.mark.parametrize("param", ["fft", "pixels"])
def test_a_rendering_started_from_images_begins_at_them(param):
    start = torch.rand(2, 3, 12, 12) * 0.9 + 0.05
    model = one_filter(torch.ones(1, 3, 1, 1))
    unchanged = render(model, "1", channel([0, 0]), [0, 1], RenderSettings(steps=0, size=(12, 12), param=param),
                       to_input=lambda x: x, start=start)
    assert torch.allclose(unchanged, start, atol=1e-5)
