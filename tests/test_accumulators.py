"""The streaming accumulators on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.accumulators import _EMPTY, ImageStats, TopK, _keys, _unkey, peak_positions
from app.engine.histogram import Histogram, sample_positions


def _update(topk: TopK, batch: torch.Tensor, ids: list[int]) -> None:
    flat = batch.reshape(len(ids), batch.shape[1], -1)
    topk.update(flat, torch.tensor(ids), flat.amax(dim=2), flat.mean(dim=2))


def test_topk_keeps_the_largest_with_ties_to_the_lower_id():
    topk = TopK(units=1, k=2, map_shape=(1, 2))
    _update(topk, torch.tensor([[[[1.0, 3.0]]], [[[2.0, 0.0]]]]), [0, 1])  # maxima 3 (id 0), 2 (id 1)
    _update(topk, torch.tensor([[[[3.0, 1.0]]], [[[0.5, 0.5]]]]), [2, 3])  # 3 and mean 2 tie id 0: id 0 first
    ranked = topk.ordered()
    assert ranked["image_ids"].tolist() == [[0, 2]]
    assert ranked["values"].tolist() == [[3.0, 3.0]]
    assert ranked["positions"].tolist() == [[1, 0]]
    assert ranked["maps"][0, 1].tolist() == [[3.0, 1.0]]


def test_topk_breaks_ties_on_the_maximum_by_the_spatial_mean():
    """A clamp (ReLU6) caps many images at 6.0: among them the image the unit fills more ranks first, and an
    image tied on both keys goes to the lower id, in any batch and slot order."""
    maps = {0: [6.0, 0.0, 0.0, 0.0], 1: [6.0, 6.0, 6.0, 0.0], 2: [6.0, 6.0, 0.0, 0.0], 3: [5.0, 5.0, 5.0, 5.0],
            4: [6.0, 6.0, 0.0, 0.0], 5: [6.0, 6.0, 6.0, 6.0], 6: [6.0, 0.0, 6.0, 0.0]}
    topk = TopK(units=1, k=4, map_shape=(2, 2))
    for ids in ([0, 1], [2, 3, 4], [5, 6]):
        _update(topk, torch.tensor([[maps[i]] for i in ids]).reshape(len(ids), 1, 2, 2), ids)
    ranked = topk.ordered()
    # (max, mean): 5 (6, 6), 1 (6, 4.5), then 2, 4 and 6 at (6, 3): the lower ids 2 and 4 take the places.
    assert ranked["image_ids"].tolist() == [[5, 1, 2, 4]]
    assert ranked["values"].tolist() == [[6.0, 6.0, 6.0, 6.0]]


def test_the_peak_of_a_saturated_map_sits_where_the_maximum_is():
    """Positions at the clamp: the one nearest their centroid, not the first in row-major order (which put
    69% of an EfficientNet head's peaks at the top left)."""
    maps = torch.zeros(3, 5, 5)
    maps[0, 2:5, 2:5] = 6.0  # a saturated block at the bottom right: centroid (3, 3)
    maps[1, 0, 0], maps[1, 4, 4] = 6.0, 6.0  # two corners: centroid (2, 2), equidistant, first one wins
    maps[2, 1, 3] = 7.0  # one maximum: itself
    assert peak_positions(maps.reshape(3, 25), (5, 5)).tolist() == [3 * 5 + 3, 0, 1 * 5 + 3]


def test_topk_keys_order_every_kind_of_float():
    values = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, np.inf], dtype=np.float32)
    keys = _keys(values, np.zeros(len(values), dtype=np.float32))
    assert (np.diff(keys[[0, 1, 2, 4, 5, 6, 7]]) > 0).all()
    assert keys[3] == keys[4]  # -0 and +0 are one value, so the mean and then the image id break their tie
    means = _keys(np.zeros(len(values), dtype=np.float32), values)  # the mean orders keys of equal maxima
    assert (np.diff(means[[0, 1, 2, 4, 5, 6, 7]]) > 0).all() and means[3] == means[4]
    assert (_keys(values[:1], values[-1:]) < _keys(values[1:2], values[:1])).all()  # the maximum comes first
    decoded = _unkey(np.append(_keys(values, values), _EMPTY))
    assert decoded[:3].tolist() == values[:3].tolist() and decoded[4:8].tolist() == values[4:].tolist()
    assert decoded[8] == -np.inf


