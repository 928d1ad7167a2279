"""What every dictionary method shares: a dictionary maps a layer's activation vectors (one per spatial
position, in channel space) to non-negative feature codes and back, and is judged by the same figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import torch


class Dictionary(Protocol):
    method: str
    channels: int
    size: int  # features

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """(N, channels) activation vectors to (N, size) non-negative codes; each row on its own. A method whose
        codes are sparse also has `encode_sparse` (the TopK autoencoder): the index pass records from it."""

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, size) codes to (N, channels) reconstructions."""

    def directions(self) -> torch.Tensor:
        """(size, channels) unit vectors: the channels that compose each feature (its decoder row)."""

    def drivers(self) -> torch.Tensor:
        """(size, channels): the direction in channel space whose dot product drives each feature up, for
        feature visualisation (an SAE's encoder column; NMF's component, as no linear encoder exists)."""

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything `from_tensors` needs, to be stored as plain tensors (never pickled)."""


ENCODE_CHUNK = 16384  # positions encoded at once: bounds the dense codes' memory


def encode_maps(dictionary: Dictionary, activations: torch.Tensor, chunk: int = ENCODE_CHUNK) -> torch.Tensor:
    """(n, channels, h, w) maps to (n, size, h, w) feature maps, every position encoded on its own. The
    result has the input's memory layout when that is channels-last (the positions are the rows then)."""
    n, c, h, w = activations.shape
    vectors = activations.permute(0, 2, 3, 1).reshape(n * h * w, c)
    codes = torch.cat([dictionary.encode(vectors[start:start + chunk])
                       for start in range(0, len(vectors), chunk)]) if len(vectors) else \
        vectors.new_zeros((0, dictionary.size))
    return codes.view(n, h, w, dictionary.size).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Figures:
    """How well a dictionary does on held-out activation vectors."""

    variance_explained: float  # 1 - |X - decode(encode(X))|^2 / |X - mean(X)|^2
    dead_features: int  # never active on any held-out vector
    mean_active: float  # active features per vector (L0)
    vectors: int  # held-out vectors measured

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate(dictionary: Dictionary, vectors: torch.Tensor, chunk: int = ENCODE_CHUNK) -> Figures:
    if len(vectors) == 0:
        return Figures(float("nan"), dictionary.size, 0.0, 0)
    mean = vectors.mean(dim=0)
    error = total = active = 0.0  # summed per chunk in float32 (the device's), across chunks in Python's float64
    fired = torch.zeros(dictionary.size, dtype=torch.bool, device=vectors.device)
    for start in range(0, len(vectors), chunk):
        part = vectors[start:start + chunk]
        codes = dictionary.encode(part)
        error += (part - dictionary.decode(codes)).square().sum().item()
        total += (part - mean).square().sum().item()
        nonzero = codes > 0
        active += nonzero.sum().item()
        fired |= nonzero.any(dim=0)
    return Figures(variance_explained=1.0 - error / total if total > 0 else float("nan"),
                   dead_features=int((~fired).sum()), mean_active=active / len(vectors), vectors=len(vectors))
