"""Agreement with pytorch-grad-cam (PyPI `grad-cam`, a test extra) on a torchvision ResNet-18 with random
weights (seed 0) and a rendered demo scene as input.

Maps are compared as pytorch-grad-cam returns them (ReLU, min-max scaled, resized like cv2.resize) against
`postprocess` of Fovea's raw maps, by Pearson's r. The deliberate differences are tested explicitly:
EigenCAM's sign (the library keeps numpy's arbitrary one; Fovea orients it), Score-CAM's channel weights
(the library's softmax over channels, computed here by a variant registered for the test only).
The library mutates models (AblationCAM swaps a layer; all of it calls `.eval()`), so it gets a copy.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import torchvision

from app.demo.render import render
from app.demo.scenes import sample_scene
from app.engine.cam import METHODS, compute_cams, postprocess
from app.engine.cam.ablation import AblationCAM
from app.engine.cam.capture import capture
from app.engine.cam.score import ScoreCAM
from app.engine.probe import layer_output

LIBRARY_CLASSES = {
    "gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM",
    "layercam": "LayerCAM", "eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM", "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}


@functools.cache
def gradcam_lib():
    """pytorch-grad-cam, imported by the tests that use it (with scikit-learn, 2 s): a worker that collects this
    module but runs none of them never pays for it."""
    return pytest.importorskip(
        "pytorch_grad_cam", reason="pytorch-grad-cam is not importable: install the test extra (pip install -e "
        "'.[test]'; it pulls grad-cam and opencv-python-headless, which needs no libGL)")


GRADIENT_FAMILY = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def scene(size: int) -> torch.Tensor:
    """A rendered demo scene (textured shapes on a textured background), ImageNet-normalised, channels-last
    as the store feeds CPU models."""
    pixels, _ = render(sample_scene(0, "heldout", 3, size))
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    image = (image - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return image[None].contiguous(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval().requires_grad_(False)


def library_map(model: torch.nn.Module, method: str, layer: str, image: torch.Tensor, target: int,
                **attributes) -> np.ndarray:
    """The library's map, used as its documentation shows, on a copy of the model. The served model's
    parameters are frozen, so the input requires grad for the gradient methods to have a graph."""
    library_class = getattr(gradcam_lib(), LIBRARY_CLASSES[method])  # skips the test first when it is absent
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(model)
    with library_class(model=model, target_layers=[dict(model.named_modules())[layer]]) as cam:
        for name, value in attributes.items():
            setattr(cam, name, value)
        return cam(input_tensor=image.clone().requires_grad_(True), targets=[ClassifierOutputTarget(target)])[0]


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel())[0, 1])


def ours(raw: torch.Tensor, size: tuple[int, int], sign: float = 1.0) -> np.ndarray:
    return postprocess(sign * raw, size=size).numpy()


@pytest.fixture(scope="module")
def gradient_family(resnet18):
    image = scene(224)
    return image, compute_cams(resnet18, image, "layer4", GRADIENT_FAMILY)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam"])
def test_gradient_methods_agree(resnet18, gradient_family, method):
    image, result = gradient_family
    expected = library_map(resnet18, method, "layer4", image, result.target)
    assert pearson(ours(result.maps[method].raw, (224, 224)), expected) >= 0.99


@pytest.mark.parametrize("method", ["eigencam", "eigengradcam"])
def test_eigen_methods_agree_up_to_the_sign(resnet18, gradient_family, method):
    """The principal component has no sign; the library keeps numpy's, Fovea orients the map to correlate
    positively with the channel sum of what it decomposes. Compare with the library's sign."""
    image, result = gradient_family
    expected = library_map(resnet18, method, "layer4", image, result.target)
    raw = result.maps[method].raw
    assert max(pearson(ours(raw, (224, 224), sign), expected) for sign in (1.0, -1.0)) >= 0.99
    if method == "eigencam":
        summed = layer_output(resnet18, "layer4", image)[0].sum(dim=0)
        assert pearson(raw, summed) > 0  # Fovea's documented orientation


class LibraryScoreCAM(ScoreCAM):
    """pytorch-grad-cam's weighting: a softmax over channels of the target's raw logits, instead of the
    paper's per-channel softmax probability of the target."""

    id = "scorecam-library"

    def channel_weights(self, logits: torch.Tensor, target: int) -> torch.Tensor:
        return logits[:, target].softmax(dim=0)


def check_score_cam(model, image, layer, monkeypatch, batch_size: int = 32) -> None:
    monkeypatch.setitem(METHODS, LibraryScoreCAM.id, LibraryScoreCAM())
    result = compute_cams(model, image, layer, [LibraryScoreCAM.id], score_batch_size=batch_size)
    size = tuple(image.shape[2:])
    expected = library_map(model, "scorecam", layer, image, result.target, batch_size=batch_size)
    assert pearson(ours(result.maps[LibraryScoreCAM.id].raw, size), expected) >= 0.99


