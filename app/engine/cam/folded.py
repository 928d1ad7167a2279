"""The model with each batch norm folded into the convolution before it and, on the CPU, its wide 3x3
convolutions computed by Winograd's algorithm (`winograd.py`), for the many inference passes of Score-CAM
and of the deletion and insertion curves.

In eval mode a batch norm is a per-channel affine map, so a convolution followed by one is a single
convolution with scaled weights and a shifted bias: the same function, without a pass over every
activation (Score-CAM on resnet18 on a CPU: about 6% less time on average, docs/benchmarks.md). The
model's traced graph is kept (weakly, per model); the folded and converted convolutions are built per
request, computed in float32 whatever the model's dtype, and go with the request, so a served model never
holds a second copy of its weights (nor the Winograd filters, 4x the weights of the layers they replace).
The folded graph runs as a `Program` (`tail.py`): node by node over the model's own modules, with no
generated code left behind per request. No parameter, buffer, mode or submodule of the model changes.

Where the model cannot be traced, has nothing to fold or convert, or its folded graph fails or disagrees
with it on the image at hand, the model itself runs, and the log says why once per model.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from app.engine.cam.fallbacks import UNFOLDED, fall_back
from app.engine.cam.tail import Program, Untraceable, graph_values, last_uses, outputs_agree, traced
from app.engine.cam.winograd import WinogradConv2d, every_call, winograd_applies

Forward = Callable[[torch.Tensor], torch.Tensor]

_GRAPHS: weakref.WeakKeyDictionary[nn.Module, fx.Graph | None] = weakref.WeakKeyDictionary()
_GRAPHS_LOCK = threading.Lock()


def folded_forward(model: nn.Module, image: torch.Tensor) -> Forward:
    """A function of a batch of inputs that gives the model's output, batch norms folded and convolutions
    converted where they can be; checked against the model on `image` (1, c, H, W), the converted ones by
    Winograd even at that size, and `model` itself where folding fails or finds nothing. The caller holds
    the model's lock."""
    with _GRAPHS_LOCK:
        if model not in _GRAPHS:
            try:
                _GRAPHS[model] = traced(model)
            except Untraceable as reason:
                _GRAPHS[model] = None
                fall_back(model, UNFOLDED, str(reason))
        graph = _GRAPHS[model]
    if graph is None:
        return model
    try:
        folded = _fold(model, graph, image.device)
        if folded is None:  # not a failure: the model is as fast as folding could make it
            fall_back(model, UNFOLDED, "it has no batch norm after a convolution to fold, and no convolution that "
                      "Winograd's algorithm suits here", level=logging.INFO)
            return model
        converted = (m for m in folded.values.values() if isinstance(m, WinogradConv2d))
        with torch.inference_mode(), every_call(converted):  # one image would be too small for Winograd
            agrees = outputs_agree(model(image), folded(image))
    except Exception as error:  # user code that traced can still fail on real inputs, or on a folded copy
        fall_back(model, UNFOLDED, f"its folded graph fails on the image ({type(error).__name__}: {error})")
        return model
    if not agrees:
        fall_back(model, UNFOLDED, "its folded graph's output differs from the model's own on the image")
    return folded if agrees else model


def _fold(model: nn.Module, graph: fx.Graph, device: torch.device) -> Program | None:
    """A copy of the graph in which each (convolution, batch norm) pair is one folded convolution and each
    convolution that Winograd's algorithm suits on `device` is computed by it, or None where neither applies."""
    folded = fx.Graph()
    folded.output(folded.graph_copy(graph, {}))
    modules = dict(model.named_modules())
    replacements: dict[str, nn.Module] = {}
    for node in list(folded.nodes):
        source = node.args[0] if node.op == "call_module" and len(node.args) == 1 and not node.kwargs else None
        conv = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        if conv is None or len(source.users) != 1 or not _foldable(conv, modules.get(node.target)):
            continue
        name = f"<folded {len(replacements)}>"  # never a module path: the names have no brackets
        replacements[name] = _fused(conv, modules[node.target])
        with folded.inserting_after(source):
            fused = folded.call_module(name, source.args, source.kwargs)
        node.replace_all_uses_with(fused)
        folded.erase_node(node)
        folded.erase_node(source)
    nodes = tuple(folded.nodes)
    kept = tuple(n for n in nodes if not (n.op == "call_module" and n.target in replacements))
    values = {**graph_values(model, kept), **replacements}
    converted = {name: WinogradConv2d(conv) for name, conv in values.items() if winograd_applies(conv, device)}
    if not replacements and not converted:
        return None
    return Program(nodes=nodes, values={**values, **converted}, last_use=last_uses(nodes))


def _foldable(conv: nn.Module, norm: nn.Module | None) -> bool:
    """A plain convolution, read only by a batch norm in eval mode with running statistics."""
    return (type(conv) is nn.Conv2d and not conv.training and type(norm) is nn.BatchNorm2d and not norm.training
            and norm.running_mean is not None and norm.running_var is not None)


def _fused(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """conv then norm as one convolution: weights scaled by gamma / sqrt(var + eps), bias shifted; computed
    in float32 (a half-precision model's own arithmetic would round the scale) and stored in conv's dtype."""
    def as_float(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.detach().float()

    weight, bias = fuse_conv_bn_weights(as_float(conv.weight), as_float(conv.bias), as_float(norm.running_mean),
                                        as_float(norm.running_var), norm.eps, as_float(norm.weight),
                                        as_float(norm.bias))
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, True, conv.padding_mode, device="meta").eval()
    fused.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    fused.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    return fused
