"""Dictionary features (issue 18), measured in one run on this machine, on the demo's held-out images:

  (a) Training, for each demo model's last default layer: sparse autoencoders of 2x and 8x the channels
      (k = channels / 8, at least 4) and NMF of 1/2x and 2x, with the settings `fovea dictionary` uses (the vector
      budget, 2,000 SAE steps, 200 NMF iterations unless --steps says otherwise): seconds (collecting the
      vectors and training), and on the held-out images (every tenth) the fraction of variance explained, dead
      features and active features per position. Goal: at least 0.8 of the variance, few dead features.
  (b) The atlas pass: the index pass that records a dictionary's features of the layer (the layer's maps
      encoded in the hook, then the same accumulators) against the index pass that records the layer's channels
      alone, the same images preloaded (no decoding on either side), the same batch size and memory layout, no
      dissection; alternating, `--repeats` times, medians. Target: at most 1.3x.
  (c) Monosemanticity: one dissected index pass with the layer's channels and every dictionary above, on the
      demo's concept labels; per kind of unit, the fraction labelled (best concept IoU >= the threshold), the
      mean best IoU and the distinct concepts. Goal: features beat channels. On a dataset of classes (an
      ImageFolder given with --dataset), the same by class selectivity: the fraction whose best class reaches
      the ROC AUC setting, the mean best AUC and the distinct classes.

Usage:
    python bench/dictionary.py [--images 2000] [--repeats 3] [--models shapes-cnn shapes-mobilenet] [--steps N]
                               [--dictionaries sae:2 sae:8 nmf:0.5 nmf:2] [--layer NAME]
                               [--dataset FOLDER --model-dir CARDS]   # your own model and images
"""

from __future__ import annotations

import sys

from app.allocator import tune_allocator

if "--system-allocator" not in sys.argv:
    tune_allocator()  # before torch is imported, as the fovea command does

import argparse
import dataclasses
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from app.atlas.build import run_index
from app.atlas.datasets import scan_folder
from app.atlas.dictionaries import DictionaryRequest, train_dictionary
from app.atlas.dictionary_store import StoredDictionary
from app.atlas.indexer import demo_dataset, make_plan
from app.atlas.labels import detector_summary
from app.atlas.loader import batches_from_disk, batches_from_memory
from app.atlas.reader import Atlas
from app.errors import InvalidInput
from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.store import load_store

DEFAULT = ["sae:2", "sae:8", "nmf:0.5", "nmf:2"]  # method:size, the size in times the layer's channels


