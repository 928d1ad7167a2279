"""The model store: every card found, each loaded into a ready model or kept with the error that stopped it.

One broken card never stops the others from loading; it is listed with its error instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from app.engine.devices import resolve_device
from app.engine.layers import LayerInfo, discover_layers
from app.engine.layout import choose_memory_format
from app.engine.preprocess import Preprocessing
from app.engine.probe import ReceptiveField, fixed_receptive_field, layer_output, receptive_field
from app.errors import (
    FoveaError,
    LayerNotFound,
    ModelCardError,
    ModelNotFound,
    ModelUnavailable,
    WeightsNotInstalled,
    did_you_mean,
)
from app.settings import Settings
from app.store.builders import build_module, load_weights, torchvision_categories, torchvision_weights
from app.store.cards import ModelCard, read_card

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A card and what became of it. `status` is "ready" (module, layers and labels set) or "error"."""

    id: str
    card_path: Path
    card: ModelCard | None = None
    status: str = "error"
    error: str | None = None
    optional: bool = False  # not loaded because an optional package is missing (WeightsNotInstalled)
    module: nn.Module | None = None
    device: torch.device | None = None
    preprocessing: Preprocessing | None = None
    layers: list[LayerInfo] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    weights_sha256: str | None = None
    memory_format: torch.memory_format = torch.contiguous_format  # of input batches (app/engine/layout.py)
    load_seconds: float = 0.0
    # One owner per model: a hook on a shared module would see every concurrent forward.
    # Reentrant: a batched render (app/studio/model_calls.py) holds it while the rendering takes it again.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _receptive_fields: dict[str, ReceptiveField] = field(default_factory=dict, repr=False)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def weights_id(self) -> str | None:
        """What names the weights: their file's sha256, or the torchvision weights' name."""
        return self.weights_sha256 or (self.card.weights.torchvision if self.card else None)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters()) if self.module is not None else 0

    def as_input(self, images: torch.Tensor) -> torch.Tensor:
        """A preprocessed batch on the model's device, in the memory format the model runs fastest in."""
        return images.to(self.device, memory_format=self.memory_format)

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        close, hint = did_you_mean(name, [info.name for info in self.layers])
        raise LayerNotFound(f"model {self.id!r} has no explorable layer {name!r}{hint}",
                            model=self.id, layer=name, suggestions=close)

    @contextmanager
    def exclusive(self, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """The model's lock; `waiting()` is called first when another request holds it (a client can say so)."""
        if not self.lock.acquire(blocking=False):
            waiting()
            self.lock.acquire()
        try:
            yield
        finally:
            self.lock.release()

    def layer_output(self, layer: str, image: Image.Image,
                     waiting: Callable[[], None] = lambda: None) -> torch.Tensor:
        """(c, h, w) output of `layer` on one image, run only as far as the layer."""
        self.layer(layer)
        batch = self.preprocessing(image).unsqueeze(0).to(self.device)
        with self.exclusive(waiting):
            return layer_output(self.module, layer, batch)[0].float().cpu()

    def receptive_field(self, layer: str) -> ReceptiveField:
        """Where each position of `layer` looks in the model input (computed once per layer)."""
        info = self.layer(layer)
        if layer not in self._receptive_fields:
            with self.lock:
                found = receptive_field(self.module, layer, self.preprocessing.size, self.device)
            self._receptive_fields[layer] = found if found.map_size == info.shape[1:] else \
                fixed_receptive_field(self.preprocessing.size, info.shape[1:])
        return self._receptive_fields[layer]


class ModelStore:
    def __init__(self, models: dict[str, LoadedModel]):
        self._models = models

    def __iter__(self):
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def get(self, model_id: str) -> LoadedModel:
        if model_id not in self._models:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(f"no model {model_id!r}; known models: {known}", model=model_id,
                                known=sorted(self._models))
        return self._models[model_id]

    def ready(self, model_id: str) -> LoadedModel:
        model = self.get(model_id)
        if not model.ready:
            raise ModelUnavailable(f"model {model_id!r} failed to load: {model.error}", model=model_id)
        return model


def load_store(settings: Settings, loading_threads: int = 0, only: str | None = None) -> ModelStore:
    """Read every `*.toml` card in the configured folders and load each model, or with `only` the model of that
    id alone (a command on one model: the other cards are read, so that an unknown id is answered with the known
    ones, but not loaded). `loading_threads` (0: the process's own number) bounds the CPU threads of the loading
    alone: its forward passes on a batch of one or two gain little from threads, and two processes loading at
    once (a server's front and its model worker) each with PyTorch's spinning OpenMP threads on the same cores
    took twice the CPU time (docs/architecture.md)."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = resolve_device(settings.device)
    with torch_threads(loading_threads):
        return ModelStore(_load_cards(settings, device, only))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to `count` (0: left as they are) for the block."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count:
            torch.set_num_threads(before)


def _load_cards(settings: Settings, device: torch.device, only: str | None) -> dict[str, LoadedModel]:
    models: dict[str, LoadedModel] = {}
    for folder in settings.card_dirs():
        if not folder.is_dir():
            log.warning("model card folder %s does not exist; skipped", folder)
            continue
        for path in sorted(folder.glob("*.toml")):
            if only is not None and (card_id := _card_id(path)) != only:
                models.setdefault(card_id, LoadedModel(id=card_id, card_path=path, error=f"not loaded (only {only!r})"))
                continue
            loaded = load_model(path, device, settings.max_weights_bytes, settings.memory_layout)
            if loaded.id in models:
                first = models[loaded.id].card_path
                loaded = LoadedModel(id=f"{loaded.id}@{path.name}", card_path=path,
                                     error=f"duplicate model id {loaded.id!r}: already defined by {first}")
            models[loaded.id] = loaded
            if loaded.ready:
                log.info("model %s ready on %s (%.1f s)", loaded.id, device, loaded.load_seconds)
            elif loaded.optional:  # an extra not installed: said, not alarmed about
                log.warning("model %s not loaded: %s", loaded.id, loaded.error)
            else:
                log.error("model %s not loaded: %s", loaded.id, loaded.error)
    return models


def _card_id(path: Path) -> str:
    """A card's model id, read without loading the model (a card that cannot be read goes by its file name, as
    `load_model` names it)."""
    try:
        return read_card(path).id
    except ModelCardError:
        return path.stem


def load_model(card_path: Path, device: torch.device, max_weights_bytes: int, layout: str = "auto") -> LoadedModel:
    """Load one card; any problem becomes the returned model's `error` rather than an exception."""
    started = time.perf_counter()
    loaded = LoadedModel(id=card_path.stem, card_path=card_path)
    try:
        card = read_card(card_path)
        loaded.id, loaded.card = card.id, card
        module = build_module(card.architecture, card_path.parent)
        loaded.weights_sha256 = load_weights(module, card, card_path.parent, max_weights_bytes)
        # Served models are never mutated: eval mode and frozen parameters, once, here.
        module.eval().requires_grad_(False).to(device)
        preprocessing = _preprocessing(card)
        example = torch.zeros(1, 3, *preprocessing.size, device=device)
        layers, output = discover_layers(module, example)
        num_classes = _check_output(output)
        loaded.labels = _labels(card, card_path.parent, num_classes)
        loaded.layers = _apply_declared_layers(card, layers)
        trial = torch.randn(2, 3, *preprocessing.size, generator=torch.Generator().manual_seed(0)).to(device)
        loaded.memory_format = choose_memory_format(module, trial, layout)
        loaded.module, loaded.device, loaded.preprocessing = module, device, preprocessing
        loaded.status, loaded.error = "ready", None
    except FoveaError as exc:
        loaded.error, loaded.optional = exc.message, isinstance(exc, WeightsNotInstalled)
    except Exception as exc:  # a user's module can fail in any way during the dry forward pass
        loaded.error = f"{type(exc).__name__} during loading: {exc}"
    loaded.load_seconds = time.perf_counter() - started
    return loaded


