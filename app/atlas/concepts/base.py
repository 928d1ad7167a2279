"""What every concept layout gives: its concepts and categories, and per image its labelled regions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Concept:
    name: str  # "square"
    category: str  # "shape"

    @property
    def id(self) -> str:
        return f"{self.category}:{self.name}"


class ConceptSource(Protocol):
    layout: str  # "demo", "broden", "label-maps"
    concepts: list[Concept]  # a concept's index here is its number in region concept lists
    categories: list[str]

    def regions(self, relpath: str) -> tuple[np.ndarray, list[list[int]]] | None:
        """For the image at `relpath` (relative to the dataset root): an (H, W) integer map of regions at the
        labels' own resolution and, per region number, its concepts (image-level ones in every region);
        None when the image has no labels."""


def category_numbers(concepts: list[Concept], categories: list[str]) -> np.ndarray:
    index = {category: i for i, category in enumerate(categories)}
    return np.array([index[concept.category] for concept in concepts], dtype=np.int64)
