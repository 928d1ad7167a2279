"""Pixels grouped by what is known about them. A pixel's signature is the set of concepts labelled at it
(pixel labels and its image's image-level labels) together with the categories labelled anywhere in its
image. Every count the dissection needs is a sum over signatures: a concept's pixels, a unit's region
pixels on a concept, on images where a category is labelled, or on any formula of concepts (a formula's
truth at a pixel depends on the pixel's concepts only), so a unit's tally is one row of counts per
signature, however many formulas are later scored against it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numba
import numpy as np


class SignatureTable:
    def __init__(self, concept_categories: Sequence[int], categories: int):
        """`concept_categories[c]`: the category index of concept c."""
        self.concept_categories = np.asarray(concept_categories, dtype=np.int64)
        self.categories = categories
        self._ids: dict[tuple[tuple[int, ...], int], int] = {}
        self._sets: list[tuple[tuple[int, ...], int]] = []  # (sorted concepts, bit mask of categories)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sets)

    def intern(self, region_concepts: Sequence[Sequence[int]]) -> np.ndarray:
        """The signature ids of an image's regions, from each region's concepts (image-level concepts
        included in every region); an image's signature map is `ids[regions]`. Safe from several threads."""
        labelled = {int(self.concept_categories[c]) for concepts in region_concepts for c in concepts}
        mask = sum(1 << category for category in labelled)
        with self._lock:
            return np.array([self._intern(tuple(sorted(set(concepts))), mask) for concepts in region_concepts],
                            dtype=np.int32)

    def _intern(self, concepts: tuple[int, ...], mask: int) -> int:
        key = (concepts, mask)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._sets)
            self._sets.append(key)
        return found

    def concepts(self) -> np.ndarray:
        """(signatures, concepts) bool: which concepts each signature has."""
        table = np.zeros((len(self), len(self.concept_categories)), dtype=bool)
        for i, (concepts, _) in enumerate(self._sets):
            table[i, list(concepts)] = True
        return table

    def labelled(self) -> np.ndarray:
        """(signatures, categories) bool: whether each signature's image has labels of each category."""
        masks = np.array([mask for _, mask in self._sets], dtype=np.int64)
        return (masks[:, None] >> np.arange(self.categories)) & 1 == 1


@numba.njit(cache=True, nogil=True)
def signature_map(regions: np.ndarray, ids: np.ndarray, out: np.ndarray) -> np.ndarray:  # pragma: no cover
    """`out[:] = ids[regions]` (an image's signature map from its region map and its regions' signature ids),
    and which regions occur in it. One loop: the two numpy calls cost 2.5x as much, per image. A region
    number outside `ids` raises IndexError (compiled code checks no bounds by itself)."""
    occurs = np.zeros(len(ids), dtype=np.bool_)
    for y in range(regions.shape[0]):
        for x in range(regions.shape[1]):
            region = regions[y, x]
            if region < 0 or region >= len(ids):
                raise IndexError("a region number beyond the image's regions")
            out[y, x] = ids[region]
            occurs[region] = True
    return occurs
