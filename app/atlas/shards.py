"""An index pass split into shards of images: each shard is recorded on its own (on another process or
machine) into fresh accumulators, and its exact state is merged into the build's, in shard order.

The merged atlas equals a single-process build: shards start at multiples of the batch size, so every
image meets the model in the same batch as in a single pass; top-k, histograms and dissection's top
activations merge exactly; the float64 sums of the statistics add in another order (within rounding).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np

from app.atlas.build import Steps, load_pass_state, make_recorders, pass_state, record_batches
from app.atlas.loader import Batch
from app.atlas.recording import ImageRecord, IndexPlan, LayerRecorder
from app.files import prefixed

ShardState = dict[str, np.ndarray]


def shard_ranges(start: int, images: int, batch_size: int, shard_images: int) -> list[range]:
    """Image ids [start, images) in shards of about `shard_images`, each a whole number of batches."""
    size = max(1, -(-shard_images // batch_size)) * batch_size
    return [range(first, min(first + size, images)) for first in range(start, images, size)]


def index_shard(plan: IndexPlan, rows: range, batches: Iterable[Batch]) -> ShardState:
    """Record the images `rows` (the batches cover exactly them) into fresh accumulators; their state."""
    recorders = make_recorders(plan, None, rows)
    images = ImageRecord(len(plan.dataset), rows)
    for _ in record_batches(plan, recorders, images, batches):
        pass
    for recorder in recorders.values():
        if recorder.top_activations is not None:
            recorder.top_activations.trim()  # half the size, or less, of the buffers it fills
    arrays = pass_state(recorders, images)
    for i, recorder in enumerate(recorders.values()):
        arrays.update({f"rows{i}.{key}": value for key, value in recorder.rows_state().items()})
    return arrays


def merge_shard(plan: IndexPlan, rows: range, state: ShardState, recorders: dict[str, LayerRecorder],
                images: ImageRecord) -> None:
    """Take a shard's state (from `index_shard` on images `rows`) into the build's recorders."""
    shard_recorders = make_recorders(plan, None, rows)
    shard_images = ImageRecord(len(plan.dataset), rows)
    load_pass_state(state, shard_recorders, shard_images)
    for i, (recorder, shard) in enumerate(zip(recorders.values(), shard_recorders.values())):
        shard.load_rows(prefixed(state, f"rows{i}."))
        recorder.merge(shard)
    images.merge(shard_images)


def merging_steps(plan: IndexPlan, run_shards) -> Steps:
    """Build steps (app/atlas/build.py) that merge shards as they come: `run_shards(start)` yields
    (rows, state) for shards covering image ids [start, images) in order."""
    def steps(start: int, recorders: dict[str, LayerRecorder], images: ImageRecord) -> Iterator[int]:
        expected = start
        for rows, state in run_shards(start):
            if rows.start != expected:  # merged out of order, a checkpoint would claim images it lacks
                raise RuntimeError(f"shard {rows} arrived where images from {expected} were expected")
            merge_shard(plan, rows, state, recorders, images)
            expected = rows.stop
            yield rows.stop

    return steps


def encode_state(state: ShardState) -> bytes:
    """A shard's state as bytes to send between processes: an .npz, read back without unpickling."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    return buffer.getvalue()


def decode_state(data: bytes) -> ShardState:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}
