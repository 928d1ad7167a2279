"""The shared pass: one forward and at most one backward for every requested method, with hooks that live
for this call only and are removed on every exit path (Captum's try/finally; never object lifetime,
pytorch-grad-cam #132, #88, #483).

- Capture by copy: the layer's hook hands the rest of the network a clone of the output, so a following
  `ReLU(inplace=True)` rewrites the clone, not the captured tensor (pytorch/captum#156).
- Gradients come from `torch.autograd.grad` on the captured output (and on a copy of the input that
  requires grad), never from module backward hooks, which break on in-place ops (pytorch/pytorch#61519),
  and never into any parameter's `.grad`: the served model's parameters stay frozen.
- When no method needs the input gradient, the captured output is detached into a fresh leaf: autograd
  records only the layers after the target layer.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from app.engine.cam.base import Evidence
from app.engine.cam.tail import Tail
from app.errors import InvalidInput


@contextmanager
def output_hook(module: nn.Module, replace: Callable[[Any], Any]) -> Iterator[None]:
    """While the block runs, `replace(output)` is called after each forward of `module`; a value it returns
    other than None becomes the module's output."""
    handle = module.register_forward_hook(lambda _module, _inputs, output: replace(output))
    try:
        yield
    finally:
        handle.remove()


class _Guide:
    """Guided backpropagation without touching the model (Springenberg et al. 2015).

    pytorch-grad-cam swaps every ReLU module for a custom autograd function and swaps it back afterwards,
    which mutates the served model and races with any concurrent user. Here a forward hook on each
    `nn.ReLU` registers a tensor hook on that call's output; the hook clamps the incoming gradient to be
    non-negative only while `on` is set. The ReLU's own backward then applies its (input > 0) mask, so a
    backward with `on` set gives guided backpropagation, and the shared backward (with `on` unset) is
    untouched. The tensor hooks belong to this call's autograd graph and go with it; the module hooks are
    removed when the block exits. ReLUs written as functions (`F.relu`) are not guided, as in pytorch-grad-cam.
    """

    def __init__(self):
        self.on = False

    def _clamp(self, grad: torch.Tensor) -> torch.Tensor | None:
        return grad.clamp(min=0) if self.on else None

    def _on_output(self, _module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._clamp)

    @contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        handles = []
        try:
            for module in model.modules():
                if isinstance(module, nn.ReLU):
                    handles.append(module.register_forward_hook(self._on_output))
            yield
        finally:
            for handle in handles:
                handle.remove()


@dataclass(frozen=True)
class Shared:
    """The shared pass's result: what methods read, and what re-runs need."""

    evidence: Evidence
    frontier: dict | None  # the split model's upstream values (tail.py), when the pass ran through the graph
    layer_dtype: torch.dtype
    layer_memory_format: torch.memory_format


def capture(model: nn.Module, layer: str, image: torch.Tensor, target: int | None, *, gradients: bool,
            input_gradient: bool, guided: bool, tail: Tail | None) -> Shared:
    """Run the model once on `image` (1, c, H, W), capturing the first output of the module named `layer`;
    differentiate the target's logit once (twice with `guided`). `tail`: run the forward through the split
    graph, keeping its frontier values for Ablation-CAM. The caller holds the model's lock."""
    found = _shared_pass(model, layer, image, [target], gradients=gradients, input_gradient=input_gradient,
                         guided=guided, tail=tail)
    return Shared(evidence=found.evidence(0), frontier=found.frontier, layer_dtype=found.source.dtype,
                  layer_memory_format=memory_format_of(found.source))


def capture_batch(model: nn.Module, layer: str, images: torch.Tensor, targets: list[int | None], *,
                  gradients: bool, input_gradient: bool, guided: bool) -> list[Evidence]:
    """`capture` of n images (n, c, H, W) at once, each with its own target: one forward and one backward
    (two with `guided`) for all. The images do not interact (the model is in eval mode), so each image's
    evidence is what `capture` alone gives, within the rounding of kernels chosen by batch size."""
    found = _shared_pass(model, layer, images, targets, gradients=gradients, input_gradient=input_gradient,
                         guided=guided, tail=None)
    return [found.evidence(i) for i in range(len(targets))]


