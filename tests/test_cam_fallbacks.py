"""The engine's slower paths say so: a model Ablation-CAM cannot split, or whose batch norms cannot be
folded for Score-CAM, is logged once per model at warning level with the reason; a model with nothing to
fold only at info level (it is already as fast as folding could make it)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from app.engine.cam import compute_cams
from app.engine.cam.fallbacks import UNFOLDED, WHOLE_MODEL_ABLATION
from app.engine.cam.folded import folded_forward

LOGGER = "app.engine.cam.fallbacks"


class Branching(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.bn(self.conv(x))
        if x.sum() > 0:
            x = x * 2
        return self.fc(x.mean(dim=(2, 3)))


class FixedBatch(nn.Module):
    """Traces, but reads the batch size before the layer: its split keeps the shared pass's 1 and cannot run a
    batch of ablated copies (the whole model can)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        n = x.shape[0]
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)).reshape(n, -1))


class Plain(nn.Module):
    """No batch norm, one narrow convolution: nothing to fold or convert."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def said(caplog, path: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.getMessage().startswith(path)]


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_a_model_that_cannot_be_traced_is_named_once_for_each_slower_path(caplog, image):
    torch.manual_seed(0)
    model = Branching().eval()
    caplog.set_level(logging.INFO, logger=LOGGER)
    for _ in range(2):
        result = compute_cams(model, image, "conv", ["ablationcam"], ablation_batch_size=2)
        assert not result.split
        assert folded_forward(model, image) is model
    ablation, unfolded = said(caplog, WHOLE_MODEL_ABLATION), said(caplog, UNFOLDED)
    assert len(ablation) == 1 and len(unfolded) == 1  # once per model, however many requests
    assert ablation[0].levelno == unfolded[0].levelno == logging.WARNING
    assert "Branching" in ablation[0].getMessage() and "cannot be split after 'conv'" in ablation[0].getMessage()
    assert "torch.fx cannot trace" in unfolded[0].getMessage()
    compute_cams(Branching().eval(), image, "conv", ["ablationcam"], ablation_batch_size=2)
    assert len(said(caplog, WHOLE_MODEL_ABLATION)) == 2  # another model is told about on its own


def test_a_split_that_cannot_run_batches_is_named(caplog, image):
    torch.manual_seed(0)
    caplog.set_level(logging.INFO, logger=LOGGER)
    result = compute_cams(FixedBatch().eval(), image, "conv", ["ablationcam"], ablation_batch_size=2)
    assert not result.split
    [record] = said(caplog, WHOLE_MODEL_ABLATION)
    assert record.levelno == logging.WARNING and "does not run a batch" in record.getMessage()


def test_a_model_with_nothing_to_fold_is_only_noted(caplog, image):
    torch.manual_seed(0)
    model = Plain().eval()
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert folded_forward(model, image) is model
    [record] = said(caplog, UNFOLDED)
    assert record.levelno == logging.INFO and "no batch norm" in record.getMessage()


def test_a_model_that_splits_and_folds_says_nothing(caplog, image):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 3)).eval()
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert compute_cams(model, image, "0", ["ablationcam"], ablation_batch_size=4).split
    assert folded_forward(model, image) is not model
    assert said(caplog, WHOLE_MODEL_ABLATION) == [] and said(caplog, UNFOLDED) == []
