"""Streaming per-unit statistics over a dataset, in memory independent of the number of images.

Each accumulator takes one batch of a layer's activations (n, c, h, w) at a time and can export and
import its whole state as numpy arrays, so an interrupted index build resumes to bit-identical results.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class TopK:
    """Per unit, the k images with the highest spatial-max activation, with the argmax position and the
    unit's whole map on each. Ties go to the lower image id, exactly as a stable sort of all images would.

    Entries live in unordered slots, so a batch writes only the maps that enter (rewriting all k maps of
    every unit per batch cost more than the forward pass of large early layers); `ordered()` ranks them.
    """

    def __init__(self, units: int, k: int, map_shape: tuple[int, int]):
        self.k = k
        self.values = torch.full((units, k), -math.inf)
        self.image_ids = torch.full((units, k), -1, dtype=torch.int64)
        self.positions = torch.full((units, k), -1, dtype=torch.int64)  # flat index y * w + x
        self.maps = torch.zeros((units, k, *map_shape), dtype=torch.float16)

    def update(self, activations: torch.Tensor, image_ids: torch.Tensor, maxima: torch.Tensor,
               positions: torch.Tensor) -> None:
        """`activations` (n, c, h, w) of images `image_ids` (n,), all above every id seen so far, with their
        spatial maxima and flat argmax positions (n, c)."""
        n, c = maxima.shape
        maxima, positions = maxima.T.float().cpu(), positions.T.cpu()
        # New ids exceed every kept id, so only a strictly larger value displaces the weakest entry.
        if not bool((maxima > self.values.min(dim=1, keepdim=True).values).any()):
            return
        values = torch.cat([self.values, maxima], dim=1)  # (c, k + n): the slots, then the batch
        ids = torch.cat([self.image_ids, image_ids.view(1, n).expand(c, n).cpu()], dim=1)
        chosen = _rank(values, ids)[:, : self.k]
        kept = torch.zeros((c, self.k + 1), dtype=torch.bool)
        kept.scatter_(1, chosen.clamp(max=self.k), True)
        # Evicted slots and entering images, both listed unit by unit in equal numbers: pair them up.
        slot_units, slots = (~kept[:, : self.k]).nonzero(as_tuple=True)
        entering = chosen[chosen >= self.k] - self.k  # row-major, so also unit by unit
        self.values[slot_units, slots] = maxima[slot_units, entering]
        self.image_ids[slot_units, slots] = image_ids.cpu()[entering]
        self.positions[slot_units, slots] = positions[slot_units, entering]
        device = activations.device
        self.maps[slot_units, slots] = activations[entering.to(device), slot_units.to(device)].to(
            torch.float16).cpu()

    def ordered(self) -> dict[str, torch.Tensor]:
        """The entries ranked: value descending, then image id ascending."""
        order = _rank(self.values, self.image_ids)
        return {"values": self.values.gather(1, order), "image_ids": self.image_ids.gather(1, order),
                "positions": self.positions.gather(1, order),
                "maps": self.maps[torch.arange(len(order)).view(-1, 1), order]}

    def state(self) -> dict[str, np.ndarray]:
        return {"values": self.values.numpy(), "image_ids": self.image_ids.numpy(),
                "positions": self.positions.numpy(), "maps": self.maps.numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.values = torch.from_numpy(state["values"].copy())
        self.image_ids = torch.from_numpy(state["image_ids"].copy())
        self.positions = torch.from_numpy(state["positions"].copy())
        self.maps = torch.from_numpy(state["maps"].copy())


class ImageStats:
    """Per unit: count, sum, sum of squares and max of the per-image spatial max and spatial mean (float64),
    and on how many images the unit is active (spatial max > 0)."""

    def __init__(self, units: int):
        self.count = 0
        self.sums = np.zeros((4, units))  # sum max, sum max^2, sum mean, sum mean^2
        self.maxima = np.full((2, units), -np.inf)  # max of spatial max, max of spatial mean
        self.active = np.zeros(units, dtype=np.int64)

    def update(self, spatial_max: np.ndarray, spatial_mean: np.ndarray) -> None:
        """Both (n, c), float64."""
        self.count += spatial_max.shape[0]
        self.sums += np.stack([spatial_max.sum(0), (spatial_max ** 2).sum(0),
                               spatial_mean.sum(0), (spatial_mean ** 2).sum(0)])
        self.maxima = np.maximum(self.maxima, np.stack([spatial_max.max(0), spatial_mean.max(0)]))
        self.active += (spatial_max > 0).sum(0)

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
        }

    def state(self) -> dict[str, np.ndarray]:
        return {"count": np.array(self.count), "sums": self.sums, "maxima": self.maxima, "active": self.active}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.count = int(state["count"])
        self.sums, self.maxima, self.active = state["sums"].copy(), state["maxima"].copy(), state["active"].copy()


_UNSET = -(2**31)  # a histogram exponent before the first batch


class Histogram:
    """Per unit, a histogram of activation values on [-r, r) with `bins` equal bins, where r is a power of
    two that doubles (merging bins pairwise, exactly) when a larger value arrives. Quantiles read off it
    are accurate to one bin width, at most 4 * max|x| / bins, of the values it was given."""

    def __init__(self, units: int, bins: int = 2048):
        assert bins % 4 == 0
        self.bins = bins
        self.counts = torch.zeros((units, bins), dtype=torch.int64)
        self.exponents = torch.full((units,), _UNSET, dtype=torch.int64)  # r = 2 ** exponent
        self.zeros = torch.zeros(units, dtype=torch.int64)

    def update(self, values: torch.Tensor) -> None:
        """`values` (c, m): m activation values of each unit."""
        c = values.shape[0]
        values = values.detach().float()
        peak = values.abs().amax(dim=1).cpu()
        # The smallest e with 2 ** e > peak; an all-zero unit sets no range (its values are all zeros).
        self._grow(torch.where(peak > 0, torch.frexp(peak).exponent.to(torch.int64), _UNSET))
        exponents = torch.where(self.exponents == _UNSET, 0, self.exponents)
        radius = torch.pow(2.0, exponents.double()).float().to(values.device).view(c, 1)
        offset = (torch.arange(c, device=values.device) * self.bins + self.bins // 2).view(c, 1).float()
        index = torch.addcmul(offset, values, (self.bins / 2) / radius).long()  # offset + value * scale
        index = torch.minimum(index, offset.long() + self.bins // 2 - 1)  # value == r lands in the top bin
        counts = torch.bincount(index.view(-1), minlength=c * self.bins).view(c, self.bins).cpu()
        # Exact zeros (most of a ReLU's output) are a point mass, kept apart so quantiles stay exact there.
        zeros = (values == 0).sum(dim=1).cpu()
        counts[:, self.bins // 2] -= zeros
        self.counts += counts
        self.zeros += zeros

    def _grow(self, target: torch.Tensor) -> None:
        unset = self.exponents == _UNSET
        self.exponents[unset] = target[unset]
        target = torch.where(target == _UNSET, self.exponents, target)
        while bool((self.exponents < target).any()):
            units = (self.exponents < target).nonzero(as_tuple=True)[0]
            # Doubling r maps old bin i to new bin (i + bins / 2) // 2.
            old = self.counts[units]
            merged = old.view(len(units), self.bins // 2, 2).sum(dim=2)
            fresh = torch.zeros_like(old)
            fresh[:, self.bins // 4: self.bins // 4 + self.bins // 2] = merged
            self.counts[units] = fresh
            self.exponents[units] += 1

    def edges(self, unit: int) -> np.ndarray:
        radius = 2.0 ** int(self.exponents[unit]) if int(self.exponents[unit]) != _UNSET else 1.0
        return np.linspace(-radius, radius, self.bins + 1)

    def quantile(self, q: float) -> np.ndarray:
        """Per unit, the value below which a fraction q of all activations fall (linear within a bin)."""
        middle = self.bins // 2
        result = np.zeros(self.counts.shape[0])
        for unit, (row, zeros) in enumerate(zip(self.counts.double().numpy(), self.zeros.double().numpy())):
            edges = self.edges(unit)
            # Bins below zero, the point mass at zero (a bin of width 0), then bins from zero up.
            counts = np.concatenate([row[:middle], [zeros], row[middle:]])
            lower = np.concatenate([edges[:middle], [0.0], edges[middle:-1]])
            upper = np.concatenate([edges[1:middle + 1], [0.0], edges[middle + 1:]])
            total = counts.sum()
            if total == 0:
                continue
            cumulative = np.cumsum(counts)
            b = min(int(np.searchsorted(cumulative, q * total, side="left")), len(counts) - 1)
            below = cumulative[b - 1] if b > 0 else 0.0
            fraction = (q * total - below) / counts[b] if counts[b] > 0 else 0.0
            result[unit] = lower[b] + fraction * (upper[b] - lower[b])
        return result

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts.numpy(), "exponents": self.exponents.numpy(), "zeros": self.zeros.numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.counts = torch.from_numpy(state["counts"].copy())
        self.exponents = torch.from_numpy(state["exponents"].copy())
        self.zeros = torch.from_numpy(state["zeros"].copy())


def _rank(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Per row, the column order by value descending, then id ascending (empty slots, id -1 and value
    -inf, last)."""
    by_id = torch.sort(ids, dim=1, stable=True).indices
    by_value = torch.sort(values.gather(1, by_id), dim=1, descending=True, stable=True).indices
    return by_id.gather(1, by_value)


def sample_positions(image_ids: torch.Tensor, positions: int, per_image: int) -> torch.Tensor:
    """(n, m) flat map positions to histogram for each image: all of them when the map has at most
    `per_image`, else `per_image` of them, taken in turn from a fixed permutation so that over the images
    every position is sampled equally often. Deterministic: it depends on the image ids alone."""
    if positions <= per_image:
        return torch.arange(positions).expand(len(image_ids), positions)
    permutation = torch.randperm(positions, generator=torch.Generator().manual_seed(positions))
    starts = (image_ids.view(-1, 1) * per_image + torch.arange(per_image).view(1, -1)) % positions
    return permutation[starts]
