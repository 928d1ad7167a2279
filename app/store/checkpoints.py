"""Read weights safely and fit them to a model.

Checkpoints are never unpickled freely: safetensors files are plain tensors, and anything else goes
through `torch.load(weights_only=True)`, which refuses pickled code instead of running it.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from app.errors import WeightsError

# Keys under which training scripts commonly nest the state dict, searched in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "ema")
# Prefixes left by nn.DataParallel / DistributedDataParallel, torch.compile and Lightning-style wrappers.
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")
_LISTED = 8  # how many key names an error message lists


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a weights file, unwrapped from common checkpoint layouts."""
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError and OSError subclasses
            raise WeightsError(f"{path}: not a valid safetensors file: {exc}", file=str(path)) from None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises loading with weights_only=False, the opposite of what Fovea does, in terminal
        # colours; only the object it found is worth passing on.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        raise WeightsError(
            f"{path}: refused: the checkpoint holds Python objects other than tensors and plain values"
            f"{f' ({found.group(1)})' if found else ''}, and Fovea never runs pickled code. Where the model was "
            "saved whole (torch.save(model)), load it where its code is and save its state dict instead "
            "(torch.save(model.state_dict(), ...)), or convert it to safetensors.",
            file=str(path),
        ) from None
    except Exception as exc:  # a truncated zip, a non-checkpoint file, ...
        raise WeightsError(f"{path}: cannot be read as a PyTorch checkpoint: {exc}", file=str(path)) from None
    return _unwrap(content, path)


def _unwrap(content: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(content, dict) and not _is_state_dict(content):
        inner = next((content[key] for key in _WRAPPER_KEYS if isinstance(content.get(key), dict)), None)
        if inner is None:
            break
        content = inner
    if not isinstance(content, dict) or not _is_state_dict(content):
        keys = list(content)[:_LISTED] if isinstance(content, dict) else type(content).__name__
        raise WeightsError(
            f"{path}: no state dict found (looked inside the keys {', '.join(_WRAPPER_KEYS)}); "
            f"the file holds {keys}",
            file=str(path),
        )
    return content


def _is_state_dict(content: dict) -> bool:
    return bool(content) and all(isinstance(value, torch.Tensor) for value in content.values())


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model` strictly, after stripping wrapper prefixes; every mismatch is named."""
    expected = model.state_dict()
    state = _strip_prefixes(state, set(expected))
    # Checkpoints from before PyTorch 0.4.1 lack BatchNorm's step counter, which inference never reads.
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [f"{key} {tuple(state[key].shape)} (model has {tuple(expected[key].shape)})"
                   for key in expected if key in state and state[key].shape != expected[key].shape]
    problems = []
    for label, names in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", wrong_shape)):
        if names:
            more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
            problems.append(f"{label}: {', '.join(names[:_LISTED])}{more}")
    if problems:
        raise WeightsError(f"{source} does not fit the architecture: {'; '.join(problems)}",
                           missing=missing, unexpected=unexpected)
    model.load_state_dict(state, strict=False)  # every key was checked above


def _strip_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes shared by every key (possibly stacked, `module._orig_mod.`), keeping the
    version whose keys match the model best."""
    best, best_matches = state, len(expected & set(state))
    while (prefix := next((p for p in _PREFIXES if all(key.startswith(p) for key in state)), None)):
        state = {key[len(prefix):]: value for key, value in state.items()}
        matches = len(expected & set(state))
        if matches > best_matches:
            best, best_matches = state, matches
    return best
