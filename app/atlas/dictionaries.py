"""Dictionaries of a model's layers (`fovea dictionary`): learned on the activations of an atlas dataset, stored
beside the model's atlases, and indexed as a kind of unit by every later index pass (app/atlas/build.py).

Training is a long job in two phases, each resumable after a kill: the collection of activation vectors (every
spatial position a sample, a fixed, deterministic subset of positions per image, up to a budget), then the
optimisation. Images whose id is a multiple of HELD_OUT_EVERY are held out of training and give the figures.
It is stored by app/atlas/dictionary_store.py, which names the weights it was learned on: on other weights it
is refused."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from app.atlas.datasets import ImageDataset
from app.atlas.dictionary_store import (
    DICTIONARY_READ_ERRORS,
    FORMAT,
    StoredDictionary,
    read_dictionary,
    save_dictionary,
)
from app.atlas.kinds import CHANNEL, is_kind_name
from app.atlas.layout import dictionary_build_dir, dictionary_file
from app.atlas.loader import batches_from_disk
from app.engine.dictionary import METHODS, NmfTrainer, SaeTrainer, SemiNmfTrainer, evaluate
from app.engine.histogram import sample_positions
from app.engine.probe import run_to
from app.errors import InvalidInput
from app.files import atomic_write, job_array
from app.store.store import LoadedModel

log = logging.getLogger(__name__)

HELD_OUT_EVERY = 10
FACTORISATIONS = {"nmf": NmfTrainer, "semi-nmf": SemiNmfTrainer}  # fitted on every vector at once
# (vectors x size) matrices a factorisation holds while it fits: NMF's codes and its update's two products;
# semi-NMF's codes, X W^T and its update's numerator and denominator.
CODE_MATRICES = {"nmf": 3, "semi-nmf": 5}
Progress = Callable[[str, int, int], None]  # (phase: "vectors" | "steps", done, total)


@dataclass(frozen=True)
class DictionaryRequest:
    """What `fovea dictionary` asks for."""

    layer: str
    method: str  # "sae", "nmf" or "semi-nmf"
    size: int  # features
    sparsity: int  # active features per position (the SAE's k; the factorisations' codes are not capped)
    steps: int
    max_vectors: int  # training vectors at most (every spatial position of an image is one)
    batch_size: int = 4096
    seed: int = 0
    name: str | None = None  # its unit kind; default f"{method}-{size}"

    @property
    def kind(self) -> str:
        return self.name or f"{self.method}-{self.size}"


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
                           f"{' and codes' if request.method in CODE_MATRICES else ''}, over the dictionary_max_bytes "
                           "setting "
                           f"({max_bytes / 1024**3:.1f} GiB): lower --size or FOVEA_DICTIONARY_MAX_VECTORS, or raise "
                           "the setting", needed=needed, limit=max_bytes)
    try:
        dictionary_file(Path("."), model.id, request.layer, request.kind)
    except ValueError as problem:  # a module name that cannot name a file
        raise InvalidInput(f"layer {request.layer!r}: {problem}", layer=request.layer) from None


def memory_needed(request: DictionaryRequest, channels: int) -> int:
    """Bytes of the training vectors (float32) and, for a factorisation, of its codes and their update."""
    vectors = request.max_vectors * channels
    codes = CODE_MATRICES.get(request.method, 0) * request.max_vectors * request.size
    return 4 * (vectors + codes)


def _learned(meta: dict) -> str:
    """How a dictionary was learned, in words: "on 'demo' (sae, 128 features, 2000 steps)"."""
    return f"on {meta.get('dataset')!r} ({meta.get('method')}, {meta.get('size')} features, {meta.get('steps')} steps)"


# What a dictionary is learned from and how: a stored one that differs in any of these was learned otherwise. (The
# batches its vectors were read in and their memory layout, also in its identity, only round differently.)
_TERMS = {"weights": "the model's weights", "dataset": "dataset", "fingerprint": "the dataset's files",
          "method": "method", "size": "size", "sparsity": "sparsity", "steps": "steps",
          "max_vectors": "vector budget", "batch_size": "training batch", "seed": "seed"}


def _differences(stored: dict, asked: dict) -> list[str]:
    """The terms (`_TERMS`, in words) in which two dictionaries' identities differ."""
    def terms(identity: dict) -> dict:
        merged = {**identity, **identity.get("request", {})}  # the request's training batch, not the reading's
        return {key: merged.get(key) for key in _TERMS}

    before, now = terms(stored), terms(asked)
    return [word for key, word in _TERMS.items() if before[key] != now[key]]


def train_dictionary(model: LoadedModel, dataset: ImageDataset, request: DictionaryRequest, data_dir: Path,
                     checkpoint_seconds: float = 30.0, workers: int = 0, batch_size: int = 64,
                     progress: Progress | None = None, replace: bool = False) -> StoredDictionary:
    """Learn (or resume learning) the dictionary and store it; returns what was stored. A dictionary stored under
    the same name that was learned otherwise (`_TERMS`) is replaced only with `replace`: its features may be what
    an atlas and a colleague's links show."""
    work = dictionary_build_dir(data_dir, model.id, request.layer, request.kind)
    identity = {"format": FORMAT, "model": model.id, "weights": model.weights_id, "dataset": dataset.name,
                "fingerprint": dataset.fingerprint, "request": asdict(request), "batch_size": batch_size,
                "layout": str(model.memory_format)}
    done = dictionary_file(data_dir, model.id, request.layer, request.kind)
    try:
        stored = read_dictionary(done) if done.is_file() else None
    except DICTIONARY_READ_ERRORS:
        stored = None
    if stored is not None:
        differs = _differences(stored.meta.get("identity", {}), identity)
        if not differs and not work.exists():  # learned already (a run stopped while indexing goes on from here)
            return stored
        if differs and not replace:  # even with a killed --replace run's work left: it was asked for then
            raise InvalidInput(f"{model.id} {request.layer} has a dictionary {request.kind!r} already, learned "
                               f"{_learned(stored.meta)}, and this one differs in {', '.join(differs)}: give another "
                               f"--name to keep both, or --replace to learn it again",
                               name=request.kind, dataset=stored.meta.get("dataset"), differs=differs)
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
        return FACTORISATIONS[request.method](vectors, request.size, request.steps, seed=request.seed)
    except ValueError as problem:  # negative activations for NMF
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


