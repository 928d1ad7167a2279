"""A batch of feature maps kept sparse: at each spatial position only the k features a TopK dictionary chose,
with their values. Every per-unit reduction the index pass needs (spatial maxima and means, the maps of the
images that enter a unit's top-k, the values a histogram takes) is read off those entries, so a dictionary
8x the layer's width costs the pass what its k active features cost, not what all its features would. A
dense copy, equal to the dictionary's `encode_maps`, is made only where a consumer needs every map.

Maxima, the chosen maps and the histogram's values equal the dense ones exactly; a spatial mean is the same
sum added in another order (equal within float32 rounding)."""

from __future__ import annotations

import torch

from app.engine.dictionary.base import ENCODE_CHUNK


class SparseMaps:
    """(n, units, h, w) maps of non-negative values, given as `values` and `units`, both (n, h * w, k): the
    features active at each position (at most k; an entry of value 0 is inactive) and their values."""

    def __init__(self, values: torch.Tensor, units: torch.Tensor, size: int, map_shape: tuple[int, int]):
        self.values, self.units, self.size, self.map_shape = values, units, size, map_shape
        self.device = values.device

    @classmethod
    def encode(cls, dictionary, activations: torch.Tensor, chunk: int = ENCODE_CHUNK) -> SparseMaps:
        """The codes of a layer's (n, channels, h, w) maps, every position on its own, by a dictionary with
        `encode_sparse` ((N, channels) vectors to their (N, k) values and feature indices), in the chunks of
        positions `encode_maps` takes (the same products, so the same codes)."""
        n, c, h, w = activations.shape
        vectors = activations.permute(0, 2, 3, 1).reshape(n * h * w, c)
        parts = [dictionary.encode_sparse(vectors[start:start + chunk]) for start in range(0, len(vectors), chunk)]
        if not parts:  # no positions at all: none of a zero vector's k entries
            parts = [tuple(part[:0] for part in dictionary.encode_sparse(vectors.new_zeros((1, c))))]
        k = parts[0][0].shape[1]
        values = torch.cat([part[0] for part in parts]).view(n, h * w, k)
        units = torch.cat([part[1] for part in parts]).view(n, h * w, k)
        return cls(values, units, dictionary.size, (h, w))

    def _per_image(self, entries: torch.Tensor) -> torch.Tensor:
        """(n, h * w * k): each image's entries in a row."""
        n, positions, k = entries.shape
        return entries.view(n, positions * k)

    def spatial_max(self) -> torch.Tensor:
        """(n, units): each map's maximum (0 where a feature is never active: its map is all zeros)."""
        return self.values.new_zeros((len(self.values), self.size)).scatter_reduce_(
            1, self._per_image(self.units), self._per_image(self.values), "amax")

    def spatial_mean(self) -> torch.Tensor:
        """(n, units): each map's mean. The sums in float64 (but on MPS, which has none), so that the order a
        GPU's atomic additions take leaves them the same: a resumed build must end as an uninterrupted one."""
        n, positions, _ = self.values.shape
        exact = torch.float32 if self.device.type == "mps" else torch.float64
        sums = torch.zeros((n, self.size), dtype=exact, device=self.device).scatter_add_(
            1, self._per_image(self.units), self._per_image(self.values).to(exact))
        return sums.float() / positions

    def __getitem__(self, pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(m, h * w): the maps of images `pairs[0]` for units `pairs[1]` (both (m,), the pairs distinct, as
        TopK asks), as a dense tensor's `maps[images, units]` would give them flattened."""
        images, units = pairs
        n, positions, k = self.values.shape
        row_of = torch.full((n, self.size), -1, dtype=torch.int64, device=self.device)  # (image, unit) -> row
        row_of[images, units] = torch.arange(len(images), device=self.device)
        rows = row_of.gather(1, self._per_image(self.units))  # each entry's row, or -1
        chosen = rows >= 0
        position = torch.arange(positions, device=self.device).repeat_interleave(k).expand(n, positions * k)
        maps = self.values.new_zeros((len(images), positions))
        maps[rows[chosen], position[chosen]] = self._per_image(self.values)[chosen]
        return maps

    def active_at(self, positions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At the (n, m) flat `positions` of each image (None: all of them), the active entries' units and
        values (each (entries,)), and per unit how many of those positions leave it at zero (units,)."""
        n, p, _ = self.values.shape
        active = self.values > 0
        if positions is not None:
            taken = torch.zeros((n, p), dtype=torch.bool, device=self.device)
            taken.scatter_(1, positions.to(self.device), True)
            active &= taken.unsqueeze(2)
        units, values = self.units[active], self.values[active]
        per_image = p if positions is None else positions.shape[1]
        zeros = n * per_image - torch.bincount(units, minlength=self.size)
        return units, values, zeros

    def into_histogram(self, histogram, positions: torch.Tensor | None) -> None:
        """The values at `positions` (None: all) into an accumulators.Histogram, as every map's would go."""
        histogram.update_sparse(*self.active_at(positions))

    def dense(self) -> torch.Tensor:
        """(n, units, h, w), channels-last in memory, as `encode_maps` gives it."""
        n, p, k = self.values.shape
        h, w = self.map_shape
        codes = self.values.new_zeros((n * p, self.size)).scatter_(1, self.units.view(n * p, k),
                                                                   self.values.view(n * p, k))
        return codes.view(n, h, w, self.size).permute(0, 3, 1, 2)
