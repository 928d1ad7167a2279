"""`fovea index --ray` against the single-process build, in one run on the same images, layers and settings
(issue 19). Every build reads the images from disk, records the model's default layers and writes its atlas,
checkpoints included:

  (a) single process, one torch thread, decoding inline: what one Ray replica does on its one CPU;
  (b) Ray, one replica: its cost over (a) is the distribution's own (shards, states through Ray's object
      store, merging, ordering). Goal: (b) at most 1.15x (a)'s time;
  (c) single process with the default settings (every core's threads, decoding in worker processes);
  (d) Ray, two replicas (one per CPU here), against (c).

Ray's start (`ray.init` of a local instance) is timed apart; a replica's start (a process that imports torch
and loads the model) is inside (b) and (d), as it is in a real build. Each atlas is checked equal to (c)'s.
    python bench/distributed_index.py [--images 2000 | --dataset FOLDER] [--shard-images 256] [--concepts]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from app.atlas.datasets import scan_folder
from app.atlas.indexer import demo_dataset, index_model
from app.settings import Settings
from app.store.store import load_store
from tests.atlas_helpers import assert_same_atlas
from tests.conftest import DEMO_MODELS_ONLY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="of the demo's held-out split (at most 2000)")
    parser.add_argument("--dataset", type=Path, help="a folder of demo scenes instead, e.g. the train split written "
                                                     "by app.demo.dataset.write_split")
    parser.add_argument("--shard-images", type=int, default=256)
    parser.add_argument("--concepts", action="store_true",
                        help="keep the demo's concept masks: every build dissects its units too")
    args = parser.parse_args()
    import ray

    root = Path(tempfile.mkdtemp(prefix="fovea-bench-ray-"))
    try:
        base = Settings(data_dir=root / "demo", device="cpu", auto_index_demo=False, demo_images=args.images,
                        index_shard_images=args.shard_images, **DEMO_MODELS_ONLY)
        # Written once (or given), read by every build.
        dataset = scan_folder(args.dataset) if args.dataset else demo_dataset(base)
        if not args.concepts:  # the same images without their concept masks: classes only, as ImageNet's
            for path in dataset.files:
                (root / "classes-only" / path).parent.mkdir(parents=True, exist_ok=True)
                (root / "classes-only" / path).symlink_to(dataset.root / path)
            dataset = scan_folder(root / "classes-only")
        threads = torch.get_num_threads()
        builds = {
            "a": (dict(index_workers=0), 1, None),
            "b": (dict(index_workers=0), 1, 1),
            "c": ({}, threads, None),
            "d": ({}, threads, 2),
        }
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
        ray_start = time.perf_counter() - started
        seconds, first_step, atlases = {}, {}, {}
        for name, (overrides, torch_threads, replicas) in builds.items():
            settings = base.model_copy(update={"data_dir": root / name, **overrides})
            model = load_store(settings).ready("shapes-cnn")
            torch.set_num_threads(torch_threads)
            marks = []  # when each step (a batch here, a shard there) was done

            def mark(done: int, total: int, marks: list = marks) -> None:
                marks.append(time.perf_counter())

            started = time.perf_counter()
            atlases[name] = index_model(model, dataset, settings, ray="auto" if replicas else None,
                                        ray_replicas=replicas, progress=mark)
            seconds[name] = time.perf_counter() - started
            first_step[name] = marks[1] - started  # a shard's includes starting the replicas
            torch.set_num_threads(threads)
        ray.shutdown()
        for name in ("a", "b", "d"):
            assert_same_atlas(atlases[name], atlases["c"], float64_tolerance=1e-9)
        n = len(dataset)
        what = "with concept masks (dissected)" if args.concepts else "classes only"
        print(f"shapes-cnn, {n} demo scenes ({what}) from disk, default layers, shards of {args.shard_images} images, "
              f"{threads} torch threads, CPU; Ray's start {ray_start:.1f} s")
        for name, label in (("a", "single process, 1 thread, inline decoding"), ("b", "Ray, 1 replica"),
                            ("c", "single process, defaults"), ("d", "Ray, 2 replicas")):
            print(f"  ({name}) {label:<44} {seconds[name]:7.1f} s  {n / seconds[name]:7.1f} images/s; first step "
                  f"done after {first_step[name]:5.1f} s")
        print(f"  (b)/(a) time: {seconds['b'] / seconds['a']:.3f} (goal <= 1.15)")
        print(f"  (d) vs (c) speed: {seconds['c'] / seconds['d']:.2f}x")
        print("  every atlas equals (c)'s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
