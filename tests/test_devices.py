"""The device setting: auto picks CUDA when present; an explicit device that is absent is a clear error; what
runs on a device other than the CPU (checked without one where a stand-in shows it)."""

from __future__ import annotations

import pytest
import torch

from app.api.app import create_app
from app.engine.devices import bfloat16_pays, resolve_device
from app.engine.featurevis import FourierImage
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


def test_bfloat16_pays_on_gpus_with_native_bfloat16_only(monkeypatch):
    """Ampere (compute capability 8) and later; torch.cuda.is_bf16_supported() also says yes to emulation, which
    is slower than float32 on a T4 or a V100. Asked of the device given, not of the current one."""
    capability = {torch.device("cuda:0"): (7, 5), torch.device("cuda:1"): (8, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability[torch.device(device)])
    model = torch.nn.Conv2d(3, 4, 3)
    assert not bfloat16_pays(torch.device("cuda:0"), model)
    assert bfloat16_pays(torch.device("cuda:1"), model)


def test_a_fourier_image_starts_on_the_device_of_its_start():
    """Its 1/f scale is made on the CPU and divides a spectrum on the start's device (PyTorch's meta device stands
    in for a GPU: its operations check devices as CUDA's do, without computing)."""
    start = torch.rand(1, 3, 8, 8, device="meta")
    image = FourierImage([0], (8, 8), start=start)
    assert image.spectrum.device.type == "meta"
