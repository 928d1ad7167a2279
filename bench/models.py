"""Model cards for benchmarks: torchvision architectures with random weights (seed 0), saved as
safetensors beside a card, loaded by the store like any user's model."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file


def random_torchvision_card(folder: Path, architecture: str = "resnet50", size: int = 224) -> str:
    """Write `<folder>/<architecture>.toml` and its weights; returns the card's model id."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_file(getattr(torchvision.models, architecture)(weights=None).state_dict(),
              str(folder / f"{architecture}.safetensors"))
    (folder / f"{architecture}.toml").write_text(
        f'id = "{architecture}"\nname = "{architecture}, random weights"\n'
        f'[architecture]\ntorchvision = "{architecture}"\n[weights]\nfile = "{architecture}.safetensors"\n'
        f'[input]\nsize = [{size}, {size}]\nmean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\n')
    return architecture
