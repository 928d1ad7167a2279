"""Index throughput, measured in one run on the same images and device (issue 3):

  (a) the bare model forward pass over images preloaded in memory, as `model(images)` runs it;
  (a') the same in the memory layout the build feeds the model (channels-last on the CPU, app/engine/layout.py):
       the build's own forward pass without any recording, so (b)/(a') is the cost of recording alone;
  (b) the index build over the same preloaded images, recording every default layer;
  (c) the index build end to end from disk (decoding in worker processes).

Target: (b)/(a) >= 0.85. (a), (a') and (b) alternate `--repeats` times and each reports its median, since a
shared machine drifts by more than the difference being measured. Every setting is the default one,
checkpoints included, and the process allocates memory as the fovea command does (app/allocator.py), for
(a) as for (b); --system-allocator leaves the platform's defaults. Usage:
    python bench/index_throughput.py demo [--images 2000] [--no-dissection]
    python bench/index_throughput.py resnet50 [--images 1024]     # torchvision resnet50, random weights, 224 px
"""

from __future__ import annotations

import sys

from app.allocator import tune_allocator

if "--system-allocator" not in sys.argv:
    tune_allocator()  # before torch is imported

import argparse
import dataclasses
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.atlas.build import run_index
from app.atlas.datasets import scan_folder
from app.atlas.indexer import demo_dataset, make_plan
from app.atlas.loader import batches_from_disk, batches_from_memory
from app.settings import Settings
from app.store.store import load_store
from bench.models import random_torchvision_card


def _resnet50(root: Path) -> tuple[Settings, str, Path]:
    images = root / "images"
    images.mkdir()
    model_id = random_torchvision_card(root / "cards", "resnet50")
    return Settings(data_dir=root / "data", model_dirs=[root / "cards"], builtin_models=False,
                    auto_index_demo=False), model_id, images


def _write_random_images(folder: Path, count: int, size: int = 256) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=["demo", "resnet50"])
    parser.add_argument("--images", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--system-allocator", action="store_true", help="skip app/allocator.py's settings")
    parser.add_argument("--no-dissection", action="store_true",
                        help="leave the demo's concept masks out of the plan: the pass without dissection, as on a "
                             "dataset with classes only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if args.model == "demo":
            settings = Settings(data_dir=root / "data", auto_index_demo=False)
            model_id, dataset = "shapes-cnn", demo_dataset(settings)
            if args.images:
                dataset = scan_folder(dataset.root, name="demo-subset")
                dataset = type(dataset)(**{**dataset.__dict__, "files": dataset.files[: args.images],
                                           "labels": dataset.labels[: args.images]})
        else:
            settings, model_id, images = _resnet50(root)
            _write_random_images(images, args.images or 1024)
            dataset = scan_folder(images)
        model = load_store(settings).ready(model_id)
        plan = make_plan(model, dataset, settings)
        if args.no_dissection:
            plan = dataclasses.replace(plan, concepts=None)
        preloaded = model.preprocessing.batch([Image.open(dataset.path(i)) for i in range(len(dataset))])
        n = len(dataset)
        print(f"{model_id}: {n} images at {tuple(preloaded.shape[2:])}, {len(plan.layers)} default layers, "
              f"batch {plan.batch_size}, device {model.device}, {torch.get_num_threads()} threads")

        print(f"the build feeds the model {model.memory_format} batches")

        def bare_forward(prepare) -> float:
            started = time.perf_counter()
            with torch.no_grad():
                for batch in batches_from_memory(preloaded, plan.batch_size, 0):
                    model.module(prepare(batch.images))
            if model.device.type == "cuda":  # the last batch's kernels are still running
                torch.cuda.synchronize(model.device)
            return n / (time.perf_counter() - started)

        def plain(images):
            return images.to(model.device)

        with torch.no_grad():  # warm-up, both layouts
            model.module(plain(preloaded[: plan.batch_size]))
            model.module(model.as_input(preloaded[: plan.batch_size]))
        forward_rates, layout_rates, index_rates = [], [], []
        for repeat in range(args.repeats):
            forward_rates.append(bare_forward(plain))
            layout_rates.append(bare_forward(model.as_input))
            started = time.perf_counter()
            run_index(plan, root / f"b{repeat}", partial(batches_from_memory, preloaded, plan.batch_size),
                      settings.index_checkpoint_seconds)
            index_rates.append(n / (time.perf_counter() - started))
            print(f"  repeat {repeat + 1}: (a) {forward_rates[-1]:.1f}  (a') {layout_rates[-1]:.1f}  "
                  f"(b) {index_rates[-1]:.1f} images/s")
        forward, preloaded_index = statistics.median(forward_rates), statistics.median(index_rates)
        layout_forward = statistics.median(layout_rates)

        started = time.perf_counter()
        run_index(plan, root / "c", partial(batches_from_disk, dataset, model.preprocessing, plan.batch_size,
                                            workers=settings.index_workers), settings.index_checkpoint_seconds)
        from_disk = n / (time.perf_counter() - started)

    print(f"(a) bare forward, preloaded:   {forward:8.1f} images/s")
    print(f"(a') bare forward, build's layout: {layout_forward:4.1f} images/s")
    print(f"(b) fovea index, preloaded:    {preloaded_index:8.1f} images/s")
    print(f"(c) fovea index, from disk:    {from_disk:8.1f} images/s")
    print(f"(b)/(a) = {preloaded_index / forward:.3f}  (target >= 0.85)    (c)/(a) = {from_disk / forward:.3f}")
    pairs = [b / a for a, b in zip(forward_rates, index_rates)]
    listed = ", ".join(f"{ratio:.3f}" for ratio in pairs)
    print(f"(b)/(a) of each adjacent pair: {listed}; median {statistics.median(pairs):.3f}")
    print(f"(b)/(a') = {preloaded_index / layout_forward:.3f}  (the recording's own cost)")


if __name__ == "__main__":
    main()
