"""The dictionary engine (app/engine/dictionary): a TopK sparse autoencoder, NMF and semi-NMF, checked by hand on tiny
inputs, against scikit-learn and SciPy where they implement the same thing, and on activations made from a
known sparse dictionary, whose directions they must recover."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.engine.dictionary import (
    NMF,
    NmfTrainer,
    SaeTrainer,
    SemiNMF,
    SemiNmfTrainer,
    TopKSAE,
    encode_maps,
    evaluate,
    from_tensors,
)
from app.engine.dictionary.sae import top_k_relu
from app.engine.dictionary.semi_nmf import code_update, kmeans, least_squares_features


def planted(channels: int, features: int, samples: int, active: int, seed: int, non_negative: bool = False):
    """(vectors, directions): each vector a sum of `active` random unit directions with positive weights."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(features, channels, generator=generator)
    if non_negative:
        directions = directions.abs() * (torch.rand(features, channels, generator=generator) < 0.3)
    directions = F.normalize(directions, dim=1)
    chosen = torch.rand(samples, features, generator=generator).argsort(dim=1)[:, :active]
    weights = torch.rand(samples, active, generator=generator) + 0.5
    codes = torch.zeros(samples, features).scatter_(1, chosen, weights)
    return codes @ directions, directions


def recovered(learned: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Per planted direction, its best cosine with a learned one."""
    return (F.normalize(directions, dim=1) @ F.normalize(learned, dim=1).T).max(dim=1).values


# -- by hand ---------------------------------------------------------------------------------------------------

def test_top_k_keeps_the_k_largest_through_a_relu():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, -3.0, 0.25]])
    assert top_k_relu(pre, 2).tolist() == [[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.25]]


def test_an_sae_encodes_and_decodes_by_its_formula():
    encoder = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])  # (channels 2, size 3)
    decoder = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    sae = TopKSAE(encoder, torch.tensor([0.0, 0.0, -0.5]), decoder, torch.tensor([1.0, 0.0]), scale=2.0, k=1)
    x = torch.tensor([[6.0, 2.0]])  # / 2 - b_pre = (2, 1); pre = (2, 1, 2 - 1 - 0.5 = 0.5)
    assert sae.preactivations(x).tolist() == [[2.0, 1.0, 0.5]]
    assert sae.encode(x).tolist() == [[2.0, 0.0, 0.0]]
    assert sae.decode(sae.encode(x)).tolist() == [[(2.0 + 1.0) * 2, 0.0]]


def test_nmf_encodes_by_non_negative_least_squares_as_scipy_does():
    optimize = pytest.importorskip("scipy.optimize")
    generator = torch.Generator().manual_seed(3)
    components = F.normalize(torch.rand(12, 8, generator=generator, dtype=torch.float64), dim=1)
    vectors = torch.rand(20, 8, generator=generator, dtype=torch.float64) * 3
    codes = NMF(components, iterations=2000).encode(vectors)
    for row, code in zip(vectors.numpy(), codes.numpy()):
        best, _ = optimize.nnls(components.numpy().T, row)
        objective = np.square(row - code @ components.numpy()).sum()
        assert objective <= np.square(row - best @ components.numpy()).sum() + 1e-9
    assert (codes >= 0).all()


@pytest.mark.parametrize("size", [12, 24])  # no larger than the channels, and overcomplete
def test_nmf_codes_at_the_product_s_iterations_come_close_to_the_least_squares_optimum(size):
    generator = torch.Generator().manual_seed(5)
    components = F.normalize(torch.rand(size, 16, generator=generator) * (torch.rand(size, 16, generator=generator)
                                                                          < 0.4), dim=1)
    vectors = torch.rand(400, 16, generator=generator) * 2
    objective = lambda d: (vectors - d.decode(d.encode(vectors))).square().sum().item()  # noqa: E731
    product, converged = NMF(components), NMF(components, iterations=3000)
    assert product.iterations == (30 if size <= 16 else 60)
    assert objective(product) <= 1.15 * objective(converged)


@pytest.mark.parametrize("size", [12, 24])
def test_semi_nmf_codes_at_the_product_s_iterations_come_close_to_the_least_squares_optimum(size):
    """Signed features make the Gram matrix worse conditioned than NMF's: the encoding takes more iterations."""
    vectors, _ = planted(channels=16, features=24, samples=1500, active=3, seed=8)
    trainer = SemiNmfTrainer(vectors[:1000], size=size, steps=60, seed=0)
    trainer.run(60)
    components = trainer.dictionary().components
    held_out = vectors[1000:]
    objective = lambda d: (held_out - d.decode(d.encode(held_out))).square().sum().item()  # noqa: E731
    product, converged = SemiNMF(components), SemiNMF(components, iterations=5000)
    assert product.iterations == (300 if size <= 16 else 100)
    assert objective(product) <= 1.15 * objective(converged) + 1e-6 * held_out.square().sum().item()
    assert objective(SemiNMF(components, iterations=30)) > objective(product)


def test_one_semi_nmf_step_by_hand():
    """Ding et al.'s step on three vectors and one feature, from codes of 1: W = (H^T H)^-1 H^T X, then
    H <- H sqrt(([X W^T]+ + H [W W^T]-) / ([X W^T]- + H [W W^T]+))."""
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0], [-1.0, 0.5]], dtype=torch.float64)
    h = torch.ones(3, 1, dtype=torch.float64)
    w = least_squares_features(x, h)  # H^T H = 3, H^T X = (2, -0.5)
    assert torch.allclose(w, torch.tensor([[2 / 3, -1 / 6]], dtype=torch.float64), rtol=1e-8)
    # X W^T = (5/6, 4/3, -3/4) and W W^T = 17/36 >= 0: the first two rows are scaled by sqrt((X W^T) / (17/36)),
    # the third, driven negatively, by sqrt(0 / (3/4 + 17/36)) = 0.
    factor = code_update(x, h, w)
    assert torch.allclose(factor.view(-1), torch.tensor([(30 / 17) ** 0.5, (48 / 17) ** 0.5, 0.0],
                                                        dtype=torch.float64), rtol=1e-7)


