"""Lucid's redirected ReLU and ReLU6 gradients (lucid/misc/redirected_relu_grad.py): where a ReLU lets no
gradient through for a whole image (every input to it is negative where the objective looks), its gradient
is redirected, passing the incoming gradient except where it would push an input further out of range
(below 0, or above a ReLU6's cap). A unit that is dead on the starting image then still gets a gradient that
wakes it. Only the backward pass changes; the forward values are the activation's. Applied for one
rendering at a time."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class _RedirectedReLU(torch.autograd.Function):
    """clamp(x, 0, cap): a ReLU (cap = inf) or a ReLU6 (cap = 6), with Lucid's redirected gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cap: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.cap = cap
        return x.clamp(min=0, max=None if math.isinf(cap) else cap)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        below, above = x < 0, x > ctx.cap
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


@contextmanager
def redirected_relus(model: nn.Module) -> Iterator[None]:
    """While the block runs, every `nn.ReLU` and `nn.ReLU6` module of `model` answers with its redirected
    version: its `forward` is shadowed by an instance attribute, removed on the way out, so it runs once (not
    once as itself and again redirected) and the module is as it was after. Its hooks, if any, still run."""
    swapped = [module for module in model.modules()
               if isinstance(module, (nn.ReLU, nn.ReLU6)) and "forward" not in vars(module)]
    try:
        for module in swapped:
            module.forward = redirected_relu6 if isinstance(module, nn.ReLU6) else redirected_relu
        yield
    finally:
        for module in swapped:
            vars(module).pop("forward", None)
