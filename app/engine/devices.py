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


def computes_bfloat16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 convolutions natively, several times faster than float32: a CPU with
    Intel's AMX tiles or AVX-512 BF16 (oneDNN's kernels; elsewhere it emulates them, slower than float32), a
    CUDA GPU that supports bfloat16 (Ampere and later)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # private probes of torch's own dispatch; absent from a torch without them
        return any(getattr(torch.cpu, probe, lambda: False)()
                   for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return False
