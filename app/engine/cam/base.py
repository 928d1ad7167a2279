"""What every CAM method is given and what it declares.

A method is a tiny class: it turns the `Evidence` of one capture (activations, gradients, logits) into a
raw signed map, and says as class attributes what that capture must contain. Everything else (hooks,
the forward and backward passes, upsampling, normalisation) lives once in the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn import functional as F

# How many forward passes a method adds to the shared one (the `extra_forwards` vocabulary).
NO_EXTRA_FORWARDS = "none"
PER_CHANNEL = "per-channel"  # one masked input per distinct channel map, through the whole model
PER_CHANNEL_AFTER_LAYER = "per-channel-after-layer"  # one ablated layer output per channel, layers after it only
# What those passes run, in words for people (the front end shows it rather than decoding the vocabulary).
RERUNS = {NO_EXTRA_FORWARDS: None, PER_CHANNEL: "the whole model",
          PER_CHANNEL_AFTER_LAYER: "the layers after the explained layer"}


@dataclass(frozen=True)
class Evidence:
    """What the one shared forward (and at most one backward) pass saw, float32, on the model's device.

    `gradients` and `input_gradient` are d logits[target] / d (layer output, input); `guided_gradient` is
    the same input gradient with every ReLU's backward passing only positive gradients. Each is None
    unless a requested method declared that it needs it.
    """

    image: torch.Tensor  # (1, c_in, H, W) the model's input, detached, in its own memory format and dtype
    logits: torch.Tensor  # (classes,)
    target: int
    activations: torch.Tensor  # (c, h, w) the layer's output
    gradients: torch.Tensor | None = None  # (c, h, w)
    input_gradient: torch.Tensor | None = None  # (c_in, H, W)
    guided_gradient: torch.Tensor | None = None  # (c_in, H, W)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.image.shape[2:])


@dataclass(frozen=True)
class Rerun:
    """Extra forward passes for the perturbation methods, valid only during one `compute_cams` call.

    `from_input(batch)`: logits (n, classes) of a batch of model inputs. `from_layer(batch)`: logits of a
    batch of replacement layer outputs (n, c, h, w), running only the layers after the target layer when
    the model could be split there (`split` True), else the whole model with the layer's output replaced.
    Both run without autograd; none of the shared pass's hooks is left on the model. A method calls
    `progress(done, total)` before each of its batches and once at the end: `done` of the `total` inputs it
    runs have run.
    """

    from_input: Callable[[torch.Tensor], torch.Tensor]
    from_layer: Callable[[torch.Tensor], torch.Tensor]
    split: bool
    memory_format: torch.memory_format  # of the model's input, kept for the batches built from it
    layer_dtype: torch.dtype
    layer_memory_format: torch.memory_format  # of the layer's output in the shared pass
    score_batch_size: int
    ablation_batch_size: int
    progress: Callable[[int, int], None] = lambda done, total: None  # bound per method by compute_cams

    def layer_batch(self, activations: torch.Tensor, n: int) -> torch.Tensor:
        """n copies of `activations` (c, h, w), in the layer output's own dtype and memory format."""
        batch = torch.empty((n, *activations.shape), dtype=self.layer_dtype, device=activations.device,
                            memory_format=self.layer_memory_format)
        return batch.copy_(activations.expand(n, *activations.shape))


TaskProgress = Callable[..., None]  # progress(task, done=0, total=0): where a request's work is, for its client


def unheard(task: str, done: int = 0, total: int = 0) -> None:
    """The progress that reports nowhere: the default wherever no one listens."""


class CamMethod:
    """One CAM method: metadata and needs as class attributes, the formula in `compute`."""

    id: ClassVar[str]  # URL-safe, stable: used in the API, the front end, cache keys and docs
    name: ClassVar[str]
    description: ClassVar[str]  # one line
    reference: ClassVar[str]  # the paper, with its link
    needs_gradients: ClassVar[bool] = False  # d score / d layer output
    needs_input_gradient: ClassVar[bool] = False  # d score / d input
    needs_guided_gradient: ClassVar[bool] = False  # guided backpropagation to the input (a second backward)
    extra_forwards: ClassVar[str] = NO_EXTRA_FORWARDS
    counts: ClassVar[str | None] = None  # what its extra passes are, as its progress counts them
    resolution: ClassVar[str] = "layer"  # the raw map's size: the layer's (h, w) or the input's (H, W)

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        """The raw signed map, (h, w) or (H, W) float32: no ReLU, no normalisation, no upsampling."""
        raise NotImplementedError

    def describe(self) -> dict:
        """The registry entry as plain data (for the API, the front end and the docs)."""
        return {"id": self.id, "name": self.name, "description": self.description, "reference": self.reference,
                "needs_gradients": self.needs_gradients, "needs_input_gradient": self.needs_input_gradient,
                "needs_guided_gradient": self.needs_guided_gradient, "extra_forwards": self.extra_forwards,
                "reruns": RERUNS[self.extra_forwards], "counts": self.counts, "resolution": self.resolution}


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k weights[k] * activations[k]: (c,) and (c, h, w) -> (h, w)."""
    return torch.einsum("c,chw->hw", weights, activations)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) -> (..., H, W), bilinear with align_corners=False: the same sampling as cv2.resize."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    return F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False).reshape(*lead, *size)
