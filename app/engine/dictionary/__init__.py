"""Dictionary learning on a layer's activations: directions in channel space (features) that the layer
combines, found by a TopK sparse autoencoder (`sae.py`), non-negative matrix factorisation (`nmf.py`) or, for
activations of any sign, semi-NMF (`semi_nmf.py`).
Torch only; every spatial position's activation vector is a sample."""

from __future__ import annotations

import torch

from app.engine.dictionary.base import Dictionary, Figures, encode_maps, evaluate
from app.engine.dictionary.nmf import NMF, NmfTrainer
from app.engine.dictionary.sae import SaeTrainer, TopKSAE
from app.engine.dictionary.semi_nmf import SemiNMF, SemiNmfTrainer

METHODS = {TopKSAE.method: TopKSAE, NMF.method: NMF, SemiNMF.method: SemiNMF}


def from_tensors(method: str, tensors: dict[str, torch.Tensor]) -> Dictionary:
    return METHODS[method].from_tensors(tensors)


__all__ = ["METHODS", "NMF", "Dictionary", "Figures", "NmfTrainer", "SaeTrainer", "SemiNMF", "SemiNmfTrainer",
           "TopKSAE", "encode_maps", "evaluate", "from_tensors"]