def test_image_stats_by_hand():
    stats = ImageStats(units=1)
    stats.update(np.array([[1.0], [3.0]]), np.array([[0.5], [1.5]]))
    stats.update(np.array([[-1.0]]), np.array([[-2.0]]))
    summary = stats.summary()
    assert summary["max_mean"][0] == pytest.approx(1.0)
    assert summary["max_std"][0] == pytest.approx(np.std([1.0, 3.0, -1.0]))
    assert summary["max_max"][0] == 3.0 and summary["mean_max"][0] == 1.5
    assert summary["fraction_active"][0] == pytest.approx(2 / 3)
    assert summary["images_at_max"][0] == 1


def test_image_stats_count_the_images_at_the_maximum():
    stats = ImageStats(units=2)
    stats.update(np.array([[6.0, 1.0], [6.0, 2.0], [5.0, 3.0]]), np.zeros((3, 2)))
    stats.update(np.array([[6.0, 4.0]]), np.zeros((1, 2)))  # a third image at 6; unit 1's maximum rises
    stats.update(np.array([[2.0, 4.0], [6.0, 1.0]]), np.zeros((2, 2)))
    assert stats.summary()["images_at_max"].tolist() == [4, 2]


def test_histogram_bins_values_and_keeps_zeros_apart():
    histogram = Histogram(units=1, bins=8)
    histogram.update(torch.tensor([[[0.0, 0.0, 0.1, 0.3, 0.6, -0.2]]]))  # peak 0.6 -> r = 1, bin width 0.25
    histogram.flush()
    assert int(histogram.exponents[0]) == 0
    # Bins of 0.25 from -1: -0.2 in [-0.25, 0), 0.1 in [0, 0.25), 0.3 in [0.25, 0.5), 0.6 in [0.5, 0.75).
    assert histogram.counts[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 0]
    assert int(histogram.zeros[0]) == 2
    # 6 values; q = 0.5 -> 3 values below: the two zeros and -0.2, so the median sits at zero's point mass.
    assert histogram.quantile(0.5)[0] == 0.0


def test_histogram_coarsens_to_the_occupied_range():
    histogram = Histogram(units=2, bins=8)
    histogram.update(torch.tensor([[[0.0, 0.1, 0.3, 0.6, -0.2], [0.0, 0.0, 0.0, 0.0, 0.0]]]))  # 1 image, 2 units
    coarse = histogram.coarse(bins=2)
    # Unit 0 occupies fine bins 3 to 6 of [-1, 1) in 0.25 steps: two coarse bins of two fine bins each.
    assert coarse["used"].tolist() == [2, 0]
    assert coarse["counts"][0].tolist() == [2, 2]
    assert coarse["edges"][0].tolist() == [-0.25, 0.25, 0.75]
    assert coarse["zeros"].tolist() == [1, 5]
    # Coarse bins hold whole fine bins: ceil(4 / 3) = 2 each, so 3 allowed bins still give 2 used ones.
    three = histogram.coarse(bins=3)
    assert three["used"][0] == 2 and three["counts"][0].tolist() == [2, 2, 0]


