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


@dataclass(frozen=True)
class Formulas:
    """What every unit's beam search shares: the (signatures, concepts) table as numbers, each signature's
    pixels over the dataset, and each concept's pixels."""

    table: np.ndarray  # float64
    pixels: np.ndarray  # float64
    concept_pixels: np.ndarray

    @classmethod
    def of(cls, concepts: np.ndarray, pixels: np.ndarray) -> Formulas:
        table = concepts.astype(np.float64)
        pixels = pixels.astype(np.float64)
        return cls(table, pixels, pixels @ table)


def beam_search(region: np.ndarray, formulas: Formulas, length: int = 3, beam: int = 5) -> tuple[Formula, float]:
    """The formula of up to `length` concepts with the best plain IoU against one unit's `region`
    (signatures,) counts, by beam search (Mu & Andreas 2020): start from the `beam` best single concepts,
    extend each by every concept not already in it and every operator, keep the `beam` best formulas that
    differ in what they cover, `length - 1` times. Ties keep the shorter formula, then the earlier candidate
    (lower concept index, AND before OR before AND NOT).

    Every extension of a formula F by a concept c is scored from two products over signatures: with
    a = |F AND c| counts, |F OR c| = |F| + |c| - a and |F AND NOT c| = |F| - a, for the region's pixels and
    for all pixels alike."""
    table, pixels, concept_pixels = formulas.table, formulas.pixels, formulas.concept_pixels
    region = region.astype(np.float64)
    total = region.sum()
    concept_region = region @ table

    def iou(intersection, size):
        union = total + size - intersection
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, intersection / union, 0.0)

    singles = iou(concept_region, concept_pixels)
    frontier = [Formula((int(c),), ()) for c in np.argsort(-singles, kind="stable")[:beam]]
    best = (frontier[0], float(singles[frontier[0].terms[0]]))
    truth = table[:, [f.terms[0] for f in frontier]].T.astype(bool)  # (beam, signatures)
    for _ in range(length - 1):
        in_region, in_all = truth @ region, truth @ pixels  # (beam,)
        both_region, both_all = (truth * region) @ table, (truth * pixels) @ table  # (beam, concepts)
        scores = np.stack([  # (beam, operator, concept), operators as in OPERATORS
            iou(both_region, both_all),
            iou(in_region[:, None] + concept_region - both_region, in_all[:, None] + concept_pixels - both_all),
            iou(in_region[:, None] - both_region, in_all[:, None] - both_all)], axis=1)
        for b, formula in enumerate(frontier):
            scores[b, :, list(formula.terms)] = -1.0  # a concept already in F adds nothing
        kept, covers, seen = [], [], set()
        for index in np.argsort(-scores, axis=None, kind="stable"):
            b, o, c = np.unravel_index(index, scores.shape)
            if scores[b, o, c] < 0:
                break
            covered = _apply(OPERATORS[o], truth[b], table[:, c].astype(bool))
            key = np.packbits(covered).tobytes()  # "a OR b" and "b OR a" cover the same: keep one
            if key not in seen:
                seen.add(key)
                kept.append((b, o, c))
                covers.append(covered)
            if len(kept) == beam:
                break
        if not kept:
            break
        frontier = [Formula(frontier[b].terms + (int(c),), frontier[b].operators + (OPERATORS[o],))
                    for b, o, c in kept]
        truth = np.stack(covers)
        if scores[kept[0]] > best[1]:
            best = (frontier[0], float(scores[kept[0]]))
    return best
