"""Dissection cost and search latency (issue 17), measured in one run on this machine:

  (a) Dissection cost on the demo's held-out images, all default layers of each demo model: the index build
      of the same images with the dataset's concept labels and classes (dissection in the pass, then the
      labels) against the build without them (no top activations kept, no labels), side by side, alternating
      `--repeats` times; each reports its median. Target: (dissected - plain) / plain <= 0.25. The labelling
      step's own time (the atlas's `dissection_seconds`) is printed beside it, so the rest is the pass's cost.
  (b) Search latency over real HTTP (`fovea serve`), over every unit of the demo models plus a model with a
      1,000-unit layer (torchvision's squeezenet1_0 with random weights, its `classifier.1` convolution, on 400
      demo images): a few hundred queries (concept names and prefixes, formulas' words, class names, unit
      names, words matching nothing), one at a time; p50 and p99 with the indexes built, and the first query's
      time (it builds them). Target: p99 < 50 ms.

Every setting is the default one, as `fovea index` runs. Usage:
    python bench/dissect.py [--images 2000] [--repeats 2]
"""

from __future__ import annotations

import sys

from app.allocator import tune_allocator

if "--system-allocator" not in sys.argv:
    tune_allocator()  # before torch is imported, as the fovea command does

import argparse
import dataclasses
import os
import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import numpy as np

from app.atlas.build import run_index
from app.atlas.indexer import demo_dataset, make_plan
from app.atlas.loader import batches_from_disk
from app.atlas.reader import Atlas
from app.settings import Settings
from app.store.store import load_store
from bench.models import random_torchvision_card


def build(plan, settings: Settings) -> tuple[float, Path]:
    batches = partial(batches_from_disk, plan.dataset, plan.model.preprocessing, plan.batch_size,
                      workers=settings.index_workers)
    started = time.perf_counter()
    target = run_index(plan, settings.data_dir, batches, settings.index_checkpoint_seconds)
    return time.perf_counter() - started, target


def dissection_cost(settings: Settings, models: list[str], repeats: int) -> None:
    store = load_store(settings)
    dataset = demo_dataset(settings)
    print(f"(a) dissection cost, {len(dataset)} held-out demo images, all default layers (seconds, medians of "
          f"{repeats})")
    print(f"{'model':18}{'units':>7}{'plain':>9}{'dissected':>11}{'labelling':>11}{'ratio':>8}")
    for model_id in models:
        model = store.ready(model_id)
        dissected_plan = make_plan(model, dataset, settings)
        unlabelled = dataclasses.replace(dataset, labels=(None,) * len(dataset))  # no classes to score against
        plain_plan = dataclasses.replace(dissected_plan, dataset=unlabelled, concepts=None)
        build(dissected_plan, settings)  # warm-up: compiled kernels loaded, files in the page cache
        plain, dissected, labelling = [], [], []
        for _ in range(repeats):
            plain.append(build(plain_plan, settings)[0])
            seconds, target = build(dissected_plan, settings)
            dissected.append(seconds)
            labelling.append(Atlas(target).meta["dissection_seconds"])
        p, d, lab = statistics.median(plain), statistics.median(dissected), statistics.median(labelling)
        units = sum(info.shape[0] for info in dissected_plan.layers)
        print(f"{model_id:18}{units:7d}{p:9.2f}{d:11.2f}{lab:11.2f}{(d - p) / p:8.2f}")


def search_latency(settings: Settings, root: Path, queries: int) -> None:
    cards = root / "cards"
    model_id = random_torchvision_card(cards, "squeezenet1_0")
    wide = settings.model_copy(update={"model_dirs": [cards], "demo_images": 400})
    model = load_store(wide).ready(model_id)
    plan = make_plan(model, demo_dataset(wide), wide, layers=["classifier.1"])
    build(plan, wide)
    env = {**os.environ, "FOVEA_AUTO_INDEX_DEMO": "false", "FOVEA_AUTO_VISUALIZE_DEMO": "false"}
    port = 8765
    server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir",
                               str(settings.data_dir), "--model-dir", str(cards), "--device", "cpu"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get("/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            units = sum(len(range(layer.units)) for m in ("shapes-cnn", "shapes-mobilenet", model_id)
                        for layer in Atlas(settings.data_dir / "atlases" / m / "demo").by_kind.values())
            words = _query_words(client)
            started = time.perf_counter()
            first = client.get("/api/search", params={"q": "square"})
            cold = time.perf_counter() - started
            assert first.status_code == 200, first.text
            rng = np.random.default_rng(0)
            timings = []
            for i in range(queries):
                q = words[int(rng.integers(len(words)))]
                started = time.perf_counter()
                answer = client.get("/api/search", params={"q": q, "offset": 20 * (i % 3)})
                timings.append(time.perf_counter() - started)
                assert answer.status_code == 200, (q, answer.text)
    finally:
        server.terminate()
        server.wait(10)
    timings_ms = np.array(timings) * 1000
    print(f"\n(b) search over real HTTP: {units} units of shapes-cnn, shapes-mobilenet and {model_id} "
          f"(classifier.1: 1,000 units); {queries} queries of {len(words)} kinds")
    print(f"first query (builds the indexes): {cold * 1000:.0f} ms; then p50 {np.percentile(timings_ms, 50):.1f} ms, "
          f"p99 {np.percentile(timings_ms, 99):.1f} ms, max {timings_ms.max():.1f} ms")


def _query_words(client: httpx.Client) -> list[str]:
    concepts = client.get("/api/models/shapes-cnn/concepts").json()["concepts"]
    names = [c["name"] for c in concepts]
    return (names + [name[:3] for name in names] + [c["id"] for c in concepts]
            + ["red square", "class ring", "square and not dots", "block4:17", "features.10:3", "classifier.1:999",
               "layer zzz", "qqq", "object", "shape"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--system-allocator", action="store_true", help="the platform's allocator defaults")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings = Settings(data_dir=root / "data", demo_images=args.images, auto_index_demo=False)
        dissection_cost(settings, ["shapes-cnn", "shapes-mobilenet"], args.repeats)
        search_latency(settings, root, args.queries)


if __name__ == "__main__":
    main()