def test_semi_nmf_steps_never_raise_the_error_and_start_from_kmeans():
    vectors, _ = planted(channels=12, features=8, samples=800, active=2, seed=6)
    assert (vectors < 0).any()
    trainer = SemiNmfTrainer(vectors.double(), size=8, steps=40, seed=1)
    clusters = kmeans(vectors.double(), 8, torch.Generator().manual_seed(1))
    assert torch.equal(trainer.codes, torch.full((800, 8), 0.2, dtype=torch.float64).index_put_(
        (torch.arange(800), clusters), torch.tensor(1.2, dtype=torch.float64)))  # indicators + 0.2
    errors = []
    trainer.run(40, lambda step: errors.append((vectors.double() - trainer.codes @ trainer.components)
                                               .square().sum().item()))
    assert all(later <= earlier * (1 + 1e-9) for earlier, later in zip(errors, errors[1:])), errors
    assert isinstance(trainer.dictionary(), SemiNMF) and trainer.dictionary().method == "semi-nmf"


def test_the_figures_are_what_their_definitions_say():
    sae = TopKSAE(torch.eye(2), torch.zeros(2), torch.eye(2), torch.zeros(2), scale=1.0, k=1)
    x = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # codes (2,0), (0,3), (1,0); errors 1, 0, 0
    figures = evaluate(sae, x)
    total = ((x - x.mean(dim=0)) ** 2).sum().item()
    assert figures.variance_explained == pytest.approx(1 - 1 / total)
    assert figures.mean_active == 1.0 and figures.dead_features == 0 and figures.vectors == 3
    dead = evaluate(TopKSAE(torch.eye(2), torch.tensor([0.0, -10.0]), torch.eye(2), torch.zeros(2), 1.0, 1), x)
    assert dead.dead_features == 1


def test_feature_maps_encode_every_position_as_the_vectors_do_in_either_layout():
    generator = torch.Generator().manual_seed(0)
    sae = SaeTrainer(torch.randn(512, 6, generator=generator), size=10, k=3, steps=1).dictionary()
    maps = torch.randn(2, 6, 3, 4, generator=generator)
    direct = sae.encode(maps.permute(0, 2, 3, 1).reshape(-1, 6)).view(2, 3, 4, 10).permute(0, 3, 1, 2)
    for layout in (torch.contiguous_format, torch.channels_last):
        # Equal to rounding: a matrix product's sums may be grouped differently for another number of rows.
        assert torch.allclose(encode_maps(sae, maps.contiguous(memory_format=layout), chunk=5), direct, atol=1e-6)


