"""The index build: one pass over a dataset that records, for every unit of the chosen layers, its top-k
images with their maps, its statistics and its pooled activations.

Killed at any point, the next run resumes from the last checkpoint and ends with the same atlas as an
uninterrupted run: batches always start at multiples of the batch size, and the checkpoint holds every
accumulator's exact state.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from app.atlas.dictionary_store import layer_key
from app.atlas.dissection import dissect
from app.atlas.layout import atlas_dir, build_dir, layer_file
from app.atlas.loader import Batch
from app.atlas.recording import BuildCancelled, FeatureRecorder, ImageRecord, IndexPlan, LayerRecorder
from app.atlas.writer import write_atlas
from app.engine.hooks import forward_hooks
from app.files import atomic_write, prefixed

Progress = Callable[[int, int], None]  # (images done, images in all)


def build_progress(data_dir: Path, model_id: str, dataset_name: str) -> tuple[int, int] | None:
    """(images done, images in all) of an unfinished build, from its last checkpoint; None if none."""
    try:
        state = json.loads((build_dir(data_dir, model_id, dataset_name) / "state.json").read_text())
        return state["next_index"], state["images"]
    except (OSError, ValueError, KeyError):
        return None


def run_index(plan: IndexPlan, data_dir: Path, batches: Callable[[int], Iterator[Batch]],
              checkpoint_seconds: float = 30.0, progress: Progress | None = None,
              cancel: threading.Event | None = None, dissect_progress: Progress | None = None) -> Path:
    """Build (or resume) the atlas of `plan` and return its folder. `batches(start)` yields the batches
    from image id `start` on; setting `cancel` stops the build after the current batch."""
    def forward(start: int, recorders: dict[str, LayerRecorder], images: ImageRecord) -> Iterator[int]:
        next_index = start
        for _ in record_batches(plan, recorders, images, batches(start)):
            next_index = min(next_index + plan.batch_size, len(plan.dataset))
            yield next_index

    return run_steps(plan, data_dir, forward, checkpoint_seconds, progress, cancel, dissect_progress)


Steps = Callable[[int, dict[str, LayerRecorder], ImageRecord], Iterator[int]]
"""`steps(start, recorders, images)` records images from id `start` on into the build's recorders, a step at
a time (a batch run here, or a shard run elsewhere and merged), yielding the next image id after each."""


def run_steps(plan: IndexPlan, data_dir: Path, steps: Steps, checkpoint_seconds: float = 30.0,
              progress: Progress | None = None, cancel: threading.Event | None = None,
              dissect_progress: Progress | None = None) -> Path:
    """`run_index` with the pass's steps given: checkpoints between steps, then labels and the atlas."""
    work = build_dir(data_dir, plan.model.id, plan.dataset.name)
    total = len(plan.dataset)
    start = _resumable_start(work, plan)
    if start is None:
        shutil.rmtree(work, ignore_errors=True)
        start = 0
    work.mkdir(parents=True, exist_ok=True)
    recorders = make_recorders(plan, work)
    images = ImageRecord(total)
    elapsed = 0.0
    if start > 0:
        elapsed = _load_checkpoint(work, recorders, images)
    started, last_checkpoint = time.perf_counter() - elapsed, time.perf_counter()
    interval = checkpoint_seconds
    if progress:
        progress(start, total)
    for next_index in steps(start, recorders, images):
        if progress:
            progress(next_index, total)
        stopping = cancel is not None and cancel.is_set()
        if next_index < total and (stopping or time.perf_counter() - last_checkpoint >= interval):
            saving = time.perf_counter()
            _save_checkpoint(work, plan, next_index, recorders, images, saving - started)
            last_checkpoint = time.perf_counter()
            # A big model's state (k maps per unit) takes seconds to save: keep saving under 2% of the time.
            interval = max(checkpoint_seconds, 50 * (last_checkpoint - saving))
        if stopping and next_index < total:
            raise BuildCancelled(f"stopped at image {next_index} of {total}")
    labelling = plan.concepts is not None or plan.class_selectivity
    if labelling and start < total and time.perf_counter() - last_checkpoint >= interval:
        # The labels take a while after the pass: a build stopped during them resumes here, not mid-pass.
        _save_checkpoint(work, plan, total, recorders, images, time.perf_counter() - started)
    dissection = dissect(plan, recorders, images, dissect_progress, cancel)
    target = atlas_dir(data_dir, plan.model.id, plan.dataset.name)
    write_atlas(target, plan, recorders, images, seconds=time.perf_counter() - started, dissection=dissection)
    shutil.rmtree(work, ignore_errors=True)
    return target