def train_all(settings: Settings, model, dataset, layer: str, steps: int | None,
              asked: list[str]) -> list[StoredDictionary]:
    channels = model.layer(layer).shape[0]
    print(f"(a) training on {model.id} {layer} ({channels} channels), {len(dataset)} images")
    print(f"{'dictionary':14}{'features':>9}{'k':>5}{'steps':>7}{'vectors':>9}{'seconds':>9}{'variance':>10}"
          f"{'dead':>6}{'active':>8}")
    stored = []
    for method, multiple in (item.split(":") for item in asked):
        size = max(1, round(float(multiple) * channels))
        request = DictionaryRequest(layer=layer, method=method, size=size, sparsity=max(4, channels // 8),
                                    steps=steps or (settings.dictionary_steps if method == "sae"
                                                    else settings.dictionary_nmf_iterations),
                                    max_vectors=settings.dictionary_max_vectors)
        started = time.perf_counter()
        try:
            found = train_dictionary(model, dataset, request, settings.data_dir, workers=settings.index_workers,
                                     batch_size=settings.index_batch_size)
        except InvalidInput as refused:  # NMF on a layer of both signs: the others are still measured
            print(f"{request.kind:14}refused: {refused}", flush=True)
            continue
        seconds = time.perf_counter() - started
        f = found.meta["figures"]
        k = str(request.sparsity) if method == "sae" else "-"
        print(f"{found.kind:14}{size:9d}{k:>5}{request.steps:7d}{found.meta['vectors']:9d}{seconds:9.1f}"
              f"{f['variance_explained']:10.3f}{f['dead_features']:6d}{f['mean_active']:8.1f}", flush=True)
        stored.append(found)
    return stored


def pass_ratio(settings: Settings, model, dataset, layer: str, dictionaries: list[StoredDictionary],
               repeats: int, root: Path) -> None:
    images = torch.stack([model.preprocessing(Image.open(dataset.path(i))) for i in range(len(dataset))])
    base = make_plan(model, dataset, settings, layers=[layer])
    unlabelled = dataclasses.replace(dataset, labels=(None,) * len(dataset))  # no classes: no dissection
    channels = dataclasses.replace(base, dataset=unlabelled, concepts=None, dictionaries=())
    batches = partial(batches_from_memory, images, channels.batch_size)

    def timed(plan) -> float:
        started = time.perf_counter()
        run_index(plan, root / "pass", batches, checkpoint_seconds=1e9)
        return time.perf_counter() - started

    print(f"(b) the atlas pass of {layer} on {len(images)} preloaded images, medians of {repeats} (seconds)")
    print(f"{'units':16}{'count':>7}{'pass':>9}{'ratio':>8}")
    timed(channels)  # warm-up
    alone = []
    passes = {stored.kind: [] for stored in dictionaries}
    plans = {stored.kind: dataclasses.replace(channels, layers=(), dictionaries=(stored,)) for stored in dictionaries}
    for _ in range(repeats):
        alone.append(timed(channels))
        for kind, plan in plans.items():
            passes[kind].append(timed(plan))
    reference = statistics.median(alone)
    print(f"{'channels':16}{model.layer(layer).shape[0]:7d}{reference:9.2f}{1:8.2f}")
    for stored in dictionaries:
        seconds = statistics.median(passes[stored.kind])
        print(f"{stored.kind:16}{stored.dictionary.size:7d}{seconds:9.2f}{seconds / reference:8.2f}", flush=True)


def monosemanticity(settings: Settings, model, dataset, layer: str) -> None:
    plan = make_plan(model, dataset, settings, layers=[layer])  # every dictionary of the model, dissected
    batches = partial(batches_from_disk, dataset, model.preprocessing, plan.batch_size, workers=settings.index_workers)
    atlas = Atlas(run_index(plan, settings.data_dir, batches, settings.index_checkpoint_seconds))
    iou, auc = settings.dissection_iou_threshold, settings.selectivity_auc_threshold
    summary = detector_summary(atlas, iou, auc)
    masks, classes = bool(summary["categories"]), bool(summary["classes"])
    measures = [f"concepts by IoU >= {iou:g}"] * masks + [f"classes by ROC AUC >= {auc:g}"] * classes
    print(f"(c) labels of {layer}: " + ", ".join(measures))
    print(f"{'units':16}{'count':>7}" + (f"{'labelled':>10}{'mean best IoU':>15}{'concepts':>10}" if masks else "")
          + (f"{'selective':>11}{'mean best AUC':>15}{'classes':>9}" if classes else ""))
    for row in summary["layers"]:
        print(f"{row['kind']:16}{row['units']:7d}"
              + (f"{row['labelled_units'] / row['units']:10.1%}{row['best_iou_mean'] or 0:15.4f}"
                 f"{len(row['concepts']):10d}" if masks else "")
              + (f"{row['selective_units'] / row['units']:11.1%}{row['best_auc_mean'] or 0:15.4f}"
                 f"{len(row['selective_classes']):9d}" if classes else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, help="the same steps for every dictionary (default: the settings')")
    parser.add_argument("--models", nargs="+", default=["shapes-cnn", "shapes-mobilenet"])
    parser.add_argument("--layer", help="the layer of every model given (default: each model's last default layer)")
    parser.add_argument("--dataset", type=Path, help="a folder of images (an ImageFolder's classes are labels) "
                                                     "instead of the demo's held-out images")
    parser.add_argument("--model-dir", type=Path, action="append", default=[], help="a folder of model cards")
    parser.add_argument("--dictionaries", nargs="+", default=DEFAULT, metavar="METHOD:SIZE",
                        help="method and size in times the channels (default: " + " ".join(DEFAULT) + ")")
    parser.add_argument("--system-allocator", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings = Settings(data_dir=root / "data", demo_images=args.images, builtin_models=False,
                            model_dirs=[BUILTIN_MODEL_DIR, *args.model_dir], auto_index_demo=False)
        store = load_store(settings)
        dataset = scan_folder(args.dataset) if args.dataset else demo_dataset(settings)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {settings.device}")
        for model_id in args.models:
            model = store.ready(model_id)
            layer = args.layer or [info.name for info in model.layers if info.default][-1]
            dictionaries = train_all(settings, model, dataset, layer, args.steps, args.dictionaries)
            pass_ratio(settings, model, dataset, layer, dictionaries, args.repeats, root)
            monosemanticity(settings, model, dataset, layer)


if __name__ == "__main__":
    main()