def test_histogram_doubling_merges_exactly():
    values = torch.tensor([[[0.3, -0.7, 0.9, 0.05, 1.7, 3.9, -2.5]]])  # (images, units, values)
    growing = Histogram(units=1, bins=16, pending_values=1)  # binned at every update
    growing.update(values[..., :4])  # r = 1
    growing.update(values[..., 4:])  # r = 4: two doublings
    direct = Histogram(units=1, bins=16, pending_values=1)
    direct.update(values[..., [5]])  # r = 4 from the start
    direct.update(values[..., [0, 1, 2, 3, 4, 6]])
    assert int(growing.exponents[0]) == int(direct.exponents[0]) == 2
    assert np.array_equal(growing.counts, direct.counts)


def test_histogram_counts_do_not_depend_on_how_batches_are_grouped():
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 3, 50, generator=generator) * scale for scale in (0.01, 1.0, 37.0, 0.5, 1e4)]
    one_by_one, pooled = Histogram(units=3, pending_values=1), Histogram(units=3)
    for batch in batches:
        one_by_one.update(batch)
        pooled.update(batch)
    assert np.array_equal(one_by_one.state()["counts"], pooled.state()["counts"])
    assert one_by_one.counts.sum() + one_by_one.zeros.sum() == 5 * 4 * 3 * 50


def test_all_zero_first_batch_sets_no_range():
    histogram = Histogram(units=1, bins=2048, pending_values=1)
    histogram.update(torch.zeros(1, 1, 10))
    histogram.update(torch.tensor([[[0.05]]]))
    assert int(histogram.exponents[0]) == -4  # 2 ** -4 = 0.0625 > 0.05, not a range of 1 fixed by zeros
    assert histogram.quantile(1.0)[0] <= 0.0625


def test_sample_positions_cover_every_position_equally():
    ids = torch.arange(49)
    sampled = sample_positions(ids, positions=49, per_image=7)
    assert sampled.shape == (49, 7)
    assert torch.bincount(sampled.flatten(), minlength=49).tolist() == [7] * 49
    assert torch.equal(sample_positions(ids, 4, 7), torch.arange(4).expand(49, 4))  # small maps: all of them
    assert torch.equal(sampled, sample_positions(ids, 49, 7))  # deterministic


def test_topk_matches_a_stable_sort_with_many_ties():
    generator = torch.Generator().manual_seed(0)
    activations = torch.randint(0, 4, (103, 5, 2, 3), generator=generator).float()  # values 0..3: ties galore
    topk = TopK(units=5, k=7, map_shape=(2, 3))
    for start in range(0, 103, 10):
        _update(topk, activations[start:start + 10], list(range(start, min(start + 10, 103))))
    ranked = topk.ordered()
    flat = activations.reshape(103, 5, 6)
    maxima, means = flat.max(dim=2).values.numpy(), flat.mean(dim=2).numpy()
    for unit in range(5):
        expected = np.lexsort((np.arange(103), -means[:, unit], -maxima[:, unit]))[:7]
        assert ranked["image_ids"][unit].tolist() == expected.tolist()
        for slot, image in enumerate(expected):
            assert np.array_equal(ranked["maps"][unit, slot], activations[image, unit].half().numpy())
            at_max = np.flatnonzero(flat[image, unit].numpy() == maxima[image, unit])
            ys, xs = at_max // 3, at_max % 3
            nearest = at_max[np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)]
            assert ranked["positions"][unit, slot] == nearest  # the maximum nearest the maxima's centroid


def test_histogram_takes_the_given_positions_and_copies_them():
    generator = torch.Generator().manual_seed(1)
    maps = torch.randn(5, 3, 20, generator=generator)  # (images, units, positions)
    positions = torch.randint(0, 20, (5, 4), generator=generator)
    sampled, direct = Histogram(units=3), Histogram(units=3)
    sampled.update(maps, positions)
    direct.update(torch.stack([maps[i][:, positions[i]] for i in range(5)]))
    maps.fill_(1e6)  # the layer's output changed in place after the hook: the histogram kept copies
    assert np.array_equal(sampled.state()["counts"], direct.state()["counts"])
    assert sampled.counts.sum() + sampled.zeros.sum() == 5 * 3 * 4
