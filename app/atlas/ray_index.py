"""`fovea index --ray`: the index pass on a Ray cluster (the optional extra `fovea[ray]`).

Ray Data hands the dataset's shards (app/atlas/shards.py) to an actor pool of model replicas, one GPU each
when the cluster has GPUs; each replica records a shard into fresh accumulators and returns their exact
state; this process merges the states in shard order into the build's recorders, so the existing checkpoint,
dissection and writer (app/atlas/build.py) work unchanged, and a driver killed mid-way resumes from the shards
already merged. A replica that dies is restarted by Ray and its shard retried (Ray Data's actor pools restart
actors and retry their tasks by default). Workers read the images and the model's card at the paths this
process sees: a shared file system, or one machine.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.atlas.build import Steps
from app.atlas.datasets import ImageDataset
from app.atlas.loader import batches_from_disk
from app.atlas.recording import IndexPlan
from app.atlas.shards import ShardState, decode_state, encode_state, index_shard, merging_steps, shard_ranges
from app.errors import FoveaError, InvalidInput
from app.settings import Settings

log = logging.getLogger(__name__)

LOCAL = "local"  # `--ray local`: a Ray instance of this machine, started for the build
RETRIES = 3  # restarts of a replica that died, and tries of the shard it was recording


@dataclass(frozen=True)
class ShardJob:
    """What a replica needs to make the driver's plan again on its own machine."""
    settings: Settings
    card: Path  # the model's card, loaded alone (not the whole store) in the driver's memory layout
    layout: str
    dataset: ImageDataset
    layers: tuple[str, ...]
    k: int
    identity: dict  # the driver's plan's: a replica whose plan differs (other weights, files) refuses


class ShardIndexer:
    """A model replica in Ray Data's actor pool: each call records the shards of its input rows."""

    def __init__(self, job: ShardJob, decode_workers: int):
        from app.atlas.indexer import make_plan
        from app.engine.devices import resolve_device
        from app.store.store import load_model

        settings = job.settings
        # Ray shows a replica only its own GPU, as cuda:0: a driver's `cuda:N` means "a GPU" here.
        device = "cuda" if settings.device.startswith("cuda") else settings.device
        model = load_model(job.card, resolve_device(device), settings.max_weights_bytes, job.layout)
        if not model.ready:
            raise FoveaError(f"a Ray worker on {os.uname().nodename} could not load {job.card}: {model.error}")
        self.plan = make_plan(model, job.dataset, settings, list(job.layers), job.k)
        if self.plan.identity() != job.identity:
            raise FoveaError(f"a Ray worker on {os.uname().nodename} would build another atlas than the driver "
                             f"(its model, weights, dataset files or dictionaries differ): {self.plan.identity()} "
                             f"against {job.identity}")
        self.decode_workers = decode_workers

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        plan, states = self.plan, []
        for start, stop in zip(rows["start"].tolist(), rows["stop"].tolist()):
            batches = batches_from_disk(plan.dataset, plan.model.preprocessing, plan.batch_size, start,
                                        self.decode_workers, stop=stop)
            states.append(encode_state(index_shard(plan, range(start, stop), batches)))
        return {"start": rows["start"], "stop": rows["stop"], "state": np.array(states, dtype=object)}


def ray_steps(plan: IndexPlan, settings: Settings, address: str, shard_images: int,
              replicas: int | None = None) -> Steps:
    """Build steps that run the pass's shards on the Ray cluster at `address` (`local`, `auto` or an address)
    with `replicas` model replicas (default: one per GPU of the cluster, else one per CPU)."""
    if replicas is not None and replicas < 1:
        raise InvalidInput(f"--ray-replicas must be at least 1, got {replicas}", replicas=replicas)
    ray, data = _import_ray()  # before the build starts: a missing extra is said at once
    job = ShardJob(settings=settings, card=plan.model.card_path, layout=plan.identity()["layout"],
                   dataset=plan.dataset, layers=tuple(info.name for info in plan.layers), k=plan.k,
                   identity=plan.identity())

    def run_shards(start: int) -> Iterator[tuple[range, ShardState]]:
        shards = shard_ranges(start, len(plan.dataset), plan.batch_size, shard_images)
        if not shards:
            return
        started_here = _connect(ray, address)
        try:
            gpus = int(ray.cluster_resources().get("GPU", 0)) if settings.device != "cpu" else 0
            count = replicas or gpus or int(ray.cluster_resources().get("CPU", 1))
            count = max(1, min(count, len(shards)))
            # On GPUs, images decode in each replica's own worker processes, overlapped with the model; a CPU
            # replica decodes inline on its one core.
            decode_workers = settings.index_workers if gpus else 0
            log.info("indexing %d shards on %d Ray replicas (%s)", len(shards), count,
                     f"{gpus} GPUs" if gpus else "CPUs")
            context = data.DataContext.get_current()
            ray_data_log = logging.getLogger("ray.data")
            saved = (context.execution_options.preserve_order, context.enable_progress_bars, ray_data_log.level)
            context.execution_options.preserve_order = True  # shards merge in order: a prefix to resume from
            context.enable_progress_bars = False  # the build's own progress bar counts merged images
            ray_data_log.setLevel(logging.ERROR)  # its plan and timings; failures still raise
            rows = data.from_items([{"start": shard.start, "stop": shard.stop} for shard in shards])
            # A shard that kills its replica every time (out of memory) fails the build after a few tries
            # rather than restarting it for ever, Ray Data's default.
            with warnings.catch_warnings():  # restart limits have no named parameter before Ray 2.64 (pinned below)
                warnings.simplefilter("ignore", DeprecationWarning)  # Ray's RayDeprecationWarning is one
                results = rows.map_batches(
                    ShardIndexer, batch_size=1, batch_format="numpy",
                    fn_constructor_kwargs={"job": job, "decode_workers": decode_workers},
                    compute=data.ActorPoolStrategy(size=count), max_restarts=RETRIES, max_task_retries=RETRIES,
                    num_gpus=1 if gpus else 0, num_cpus=1 + decode_workers)
            try:
                for row in results.iter_rows():
                    yield range(int(row["start"]), int(row["stop"])), decode_state(row["state"])
            except ray.exceptions.RayError as error:  # a replica refused, or failed past Ray's retries
                raise FoveaError(f"the index pass on Ray failed: {error}") from error
            finally:
                context.execution_options.preserve_order, context.enable_progress_bars = saved[:2]
                ray_data_log.setLevel(saved[2])
        finally:
            if started_here:
                ray.shutdown()

    return merging_steps(plan, run_shards)


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise InvalidInput("indexing on Ray needs the optional extra: pip install 'fovea[ray]'") from error
    return ray, ray.data


def _connect(ray, address: str) -> bool:
    """Join the cluster at `address` (or start a local one); whether this call started Ray here."""
    if ray.is_initialized():
        return False
    options = dict(logging_level=logging.WARNING, include_dashboard=False)
    if address == LOCAL:
        ray.init(**options)
    else:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise InvalidInput(f"no Ray cluster at {address!r}: start one (`ray start --head`), name its address, "
                               f"or index on a Ray instance of this machine with --ray {LOCAL}") from error
    return True
