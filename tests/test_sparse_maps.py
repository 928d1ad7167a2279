"""A TopK autoencoder's feature maps kept sparse (app/engine/dictionary/sparse_maps.py): every reduction the
index pass reads off them equals the one over the dense maps `encode_maps` gives, and the accumulators fed
either way end in the same state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.accumulators import Histogram, TopK, sample_positions
from app.engine.dictionary import encode_maps
from app.engine.dictionary.sae import TopKSAE
from app.engine.dictionary.sparse_maps import SparseMaps

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
