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


def bfloat16_pays(device: torch.device, module: torch.nn.Module) -> bool:
    """Whether `module` runs faster in bfloat16 than in float32 on `device`. It needs native bfloat16: a CPU with
    Intel's AMX tiles or AVX-512 BF16 (elsewhere oneDNN emulates it, slower than float32), a CUDA GPU that
    supports it (Ampere and later). On a CPU, only for models without grouped (depthwise) convolutions, whose
    bfloat16 kernels are slower than float32's: measured to the middle of each model here, resnet18 3.2x
    faster, mobilenet_v3_small 1.6x and efficientnet_b0 1.1x slower."""
    if device.type == "cuda":  # compute capability 8 (Ampere) on; is_bf16_supported() also says yes to emulation
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    native = any(getattr(torch.cpu, probe, lambda: False)()  # private probes of torch's own dispatch
                 for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return native and not any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in module.modules())
