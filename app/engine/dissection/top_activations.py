"""Each unit's largest activation values over a dataset, where they are, and their 3 x 3 neighbourhoods.

Network Dissection thresholds a unit at the top 0.005 quantile of all its activation values and upsamples
its maps bilinearly to the concept masks. Both need far less than every map: the quantile is read off the
largest values, and a pixel of the upsampled map can exceed the threshold only in a cell (the square between
four neighbouring map positions) with a corner above it, whose four corners lie in that corner's 3 x 3
neighbourhood. Keeping the largest values with their neighbourhoods is therefore exact, in memory
proportional to 0.005 of the positions, where NetDissect caches every map of every image on disk.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

NEIGHBOURS = torch.tensor([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # row-major 3 x 3


def values_needed(positions: int, quantile: float) -> int:
    """How many of the largest of `positions` values the `quantile` (numpy's linear interpolation) reads:
    those from the lower of the two order statistics it interpolates between."""
    return max(positions - math.floor(quantile * (positions - 1)), 1)


def linear_quantile(descending: np.ndarray, positions: int, quantile: float) -> np.ndarray:
    """`np.quantile(values, quantile)` per row, from each row's largest values sorted in descending order
    (at least `values_needed`) out of `positions` values in all. Float64, as numpy computes it."""
    p = quantile * (positions - 1)
    below = math.floor(p)
    fraction = p - below
    low = descending[:, positions - 1 - below].astype(np.float64)
    high = descending[:, max(positions - 2 - below, 0)].astype(np.float64)
    # numpy's lerp: from the nearer end, so that a fraction of 0 or 1 returns the order statistic exactly.
    return np.where(fraction >= 0.5, high - (high - low) * (1 - fraction), low + (high - low) * fraction)


ENTRY_BYTES = 4 + 4 + 4 + 9 * 4  # value, image, position, neighbourhood


def bytes_needed(units: int, map_shape: tuple[int, int], images: int, quantile: float) -> int:
    """What a TopActivations of these dimensions holds: a buffer of twice the values kept, per unit."""
    h, w = map_shape
    return units * 2 * values_needed(images * h * w, quantile) * ENTRY_BYTES


class TopActivations:
    """Per unit, at least the `keep` largest activation values seen, each with its image, its position
    (y * w + x) and the 3 x 3 neighbourhood around it (clamped at the map's edges). Fed inside the index
    pass's hook; its state round-trips exactly through `state` and `load`, so a resumed build ends the same.

    A unit's entries go into a buffer of twice `keep`, cut back to the best `keep` when it fills; a value
    enters only above the unit's floor (the smallest kept at the last cut) and a map is read only when its
    maximum is above it, so after the first images a batch costs what it brings. Ties at the floor are
    kept in any order: only values above the final threshold are ever used, and all of them are kept."""

    def __init__(self, units: int, map_shape: tuple[int, int], images: int, quantile: float):
        h, w = map_shape
        self.map_shape = map_shape
        self.quantile = quantile
        self.keep = values_needed(images * h * w, quantile)
        capacity = 2 * self.keep  # bytes_needed counts this
        self.seen = 0  # values per unit so far (readable images x positions)
        self.fill = np.zeros(units, dtype=np.int64)
        self.floor = np.full(units, -np.inf, dtype=np.float32)
        self.values = np.full((units, capacity), -np.inf, dtype=np.float32)
        self.images = np.full((units, capacity), -1, dtype=np.int32)
        self.positions = np.full((units, capacity), -1, dtype=np.int32)
        self.neighbourhoods = np.zeros((units, capacity, 9), dtype=np.float32)

    def update(self, activations: torch.Tensor, image_ids: torch.Tensor, maxima: torch.Tensor) -> None:
        """`activations` (n, c, h, w) of images `image_ids`, any strides and device, with their spatial
        maxima (n, c)."""
        n, c, h, w = activations.shape
        self.seen += n * h * w
        if n * h * w >= self.keep and (self.fill == 0).any():
            self._first_floor(activations)
        peaks = maxima.float().cpu().numpy()
        readable = (peaks > self.floor).any(axis=1)  # images with a map to read
        if not readable.any():
            return
        # (n, h, w, c) as a view: contiguous for channels-last maps (the CPU's layout, app/engine/layout.py),
        # strided otherwise.
        memory = activations.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        _scan(memory, peaks, np.flatnonzero(readable), image_ids.numpy().astype(np.int32), self.keep, self.fill,
              self.floor, self.values, self.images, self.positions, self.neighbourhoods)

    def _first_floor(self, activations: torch.Tensor) -> None:
        """A fresh unit's floor from its first batch, just below the batch's keep-th largest value, so that
        the first batch appends about `keep` entries rather than all of its values."""
        n, c, h, w = activations.shape
        fresh = torch.from_numpy(np.flatnonzero(self.fill == 0)).to(activations.device)
        flat = activations.detach()[:, fresh].transpose(0, 1).reshape(len(fresh), n * h * w).float()
        kth = flat.kthvalue(n * h * w - self.keep + 1, dim=1).values.cpu().numpy()
        self.floor[fresh.cpu().numpy()] = np.nextafter(kth, np.float32(-np.inf))

    def trim(self) -> None:
        """Cut every unit to its best `keep` entries and the buffers to as many columns: what a shard sends to be
        merged (nothing cut could be read: the final threshold is at least each part's `keep`-th largest)."""
        for unit in np.flatnonzero(self.fill > self.keep):
            _cut(unit, self.keep, self.fill, self.floor, self.values, self.images, self.positions, self.neighbourhoods)
        width = max(int(self.fill.max(initial=0)), 1)
        self.values, self.images = self.values[:, :width].copy(), self.images[:, :width].copy()
        self.positions, self.neighbourhoods = self.positions[:, :width].copy(), self.neighbourhoods[:, :width].copy()

    def merge(self, other: TopActivations) -> None:
        """Take in another's entries (of other images): the union, cut to each unit's best `keep` where it
        overflows the buffer. Every value the final threshold reads is in it, as after a single pass."""
        capacity = self.values.shape[1]
        self.seen += other.seen
        values = np.concatenate([self.values, other.values], axis=1)  # unused slots are -inf
        fill = self.fill + other.fill
        overflowing = fill > capacity
        # Each unit's best `capacity` entries, in no order (every entry where they fit): a partition, not a sort;
        # where the union overflows, its best `keep` to the front.
        order = np.argpartition(-values, capacity - 1, axis=1)[:, :capacity]
        rows = np.flatnonzero(overflowing)
        if len(rows):
            best = np.argpartition(-np.take_along_axis(values[rows], order[rows], axis=1), self.keep - 1, axis=1)
            order[rows] = np.take_along_axis(order[rows], best, axis=1)
        fill = np.where(overflowing, self.keep, fill)
        taken = np.take_along_axis(values, order, axis=1) > -np.inf
        taken[rows, self.keep:] = False
        # Entries first, as `update` appends after them (a stable sort of booleans: a radix sort).
        order = np.take_along_axis(order, np.argsort(~taken, axis=1, kind="stable"), axis=1)
        taken = np.arange(capacity) < fill[:, None]
        self.values = np.where(taken, np.take_along_axis(values, order, axis=1), -np.inf).astype(np.float32)
        for name in ("images", "positions", "neighbourhoods"):
            both = np.concatenate([getattr(self, name), getattr(other, name)], axis=1)
            chosen = np.take_along_axis(both, order if both.ndim == 2 else order[..., None], axis=1)
            setattr(self, name, chosen)
        kth = self.values[:, :self.keep].min(axis=1)  # of an overflowing unit: its best `keep` are in front
        self.floor = np.maximum(np.maximum(self.floor, other.floor), np.where(overflowing, kth, -np.inf))
        self.fill = fill

    def thresholds(self) -> np.ndarray:
        """(units,) float64: each unit's `quantile` of every value seen, exactly as np.quantile computes it."""
        if self.seen == 0:
            return np.full(len(self.values), np.nan)
        # The two order statistics the quantile reads, counted from the largest: a partition, not a sort.
        below = math.floor(self.quantile * (self.seen - 1))
        wanted = sorted({self.seen - 1 - below, max(self.seen - 2 - below, 0)})
        descending = -np.partition(-self.values, wanted, axis=1)
        return linear_quantile(descending, self.seen, self.quantile)

    def maxima(self) -> np.ndarray:
        """(units,) the largest value seen."""
        return self.values.max(axis=1).astype(np.float64)

    def above(self, thresholds: np.ndarray) -> dict[str, np.ndarray]:
        """The kept entries strictly above their unit's threshold, ordered by image, then unit: unit, image, y, x,
        value and the 3 x 3 neighbourhood (entries, 9)."""
        unit, image, position, value, neighbourhood = _by_image(
            self.values, self.images, self.positions, self.neighbourhoods, thresholds,
            int(self.images.max(initial=-1)) + 1)
        w = self.map_shape[1]
        return {"unit": unit, "image": image, "y": position // w, "x": position % w, "value": value,
                "neighbourhood": neighbourhood}

    def state(self) -> dict[str, np.ndarray]:
        return {"seen": np.array(self.seen), "fill": self.fill, "floor": self.floor, "values": self.values,
                "images": self.images, "positions": self.positions, "neighbourhoods": self.neighbourhoods}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.seen = int(state["seen"])
        for key in ("fill", "floor", "values", "images", "positions", "neighbourhoods"):
            setattr(self, key, np.array(state[key]))


@numba.njit(cache=True, nogil=True)
def _by_image(values, images, positions, neighbourhoods, thresholds,
              image_count):  # pragma: no cover - compiled; tested through above()
    """The entries above their unit's threshold by image, then unit and slot: a counting sort, two passes over
    the buffers that write each entry once (numpy's selection, sort by image and gathers took 3x)."""
    units, capacity = values.shape
    starts = np.zeros(image_count + 1, dtype=np.int64)
    for u in range(units):
        for slot in range(capacity):
            if values[u, slot] > thresholds[u]:
                starts[images[u, slot] + 1] += 1
    for i in range(image_count):
        starts[i + 1] += starts[i]
    n = starts[image_count]
    unit, image, position = np.empty(n, np.int64), np.empty(n, images.dtype), np.empty(n, positions.dtype)
    value, neighbourhood = np.empty(n, values.dtype), np.empty((n, 9), neighbourhoods.dtype)
    for u in range(units):
        for slot in range(capacity):
            if values[u, slot] > thresholds[u]:
                at = starts[images[u, slot]]
                starts[images[u, slot]] += 1
                unit[at], image[at], position[at], value[at] = u, images[u, slot], positions[u, slot], values[u, slot]
                for d in range(9):
                    neighbourhood[at, d] = neighbourhoods[u, slot, d]
    return unit, image, position, value, neighbourhood


@numba.njit(cache=True, nogil=True)
def _scan(memory, peaks, batch_rows, images, keep, fill, floor, values, image_of, position_of,
          neighbourhoods):  # pragma: no cover - compiled; tested through TopActivations
    """Append every value above its unit's floor, with its neighbourhood, from the images `batch_rows` of
    `memory` (n, h, w, c) whose maxima are `peaks` (n, c). Unit by unit within an image, so that a unit's
    entries are written one after another (unit after unit, they were scattered over every unit's buffer),
    and a map whose peak is not above its floor is skipped. One loop with no helper inlined into it: numba
    compiles that 3-4x faster."""
    _, h, w, c = memory.shape
    capacity = values.shape[1]
    for b in batch_rows:
        for u in range(c):
            if peaks[b, u] <= floor[u]:
                continue
            for y in range(h):
                for x in range(w):
                    value = memory[b, y, x, u]
                    if value <= floor[u]:
                        continue
                    if fill[u] == capacity:
                        _cut(u, keep, fill, floor, values, image_of, position_of, neighbourhoods)
                        if value <= floor[u]:
                            continue
                    slot = fill[u]
                    values[u, slot] = value
                    image_of[u, slot] = images[b]
                    position_of[u, slot] = y * w + x
                    for dy in range(3):
                        for dx in range(3):
                            neighbourhoods[u, slot, dy * 3 + dx] = memory[b, min(max(y + dy - 1, 0), h - 1),
                                                                         min(max(x + dx - 1, 0), w - 1), u]
                    fill[u] = slot + 1


_BINS = 2048  # of the histogram a cut finds its threshold with


@numba.njit(cache=True, nogil=True)
def _cut(u, keep, fill, floor, values, image_of, position_of,
         neighbourhoods):  # pragma: no cover - compiled; tested through TopActivations
    """Keep unit u's best `keep` entries (in no order) at the front of its buffer, in linear time; its
    floor becomes the smallest of them.

    The keep-th largest by a histogram of the values' bits over their range, then a quickselect of the one
    bin that holds it; entries moved without branching on them. On half-kept buffers, quickselect's and the
    compaction's branches are coin flips: this costs a third of that. Element loops, not np.partition or
    slices: numba compiles those in seconds on the first index pass of every install."""
    n = fill[u]
    # float32 bits as integers that sort as the values do: negative values' magnitude bits flipped.
    bits = values.view(np.int32)
    keys = np.empty(n, dtype=np.int64)
    lowest, highest = np.int64(2 ** 40), np.int64(-2 ** 40)
    for i in range(n):
        b = np.int64(bits[u, i])
        key = b ^ ((b >> 31) & 0x7FFFFFFF)
        keys[i] = key
        lowest, highest = min(lowest, key), max(highest, key)
    shift = 0
    while (highest - lowest) >> shift >= _BINS:
        shift += 1
    histogram = np.zeros(_BINS, dtype=np.int64)
    for i in range(n):
        histogram[(keys[i] - lowest) >> shift] += 1
    above, holder = 0, _BINS - 1  # entries in the bins above the one that holds the keep-th largest
    while above + histogram[holder] < keep:
        above += histogram[holder]
        holder -= 1
    bucket = np.empty(histogram[holder], dtype=values.dtype)
    j = 0
    for i in range(n):
        if (keys[i] - lowest) >> shift == holder:
            bucket[j] = values[u, i]
            j += 1
    target = len(bucket) - (keep - above)  # the keep-th largest, counted from the bucket's smallest
    low, high = 0, len(bucket) - 1
    while low < high:  # Hoare's quickselect
        pivot = bucket[(low + high) // 2]
        i, j = low, high
        while i <= j:
            while bucket[i] < pivot:
                i += 1
            while bucket[j] > pivot:
                j -= 1
            if i <= j:
                bucket[i], bucket[j] = bucket[j], bucket[i]
                i += 1
                j -= 1
        if target <= j:
            high = j
        elif target >= i:
            low = i
        else:  # between the two parts every value equals the pivot
            break
    kth = bucket[target]
    ties = keep  # less the entries above it: those equal to it that are kept
    for i in range(n):
        ties -= values[u, i] > kth
    write = 0
    for i in range(n):  # compacting leftwards: `write` never passes `i`; a dropped entry is overwritten
        value = values[u, i]
        tie = value == kth
        kept = (value > kth) | (tie & (ties > 0))
        ties -= tie & kept
        values[u, write] = value
        image_of[u, write] = image_of[u, i]
        position_of[u, write] = position_of[u, i]
        for d in range(9):
            neighbourhoods[u, write, d] = neighbourhoods[u, i, d]
        write += kept
    for i in range(keep, n):
        values[u, i] = -np.inf
    fill[u] = keep
    floor[u] = kth
