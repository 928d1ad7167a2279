"""Turn the `device` setting into a torch device."""

from __future__ import annotations

import torch

from app.errors import FoveaError


def resolve_device(setting: str) -> torch.device:
    """`auto` picks CUDA when present (then Apple's MPS), else the CPU; an explicit device must exist."""
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FoveaError(f"device {setting!r} was asked for but CUDA is not available; use device=auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise FoveaError(f"device {setting!r} does not exist: {torch.cuda.device_count()} CUDA device(s) found")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FoveaError("device 'mps' was asked for but MPS is not available; use device=auto or cpu")
    return device
