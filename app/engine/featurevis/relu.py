"""Lucid's redirected ReLU gradient (lucid/misc/redirected_relu_grad.py): where a ReLU lets no gradient
through for a whole image (every input to it is negative where the objective looks), its gradient is
redirected, passing the incoming gradient except where it would push an already negative input lower. A
unit that is dead on the starting image then still gets a gradient that wakes it. Only the backward pass
changes; the forward values are the ReLU's. Applied by hooks that live for one rendering."""

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
        relu_grad = torch.where(x < 0, torch.zeros_like(grad), grad)
        redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)
        passes = relu_grad.flatten(1).norm(dim=1) > 0  # per image: did any gradient get through?
        return torch.where(passes.view(-1, *[1] * (grad.dim() - 1)), relu_grad, redirected)


redirected_relu = _RedirectedReLU.apply


@contextmanager
def redirected_relus(model: nn.Module) -> Iterator[None]:
    """While the block runs, every `nn.ReLU` module of `model` answers with the redirected ReLU (an in-place
    one on a copy of its input, so the input's sign survives for the backward pass)."""
    handles, inputs = [], {}

    def keep_input(module, args):
        inputs[module] = args[0]
        return (args[0].clone(),) if module.inplace else None

    def redirect(module, _args, _output):
        return redirected_relu(inputs.pop(module))

    try:
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                handles.append(module.register_forward_pre_hook(keep_input))
                handles.append(module.register_forward_hook(redirect))
        yield
    finally:
        for handle in handles:
            handle.remove()
