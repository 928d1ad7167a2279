"""The input memory layout: channels-last only for models that accept it and give the same answer, and
an index build in either layout ranks the same images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.atlas.reader import Atlas
from app.demo.dataset import write_split
from app.engine.layout import choose_memory_format
from app.settings import Settings
from app.store.store import load_store
from tests.conftest import DEMO_MODELS_ONLY

EXAMPLE = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class ViewsAfterConv(nn.Module):
    """Old-style code: `.view` needs a contiguous tensor, so channels-last raises."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 30 * 30, 5)

    def forward(self, x):
        return self.fc(self.conv(x).view(x.shape[0], -1))


class ReadsRawMemory(ViewsAfterConv):
    """Runs in either layout but reads the storage in memory order, so the answer depends on the layout."""

    def forward(self, x):
        out = self.conv(x)
        return self.fc(out.as_strided((out.shape[0], out[0].numel()), (out[0].numel(), 1)))


class NoConvolution(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_a_torchvision_model_gets_channels_last_on_the_cpu():
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    assert choose_memory_format(model, EXAMPLE, "auto") == torch.channels_last
    assert choose_memory_format(model, EXAMPLE, "channels_last") == torch.channels_last
    assert choose_memory_format(model, EXAMPLE, "contiguous") == torch.contiguous_format


@pytest.mark.parametrize("model", [ViewsAfterConv(), ReadsRawMemory(), NoConvolution()],
                         ids=["view-raises", "layout-dependent-answer", "no-convolution"])
def test_models_that_do_not_accept_channels_last_stay_contiguous(model):
    assert choose_memory_format(model.eval(), EXAMPLE, "channels_last") == torch.contiguous_format


def test_an_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="unknown layout setting 'nhwc'"):
        choose_memory_format(NoConvolution(), EXAMPLE, "nhwc")


def test_index_builds_in_both_layouts_rank_the_same_images(tmp_path):
    write_split(tmp_path / "demo", "heldout", 40)
    dataset = scan_folder(tmp_path / "demo" / "heldout" / "images")
    atlases = {}
    for layout in ("channels_last", "contiguous"):
        settings = Settings(data_dir=tmp_path / layout, device="cpu", index_batch_size=16, index_workers=0,
                            auto_index_demo=False, memory_layout=layout, **DEMO_MODELS_ONLY)
        model = load_store(settings).ready("shapes-cnn")
        assert model.memory_format == getattr(torch, layout if layout == "channels_last" else "contiguous_format")
        atlases[layout] = Atlas(index_model(model, dataset, settings, layers=["stem.0", "block3"], k=5))
    fast, plain = atlases["channels_last"], atlases["contiguous"]
    assert fast.meta["layout"] == "channels_last" and plain.meta["layout"] == "contiguous"
    for name in ("stem.0", "block3"):
        layer_fast, layer_plain = fast.layer(name), plain.layer(name)
        for unit in range(layer_fast.units):
            top_fast, top_plain = fast.top_images(layer_fast, unit), plain.top_images(layer_plain, unit)
            values = [row["value"] for row in top_plain]
            assert np.allclose([row["value"] for row in top_fast], values, rtol=1e-4, atol=1e-5)
            if len(set(np.round(values, 3))) == len(values):  # no near-ties that rounding could reorder
                assert [row["image"] for row in top_fast] == [row["image"] for row in top_plain], (name, unit)
