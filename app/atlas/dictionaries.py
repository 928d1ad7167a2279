"""Dictionaries of a model's layers (`fovea dictionary`): learned on the activations of an atlas dataset, stored
beside the model's atlases, and indexed as a kind of unit by every later index pass (app/atlas/build.py).

Training is a long job in two phases, each resumable after a kill: the collection of activation vectors (every
spatial position a sample, a fixed, deterministic subset of positions per image, up to a budget), then the
optimisation. Images whose id is a multiple of HELD_OUT_EVERY are held out of training and give the figures.
A stored dictionary names the weights it was learned on; on other weights it is refused."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from app.atlas.datasets import ImageDataset
from app.atlas.kinds import CHANNEL, is_kind_name
from app.atlas.layout import dictionaries_dir, dictionary_build_dir, dictionary_file
from app.atlas.loader import batches_from_disk
from app.engine.accumulators import sample_positions
from app.engine.dictionary import METHODS, Dictionary, NmfTrainer, SaeTrainer, evaluate, from_tensors
from app.engine.probe import run_to
from app.errors import FoveaError, InvalidInput, NotFound
from app.files import atomic_write, job_array
from app.store.store import LoadedModel

log = logging.getLogger(__name__)

HELD_OUT_EVERY = 10
FORMAT = 1  # of the stored file
Progress = Callable[[str, int, int], None]  # (phase: "vectors" | "steps", done, total)


class DictionaryRefused(FoveaError):
    """A stored dictionary that does not fit the model as it is loaded (other weights)."""

    status_code = 409
    code = "dictionary_refused"


@dataclass(frozen=True)
class DictionaryRequest:
    """What `fovea dictionary` asks for."""

    layer: str
    method: str  # "sae" or "nmf"
    size: int  # features
    sparsity: int  # active features per position (the SAE's k; NMF's codes are not capped)
    steps: int
    max_vectors: int  # training vectors at most (every spatial position of an image is one)
    batch_size: int = 4096
    seed: int = 0
    name: str | None = None  # its unit kind; default f"{method}-{size}"

    @property
    def kind(self) -> str:
        return self.name or f"{self.method}-{self.size}"


@dataclass(frozen=True)
class StoredDictionary:
    model: str
    layer: str
    kind: str
    meta: dict  # the request, weights, dataset, figures, seconds, digest
    dictionary: Dictionary
    _on: dict = field(default_factory=dict, compare=False, repr=False)  # device -> the dictionary there

    @property
    def digest(self) -> str:
        return self.meta["digest"]

    def on(self, device: torch.device | str) -> Dictionary:
        """The dictionary on `device`, moved (and for NMF, its solver's matrices made) once per device."""
        key = str(device)
        if key not in self._on:
            self._on[key] = self.dictionary.to(torch.device(device))
        return self._on[key]

    def composition(self, feature: int, count: int) -> list[tuple[int, float]]:
        """(channel, weight) of the `count` largest weights by magnitude in the feature's unit direction."""
        row = self.dictionary.directions()[feature].detach().float().cpu()
        order = torch.argsort(row.abs(), descending=True, stable=True)[:count]
        return [(int(c), float(row[c])) for c in order]

    def nearest(self, feature: int, count: int) -> list[tuple[int, float]]:
        """(feature, cosine) of the `count` other features whose directions are closest to this one's."""
        directions = torch.nn.functional.normalize(self.dictionary.directions().detach().float().cpu(), dim=1)
        cosines = directions @ directions[feature]
        cosines[feature] = -float("inf")
        order = torch.argsort(cosines, descending=True, stable=True)[:count]
        return [(int(f), float(cosines[f])) for f in order if torch.isfinite(cosines[f])]

    def summary(self) -> dict:
        """What the API and the atlas say of it."""
        keys = ("method", "size", "sparsity", "steps", "dataset", "figures", "seconds", "digest", "created")
        return {"layer": self.layer, "kind": self.kind, "channels": self.dictionary.channels,
                **{key: self.meta.get(key) for key in keys}}


def check_request(model: LoadedModel, request: DictionaryRequest, max_size: int, max_bytes: int) -> None:
    info = model.layer(request.layer)  # 404 with suggestions
    if request.method not in METHODS:
        raise InvalidInput(f"unknown method {request.method!r}; methods are {', '.join(METHODS)}",
                           method=request.method, valid=list(METHODS))
    if not is_kind_name(request.kind) or request.kind == CHANNEL:
        raise InvalidInput(f"a dictionary's name must be lowercase letters, digits and dashes, starting with a "
                           f"letter (at most 32), and not {CHANNEL!r}; got {request.kind!r}", name=request.kind)
    if not 1 <= request.size <= max_size:
        raise InvalidInput(f"size must be between 1 and {max_size} features (the dictionary_max_size "
                           f"setting); got {request.size}", size=request.size)
    if request.method == "sae" and not 1 <= request.sparsity <= request.size:
        raise InvalidInput(f"sparsity must be between 1 and the size ({request.size}); got {request.sparsity}",
                           sparsity=request.sparsity)
    if request.steps < 1 or request.max_vectors < 1:
        raise InvalidInput("steps and the vector budget must be positive", steps=request.steps)
    if len(info.shape) != 3:
        raise InvalidInput(f"layer {request.layer!r} has no channel maps (shape {list(info.shape)})")
    needed = memory_needed(request, info.shape[0])
    if needed > max_bytes:
        raise InvalidInput(f"learning {request.kind} holds about {needed / 1024**3:.1f} GiB of vectors"
                           f"{' and codes' if request.method == 'nmf' else ''}, over the dictionary_max_bytes setting "
                           f"({max_bytes / 1024**3:.1f} GiB): lower --size or FOVEA_DICTIONARY_MAX_VECTORS, or raise "
                           "the setting", needed=needed, limit=max_bytes)
    try:
        dictionary_file(Path("."), model.id, request.layer, request.kind)
    except ValueError as problem:  # a module name that cannot name a file
        raise InvalidInput(f"layer {request.layer!r}: {problem}", layer=request.layer) from None


def memory_needed(request: DictionaryRequest, channels: int) -> int:
    """Bytes of the training vectors (float32) and, for NMF, of its codes with their update (three times N x K)."""
    vectors = request.max_vectors * channels
    codes = 3 * request.max_vectors * request.size if request.method == "nmf" else 0
    return 4 * (vectors + codes)


def train_dictionary(model: LoadedModel, dataset: ImageDataset, request: DictionaryRequest, data_dir: Path,
                     checkpoint_seconds: float = 30.0, workers: int = 0, batch_size: int = 64,
                     progress: Progress | None = None) -> StoredDictionary:
    """Learn (or resume learning) the dictionary and store it; returns what was stored."""
    work = dictionary_build_dir(data_dir, model.id, request.layer, request.kind)
    identity = {"format": FORMAT, "model": model.id, "weights": model.weights_id, "dataset": dataset.name,
                "fingerprint": dataset.fingerprint, "request": asdict(request), "batch_size": batch_size,
                "layout": str(model.memory_format)}
    done = dictionary_file(data_dir, model.id, request.layer, request.kind)
    if done.is_file() and not work.exists():  # learned already (a run stopped while indexing goes on from here)
        try:
            stored = read_dictionary(done)
        except DICTIONARY_READ_ERRORS:
            stored = None
        if stored is not None and stored.meta.get("identity") == identity:
            return stored
    state = _read_state(work)
    if state.get("identity") != identity:
        shutil.rmtree(work, ignore_errors=True)
        state = {"identity": identity, "phase": "vectors", "next_index": 0}
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter() - state.get("elapsed", 0.0)
    vectors = _Vectors(work, model, dataset, request)
    if state["phase"] == "vectors":
        batches = partial(batches_from_disk, dataset, model.preprocessing, batch_size, workers=workers)
        vectors.collect(batches, state["next_index"], checkpoint_seconds, progress,
                        lambda next_index: _write_state(work, {**state, "next_index": next_index,
                                                               "elapsed": time.perf_counter() - started}))
        state = {"identity": identity, "phase": "steps", "elapsed": time.perf_counter() - started}
        _write_state(work, state)
    train, held_out = (torch.from_numpy(np.asarray(part)).to(model.device) for part in vectors.readable())
    if len(train) < 2:
        raise InvalidInput(f"too few readable images in {dataset.name!r} to learn a dictionary from")
    trainer = _trainer(request, train)
    if (work / "trainer.safetensors").is_file():
        trainer.load(load_file(work / "trainer.safetensors", device=str(model.device)))
    last = time.perf_counter()

    def after_step(step: int) -> None:
        nonlocal last
        if progress:
            progress("steps", step, request.steps)
        if step < request.steps and time.perf_counter() - last >= checkpoint_seconds:
            atomic_write(work / "trainer.safetensors",
                         lambda tmp: save_file({k: v.contiguous() for k, v in trainer.state().items()}, tmp))
            _write_state(work, {**state, "elapsed": time.perf_counter() - started})
            last = time.perf_counter()

    if progress:
        progress("steps", trainer.step, request.steps)
    trainer.run(request.steps, after_step)
    dictionary = trainer.dictionary()
    figures = evaluate(dictionary, held_out)
    meta = {"format": FORMAT, "identity": identity, "model": model.id, "layer": request.layer, "kind": request.kind,
            "method": request.method, "size": request.size,
            "sparsity": request.sparsity if request.method == "sae" else None, "steps": request.steps,
            "seed": request.seed, "weights": model.weights_id, "dataset": dataset.name,
            "vectors": len(train), "held_out_vectors": len(held_out), "figures": figures.as_dict(),
            "seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    stored = save_dictionary(data_dir, model.id, dictionary, meta)
    shutil.rmtree(work, ignore_errors=True)
    return stored


def _trainer(request: DictionaryRequest, vectors: torch.Tensor):
    if request.method == "sae":
        return SaeTrainer(vectors, request.size, request.sparsity, request.steps, request.batch_size,
                          seed=request.seed)
    try:
        return NmfTrainer(vectors, request.size, request.steps, seed=request.seed)
    except ValueError as problem:  # negative activations
        raise InvalidInput(f"layer {request.layer!r}: {problem}", layer=request.layer) from None


class _Vectors:
    """The sampled activation vectors of a dataset at one layer, in two memory-mapped arrays (training and
    held-out) of the build folder: image i's vectors are rows [slot(i) * per_image, ...) of its split's."""

    def __init__(self, work: Path, model: LoadedModel, dataset: ImageDataset, request: DictionaryRequest):
        channels, h, w = model.layer(request.layer).shape
        self.model, self.layer, self.positions = model, request.layer, h * w
        ids = np.arange(len(dataset))
        self.held = ids % HELD_OUT_EVERY == 0
        training_images = max(int((~self.held).sum()), 1)
        self.per_image = min(self.positions, max(1, math.ceil(request.max_vectors / training_images)))
        self.slot = np.zeros(len(dataset), dtype=np.int64)
        for part in (self.held, ~self.held):
            self.slot[part] = np.arange(int(part.sum()))
        shape = lambda part: (int(part.sum()) * self.per_image, channels)  # noqa: E731
        self.train = job_array(work / "train.npy", np.float32, shape(~self.held))
        self.held_out = job_array(work / "held-out.npy", np.float32, shape(self.held))
        self.filled = job_array(work / "filled.npy", bool, (len(dataset),))

    def collect(self, batches, start: int, checkpoint_seconds: float, progress: Progress | None,
                checkpoint: Callable[[int], None]) -> None:
        total, last = len(self.filled), time.perf_counter()
        next_index = start
        if progress:
            progress("vectors", start, total)
        for batch in batches(start):
            if len(batch.image_ids):
                with self.model.lock, torch.no_grad():
                    maps = run_to(self.model.module, self.layer, self.model.as_input(batch.images))
                n, c = maps.shape[:2]
                where = sample_positions(batch.image_ids, self.positions, self.per_image).to(maps.device)
                picked = maps.reshape(n, c, -1).gather(2, where.unsqueeze(1).expand(n, c, -1))
                picked = picked.permute(0, 2, 1).float().cpu().numpy()  # (n, per_image, c)
                for image, rows in zip(batch.image_ids.tolist(), picked):
                    target = self.held_out if self.held[image] else self.train
                    start_row = self.slot[image] * self.per_image
                    target[start_row:start_row + self.per_image] = rows
                    self.filled[image] = True
            next_index = min(next_index + len(batch.image_ids) + len(batch.unreadable), total)
            if progress:
                progress("vectors", next_index, total)
            if time.perf_counter() - last >= checkpoint_seconds and next_index < total:
                self.flush()
                checkpoint(next_index)
                last = time.perf_counter()
        self.flush()

    def flush(self) -> None:
        for array in (self.train, self.held_out, self.filled):
            array.flush()

    def readable(self) -> tuple[np.ndarray, np.ndarray]:
        """(training vectors, held-out vectors) of the images that could be read."""
        def rows(part: np.ndarray) -> np.ndarray:
            images = np.flatnonzero(part & self.filled)
            return (self.slot[images, None] * self.per_image + np.arange(self.per_image)).ravel()
        return self.train[rows(~self.held)], self.held_out[rows(self.held)]


def _read_state(work: Path) -> dict:
    try:
        return json.loads((work / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_state(work: Path, state: dict) -> None:
    atomic_write(work / "state.json", lambda tmp: tmp.write_text(json.dumps(state)))


# -- storage -------------------------------------------------------------------------------------------------

def digest_of(dictionary: Dictionary) -> str:
    """A short checksum of the dictionary's numbers: what an atlas records of the dictionary it indexed."""
    hasher = hashlib.sha256()
    for key, tensor in sorted(dictionary.tensors().items()):
        hasher.update(key.encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def save_dictionary(data_dir: Path, model_id: str, dictionary: Dictionary, meta: dict) -> StoredDictionary:
    meta = {**meta, "digest": digest_of(dictionary)}
    tensors = {key: value.detach().cpu().contiguous() for key, value in dictionary.tensors().items()}
    path = dictionary_file(data_dir, model_id, meta["layer"], meta["kind"])
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"fovea": json.dumps(meta)}))
    return StoredDictionary(model_id, meta["layer"], meta["kind"], meta, dictionary)


def read_dictionary(path: Path) -> StoredDictionary:
    """A stored dictionary: safetensors (plain numbers, nothing executed) and its JSON metadata, which must name
    the file it is in (a copied or renamed file would make two units of one kind)."""
    with safe_open(path, framework="pt") as opened:
        meta = json.loads((opened.metadata() or {})["fovea"])
        tensors = {key: opened.get_tensor(key) for key in opened.keys()}
    if meta.get("format") != FORMAT or meta.get("method") not in METHODS:
        raise ValueError(f"not a dictionary of this Fovea (format {meta.get('format')}, method {meta.get('method')})")
    named = dictionary_file(Path("."), meta["model"], meta["layer"], meta["kind"]).name  # ValueError: no file name
    if not is_kind_name(str(meta["kind"])) or named != path.name or meta["model"] != path.parent.parent.name:
        raise ValueError(f"its metadata names {meta['model']!r}, layer {meta['layer']!r} and kind {meta['kind']!r}, "
                         "not this file")
    return StoredDictionary(meta["model"], meta["layer"], meta["kind"], meta, from_tensors(meta["method"], tensors))


# What reading a damaged or foreign file raises: it is skipped (logged), never a failed request or build.
DICTIONARY_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, SafetensorError)


class DictionaryStore:
    """The dictionaries stored for each model, read once per file version."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._read: dict[Path, tuple[tuple[int, int], StoredDictionary | None]] = {}
        self._refused: set[Path] = set()  # logged once

    def of_model(self, model: LoadedModel) -> list[StoredDictionary]:
        """The model's usable dictionaries, by layer then kind; one learned on other weights is skipped (and
        logged once per file version)."""
        usable = []
        folder = dictionaries_dir(self.data_dir, model.id)
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            stored = self._load(path)
            if stored is None:
                continue
            problem = self._misfit(model, stored)
            if problem is not None:
                if path not in self._refused:
                    log.warning("dictionary %s of %s skipped: %s", path.name, model.id, problem)
                    self._refused.add(path)
                continue
            usable.append(stored)
        return usable

    def get(self, model: LoadedModel, layer: str, kind: str) -> StoredDictionary:
        try:
            path = dictionary_file(self.data_dir, model.id, layer, kind)
        except ValueError:  # a module name that names no file has no dictionary
            path = None
        stored = self._load(path) if path is not None and path.is_file() else None
        if stored is None:
            raise NotFound(f"no dictionary {kind!r} of layer {layer!r} for model {model.id!r}: learn one with "
                           f"`fovea dictionary {model.id} --layer {layer}`", layer=layer, kind=kind)
        problem = self._misfit(model, stored)
        if problem is not None:
            raise DictionaryRefused(f"dictionary {kind!r} of {layer!r} does not fit {model.id!r}: {problem}; learn it "
                                    f"again with `fovea dictionary {model.id} --layer {layer} --name {kind}`",
                                    layer=layer, kind=kind)
        return stored

    @staticmethod
    def _misfit(model: LoadedModel, stored: StoredDictionary) -> str | None:
        """Why a stored dictionary cannot serve the model as loaded; None when it can."""
        if stored.meta.get("weights") != model.weights_id:
            return "it was learned on other weights"
        info = next((layer for layer in model.layers if layer.name == stored.layer), None)
        if info is None or info.shape[0] != stored.dictionary.channels:
            return f"the model has no layer {stored.layer!r} of {stored.dictionary.channels} channels"
        return None

    def _load(self, path: Path) -> StoredDictionary | None:
        stat = path.stat()
        version = (stat.st_ino, stat.st_mtime_ns)
        cached = self._read.get(path)
        if cached is None or cached[0] != version:
            try:
                stored = read_dictionary(path)
            except DICTIONARY_READ_ERRORS as problem:
                log.warning("dictionary %s unreadable, skipped: %s", path.name, problem)
                stored = None
            cached = (version, stored)
            self._read[path] = cached
        return cached[1]


def layer_key(layer: str, kind: str) -> str:
    """A recorder's key in an index pass: the layer's name for its channels, `layer#kind` for another kind."""
    return layer if kind == CHANNEL else f"{layer}#{kind}"