@dataclass(frozen=True)
class _Pass:
    images: torch.Tensor
    logits: torch.Tensor  # (n, classes)
    targets: list[int]
    source: torch.Tensor  # the layer's output
    layer_gradient: torch.Tensor | None
    input_gradient: torch.Tensor | None
    guided_gradient: torch.Tensor | None
    frontier: dict | None

    def evidence(self, i: int) -> Evidence:
        def row(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[i].float()

        return Evidence(image=self.images[i:i + 1].detach(), logits=self.logits.detach()[i].float(),
                        target=self.targets[i], activations=self.source.detach()[i].float(),
                        gradients=row(self.layer_gradient), input_gradient=row(self.input_gradient),
                        guided_gradient=row(self.guided_gradient))


def _shared_pass(model: nn.Module, layer: str, images: torch.Tensor, targets: list[int | None], *, gradients: bool,
                 input_gradient: bool, guided: bool, tail: Tail | None) -> _Pass:
    keep_input_graph = input_gradient or guided
    x = images.detach().clone()  # keeps the memory format
    if keep_input_graph:
        x.requires_grad_(True)
    found: list[torch.Tensor | None] = []

    def on_output(output):
        if found:  # a module called twice (a ResNet block's ReLU): its first call is "the layer's output"
            return None
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            found.append(None)
            return None
        source = output.detach().requires_grad_(True) if gradients and not keep_input_graph else output
        found.append(source)
        return source.clone()

    guide = _Guide()
    with ExitStack() as stack:
        stack.enter_context(output_hook(dict(model.named_modules())[layer], on_output))
        if guided:
            stack.enter_context(guide.hooks(model))
        stack.enter_context(torch.enable_grad() if gradients or keep_input_graph else torch.no_grad())
        output, frontier = tail.forward(x) if tail is not None else (model(x), None)
        logits = _class_scores(output, len(images))
        source = _layer_output(found, layer)
        targets = [_target(target, logits[i]) for i, target in enumerate(targets)]
        # The images' scores summed: each image's gradient is its own score's, as the images do not interact.
        rows = torch.arange(len(targets), device=logits.device)
        score = logits[rows, torch.tensor(targets, device=logits.device)].sum()
        wanted = ([source] if gradients else []) + ([x] if input_gradient else [])
        computed = _gradients(score, wanted, retain_graph=guided)
        guided_gradient = None
        if guided:
            guide.on = True
            (guided_gradient,) = _gradients(score, [x], retain_graph=False)
    return _Pass(images=images, logits=logits, targets=targets, source=source,
                 layer_gradient=computed.pop(0) if gradients else None,
                 input_gradient=computed.pop(0) if input_gradient else None,
                 guided_gradient=guided_gradient, frontier=frontier)


def memory_format_of(tensor: torch.Tensor) -> torch.memory_format:
    channels_last = tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _gradients(score: torch.Tensor, inputs: list[torch.Tensor], retain_graph: bool) -> list[torch.Tensor]:
    """d score / d each input; zeros where the score does not depend on it."""
    result = [torch.zeros_like(t) for t in inputs]
    reached = [i for i, t in enumerate(inputs) if t.requires_grad]
    if reached and score.requires_grad:
        found = torch.autograd.grad(score, [inputs[i] for i in reached], retain_graph=retain_graph,
                                    allow_unused=True)
        for i, gradient in zip(reached, found):
            if gradient is not None:
                result[i] = gradient
    return result


def _class_scores(output: Any, images: int) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != images:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InvalidInput(f"the model's output is {shape}; CAMs need class scores of shape ({images}, classes)")
    return output


def _layer_output(found: list[torch.Tensor | None], layer: str) -> torch.Tensor:
    if not found:
        raise InvalidInput(f"layer {layer!r} did not run in the model's forward pass; pick a layer the model uses",
                           layer=layer)
    if found[0] is None:
        raise InvalidInput(f"layer {layer!r} does not output an (n, c, h, w) map; CAMs need a convolutional layer",
                           layer=layer)
    return found[0]


def _target(target: int | None, logits: torch.Tensor) -> int:
    """The requested class, checked, or the top prediction of one image's `logits` (classes,)."""
    if target is None:
        return int(logits.argmax())
    check_target(target, logits.shape[0])
    return int(target)


def check_count(name: str, value: int) -> None:
    """InvalidInput naming `name` unless `value` is a positive integer (batch sizes, steps)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}", **{name: repr(value)})


def check_target(target: int, classes: int) -> None:
    """InvalidInput, naming the valid range, unless `target` is a class index below `classes`."""
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise InvalidInput(f"target {target!r} is not a class index; give an integer from 0 to {classes - 1}",
                           target=str(target), valid=[0, classes - 1])
    if not 0 <= target < classes:
        raise InvalidInput(f"target class {target} is out of range: valid classes are 0 to {classes - 1}",
                           target=int(target), valid=[0, classes - 1])
