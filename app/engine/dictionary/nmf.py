"""Non-negative matrix factorisation of non-negative activations, X ~ H W with H, W >= 0 (as Olah et al.'s
"Building Blocks of Interpretability" and CRAFT factor CNN activations): W's rows are the features, H the
codes. Fitted by Lee and Seung's multiplicative updates on the whole sample (two matrix products per update,
on the GPU when there is one); a new vector is encoded by non-negative least squares against the fixed W,
solved by accelerated projected gradient (FISTA) from the clipped least-squares solution, for a fixed number
of iterations (ENCODE_ITERATIONS), so that a vector's code never depends on what else is in its batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# FISTA iterations of an encoding: within 0.1% of the converged objective for a dictionary no larger than the
# channels (30) on the demo's last layer; an overcomplete one starts further off (its pseudo-inverse is no
# solution) and needs twice as many to come within 11%.
ENCODE_ITERATIONS = {"complete": 30, "overcomplete": 60}
EPSILON = 1e-12


class NMF:
    method = "nmf"
    encode_iterations = ENCODE_ITERATIONS

    def __init__(self, components: torch.Tensor, iterations: int | None = None):
        self.components = components  # (size, channels), unit rows
        self.size, self.channels = components.shape
        if iterations is None:
            iterations = self.encode_iterations["overcomplete" if self.size > self.channels else "complete"]
        self.iterations = int(iterations)
        # Solved once, in float64 on the CPU (SVDs; Apple's MPS has neither them nor float64), then moved.
        host = components.detach().cpu().double()
        gram = host @ host.T
        step = 1.0 / torch.linalg.matrix_norm(gram, ord=2).clamp_min(EPSILON).item()
        self._step = step
        self._pseudo_inverse = torch.linalg.pinv(host).to(components)  # (channels, size)
        # A gradient step h - step (h W W^T - x W^T) is one product: h (I - step W W^T) + step x W^T.
        self._transition = (torch.eye(self.size, dtype=torch.float64) - step * gram).to(components)

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """argmin_{h >= 0} |x - h W|^2 per row, by FISTA with step 1 / |W W^T|_2 (three operations an
        iteration: on a layer's batch the iterations' overhead, not their arithmetic, is the cost)."""
        offset = (vectors @ self.components.T) * self._step  # step x W^T
        codes = (vectors @ self._pseudo_inverse).clamp_min(0)
        momentum, previous, t = codes, codes, 1.0
        for _ in range(self.iterations):
            codes = torch.addmm(offset, momentum, self._transition).clamp_min_(0)
            t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
            momentum = torch.lerp(previous, codes, 1 + (t - 1) / t_next)  # codes + (t - 1) / t_next (codes - previous)
            previous, t = codes, t_next
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.components

    def directions(self) -> torch.Tensor:
        return self.components

    def drivers(self) -> torch.Tensor:
        return self.components

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"components": self.components, "iterations": torch.tensor(self.iterations)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> NMF:
        return cls(tensors["components"], int(tensors["iterations"]))

    def to(self, device: torch.device) -> NMF:
        return type(self)(self.components.to(device), self.iterations)


class FactorisationTrainer:
    """What NMF's and semi-NMF's fits share: codes and components fitted on every vector at once, a step being
    `update()`; `state()` holds both, so a resumed fit ends where an uninterrupted one does."""

    dictionary_class = NMF
    vectors: torch.Tensor
    codes: torch.Tensor  # (N, size)
    components: torch.Tensor  # (size, channels)
    steps: int
    step: int

    def update(self) -> None:
        raise NotImplementedError

    def run(self, until: int, after_step: Callable[[int], None] | None = None) -> None:
        while self.step < min(until, self.steps):
            self.update()
            self.step += 1
            if after_step:
                after_step(self.step)

    def dictionary(self) -> NMF:
        """The components as unit rows (an all-zero component stays zero: a dead feature)."""
        return self.dictionary_class(F.normalize(self.components, dim=1).clone())

    def state(self) -> dict[str, torch.Tensor]:
        return {"codes": self.codes, "components": self.components, "step": torch.tensor(self.step)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.codes.copy_(state["codes"])
        self.components.copy_(state["components"])
        self.step = int(state["step"])


class NmfTrainer(FactorisationTrainer):
    """Lee and Seung's multiplicative updates on (N, channels) non-negative vectors, one step being an update of
    H then of W."""

    def __init__(self, vectors: torch.Tensor, size: int, steps: int, seed: int = 0):
        lowest = vectors.min().item() if len(vectors) else 0.0
        if lowest < 0:
            raise ValueError(f"NMF needs non-negative activations, and this layer has values down to {lowest:.3g}; "
                             "choose a layer after a ReLU, semi-NMF (--method semi-nmf: features of any sign) or "
                             "the sparse autoencoder (--method sae)")
        self.vectors, self.steps = vectors, steps
        generator = torch.Generator().manual_seed(seed)
        # Random positive factors whose product has the data's mean (scikit-learn's 'random' init).
        level = (vectors.detach().cpu().double().mean().clamp_min(EPSILON) / size).sqrt().item()
        device = vectors.device
        self.codes = (torch.rand(len(vectors), size, generator=generator) * level).to(device, vectors.dtype)
        self.components = (torch.rand(size, vectors.shape[1], generator=generator) * level).to(device, vectors.dtype)
        self.step = 0

    def update(self) -> None:
        x, h, w = self.vectors, self.codes, self.components
        h.mul_((x @ w.T) / (h @ (w @ w.T)).clamp_min(EPSILON))
        w.mul_((h.T @ x) / ((h.T @ h) @ w).clamp_min(EPSILON))
