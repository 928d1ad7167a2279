"""Split a model at a layer, so that Ablation-CAM re-runs only the layers after it.

`torch.fx` traces the model's forward into a graph in which the target layer is one node; the split is
then plain graph bookkeeping: the downstream nodes (those that depend on the layer's output) and the
frontier (nodes before the split whose values downstream nodes read: the skip connections that cross the
layer). The shared forward pass runs the whole graph once and keeps the frontier's values; each ablation
batch then runs only the downstream nodes, with those values expanded to the batch. The graph calls the
model's own submodules, so nothing is copied and nothing about the model changes. A `Program` (what a
`Tail` is built on) runs any traced graph node by node without generating code; `folded.py` runs its
folded graphs with it too.

Tracing fails on data-dependent control flow and on some custom code; `tail_for` then returns None, says
why once per model (`fallbacks.py`), and the caller falls back to re-running the whole model. A graph is
checked once against the model's own forward pass before it is trusted, and kept (weakly, per model and
layer) so that a model is traced at most once per layer.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from app.engine.cam.fallbacks import WHOLE_MODEL_ABLATION, fall_back


class Untraceable(Exception):
    """The model, or its split at a layer, cannot run as a graph; the message says why."""


class _LayerTracer(fx.Tracer):
    """Keeps `layer` (if given) as one call_module node, besides the modules fx keeps whole by default.

    While it traces, fx patches `nn.Module.__call__` and `__getattr__` for the whole process; a forward
    pass of another model running in another thread at that moment would be traced into this graph (and
    fail with "module is not installed as a submodule"). Calls from any other thread go straight through.
    """

    def __init__(self, layer: str | None = None):
        super().__init__()
        self.layer = layer
        self.thread = threading.get_ident()

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name == self.layer or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m, forward, args, kwargs):
        if threading.get_ident() != self.thread:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if threading.get_ident() != self.thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


@dataclass(frozen=True, eq=False)
class Program:
    """A traced graph run node by node over the model's own submodules: no generated code, so building one
    per request leaves nothing behind. Holds the model's submodules and parameters, not the model."""

    nodes: tuple[fx.Node, ...]  # the whole graph, in execution order
    values: dict[str, Any]  # call_module targets -> submodules, get_attr targets -> tensors
    last_use: dict[fx.Node, tuple[fx.Node, ...]]  # node -> the values that can be freed after it ran

    def __call__(self, image: torch.Tensor) -> Any:
        """The model's output on `image`."""
        return self.execute(image, frozenset())[0]

    def execute(self, image: torch.Tensor, keep: frozenset[fx.Node]) -> tuple[Any, dict[fx.Node, Any]]:
        """The output on `image` (autograd as the caller's mode says) and the values of the nodes in `keep`."""
        env: dict[fx.Node, Any] = {}
        kept: dict[fx.Node, Any] = {}
        placeholders = 0
        for node in self.nodes:
            if node.op == "placeholder":
                env[node] = image if placeholders == 0 else node.args[0]
                placeholders += 1
            elif node.op == "output":
                return fx.node.map_arg(node.args[0], env.__getitem__), kept
            else:
                env[node] = self._call(node, env)
            if node in keep:
                kept[node] = _detach(env[node])
            for dead in self.last_use.get(node, ()):
                env.pop(dead, None)
        raise RuntimeError("the traced graph has no output")

    def _call(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        if node.op == "get_attr":
            return self.values[node.target]
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
        if node.op == "call_module":
            return self.values[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        raise RuntimeError(f"unexpected graph node {node.op}")


@dataclass(frozen=True, eq=False)
class Tail(Program):
    """A model's graph split after one layer."""

    layer: fx.Node  # the first call of the target layer
    downstream: tuple[fx.Node, ...]  # the nodes that depend on the layer's output, in order; the output last
    frontier: frozenset[fx.Node]  # upstream nodes read by downstream nodes
    batched: frozenset[fx.Node]  # frontier nodes computed from the input: their batch dimension is expanded

    def forward(self, image: torch.Tensor) -> tuple[Any, dict[fx.Node, Any]]:
        """The model's output on `image` (autograd as the caller's mode says) and the frontier's values."""
        return self.execute(image, self.frontier)

    def run(self, layer_output: torch.Tensor, frontier: dict[fx.Node, Any]) -> Any:
        """The model's output with the layer's output replaced by `layer_output` (n, c, h, w)."""
        n = layer_output.shape[0]
        env = {node: _expand(value, n) if node in self.batched else value for node, value in frontier.items()}
        env[self.layer] = layer_output
        for node in self.downstream:
            if node.op == "output":
                return fx.node.map_arg(node.args[0], env.__getitem__)
            env[node] = self._call(node, env)
            for dead in self.last_use.get(node, ()):
                env.pop(dead, None)
        raise RuntimeError("the traced graph has no output")


_TRACE_LOCK = threading.Lock()  # one trace at a time: two patchers of nn.Module.__call__ would interleave
_TAILS: weakref.WeakKeyDictionary[nn.Module, dict[str, Tail | None]] = weakref.WeakKeyDictionary()


def tail_for(model: nn.Module, layer: str, image: torch.Tensor) -> Tail | None:
    """The model split after `layer`, or None where it cannot be traced or its graph disagrees with the
    model on `image` (checked at the first use only). The caller holds the model's lock."""
    with _TRACE_LOCK:
        known = _TAILS.setdefault(model, {})
        if layer not in known:
            try:
                known[layer] = _checked(_split(model, layer), model, image)
            except Untraceable as reason:
                known[layer] = None
                fall_back(model, WHOLE_MODEL_ABLATION, f"it cannot be split after {layer!r}: {reason}")
        return known[layer]


def traced(model: nn.Module) -> fx.Graph:
    """The model's forward as a graph, its standard layers (convolutions, batch norms, ...) one node each;
    Untraceable where it cannot be traced."""
    with _TRACE_LOCK:
        return _trace(model)


def _trace(model: nn.Module, layer: str | None = None) -> fx.Graph:
    try:
        return _LayerTracer(layer).trace(model)
    except Exception as error:  # any user code can defeat symbolic tracing; the callers fall back
        raise Untraceable(f"torch.fx cannot trace its forward ({type(error).__name__}: {error})") from None


def _split(model: nn.Module, layer: str) -> Tail:
    graph = _trace(model, layer)
    nodes = tuple(graph.nodes)
    layer_node = next((n for n in nodes if n.op == "call_module" and n.target == layer), None)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if layer_node is None:
        raise Untraceable("the layer is not one node of the traced graph (it is called inside another module's "
                          "own code, or more than once)")
    if not placeholders or any(not n.args for n in placeholders[1:]):
        raise Untraceable("its forward takes required inputs besides the image")
    below = _reachable(layer_node)
    downstream = tuple(n for n in nodes if n in below and n is not layer_node)
    if not downstream or downstream[-1].op != "output":
        raise Untraceable("the model's output does not depend on the layer in the traced graph")
    frontier = {source for n in downstream for source in n.all_input_nodes if source not in below}
    frontier.discard(layer_node)
    from_input = _reachable(placeholders[0])
    return Tail(nodes=nodes, layer=layer_node, downstream=downstream, frontier=frozenset(frontier),
                batched=frozenset(n for n in frontier if n in from_input),
                values=graph_values(model, nodes), last_use=last_uses(nodes))


def _checked(tail: Tail, model: nn.Module, image: torch.Tensor) -> Tail:
    try:
        with torch.no_grad():
            expected, (found, _) = model(image), tail.forward(image)
    except Exception as error:
        raise Untraceable(f"its traced graph fails on the image ({type(error).__name__}: {error})") from None
    if not outputs_agree(expected, found):
        raise Untraceable("its traced graph's output differs from the model's own on the image")
    return tail


def outputs_agree(expected: Any, found: Any) -> bool:
    """Same-shaped tensors equal up to the rounding of a different summation order."""
    if not isinstance(expected, torch.Tensor) or not isinstance(found, torch.Tensor):
        return False
    if expected.shape != found.shape:
        return False
    expected, found = expected.float(), found.float()
    tolerance = 1e-3 * float(expected.abs().max()) + 1e-5
    return bool(torch.allclose(found, expected, rtol=1e-3, atol=tolerance))


def _reachable(start: fx.Node) -> set[fx.Node]:
    seen, stack = {start}, [start]
    while stack:
        for user in stack.pop().users:
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return seen


def graph_values(model: nn.Module, nodes: tuple[fx.Node, ...]) -> dict[str, Any]:
    """The model's submodules and attributes that the graph's call_module and get_attr nodes name."""
    modules = dict(model.named_modules())
    values: dict[str, Any] = {}
    for n in nodes:
        if n.op == "call_module":
            values[n.target] = modules[n.target]
        elif n.op == "get_attr":
            values[n.target] = _fetch(model, n.target)
    return values


def last_uses(nodes: tuple[fx.Node, ...]) -> dict[fx.Node, tuple[fx.Node, ...]]:
    last: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        for source in node.all_input_nodes:
            last[source] = node
    freed: dict[fx.Node, list[fx.Node]] = {}
    for source, user in last.items():
        freed.setdefault(user, []).append(source)
    return {user: tuple(sources) for user, sources in freed.items()}


def _fetch(model: nn.Module, target: str) -> Any:
    value: Any = model
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    return value


def _expand(value: Any, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == 1:
        return value.expand(n, *value.shape[1:])
    return value
