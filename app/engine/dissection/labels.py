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
    (signatures,) counts: `beam_searches` of one unit."""
    return beam_searches(region[None], formulas, length, beam)[0]


UNITS_AT_ONCE = 64  # bounds the (units, beam, signatures) arrays


def beam_searches(regions: np.ndarray, formulas: Formulas, length: int = 3,
                  beam: int = 5) -> list[tuple[Formula, float]]:
    """Per unit of `regions` (units, signatures) counts, the formula of up to `length` concepts with the best
    plain IoU, by beam search (Mu & Andreas 2020): start from the `beam` best single concepts, extend each by
    every concept not already in it and every operator, keep the `beam` best formulas that differ in what they
    cover, `length - 1` times. Ties keep the shorter formula, then the earlier candidate (lower concept index,
    AND before OR before AND NOT).

    Every extension of a formula F by a concept c is scored from two products over signatures: with
    a = |F AND c| counts, |F OR c| = |F| + |c| - a and |F AND NOT c| = |F| - a, for the region's pixels and
    for all pixels alike. The products run for many units at once: one unit at a time, their overhead was
    most of a dissection's formulas."""
    found = []
    for start in range(0, len(regions), UNITS_AT_ONCE):
        found += _beam_searches(regions[start:start + UNITS_AT_ONCE].astype(np.float64), formulas, length, beam)
    return found


def _beam_searches(regions: np.ndarray, formulas: Formulas, length: int, beam: int) -> list[tuple[Formula, float]]:
    table, pixels, concept_pixels = formulas.table, formulas.pixels, formulas.concept_pixels
    total = regions.sum(axis=1)[:, None, None]  # (units, 1, 1)
    concept_region = regions @ table  # (units, concepts)

    def iou(intersection, size):
        union = total + size - intersection
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, intersection / union, 0.0)

    singles = iou(concept_region[:, None, :], concept_pixels)[:, 0]  # (units, concepts)
    firsts = np.argsort(-singles, axis=1, kind="stable")[:, :beam]
    frontiers = [[Formula((int(c),), ()) for c in row] for row in firsts]
    best = [(frontier[0], float(singles[u, frontier[0].terms[0]])) for u, frontier in enumerate(frontiers)]
    has = table.T.astype(bool)  # (concepts, signatures)
    width = firsts.shape[1]  # beam, or fewer concepts
    truth = np.zeros((len(regions), beam, table.shape[0]), dtype=bool)  # a unit's formulas' covers; empty rows after
    truth[:, :width] = has[firsts]
    # Which concepts each formula has (extending by one of them adds nothing), and which formulas there are.
    used = np.zeros((len(regions), beam, table.shape[1]), dtype=bool)
    np.put_along_axis(used[:, :width], firsts[:, :, None], True, axis=2)
    present = np.arange(beam) < width
    present = np.repeat(present[None], len(regions), axis=0)
    for _ in range(length - 1):
        in_region, in_all = truth @ regions[:, :, None], truth @ pixels  # (units, beam, 1), (units, beam)
        both_region = (truth * regions[:, None, :]) @ table  # (units, beam, concepts)
        both_all = (truth * pixels) @ table
        scores = np.stack([  # (units, beam, operator, concept), operators as in OPERATORS
            iou(both_region, both_all),
            iou(in_region + concept_region[:, None, :] - both_region, in_all[..., None] + concept_pixels - both_all),
            iou(in_region - both_region, in_all[..., None] - both_all)], axis=2)
        scores = np.where(used[:, :, None, :] | ~present[:, :, None, None], -1.0, scores)
        covers, extended = np.zeros_like(truth), np.zeros_like(used)
        present[:] = False
        for u, frontier in enumerate(frontiers):
            kept = _distinct_best(scores[u], truth[u], has, beam, covers[u])
            if not kept:
                frontiers[u] = []
                continue
            frontiers[u] = [Formula(frontier[b].terms + (int(c),), frontier[b].operators + (OPERATORS[o],))
                            for b, o, c in kept]
            rows, concepts = [b for b, _, _ in kept], [c for _, _, c in kept]
            extended[u, :len(kept)] = used[u, rows]
            extended[u, np.arange(len(kept)), concepts] = True
            present[u, :len(kept)] = True
            if scores[u][kept[0]] > best[u][1]:
                best[u] = (frontiers[u][0], float(scores[u][kept[0]]))
        truth, used = covers, extended
    return best


def _distinct_best(scores: np.ndarray, truth: np.ndarray, has: np.ndarray, beam: int,
                   covers: np.ndarray) -> list[tuple[int, int, int]]:
    """The `beam` best (formula, operator, concept) extensions of one unit that differ in what they cover,
    their covers written into `covers` (beam, signatures)."""
    kept, seen = [], set()
    operators, concepts = scores.shape[1:]
    flat = scores.ravel()
    for index in np.argsort(-flat, kind="stable"):
        if flat[index] < 0:
            break
        b, rest = divmod(int(index), operators * concepts)
        o, c = divmod(rest, concepts)
        covered = _apply(OPERATORS[o], truth[b], has[c])
        key = covered.tobytes()  # "a OR b" and "b OR a" cover the same: keep one
        if key not in seen:
            seen.add(key)
            covers[len(kept)] = covered
            kept.append((b, o, c))
        if len(kept) == beam:
            break
    return kept