def check_ablation_cam(model, image, layer) -> None:
    result = compute_cams(model, image, layer, ["ablationcam"])
    assert result.split  # ran only the layers after `layer`
    expected = library_map(model, "ablationcam", layer, image, result.target)
    assert pearson(ours(result.maps["ablationcam"].raw, tuple(image.shape[2:])), expected) >= 0.99


class LibraryAblationCAM(AblationCAM):
    """pytorch-grad-cam's ablation value: 0 on a layer whose minimum is 0, else far below the minimum (the
    library lowers it by a further 1e7 per channel of a batch; any of these is -inf to a following ReLU)."""

    id = "ablationcam-library"

    def ablated_value(self, activations: torch.Tensor) -> float:
        low = float(activations.min())
        return 0.0 if low == 0 else low - 1e7


def test_ablation_cam_agrees_with_the_library_ablation_value_on_a_signed_layer(resnet18, monkeypatch):
    """layer2.0.conv2 is signed (then a norm, the residual sum and a ReLU): there the library's value and
    the paper's 0 differ, and the library-rule variant agrees with the library. (Not bn2: the block adds
    the shortcut into bn2's output in place, which rewrites what the library captured, captum#156.)"""
    monkeypatch.setitem(METHODS, LibraryAblationCAM.id, LibraryAblationCAM())
    image = scene(112)
    result = compute_cams(resnet18, image, "layer2.0.conv2", [LibraryAblationCAM.id, "ablationcam"])
    expected = library_map(resnet18, "ablationcam", "layer2.0.conv2", image, result.target)
    assert pearson(ours(result.maps[LibraryAblationCAM.id].raw, (112, 112)), expected) >= 0.99
    assert not torch.allclose(result.maps[LibraryAblationCAM.id].raw, result.maps["ablationcam"].raw)


def test_score_cam_agrees_with_the_library_weighting(resnet18, monkeypatch):
    check_score_cam(resnet18, scene(112), "layer2", monkeypatch)  # 128 channels: fast enough for every run


def test_ablation_cam_agrees(resnet18):
    check_ablation_cam(resnet18, scene(112), "layer2")


@pytest.mark.slow
def test_score_cam_agrees_on_layer4_at_224(resnet18, monkeypatch):
    check_score_cam(resnet18, scene(224), "layer4", monkeypatch)


@pytest.mark.slow
def test_ablation_cam_agrees_on_layer4_at_224(resnet18):
    check_ablation_cam(resnet18, scene(224), "layer4")


def test_guided_backprop_and_guided_gradcam_agree(resnet18):
    """Fovea's guided gradient (tensor hooks, model untouched) against the library's (ReLU modules swapped
    for a custom autograd function, on a copy). Guided Grad-CAM multiplies it by the rectified Grad-CAM map,
    as the paper does; the library's documented recipe multiplies by its min-max-scaled map instead, which
    subtracts the minimum when the whole map is positive. So the product is checked with the library's
    guided gradient and Fovea's Grad-CAM, which is checked against the library's on its own."""
    image = scene(112)
    shared = capture(resnet18, "layer4", image, None, gradients=True, input_gradient=False, guided=True, tail=None)
    target = shared.evidence.target
    library_guided = np.abs(gradcam_lib().GuidedBackpropReLUModel(copy.deepcopy(resnet18), device="cpu")(
        image.clone(), target_category=target)).max(axis=2)  # (H, W, 3) -> (H, W)
    assert pearson(shared.evidence.guided_gradient.abs().amax(dim=0), library_guided) >= 0.99
    result = compute_cams(resnet18, image, "layer4", ["gradcam", "guided-gradcam"], target=target)
    gradcam = result.maps["gradcam"].raw
    assert pearson(ours(gradcam, (112, 112)), library_map(resnet18, "gradcam", "layer4", image, target)) >= 0.99
    expected = library_guided * postprocess(gradcam, size=(112, 112), normalize=False).numpy()
    assert pearson(result.maps["guided-gradcam"].raw, expected) >= 0.99


def test_upsampling_matches_cv2_resize():
    cv2 = pytest.importorskip("cv2")
    raw = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    expected = cv2.resize(raw.numpy(), (96, 64), interpolation=cv2.INTER_LINEAR)  # cv2 sizes are (w, h)
    found = postprocess(raw, size=(64, 96), relu=False, normalize=False).numpy()
    assert np.allclose(found, expected, atol=1e-5)