def record_batches(plan: IndexPlan, recorders: dict[str, LayerRecorder], images: ImageRecord,
                   batches: Iterable[Batch]) -> Iterator[None]:
    """Run each batch through the model with the recorders fed from its forward hooks; yields after each."""
    by_module: dict[str, list[LayerRecorder]] = {}
    for recorder in recorders.values():
        by_module.setdefault(recorder.info.name, []).append(recorder)
    model, current_ids = plan.model, torch.zeros(0, dtype=torch.int64)

    def record(name: str, output) -> None:
        for recorder in by_module[name]:
            recorder.update(output, current_ids)

    for batch in batches:
        if len(batch.image_ids):
            current_ids = batch.image_ids
            with model.lock, torch.no_grad(), forward_hooks(model.module, list(by_module), record):
                logits = model.module(model.as_input(batch.images))
            images.update(batch.image_ids, logits)
        yield


def make_recorders(plan: IndexPlan, work: Path | None, rows: range | None = None) -> dict[str, LayerRecorder]:
    """The pass's recorders by key (`layer_key`): each layer's channels, then each dictionary's features; their
    order numbers their files and the atlas's layers. Per-image arrays are files in `work`, or in memory when
    it is None (a shard's recorders, of images `rows`)."""
    def options(idx: int) -> dict:
        def file(name: str) -> Path | None:
            return layer_file(work, idx, name) if work is not None else None

        return dict(k=plan.k, images=len(plan.dataset), pooled_path=file("pooled.npy"),
                    histogram_samples=plan.histogram_samples, dissect=plan.concepts is not None,
                    peaks=plan.class_selectivity, peaks_path=file("peaks.npy"), rows=rows)

    recorders = {info.name: LayerRecorder(info, **options(i)) for i, info in enumerate(plan.layers)}
    for i, stored in enumerate(plan.dictionaries, len(recorders)):
        recorders[layer_key(stored.layer, stored.kind)] = FeatureRecorder(
            plan.model.layer(stored.layer), stored, plan.model.device, **options(i))
    return recorders


def pass_state(recorders: dict[str, LayerRecorder], images: ImageRecord) -> dict[str, np.ndarray]:
    """Every accumulator's exact state, as named arrays (a checkpoint's files, a shard's result)."""
    arrays = {f"image.{key}": value for key, value in images.state().items()}
    for i, recorder in enumerate(recorders.values()):
        arrays.update({f"layer{i}.{key}": value for key, value in recorder.state().items()})
    return arrays


def load_pass_state(arrays: dict[str, np.ndarray], recorders: dict[str, LayerRecorder], images: ImageRecord) -> None:
    images.load(prefixed(arrays, "image."))
    for i, recorder in enumerate(recorders.values()):
        recorder.load(prefixed(arrays, f"layer{i}."))


def _resumable_start(work: Path, plan: IndexPlan) -> int | None:
    try:
        state = json.loads((work / "state.json").read_text())
    except (OSError, ValueError):
        return None
    if state.get("identity") != plan.identity() or not (work / state.get("arrays", "") / "done").is_file():
        return None
    return int(state["next_index"])


def _save_checkpoint(work: Path, plan: IndexPlan, next_index: int, recorders: dict[str, LayerRecorder],
                     images: ImageRecord, elapsed: float) -> None:
    for recorder in recorders.values():
        recorder.flush()
    arrays = pass_state(recorders, images)
    # A folder of .npy files (plain copies; an .npz would checksum hundreds of MB), complete once `done`
    # exists; then state.json switches to it in one atomic rename.
    previous = _checkpoint_arrays(work)
    name = f"checkpoint-{next_index:09d}"
    shutil.rmtree(work / name, ignore_errors=True)
    (work / name).mkdir()
    for key, value in arrays.items():
        np.save(work / name / f"{key}.npy", value)
    (work / name / "done").touch()
    state = {"identity": plan.identity(), "next_index": next_index, "images": len(plan.dataset),
             "arrays": name, "elapsed": elapsed}
    atomic_write(work / "state.json", lambda tmp: tmp.write_text(json.dumps(state)))
    if previous and previous != name:
        shutil.rmtree(work / previous, ignore_errors=True)


def _checkpoint_arrays(work: Path) -> str | None:
    try:
        return json.loads((work / "state.json").read_text())["arrays"]
    except (OSError, ValueError, KeyError):
        return None


def _load_checkpoint(work: Path, recorders: dict[str, LayerRecorder], images: ImageRecord) -> float:
    state = json.loads((work / "state.json").read_text())
    load_pass_state({path.stem: np.load(path) for path in (work / state["arrays"]).glob("*.npy")}, recorders, images)
    return float(state.get("elapsed", 0.0))
