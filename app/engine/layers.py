"""Layer discovery: which modules of a model output an (n, c, h, w) map, their shapes, and a sensible
default selection, found with one dry forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from app.engine.hooks import forward_hooks


@dataclass(frozen=True)
class LayerInfo:
    name: str  # the dotted path of `named_modules()`, e.g. "layer4.1.conv2"
    type: str  # the module's class name
    shape: tuple[int, int, int]  # (c, h, w) of its output for one input image
    parameters: int  # parameters of the module and its children
    default: bool  # part of the default selection

    @property
    def units(self) -> int:
        return self.shape[0]


# Containers whose children are a network's stages or blocks: `nn.Sequential`, and the `nn.ModuleList` (or
# `nn.ModuleDict`) that models such as EfficientNet-PyTorch (`_blocks`) loop over in their forward.
_STAGE_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
_NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.LocalResponseNorm)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Hardswish, nn.Hardtanh, nn.Softplus, nn.Tanh, nn.Sigmoid)


def discover_layers(model: nn.Module, example: torch.Tensor) -> tuple[list[LayerInfo], torch.Tensor]:
    """Every module whose output is a 4-d tensor, in the order their outputs are produced (data flow:
    a block's convolutions, then the block, then its stage), plus the model's output on `example`.

    The default selection holds the modules reached from the model through `Sequential` (or `ModuleList`)
    containers only (stages, blocks and the convolutions of plain conv stacks; not the insides of a residual block)
    that are containers or convolutions, with spatial size above 1x1. A convolution that its module follows
    with normalisation and an activation is represented by the activation: its units are what
    the network passes on, and a per-channel affine map would only rescale (or mirror) the same ranking.
    When two selected modules return the very same tensor (a stage and its last block, or a conv-norm-act
    block and its activation), the shallower name is kept: `layer4`, not `layer4.1`.
    """
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}

    def record(name: str, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in outputs:
            outputs[name] = output

    with forward_hooks(model, [name for name in modules if name], record), torch.no_grad():
        result = model(example)

    defaults = _default_selection(modules, outputs)
    layers = [
        LayerInfo(
            name=name,
            type=type(modules[name]).__name__,
            shape=tuple(int(s) for s in output.shape[1:]),
            parameters=sum(p.numel() for p in modules[name].parameters()),
            default=name in defaults,
        )
        for name, output in outputs.items()
    ]
    return layers, result


def _default_selection(modules: dict[str, nn.Module], outputs: dict[str, torch.Tensor]) -> set[str]:
    def reached_through_sequentials(name: str) -> bool:
        parts = name.split(".")
        return all(isinstance(modules[".".join(parts[:i])], _STAGE_CONTAINERS) for i in range(1, len(parts)))

    def is_candidate(name: str) -> bool:
        module = modules[name]
        is_container = next(module.children(), None) is not None
        return (is_container or isinstance(module, _CONVOLUTIONS)) and reached_through_sequentials(name)

    flow = list(outputs)  # data-flow order: the order in which outputs were produced

    def activated(name: str) -> str:
        """The activation that this conv's own module runs right after it (past any norms), else the conv.
        Read off the data flow, not the order of declaration, so a plain module that calls its stem's conv, norm
        and activation in turn (EfficientNet's `_conv_stem`, `_bn0`, `_act0`) is treated as a Sequential is."""
        if not isinstance(modules[name], _CONVOLUTIONS):
            return name
        parent = name.rpartition(".")[0]
        for following in flow[flow.index(name) + 1:]:
            if following.rpartition(".")[0] != parent:
                break
            if isinstance(modules[following], _ACTIVATIONS):
                return following
            if not isinstance(modules[following], _NORMS):
                break
        return name

    chosen = [activated(name) for name, output in outputs.items()
              if output.shape[2] * output.shape[3] > 1 and is_candidate(name)]
    # Keep the shallowest name among modules that return the same tensor object.
    by_tensor: dict[int, str] = {}
    for name in chosen:
        key = id(outputs[name])
        if key not in by_tensor or name.count(".") < by_tensor[key].count("."):
            by_tensor[key] = name
    return set(by_tensor.values())


# Activations that clamp from above: many inputs map to one value, so a unit after them saturates.
_CLAMPS = ("ReLU6", "Hardtanh", "Hardsigmoid")


def clamp_input(layers: list[LayerInfo], name: str) -> str | None:
    """The layer whose output feeds the clamp that produces `name`'s output (the clamp itself, or the
    clamp that ends a block), where its values are not yet capped; None when no clamp ends `name`.

    `layers` is in data-flow order, where a block's last output comes just before the block itself."""
    names = [info.name for info in layers]
    if name not in names:
        return None
    index = names.index(name)
    # Step into the block's last output while it is the block's own (a descendant right before it).
    while layers[index].type not in _CLAMPS and index > 0 and names[index - 1].startswith(names[index] + "."):
        index -= 1
    return names[index - 1] if layers[index].type in _CLAMPS and index > 0 else None
