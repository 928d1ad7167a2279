"""Streaming per-unit statistics over a dataset, in memory independent of the number of images.

Each accumulator takes one batch of a layer's activations (n, c, h, w) at a time and can export and
import its whole state as numpy arrays, so an interrupted index build resumes to bit-identical results.
"""

from __future__ import annotations

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
