"""The device setting: auto picks CUDA when present; an explicit device that is absent is a clear error."""

from __future__ import annotations

import pytest
import torch

from app.api.app import create_app
from app.engine.devices import resolve_device
from app.errors import FoveaError
from app.settings import Settings


def test_auto_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so cuda is not absent")
def test_absent_cuda_is_refused_before_serving(tmp_path):
    with pytest.raises(FoveaError, match="CUDA is not available"):
        create_app(Settings(device="cuda", data_dir=tmp_path))
    with pytest.raises(FoveaError, match="CUDA is not available"):
        resolve_device("cuda:1")
