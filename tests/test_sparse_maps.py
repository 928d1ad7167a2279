"""A TopK autoencoder's feature maps kept sparse (app/engine/dictionary/sparse_maps.py): every reduction the
index pass reads off them equals the one over the dense maps `encode_maps` gives, and the accumulators fed
either way end in the same state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.atlas.recording import FeatureRecorder
from app.engine.accumulators import TopK
from app.engine.dictionary import encode_maps
from app.engine.dictionary.sae import TopKSAE
from app.engine.dictionary.sparse_maps import SparseMaps
from app.engine.histogram import Histogram, sample_positions
from app.engine.layers import LayerInfo

CHANNELS, SIZE, K = 12, 40, 5


def sae(seed: int = 0) -> TopKSAE:
    generator = torch.Generator().manual_seed(seed)
    encoder = torch.randn(CHANNELS, SIZE, generator=generator)
    decoder = torch.nn.functional.normalize(torch.randn(SIZE, CHANNELS, generator=generator), dim=1)
    return TopKSAE(encoder, torch.randn(SIZE, generator=generator) - 1, decoder,
                   torch.randn(CHANNELS, generator=generator), scale=0.7, k=K)


def layer_output(n: int = 6, h: int = 5, w: int = 4, seed: int = 1) -> torch.Tensor:
    """ReLU maps, channels-last in memory as the CPU's index pass holds them."""
    maps = torch.randn(n, CHANNELS, h, w, generator=torch.Generator().manual_seed(seed)).relu()
    return maps.contiguous(memory_format=torch.channels_last)


def test_the_sparse_codes_are_the_dense_codes_and_their_reductions_theirs():
    dictionary, activations = sae(), layer_output()
    dense = encode_maps(dictionary, activations)
    codes = SparseMaps.encode(dictionary, activations)
    assert torch.equal(codes.dense(), dense) and codes.dense().stride() == dense.stride()
    n, c, h, w = dense.shape
    flat = dense.reshape(n, c, h * w)
    assert (dense == 0).float().mean() > 0.8  # sparse indeed: at most 5 of 40 features a position
    assert torch.equal(codes.spatial_max(), flat.amax(dim=2))
    torch.testing.assert_close(codes.spatial_mean(), flat.mean(dim=2), rtol=1e-6, atol=1e-7)
    images, units = torch.tensor([0, 0, 3, 5, 2]), torch.tensor([7, 39, 0, 12, 7])
    assert torch.equal(codes[images, units], flat[images, units])


@pytest.mark.parametrize("sampled", [False, True], ids=["every position", "sampled positions"])
def test_a_histogram_fed_the_active_values_bins_as_one_fed_every_map(sampled):
    dictionary = sae()
    dense_fed, sparse_fed = Histogram(SIZE, bins=64), Histogram(SIZE, bins=64)
    for batch in range(4):  # the ranges grow from batch to batch
        activations = layer_output(seed=batch) * (batch + 1)
        ids = torch.arange(batch * 6, batch * 6 + 6)
        positions = sample_positions(ids, 20, 7) if sampled else None
        dense = encode_maps(dictionary, activations)
        dense_fed.update(dense.reshape(6, SIZE, 20), positions)
        sparse_fed.update_sparse(*SparseMaps.encode(dictionary, activations).active_at(positions))
    dense_fed.flush()
    assert np.array_equal(sparse_fed.counts, dense_fed.counts) and np.array_equal(sparse_fed.zeros, dense_fed.zeros)
    assert np.array_equal(sparse_fed.exponents, dense_fed.exponents)
    assert sparse_fed.counts.sum() > 0


def test_top_k_kept_from_the_sparse_maps_is_the_one_kept_from_the_dense():
    dictionary = sae()
    from_dense, from_sparse = TopK(SIZE, 3, (5, 4)), TopK(SIZE, 3, (5, 4))
    for batch in range(3):
        activations, ids = layer_output(seed=10 + batch), torch.arange(batch * 6, batch * 6 + 6)
        dense = encode_maps(dictionary, activations)
        flat = dense.reshape(6, SIZE, 20)
        maxima, means = flat.amax(dim=2), flat.mean(dim=2)
        from_dense.update(flat, ids, maxima, means)
        from_sparse.update(SparseMaps.encode(dictionary, activations), ids, maxima, means)
    for key, value in from_dense.state().items():
        assert np.array_equal(from_sparse.state()[key], value), key


def test_an_empty_batch_has_empty_reductions():
    codes = SparseMaps.encode(sae(), layer_output(n=0))
    assert codes.spatial_max().shape == codes.spatial_mean().shape == (0, SIZE)
    assert codes.dense().shape == (0, SIZE, 5, 4)
    assert codes[torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)].shape == (0, 20)


class _Stored:
    """What a FeatureRecorder reads of a stored dictionary."""

    kind = "sae-40"

    def __init__(self, dictionary):
        self.dictionary = dictionary

    def on(self, device):
        return self.dictionary


class _DenseOnly:
    """The same autoencoder without `encode_sparse`: recorded as every feature's dense map."""

    def __init__(self, dictionary: TopKSAE):
        self.inner, self.size, self.channels = dictionary, dictionary.size, dictionary.channels

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.inner.encode(vectors)


def test_a_feature_recorder_ends_in_the_same_state_from_sparse_codes_as_from_dense_maps():
    """Every accumulator (top-k with maps and positions, statistics, a histogram of sampled positions, pooled means,
    spatial maxima for class selectivity, dissection's top activations) fed the sparse codes or the dense maps."""
    dictionary = sae()
    info = LayerInfo(name="block", type="Conv2d", shape=(CHANNELS, 5, 4), parameters=0, default=True)
    recorders = [FeatureRecorder(info, _Stored(d), torch.device("cpu"), 3, 18, None, 7, peaks=True, dissect=True)
                 for d in (dictionary, _DenseOnly(dictionary))]  # 7 of 20 positions: sampled
    for batch in range(3):
        activations, ids = layer_output(seed=20 + batch) * (batch + 1), torch.arange(batch * 6, batch * 6 + 6)
        for recorder in recorders:
            recorder.update(activations, ids)
    sparse, dense = (recorder.state() for recorder in recorders)
    assert sparse.keys() == dense.keys()
    for key in sparse:
        if key == "topk.keys":  # (max, mean) keys: the maxima exact, the means summed in another order
            assert np.array_equal(sparse[key] >> 32, dense[key] >> 32)
            np.testing.assert_allclose(sparse[key] & 0xFFFFFFFF, dense[key] & 0xFFFFFFFF, rtol=0, atol=4)
        elif key == "stats.maxima":  # of the spatial maxima, exact; of the means, within rounding
            assert np.array_equal(sparse[key][0], dense[key][0])
            np.testing.assert_allclose(sparse[key][1], dense[key][1], rtol=1e-6)
        elif key == "stats.sums":
            np.testing.assert_allclose(sparse[key], dense[key], rtol=1e-6)
        else:
            assert np.array_equal(sparse[key], dense[key]), key
    rows = {key: value for key, value in recorders[0].rows_state().items()}
    for key, value in recorders[1].rows_state().items():
        np.testing.assert_allclose(rows[key], value, rtol=1e-3)  # pooled means in float16, peaks exact
    assert recorders[0].histogram.counts.sum() > 0 and recorders[0].top_activations.fill.sum() > 0
