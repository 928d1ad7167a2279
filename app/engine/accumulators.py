"""Streaming per-unit statistics over a dataset, in memory independent of the number of images.

Each accumulator takes one batch of a layer's activations (n, c, h, w) at a time and can export and
import its whole state as numpy arrays, so an interrupted index build resumes to bit-identical results.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


class TopK:
    """Per unit, the k images with the highest spatial-max activation, with the peak's position and the
    unit's whole map on each. Ties on the maximum go to the higher spatial mean (a clamp such as ReLU6 caps
    many images at the same value: the one that fires over more of the image ranks first), then to the
    lower image id, exactly as a stable sort of all images by (max, mean) descending would.

    Each entry is one int64 key that sorts as (max, mean) and its image id beside it. A batch keeps the
    best k of the slots and the batch in one partition; only entries tied with the k-th key compare ids.
    Entries live in unordered slots, and a batch writes only the maps that enter; `ordered()` ranks them
    once at the end. The bookkeeping is in numpy: on arrays this small, per-call overhead, not
    arithmetic, is the cost.
    """

    def __init__(self, units: int, k: int, map_shape: tuple[int, int]):
        self.k = k
        self.map_shape = map_shape
        self.keys = np.full((units, k), _EMPTY, dtype=np.int64)
        # Empty slots get distinct negative ids, so that every key-and-id pair is unique.
        self.ids = np.tile(-1 - np.arange(k, dtype=np.int64), (units, 1))
        self.positions = np.full((units, k), -1, dtype=np.int64)  # flat index y * w + x
        self.maps = torch.zeros((units, k, *map_shape), dtype=torch.float16)

    def update(self, activations: torch.Tensor, image_ids: torch.Tensor, maxima: torch.Tensor,
               means: torch.Tensor) -> None:
        """`activations` (n, c, h * w), the flattened maps of images `image_ids` (n,), all above every id
        seen so far, with their spatial maxima and means (n, c); any strides (channels-last are fine), or
        anything indexed as such a tensor (`activations[images, units]`: DenseMaps, SparseMaps)."""
        n, c = maxima.shape
        batch = _keys(maxima.T.float().cpu().numpy(), means.T.float().cpu().numpy())  # (c, n)
        # Only units with an entry above their worst kept one take part (one that only ties it loses: its id is
        # higher); once the first images are in, few do.
        units = np.flatnonzero(batch.max(axis=1) > self.keys.min(axis=1))
        if not len(units):
            return
        merged = np.concatenate([self.keys[units], batch[units]], axis=1)  # (units, k + n): slots, then batch
        merged_ids = np.concatenate([self.ids[units], np.broadcast_to(image_ids.cpu().numpy(), (len(units), n))],
                                    axis=1)
        kept = _best_k(merged, merged_ids, self.k)
        # Evicted slots and entering images, both listed unit by unit in equal numbers: pair them up.
        slot_rows, slots = np.nonzero(~kept[:, : self.k])
        slot_units = units[slot_rows]
        entering = np.nonzero(kept[:, self.k:])[1]
        self.keys[slot_units, slots] = batch[slot_units, entering]
        self.ids[slot_units, slots] = merged_ids[slot_rows, self.k + entering]
        # Image by image, so each image's maps are read once in memory order (twice as fast channels-last).
        order = np.argsort(entering, kind="stable")
        entering, slot_units, slots = entering[order], slot_units[order], slots[order]
        device = activations.device
        maps = activations[torch.from_numpy(entering).to(device), torch.from_numpy(slot_units).to(device)]
        self.positions[slot_units, slots] = peak_positions(maps, self.map_shape).cpu().numpy()
        self.maps.view(c * self.k, -1).index_copy_(0, torch.from_numpy(slot_units * self.k + slots),
                                                   maps.to(torch.float16).cpu())

    def merge(self, other: TopK) -> None:
        """Take in the entries of another TopK of the same units (of other images): the result is the TopK
        one pass over both sets of images would have kept."""
        c, k = self.keys.shape
        keys = np.concatenate([self.keys, other.keys], axis=1)
        # Empty slots carry ids -1..-k in both: the other's become -k-1..-2k, so key-id pairs stay unique.
        ids = np.concatenate([self.ids, np.where(other.keys == _EMPTY, other.ids - k, other.ids)], axis=1)
        rows, columns = np.nonzero(_best_k(keys, ids, k))  # k per row, row by row
        columns = columns.reshape(c, k)
        self.keys = np.take_along_axis(keys, columns, axis=1)
        self.ids = np.where(self.keys == _EMPTY, -1 - np.arange(k), np.take_along_axis(ids, columns, axis=1))
        positions = np.concatenate([self.positions, other.positions], axis=1)
        self.positions = np.take_along_axis(positions, columns, axis=1)
        maps = torch.cat([self.maps, other.maps], dim=1)
        self.maps = maps[torch.arange(c).view(-1, 1), torch.from_numpy(columns)].contiguous()

    def ordered(self) -> dict[str, np.ndarray]:
        """The entries ranked by max, then mean, descending, then image id ascending; empty slots (id -1,
        value -inf) last."""
        order = np.lexsort((self.ids, ~self.keys), axis=1)  # ~key: descending, with no overflow
        keys = np.take_along_axis(self.keys, order, axis=1)
        image_ids = np.take_along_axis(self.ids, order, axis=1)
        return {"values": _unkey(keys), "image_ids": np.where(keys == _EMPTY, -1, image_ids),
                "positions": np.take_along_axis(self.positions, order, axis=1),
                "maps": self.maps.numpy()[np.arange(len(order)).reshape(-1, 1), order]}

    def state(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys, "ids": self.ids, "positions": self.positions, "maps": self.maps.numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.keys, self.ids = state["keys"].copy(), state["ids"].copy()
        self.positions = state["positions"].copy()
        self.maps = torch.from_numpy(state["maps"].copy())


def peak_positions(maps: torch.Tensor, map_shape: tuple[int, int]) -> torch.Tensor:
    """(m,) flat position of each map's peak: of the positions at the map's maximum, the one nearest to
    their centroid (the first in row-major order among equals). A saturated map has many positions at the
    clamp; the first of them would always sit at the top left, the centroid sits where the mass is."""
    peaks, first = maps.max(dim=1)
    at_max = maps == peaks.unsqueeze(1)
    several = torch.nonzero(at_max.sum(dim=1) > 1).flatten()
    if len(several):  # only maps with a tied maximum need the centroid
        tied = at_max[several]
        grid = torch.arange(maps.shape[1], device=maps.device)
        ys, xs = (grid // map_shape[1]).float(), (grid % map_shape[1]).float()
        count = tied.sum(dim=1, keepdim=True)
        centre_y, centre_x = (tied * ys).sum(dim=1, keepdim=True) / count, (tied * xs).sum(dim=1, keepdim=True) / count
        distance = torch.where(tied, (ys - centre_y) ** 2 + (xs - centre_x) ** 2, torch.inf)
        first[several] = distance.argmin(dim=1)
    return first


def _best_k(keys: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """(rows, m) mask of the k largest keys of each row, ties to the lower id (key-id pairs are unique)."""
    m = keys.shape[1]
    kth = np.partition(keys, m - k, axis=1)[:, m - k: m - k + 1]
    kept = keys >= kth
    # Rows with more entries tied at the k-th key than places left: only there do ids decide.
    crowded = np.flatnonzero(kept.sum(axis=1) > k)
    if len(crowded):
        keys, ids, kth = keys[crowded], ids[crowded], kth[crowded]
        tied = keys == kth
        places = k - (keys > kth).sum(axis=1)  # for the lowest ids among the tied
        tied_ids = np.sort(np.where(tied, ids, np.iinfo(np.int64).max), axis=1)
        cut = tied_ids[np.arange(len(crowded)), places - 1].reshape(-1, 1)
        kept[crowded] = (keys > kth) | (tied & (ids <= cut))
    return kept


_EMPTY = np.iinfo(np.int64).min  # the key of an empty slot, below every real key
_SIGN = 0x7FFFFFFF


def _monotonic_bits(values: np.ndarray) -> np.ndarray:
    """float32 values as int64 in [-2^31, 2^31) that sort as the values do (-0 and +0 equal)."""
    bits = (values.astype(np.float32) + np.float32(0.0)).view(np.int32).astype(np.int64)  # + 0 makes -0 +0
    return np.where(bits < 0, bits ^ _SIGN, bits)  # negative floats: larger magnitude, smaller key


def _keys(maxima: np.ndarray, means: np.ndarray) -> np.ndarray:
    """int64 keys ordered as (max, mean) ascending: the max's monotonic bits in the high half, the mean's,
    made unsigned, in the low half."""
    return (_monotonic_bits(maxima) << 32) + (_monotonic_bits(means) + 2**31)


def _unkey(keys: np.ndarray) -> np.ndarray:
    """The maxima of keys as float32; empty slots give -inf."""
    bits = keys >> 32
    bits = np.where(bits < 0, bits ^ _SIGN, bits).astype(np.int32)
    return np.where(keys == _EMPTY, -np.inf, bits.view(np.float32)).astype(np.float32)


class ImageStats:
    """Per unit: count, sum, sum of squares and max of the per-image spatial max and spatial mean (float64),
    on how many images the unit is active (spatial max > 0), and how many reach its maximum exactly (more
    than one: a clamp such as ReLU6 saturates the unit)."""

    def __init__(self, units: int):
        self.count = 0
        self.sums = np.zeros((4, units))  # sum max, sum max^2, sum mean, sum mean^2
        self.maxima = np.full((2, units), -np.inf)  # max of spatial max, max of spatial mean
        self.active = np.zeros(units, dtype=np.int64)
        self.at_max = np.zeros(units, dtype=np.int64)  # images whose spatial max equals maxima[0]

    def update(self, spatial_max: np.ndarray, spatial_mean: np.ndarray) -> None:
        """Both (n, c), float64."""
        self.count += spatial_max.shape[0]
        batch_max = spatial_max.max(0)
        at_batch_max = (spatial_max == batch_max).sum(0)
        self.at_max = np.where(batch_max > self.maxima[0], at_batch_max,
                               self.at_max + np.where(batch_max == self.maxima[0], at_batch_max, 0))
        self.sums += np.stack([spatial_max.sum(0), (spatial_max ** 2).sum(0),
                               spatial_mean.sum(0), (spatial_mean ** 2).sum(0)])
        self.maxima = np.maximum(self.maxima, np.stack([spatial_max.max(0), spatial_mean.max(0)]))
        self.active += (spatial_max > 0).sum(0)

    def merge(self, other: ImageStats) -> None:
        """Take in another's images (the sums add in another order: equal to a single pass within rounding)."""
        top = np.maximum(self.maxima[0], other.maxima[0])
        self.at_max = np.where(self.maxima[0] == top, self.at_max, 0) + np.where(other.maxima[0] == top,
                                                                                other.at_max, 0)
        self.count += other.count
        self.sums = self.sums + other.sums
        self.maxima = np.maximum(self.maxima, other.maxima)
        self.active = self.active + other.active

    def summary(self) -> dict[str, np.ndarray]:
        n = max(self.count, 1)
        mean_max, mean_mean = self.sums[0] / n, self.sums[2] / n
        return {
            "max_mean": mean_max,
            "max_std": np.sqrt(np.maximum(self.sums[1] / n - mean_max ** 2, 0.0)),
            "max_max": self.maxima[0],
            "mean_mean": mean_mean,
            "mean_std": np.sqrt(np.maximum(self.sums[3] / n - mean_mean ** 2, 0.0)),
            "mean_max": self.maxima[1],
            "fraction_active": self.active / n,
            "images_at_max": self.at_max,
        }

    def state(self) -> dict[str, np.ndarray]:
        return {"count": np.array(self.count), "sums": self.sums, "maxima": self.maxima, "active": self.active,
                "at_max": self.at_max}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.count = int(state["count"])
        self.sums, self.maxima, self.active = state["sums"].copy(), state["maxima"].copy(), state["active"].copy()
        self.at_max = state["at_max"].copy()


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
