"""Lucid's redirected ReLU gradient (lucid/misc/redirected_relu_grad.py): where a ReLU lets no gradient
through for a whole image (every input to it is negative where the objective looks), its gradient is
redirected, passing the incoming gradient except where it would push an already negative input lower. A
unit that is dead on the starting image then still gets a gradient that wakes it. Only the backward pass
changes; the forward values are the ReLU's. Applied for one rendering at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class _RedirectedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        negative = x < 0
        # Per image: does any of the ReLU's own gradient get through? (amax over all but the batch dimension
        # reads any memory layout in place; no branch, so no device sync on a GPU.)
        passes = grad.masked_fill(negative, 0).abs().amax(dim=tuple(range(1, grad.dim()))) > 0
        passes = passes.view(-1, *[1] * (grad.dim() - 1))
        # The ReLU's gradient where it passes; elsewhere the redirected one, which blocks only the gradient
        # that would push a negative input lower. masked_fill keeps the gradient's memory layout.
        return grad.masked_fill(negative & (passes | (grad > 0)), 0)


redirected_relu = _RedirectedReLU.apply


@contextmanager
def redirected_relus(model: nn.Module) -> Iterator[None]:
    """While the block runs, every `nn.ReLU` module of `model` answers with the redirected ReLU: its `forward`
    is shadowed by an instance attribute, removed on the way out, so the ReLU runs once (not once as itself
    and again redirected) and the module is as it was after. Its hooks, if any, still run."""
    swapped = [module for module in model.modules() if isinstance(module, nn.ReLU) and "forward" not in vars(module)]
    try:
        for module in swapped:
            module.forward = redirected_relu
        yield
    finally:
        for module in swapped:
            vars(module).pop("forward", None)
