"""Which memory layout a model's batches should be fed in.

On the CPU, PyTorch's oneDNN convolutions run 20 to 35% faster on channels-last tensors (measured on
resnet50 and both demo models, docs/benchmarks.md), and a channels-last input keeps every following
convolution, norm and activation channels-last without touching the weights. Not every model accepts
it: code that calls `.view` on a convolution's output needs a contiguous tensor. So a model gets
channels-last only if a trial forward pass succeeds and gives the same output.
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUT_CHOICES = ("auto", "channels_last", "contiguous")


def choose_memory_format(module: nn.Module, example: torch.Tensor, setting: str) -> torch.memory_format:
    """The memory format to give `module` its input batches in. `setting`: `contiguous` never changes
    anything; `channels_last` uses it wherever the model accepts it; `auto` does so on the CPU only, the one
    device where it was measured to be faster for every model tried. `example`: (n, 3, h, w) input on
    the model's device; the caller holds the model's lock."""
    if setting not in LAYOUT_CHOICES:
        raise ValueError(f"unknown layout setting {setting!r}; use one of {', '.join(LAYOUT_CHOICES)}")
    wanted = setting == "channels_last" or (setting == "auto" and example.device.type == "cpu")
    if not wanted or not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return torch.contiguous_format
    with torch.no_grad():
        reference = module(example)
        try:
            trial = module(example.contiguous(memory_format=torch.channels_last))
        except RuntimeError:  # e.g. `.view` on a channels-last tensor
            return torch.contiguous_format
    if not isinstance(trial, torch.Tensor) or trial.shape != reference.shape:
        return torch.contiguous_format
    # The two layouts sum in different orders; anything beyond rounding means layout-dependent code.
    tolerance = 1e-3 * float(reference.abs().max()) + 1e-5
    if not torch.allclose(trial.float(), reference.float(), rtol=1e-3, atol=tolerance):
        return torch.contiguous_format
    return torch.channels_last