def _preprocessing(card: ModelCard) -> Preprocessing:
    spec = card.input
    size, resize, mean, std = spec.size, spec.resize, spec.mean, spec.std
    if card.weights.torchvision is not None:
        preset = torchvision_weights(card).transforms()
        size = size or (preset.crop_size[0], preset.crop_size[0])
        resize = resize or preset.resize_size[0]
        mean, std = mean or tuple(preset.mean), std or tuple(preset.std)
    return Preprocessing(size=tuple(size), resize=resize, mean=tuple(mean), std=tuple(std))


def _check_output(output) -> int:
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelCardError(f"the model's output is {shape}; Fovea expects class scores of shape (n, classes)")
    return int(output.shape[1])


def _labels(card: ModelCard, card_dir: Path, num_classes: int) -> list[str]:
    if card.labels.names is not None:
        names, source = card.labels.names, "labels.names"
    elif card.labels.file is not None:
        path = Path(card.labels.file).expanduser()
        path = path if path.is_absolute() else card_dir / path
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise ModelCardError(f"labels.file: cannot read {path}: {exc}") from None
        source = f"labels.file {path}"
    elif card.labels.torchvision is not None:
        names, source = torchvision_categories(card.labels.torchvision), f"labels.torchvision {card.labels.torchvision}"
    elif card.weights.torchvision is not None:
        names, source = list(torchvision_weights(card).meta["categories"]), "the torchvision weights"
    else:
        return [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ModelCardError(f"{source} gives {len(names)} class names but the model outputs {num_classes} classes")
    return names


def _apply_declared_layers(card: ModelCard, layers: list[LayerInfo]) -> list[LayerInfo]:
    if card.layers is None:
        return layers
    names = [info.name for info in layers]
    for name in card.layers:
        if name not in names:
            _, hint = did_you_mean(name, names)
            raise ModelCardError(f"layers: {name!r} is not a module of this model with an (n, c, h, w) output{hint}")
    declared = set(card.layers)
    return [replace(info, default=info.name in declared) for info in layers]
