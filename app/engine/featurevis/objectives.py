"""Objectives: what an image is optimised for, computed from a layer's output (n, c, h, w) and answering one
loss per batch item (n,), to be minimised. Batch item i serves the i-th entry of a batched objective, so
one optimisation renders many units. Objectives add (`a + b`), scale (`2 * a`) and negate (`-a`: minimise
the unit instead, for its negative image)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class Objective:
    def __init__(self, loss: Callable[[torch.Tensor], torch.Tensor], name: str):
        self.loss, self.name = loss, name

    def __call__(self, activations: torch.Tensor) -> torch.Tensor:
        return self.loss(activations)

    def __add__(self, other: Objective) -> Objective:
        return Objective(lambda a: self(a) + other(a), f"{self.name} + {other.name}")

    def __mul__(self, factor: float) -> Objective:
        return Objective(lambda a: factor * self(a), f"{factor:g} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self(a), f"-({self.name})")


def _per_item(units: torch.Tensor | list[int]) -> torch.Tensor:
    return torch.as_tensor(units, dtype=torch.long)


def channel(units: torch.Tensor | list[int]) -> Objective:
    """Item i maximises the spatial mean of channel units[i] (Lucid's `channel`)."""
    index = _per_item(units)

    def loss(activations: torch.Tensor) -> torch.Tensor:
        picked = activations[torch.arange(len(index)), index.to(activations.device)]
        return -picked.mean(dim=(1, 2))
    return Objective(loss, "channel")


def neuron(units: torch.Tensor | list[int]) -> Objective:
    """Item i maximises channel units[i] at the map's centre position (Lucid's `neuron`, x = w // 2, y = h // 2)."""
    index = _per_item(units)

    def loss(activations: torch.Tensor) -> torch.Tensor:
        height, width = activations.shape[-2:]
        return -activations[torch.arange(len(index)), index.to(activations.device), height // 2, width // 2]
    return Objective(loss, "neuron")


def direction(vectors: torch.Tensor) -> Objective:
    """Item i maximises the mean over positions of the dot product of the activation vector with vectors[i]
    (n, c): a direction in channel space, such as a dictionary feature's (Lucid's `direction`, as a dot
    product; a unit vector gives the projection)."""
    def loss(activations: torch.Tensor) -> torch.Tensor:
        return -torch.einsum("nchw,nc->nhw", activations, vectors.to(activations)).mean(dim=(1, 2))
    return Objective(loss, "direction")


def diversity() -> Objective:
    """Lucid's diversity term over the batch ("Feature Visualization", Distill 2017): each item is pushed
    away from the others by the cosine similarity of their Gram matrices, -sum_{j != i} <G_i, G_j> /
    (|G_i| |G_j|) per item, so facets of one unit differ in style, not only in place. Add it, weighted, to an
    objective whose items all serve the same unit."""
    def loss(activations: torch.Tensor) -> torch.Tensor:
        n, c = activations.shape[:2]
        flat = activations.reshape(n, c, -1)
        grams = torch.nn.functional.normalize(torch.bmm(flat, flat.transpose(1, 2)).reshape(n, -1), dim=1)
        similarity = grams @ grams.T
        return similarity.sum(dim=1) - similarity.diagonal()
    return Objective(loss, "diversity")
