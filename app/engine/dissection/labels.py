"""Labels from tallies. Network Dissection (Bau et al. 2017): a unit's IoU with concept c is
    |region ∩ c| / (|region on images labelled in c's category| + |c| - |region ∩ c|)
summed over the dataset, and its label is the best concept whose IoU reaches a threshold. Compositional
explanations (Mu & Andreas 2020): formulas of concepts joined by AND, OR and AND NOT, scored by the plain
IoU |region ∩ F| / |region ∪ F| and found by beam search. Everything is a sum over signatures
(`signatures.py`): `region` (units, signatures) counts a unit's region pixels, `pixels` (signatures,) every
pixel of the dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPERATORS = ("AND", "OR", "AND NOT")


def concept_iou(region: np.ndarray, pixels: np.ndarray, concepts: np.ndarray, labelled: np.ndarray,
                concept_categories: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iou, intersection, union), each (units, concepts). `concepts` (signatures, concepts) and `labelled`
    (signatures, categories) are the signature table's."""
    region = region.astype(np.float64)
    intersection = region @ concepts
    label_pixels = pixels.astype(np.float64) @ concepts
    region_in_category = (region @ labelled)[:, concept_categories]
    union = region_in_category + label_pixels - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / union, 0.0)
    return iou, intersection, union


@dataclass(frozen=True)
class Formula:
    terms: tuple[int, ...]  # concept indices, in order
    operators: tuple[str, ...]  # one fewer: terms[0] op[0] terms[1] op[1] terms[2], applied left to right

    def truth(self, concepts: np.ndarray) -> np.ndarray:
        """(signatures,) bool from the (signatures, concepts) table."""
        value = concepts[:, self.terms[0]]
        for operator, term in zip(self.operators, self.terms[1:]):
            value = _apply(operator, value, concepts[:, term])
        return value

    def name(self, names: list[str]) -> str:
        """Left to right, bracketed as applied: "(red OR orange) AND NOT square"."""
        text = names[self.terms[0]]
        for i, (operator, term) in enumerate(zip(self.operators, self.terms[1:])):
            text = f"{f'({text})' if i else text} {operator} {names[term]}"
        return text


def _apply(operator: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    if operator == "AND":
        return left & right
    if operator == "OR":
        return left | right
    return left & ~right


def beam_search(region: np.ndarray, pixels: np.ndarray, concepts: np.ndarray, length: int = 3,
                beam: int = 5) -> tuple[Formula, float]:
    """The formula of up to `length` concepts with the best plain IoU against one unit's `region`
    (signatures,) counts, by beam search (Mu & Andreas 2020): start from the `beam` best single concepts,
    extend each by every concept and operator, keep the `beam` best, `length - 1` times. Ties keep the
    shorter formula, then the lower concept indices."""
    region = region.astype(np.float64)
    pixels = pixels.astype(np.float64)
    total = region.sum()

    def score(truth: np.ndarray) -> np.ndarray:  # truth (formulas, signatures) -> IoU (formulas,)
        intersection = truth @ region
        union = total + truth @ pixels - intersection
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, intersection / union, 0.0)

    singles = score(concepts.T.astype(np.float64))
    order = np.argsort(-singles, kind="stable")[:beam]
    frontier = [(Formula((int(c),), ()), float(singles[c])) for c in order]
    best = frontier[0]
    table = concepts.astype(bool)
    for _ in range(length - 1):
        candidates: list[Formula] = []
        truths = []
        for formula, _ in frontier:
            base = formula.truth(table)
            for operator in OPERATORS:
                extended = _apply(operator, base[:, None], table)  # (signatures, concepts)
                truths.append(extended.T)
                candidates += [Formula(formula.terms + (c,), formula.operators + (operator,))
                               for c in range(table.shape[1])]
        scores = score(np.concatenate(truths).astype(np.float64))
        keep = np.argsort(-scores, kind="stable")[:beam]
        frontier = [(candidates[i], float(scores[i])) for i in keep]
        if frontier[0][1] > best[1]:
            best = frontier[0]
    return best
