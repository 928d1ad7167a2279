"""A per-unit histogram of activation values that streams over a dataset, exact and mergeable, and the map
positions it samples on each image (app/engine/accumulators.py has the other per-unit accumulators)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

_UNSET = -(2**31)  # a histogram exponent before the first batch


class Histogram:
    """Per unit, a histogram of activation values on [-r, r) with `bins` equal bins, where r is a power of
    two that doubles (merging bins pairwise, exactly) when a larger value arrives. Quantiles read off it
    are accurate to one bin width, at most 4 * max|x| / bins, of the values it was given.

    Batches are binned a few at a time (`pending_values` at most), as the fixed cost of a binning pass
    outweighs its arithmetic on one batch of a small layer. Binning is exact (a value's bin is the floor
    of value * bins / 2r, a power-of-two scaling), so the counts do not depend on how batches are grouped.
    Pending values wait in a buffer allocated once, one row per unit: fresh large tensors cost a page
    fault per 4 KiB, which on some machines outweighs the binning itself.
    """

    def __init__(self, units: int, bins: int = 2048, pending_values: int = 2**21):
        assert bins % 4 == 0
        self.bins = bins
        # Bookkeeping in numpy: per-op overhead on these small arrays is far below torch's.
        self.counts = np.zeros((units, bins), dtype=np.int64)
        self.exponents = np.full(units, _UNSET, dtype=np.int64)  # r = 2 ** exponent
        self.zeros = np.zeros(units, dtype=np.int64)
        self._pending_limit = pending_values
        self._pending = torch.empty((units, 0))  # (units, capacity) values to bin, filled from column 0
        self._filled = 0
        self._indices = torch.empty(0, dtype=torch.int32)  # (units * capacity,) scratch for bin indices

    def update(self, values: torch.Tensor, positions: torch.Tensor | None = None) -> None:
        """`values` (n, c, p): p activation values of each unit on each of n images (a layer's flattened
        maps); `positions` (n, m): the m of them to take on each image, or None for all. They are copied."""
        n, c, p = values.shape
        m = p if positions is None else positions.shape[1]
        width = n * m
        moved = self._pending.device != values.device
        if moved or self._filled + width > self._pending.shape[1]:
            self.flush()
        if moved or width > self._pending.shape[1]:
            capacity = max(width, self._pending_limit // c)
            self._pending = torch.empty((c, capacity), device=values.device)
            self._indices = torch.empty(c * capacity, dtype=torch.int32, device=values.device)
        target = self._pending[:, self._filled:self._filled + width].view(c, n, m)
        by_unit = values.detach().float().transpose(0, 1)  # (c, n, p), a view of float32 values
        if positions is None:
            target.copy_(by_unit)
        else:
            torch.gather(by_unit, 2, positions.to(values.device).view(1, n, m).expand(c, n, m), out=target)
        self._filled += width
        if self._filled * c >= self._pending_limit:
            self.flush()

    def flush(self) -> None:
        """Bin every pending value."""
        if not self._filled:
            return
        values = self._pending[:, :self._filled]  # (c, values), rows contiguous
        c, filled, device = values.shape[0], self._filled, values.device
        self._filled = 0
        peak = torch.maximum(values.amax(dim=1), -values.amin(dim=1)).cpu().numpy()  # two passes beat abs()
        # Exact zeros (most of a ReLU's output) are a point mass, kept apart so quantiles stay exact there.
        zeros = (values == 0).sum(dim=1, dtype=torch.int32).cpu().numpy()
        # The smallest e with 2 ** e > peak; an all-zero unit sets no range (its values are all zeros).
        self._grow(np.where(peak > 0, np.frexp(peak)[1], _UNSET))
        scale = (self.bins / 2) / np.exp2(np.where(self.exponents == _UNSET, 0, self.exponents))  # bins per unit
        # |value| < r, so floor(value * scale) lies in [-bins/2, bins/2): no clamping, no rounding.
        values.mul_(torch.from_numpy(scale.astype(np.float32)).to(device).view(c, 1)).floor_()
        index = self._indices[:c * filled].view(c, filled)
        index.copy_(values)
        index += (torch.arange(c, dtype=torch.int32, device=device) * self.bins + self.bins // 2).view(c, 1)
        if device.type == "cpu":
            # Added in place: bincount would allocate and zero a (units * bins) array on every flush, which
            # for a wide layer costs more than the counting (values arrive unit by unit, so the additions
            # stay within one unit's bins, in cache).
            ones = torch.ones(1, dtype=torch.int64).expand(index.numel())
            torch.from_numpy(self.counts).view(-1).index_add_(0, index.view(-1), ones)
        else:
            self.counts += torch.bincount(index.view(-1), minlength=c * self.bins).cpu().numpy().reshape(c, -1)
        self.counts[:, self.bins // 2] -= zeros  # the zeros' bin, [0, r * 2 / bins), keeps only positives
        self.zeros += zeros

    def update_sparse(self, units: torch.Tensor, values: torch.Tensor, zeros: torch.Tensor) -> None:
        """Values given as the non-zero ones, each with its unit (both (entries,)), and per unit how many zeros
        came with them (units,): binned at once, to the same bins as `update` would put them in."""
        self.flush()  # anything pending first, so that ranges grow in the order values came
        c, device = len(self.zeros), values.device
        values = values.float()
        peak = torch.zeros(c, device=device).scatter_reduce_(0, units, values.abs(), "amax").cpu().numpy()
        self._grow(np.where(peak > 0, np.frexp(peak)[1], _UNSET))
        scale = (self.bins / 2) / np.exp2(np.where(self.exponents == _UNSET, 0, self.exponents))
        # The float32 product `flush` floors, value by value.
        binned = (values * torch.from_numpy(scale.astype(np.float32)).to(device)[units]).floor_().long()
        index = (units * self.bins + self.bins // 2 + binned).cpu()
        torch.from_numpy(self.counts).view(-1).index_add_(0, index, torch.ones(1, dtype=torch.int64).expand(len(index)))
        self.zeros += zeros.cpu().numpy()

    def _grow(self, target: np.ndarray) -> None:
        unset = self.exponents == _UNSET
        self.exponents[unset] = target[unset]
        target = np.where(target == _UNSET, self.exponents, target)
        while (self.exponents < target).any():
            units = np.flatnonzero(self.exponents < target)
            # Doubling r maps old bin i to new bin (i + bins / 2) // 2.
            merged = self.counts[units].reshape(len(units), self.bins // 2, 2).sum(axis=2)
            self.counts[units] = 0
            self.counts[units, self.bins // 4: self.bins // 4 + self.bins // 2] = merged
            self.exponents[units] += 1

    def merge(self, other: Histogram) -> None:
        """Take in another's values: both ranges grow to the larger (exactly, as in a single pass), then the
        counts add."""
        self.flush()
        other.flush()
        self._grow(other.exponents)
        other._grow(self.exponents)
        self.counts += other.counts
        self.zeros += other.zeros

    def radii(self) -> np.ndarray:
        """Per unit, r: the histogram covers [-r, r)."""
        return np.where(self.exponents == _UNSET, 1.0, np.exp2(self.exponents.astype(np.float64)))

    def quantile(self, q: float) -> np.ndarray:
        """Per unit, the value below which a fraction q of all activations fall (linear within a bin)."""
        self.flush()
        middle = self.bins // 2
        # Bins below zero, the point mass at zero (a bin of width 0), then bins from zero up.
        counts = np.concatenate([self.counts[:, :middle], self.zeros[:, None], self.counts[:, middle:]], axis=1)
        edges = np.linspace(-1.0, 1.0, self.bins + 1)
        lower = np.concatenate([edges[:middle], [0.0], edges[middle:-1]]) * self.radii()[:, None]
        upper = np.concatenate([edges[1:middle + 1], [0.0], edges[middle + 1:]]) * self.radii()[:, None]
        cumulative = np.cumsum(counts, axis=1)
        target = q * cumulative[:, -1]
        b = np.minimum((cumulative < target[:, None]).sum(axis=1), self.bins)  # searchsorted, row by row
        rows = np.arange(len(b))
        below = np.where(b > 0, cumulative[rows, np.maximum(b - 1, 0)], 0)
        inside = counts[rows, b]
        fraction = np.divide(target - below, inside, out=np.zeros(len(b)), where=inside > 0)
        result = lower[rows, b] + fraction * (upper[rows, b] - lower[rows, b])
        return np.where(cumulative[:, -1] > 0, result, 0.0)

    def coarse(self, bins: int) -> dict[str, np.ndarray]:
        """Per unit, the histogram over just the range its values occupy, in at most `bins` bins of whole
        fine bins: `counts` (units, bins) and `edges` (units, bins + 1), of which each unit uses its first
        `used` bins (0 for a unit with no nonzero value), and the separate count of exact `zeros`."""
        self.flush()
        counts = self.counts
        occupied = counts > 0
        first = occupied.argmax(axis=1)
        span = np.where(occupied.any(axis=1), self.bins - occupied[:, ::-1].argmax(axis=1) - first, 0)
        group = np.maximum(-(-span // bins), 1)  # fine bins per coarse bin (ceil division)
        used = -(-span // group)
        steps = np.arange(bins + 1) * group[:, None]  # (units, bins + 1) fine-bin offsets of the edges
        cumulative = np.concatenate([np.zeros((len(counts), 1), dtype=np.int64), np.cumsum(counts, axis=1)], axis=1)
        bounds = first[:, None] + np.minimum(steps, span[:, None])  # past the span, empty coarse bins
        coarse = np.diff(np.take_along_axis(cumulative, bounds, axis=1), axis=1)
        radii = self.radii()[:, None]
        edges = -radii + 2 * radii * (first[:, None] + steps) / self.bins
        return {"counts": coarse, "edges": edges, "used": used, "zeros": self.zeros}

    def state(self) -> dict[str, np.ndarray]:
        self.flush()
        # int32 halves a checkpoint's largest array after the top-k maps (2**31 values per bin is plenty).
        return {"counts": self.counts.astype(np.int32), "exponents": self.exponents, "zeros": self.zeros}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.counts, self.exponents, self.zeros = (state[key].astype(np.int64) for key in ("counts", "exponents",
                                                                                           "zeros"))


def sample_positions(image_ids: torch.Tensor, positions: int, per_image: int) -> torch.Tensor:
    """(n, m) flat map positions to histogram for each image: all of them when the map has at most
    `per_image`, else `per_image` of them, taken in turn from a fixed permutation so that over the images
    every position is sampled equally often. Deterministic: it depends on the image ids alone."""
    if positions <= per_image:
        return torch.arange(positions).expand(len(image_ids), positions)
    table = _sample_table(positions, per_image)
    return table[image_ids % len(table)]


@functools.lru_cache(maxsize=64)
def _sample_table(positions: int, per_image: int) -> torch.Tensor:
    """Row i: the positions of image i, which repeat with the period of (i * per_image) % positions."""
    period = positions // math.gcd(positions, per_image)
    starts = (torch.arange(period).view(-1, 1) * per_image + torch.arange(per_image).view(1, -1)) % positions
    return torch.randperm(positions, generator=torch.Generator().manual_seed(positions))[starts]
