"""What `fovea index` and the server's first run call: resolve the dataset, layers and k, then build."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

from app.atlas.build import Progress, run_index, run_steps
from app.atlas.concepts import open_concepts
from app.atlas.datasets import ImageDataset, scan_folder
from app.atlas.dictionary_store import DictionaryStore
from app.atlas.loader import batches_from_disk
from app.atlas.recording import IndexPlan
from app.atlas.statistics import REGION_QUANTILE
from app.demo.dataset import SPLIT_SIZES, write_split
from app.engine.dissection.top_activations import bytes_needed
from app.engine.layers import LayerInfo
from app.errors import InvalidInput
from app.settings import Settings
from app.store.store import LoadedModel

DEMO_DATASET = "demo"


def demo_dataset(settings: Settings) -> ImageDataset:
    """The demo's held-out split (its first `demo_images`), written under the data directory the first time
    it is asked for."""
    root = settings.data_dir / "datasets" / "demo-shapes"
    images = root / "heldout" / "images"
    if not images.is_dir():
        write_split(root, "heldout", min(settings.demo_images, SPLIT_SIZES["heldout"]))
    return scan_folder(images, name=DEMO_DATASET)


def resolve_dataset(argument: str, settings: Settings) -> ImageDataset:
    return demo_dataset(settings) if argument == DEMO_DATASET else scan_folder(Path(argument))


def chosen_layers(model: LoadedModel, layers: list[str] | None) -> list[LayerInfo]:
    """The layers named, else the model's default ones."""
    return [model.layer(name) for name in layers] if layers else [info for info in model.layers if info.default]


def make_plan(model: LoadedModel, dataset: ImageDataset, settings: Settings, layers: list[str] | None = None,
              k: int | None = None) -> IndexPlan:
    k = settings.atlas_top_k if k is None else k
    if not 1 <= k <= settings.atlas_max_top_k:
        raise InvalidInput(f"k must be between 1 and {settings.atlas_max_top_k} (the atlas_max_top_k setting); "
                           f"got {k}", k=k)
    chosen = chosen_layers(model, layers)
    if not chosen:
        raise InvalidInput(f"model {model.id!r} has no layers to index; name some with --layers")
    concepts = open_concepts(dataset.root)
    dictionaries = tuple(DictionaryStore(settings.data_dir).of_model(model))  # every one: its features are units
    if concepts is not None:
        feature_shapes = [(stored.dictionary.size, *model.layer(stored.layer).shape[1:]) for stored in dictionaries]
        _check_dissection_memory(model, dataset, [info.shape for info in chosen] + feature_shapes,
                                 [info.name for info in chosen] + [f"{d.layer} {d.kind}" for d in dictionaries],
                                 settings)
    return IndexPlan(model=model, dataset=dataset, layers=tuple(chosen), k=k, batch_size=settings.index_batch_size,
                     histogram_samples=settings.index_histogram_samples, concepts=concepts,
                     dissection_size=settings.dissection_label_size, dictionaries=dictionaries,
                     min_class_images=settings.selectivity_min_class_images,
                     predicted_classes=settings.predicted_class_selectivity)


def _check_dissection_memory(model: LoadedModel, dataset: ImageDataset, shapes: list[tuple[int, int, int]],
                             names: list[str], settings: Settings) -> None:
    needed = {name: bytes_needed(shape[0], tuple(shape[1:]), len(dataset), REGION_QUANTILE)
              for name, shape in zip(names, shapes)}
    if sum(needed.values()) > settings.dissection_max_bytes:
        largest = sorted(needed, key=needed.get, reverse=True)[:3]
        raise InvalidInput(f"dissecting {len(names)} layers of {model.id} on {len(dataset)} images keeps "
                           f"{sum(needed.values()) / 1024**3:.1f} GiB of activations, over the dissection_max_bytes "
                           f"setting ({settings.dissection_max_bytes / 1024**3:.1f} GiB); the largest: "
                           f"{', '.join(largest)}. Name fewer layers with --layers, or raise the setting",
                           needed=sum(needed.values()), limit=settings.dissection_max_bytes)


def index_model(model: LoadedModel, dataset: ImageDataset, settings: Settings, layers: list[str] | None = None,
                k: int | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, dissect_progress: Progress | None = None,
                ray: str | None = None, ray_replicas: int | None = None) -> Path:
    """Build (or resume) the atlas; on a dataset with concept labels or classes, its units are labelled too
    (`dissect_progress` follows that step, in images). With `ray` (a cluster's address, `auto` or `local`),
    the pass runs on a Ray cluster (app/atlas/ray_index.py) and ends in the same atlas."""
    plan = make_plan(model, dataset, settings, layers, k)
    if ray is not None:
        from app.atlas.ray_index import ray_steps

        steps = ray_steps(plan, settings, ray, settings.index_shard_images, ray_replicas)
        return run_steps(plan, settings.data_dir, steps, settings.index_checkpoint_seconds, progress, cancel,
                         dissect_progress)
    batches = partial(batches_from_disk, dataset, model.preprocessing, plan.batch_size,
                      workers=settings.index_workers)
    return run_index(plan, settings.data_dir, batches, settings.index_checkpoint_seconds, progress, cancel,
                     dissect_progress)
