"""Scoped hooks: registered for exactly one call and removed on every exit path.

Never tie a hook's life to an object's (pytorch-grad-cam's most reported bug: hooks that outlive their
call leak memory and slow every later forward, jacobgil/pytorch-grad-cam#132, #88, #483).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def forward_hooks(model: nn.Module, names: list[str], callback: Callable[[str, object], None]) -> Iterator[None]:
    """Call `callback(name, output)` after each named module's forward, while the block runs."""
    modules = dict(model.named_modules())
    handles = []
    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(
                lambda _module, _inputs, output, name=name: callback(name, output)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def hook_count(model: nn.Module) -> int:
    """Hooks currently registered on any module of `model` (tests assert this returns to zero)."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, kind)) for module in model.modules() for kind in kinds)
