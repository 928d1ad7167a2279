"""Semi-non-negative matrix factorisation (Ding, Li & Jordan 2010, "Convex and Semi-Nonnegative Matrix
Factorizations"), for activations of any sign: X ~ H W with codes H >= 0 and features W of any sign. It is NMF for
a layer with no ReLU after it (a linear bottleneck, a residual sum), as in "Decomposing MLP Activations into
Interpretable Features via Semi-Nonnegative Matrix Factorization".

Fitted by the paper's alternation on the whole sample, from its k-means start: W by least squares given H,
then H by its multiplicative update (which never raises the error). The factorisation is not unique (any
non-negative mixing of the codes fits as well), and random dense codes converge to mixtures of the features; the
k-means start finds most planted features (tests/test_dictionary_engine.py). A new vector is encoded as NMF
encodes it, by non-negative least squares against the fixed, unit-norm W (`nmf.py`), which never needed W or x
to be non-negative."""

from __future__ import annotations

import torch

from app.engine.dictionary.nmf import EPSILON, NMF, FactorisationTrainer

RIDGE = 1e-9  # of the mean of diag(H^T H), added to it: a feature whose codes all reached zero solves to zero
KMEANS_ITERATIONS = 10  # Lloyd's, for the start
KMEANS_OFFSET = 0.2  # Ding et al.'s start: H = cluster indicators + 0.2


class SemiNMF(NMF):
    method = "semi-nmf"
    # Features of both signs make W W^T worse conditioned than NMF's, and FISTA slower to converge. On the MobileNet's
    # signed features.9, left unexplained (converged: 0.3% with 96 features, 0.0% with 192): 96 features, 18% after
    # NMF's 30 iterations, 1.2% after 300; 192, 2.5% after 60, 0.45% after 100.
    encode_iterations = {"complete": 300, "overcomplete": 100}


class SemiNmfTrainer(FactorisationTrainer):
    """Ding et al.'s updates on (N, channels) vectors, one step being

        W <- (H^T H)^-1 H^T X
        H <- H * sqrt(([X W^T]+ + H [W W^T]-) / ([X W^T]- + H [W W^T]+)),   A+ = (|A| + A) / 2, A- = (|A| - A) / 2

    from k-means' cluster indicators plus 0.2."""

    dictionary_class = SemiNMF

    def __init__(self, vectors: torch.Tensor, size: int, steps: int, seed: int = 0):
        self.vectors, self.steps = vectors, steps
        clusters = kmeans(vectors, size, torch.Generator().manual_seed(seed))
        self.codes = torch.full((len(vectors), size), KMEANS_OFFSET, device=vectors.device, dtype=vectors.dtype)
        self.codes[torch.arange(len(vectors), device=vectors.device), clusters] += 1
        self.components = least_squares_features(vectors, self.codes)
        self.step = 0

    def update(self) -> None:
        self.components.copy_(least_squares_features(self.vectors, self.codes))
        self.codes.mul_(code_update(self.vectors, self.codes, self.components))


def kmeans(vectors: torch.Tensor, clusters: int, generator: torch.Generator,
           iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Each vector's cluster after Lloyd's iterations from `clusters` distinct vectors drawn by `generator` (a
    cluster left empty keeps its centre)."""
    seeds = torch.randperm(len(vectors), generator=generator)[:clusters].to(vectors.device)
    centres = vectors[seeds].clone()
    for _ in range(iterations):
        nearest = torch.cdist(vectors, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, nearest, vectors)
        counts = torch.bincount(nearest, minlength=len(centres)).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return torch.cdist(vectors, centres).argmin(dim=1)


def least_squares_features(vectors: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """argmin_W |X - H W|^2 = (H^T H)^-1 H^T X, the small (size x size) system solved in float64 on the CPU."""
    gram = (codes.T @ codes).cpu().double()
    ridge = RIDGE * gram.diagonal().mean().clamp_min(EPSILON)
    solved = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=torch.float64),
                                (codes.T @ vectors).cpu().double())
    return solved.to(vectors)


def code_update(vectors: torch.Tensor, codes: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """The factor Ding et al.'s rule multiplies H by: sqrt(([X W^T]+ + H [W W^T]-) / ([X W^T]- + H [W W^T]+))."""
    drive, gram = vectors @ components.T, components @ components.T
    numerator = drive.clamp_min(0).add_(codes @ (-gram).clamp_min(0))
    denominator = (-drive).clamp_min_(0).add_(codes @ gram.clamp_min(0))
    return numerator.div_(denominator.clamp_min_(EPSILON)).sqrt_()