# -- against the peer --------------------------------------------------------------------------------------------

def test_nmf_takes_the_steps_scikit_learns_multiplicative_updates_take():
    decomposition = pytest.importorskip("sklearn.decomposition")
    vectors, _ = planted(channels=24, features=16, samples=3000, active=3, seed=1, non_negative=True)
    ours = NmfTrainer(vectors.double(), size=16, steps=200, seed=0)
    reference = decomposition.NMF(16, solver="mu", init="custom", max_iter=200, tol=0)
    codes = reference.fit_transform(vectors.double().numpy(), W=ours.codes.numpy().copy(),
                                    H=ours.components.numpy().copy())
    ours.run(200)
    assert np.allclose(ours.components.numpy(), reference.components_, rtol=1e-6, atol=1e-9)
    assert np.allclose(ours.codes.numpy(), codes, rtol=1e-6, atol=1e-9)


# -- planted dictionaries ---------------------------------------------------------------------------------------

def test_the_sparse_autoencoder_recovers_a_planted_dictionary():
    vectors, directions = planted(channels=32, features=48, samples=12_000, active=3, seed=0)
    trainer = SaeTrainer(vectors, size=96, k=3, steps=600, batch_size=1024, seed=0)
    trainer.run(trainer.steps)
    sae = trainer.dictionary()
    cosines = recovered(sae.directions(), directions)
    assert (cosines > 0.9).float().mean() >= 0.9, cosines.sort().values[:10]
    assert evaluate(sae, vectors[:4000]).variance_explained > 0.9


def test_nmf_recovers_a_planted_non_negative_dictionary():
    vectors, directions = planted(channels=32, features=16, samples=6000, active=2, seed=2, non_negative=True)
    trainer = NmfTrainer(vectors, size=16, steps=400, seed=0)
    trainer.run(trainer.steps)
    cosines = recovered(trainer.dictionary().directions(), directions)
    assert (cosines > 0.9).float().mean() >= 0.8, cosines.sort().values


def test_semi_nmf_recovers_most_of_a_planted_dictionary_of_any_sign():
    """Directions of any sign, positive codes, vectors of both signs (as after a linear bottleneck)."""
    vectors, directions = planted(channels=32, features=16, samples=6000, active=2, seed=2)
    assert (vectors < 0).float().mean() > 0.3
    trainer = SemiNmfTrainer(vectors, size=16, steps=200, seed=0)
    trainer.run(trainer.steps)
    semi = trainer.dictionary()
    cosines = recovered(semi.directions(), directions)
    assert (cosines > 0.9).float().mean() >= 0.7, cosines.sort().values
    assert evaluate(semi, vectors[:2000]).variance_explained > 0.95


def test_nmf_refuses_negative_activations_and_says_what_to_do():
    with pytest.raises(ValueError, match="non-negative.*--method semi-nmf.*--method sae"):
        NmfTrainer(torch.tensor([[1.0, -0.5]]), size=2, steps=1)


# -- resume -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["sae", "nmf", "semi-nmf"])
def test_a_stopped_training_resumes_to_the_same_dictionary(method):
    vectors, _ = planted(channels=16, features=24, samples=3000, active=2, seed=4, non_negative=True)

    def trainer():
        if method == "sae":
            return SaeTrainer(vectors, size=32, k=2, steps=60, batch_size=512, seed=7)
        return (NmfTrainer if method == "nmf" else SemiNmfTrainer)(vectors, size=12, steps=60, seed=7)

    whole = trainer()
    whole.run(60)
    first = trainer()
    first.run(25)
    saved = {key: value.clone() for key, value in first.state().items()}
    second = trainer()
    second.load(saved)
    second.run(60)
    for key, value in whole.dictionary().tensors().items():
        assert torch.equal(value, second.dictionary().tensors()[key]), key
    again = from_tensors(method, second.dictionary().tensors())
    assert torch.equal(again.encode(vectors[:50]), whole.dictionary().encode(vectors[:50]))
