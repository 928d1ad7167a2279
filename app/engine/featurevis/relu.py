"""Lucid's redirected ReLU and ReLU6 gradients (lucid/misc/redirected_relu_grad.py): where a ReLU lets no
gradient through for a whole image (every input to it is negative where the objective looks), its gradient
is redirected, passing the incoming gradient except where it would push an input further out of range
(below 0, or above a ReLU6's cap). A unit that is dead on the starting image then still gets a gradient that
wakes it. Only the backward pass changes; the forward values are the activation's. Applied for one
rendering at a time, to every ReLU the model calls: `nn.ReLU` and `nn.ReLU6` modules and the functional calls
(`F.relu`, `torch.relu`, `x.relu_()`, `F.relu6`) of models written as a ResNet often is. A ReLU written as a
clamp (`x.clamp(min=0)`) is not one of them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _RedirectedReLU(torch.autograd.Function):
    """clamp(x, 0, cap): a ReLU (cap = inf) or a ReLU6 (cap = 6), with Lucid's redirected gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cap: float) -> torch.Tensor:
        ctx.save_for_backward(x < 0, x > cap)  # not x itself, which an in-place ReLU then overwrites
        return x.clamp(min=0, max=None if math.isinf(cap) else cap)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        below, above = ctx.saved_tensors
        # Per image: does any of the activation's own gradient get through? (amax over all but the batch
        # dimension reads any memory layout in place; no branch, so no device sync on a GPU.)
        passes = grad.masked_fill(below | above, 0).abs().amax(dim=tuple(range(1, grad.dim()))) > 0
        passes = passes.view(-1, *[1] * (grad.dim() - 1))
        # The activation's own gradient where it passes; elsewhere the redirected one, which blocks only the
        # gradient that would push an input further out of range (Lucid's `redirected_relu6_grad` for the
        # cap). masked_fill keeps the gradient's memory layout.
        blocked = (below & (passes | (grad > 0))) | (above & (passes | (grad < 0)))
        return grad.masked_fill(blocked, 0), None


def redirected_relu(x: torch.Tensor) -> torch.Tensor:
    return _RedirectedReLU.apply(x, math.inf)


def redirected_relu6(x: torch.Tensor) -> torch.Tensor:
    return _RedirectedReLU.apply(x, 6.0)


# The calls that are a ReLU, and those that are one in place; F.relu_ is torch.relu_.
_RELUS = {F.relu, torch.relu, torch.Tensor.relu, F.relu6, F.hardtanh, torch.relu_, torch.Tensor.relu_}
_IN_PLACE = {torch.relu_, torch.Tensor.relu_}


def _cap(func, kwargs: dict) -> float | None:
    """The upper bound of the ReLU that `func` is (inf, or 6 for a ReLU6), or None when it is none."""
    if func is F.hardtanh:  # nn.ReLU6 calls F.hardtanh(x, 0, 6); any other hardtanh is not a ReLU
        return 6.0 if (kwargs.get("min_val"), kwargs.get("max_val")) == (0.0, 6.0) else None
    return 6.0 if func is F.relu6 else math.inf


class _Redirecting(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        cap = _cap(func, kwargs) if func in _RELUS else None
        if cap is None:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs["input"]
        out = _RedirectedReLU.apply(x, cap)
        # In place as asked: a caller may keep using x (`x.relu_(); return x`).
        return x.copy_(out) if func in _IN_PLACE or kwargs.get("inplace") else out


@contextmanager
def redirected_relus() -> Iterator[None]:
    """While the block runs, every ReLU and ReLU6 that any model runs, module or functional call, answers with
    its redirected version (a torch function mode: no module is touched, and their hooks still run)."""
    with _Redirecting():
        yield
