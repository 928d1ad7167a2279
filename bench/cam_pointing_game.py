"""CAM faithfulness on the demo models: how well each CAM method's map localises the object and explains
the model's confidence (app/engine/cam/metrics.py; definitions in docs/cam-methods.md).

For each demo model at its last convolutional stage (shapes-cnn `block4`, shapes-mobilenet `features`), on
the first `--images` held-out demo images (written by `write_split`, read as the atlas catalogs them), with
the image's true class as the target, every registry method's map (ReLU, upsampled, scaled to [0, 1]) gets:

  pointing game     hit rate: the map's maximum within 8 px (15 px at 224, scaled to 112) of the object's
                    mask (every visible shape of the target's kind)
  energy            mean share of the map's sum on the object's mask, and on its bounding box (Score-CAM's)
and, on the first `--metric-images` of them:
  deletion AUC      (lower is better) and insertion AUC (higher is better), `--steps` steps (112: one row's
                    worth of pixels per step, RISE's 224-pixel step at 224)
  average drop %    100 x mean max(0, Y - O) / Y (lower is better), increase % (higher is better)

Two baselines without a model: `centre` (a map peaking at the image's centre, Zhang et al.'s baseline) and
`random` (uniform noise, seeded). Usage:
    python bench/cam_pointing_game.py [--images 200] [--metric-images 30] [--steps 112] [--batch-size 64]
"""

from __future__ import annotations

import sys

from app.allocator import tune_allocator

if "--system-allocator" not in sys.argv:
    tune_allocator()  # before torch is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from app.atlas.datasets import scan_folder  # noqa: E402
from app.atlas.ground_truth import class_mask, mask_to_input  # noqa: E402
from app.demo.dataset import write_split  # noqa: E402
from app.engine.cam import METHODS, compute_cams, postprocess  # noqa: E402
from app.engine.cam.metrics import (  # noqa: E402
    confidence_change,
    deletion_insertion,
    energy_pointing_game,
    pointing_game,
    pointing_tolerance,
)
from app.settings import Settings  # noqa: E402
from app.store.store import LoadedModel, load_store  # noqa: E402

LAYERS = {"shapes-cnn": "block4", "shapes-mobilenet": "features"}
BASELINES = ("centre", "random")
COLUMNS = ("pointing", "energy_mask", "energy_box", "deletion", "insertion", "drop", "increase")


def baseline_map(name: str, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    if name == "random":
        return torch.rand(size, generator=generator)
    rows = torch.arange(size[0]).float()[:, None] - (size[0] - 1) / 2
    columns = torch.arange(size[1]).float()[None] - (size[1] - 1) / 2
    distance = (rows ** 2 + columns ** 2).sqrt()
    return 1 - distance / distance.max()


def evaluate(model: LoadedModel, dataset, args) -> tuple[dict[str, dict[str, list[float]]], dict[str, float], int]:
    """Per method (and baseline), each metric's per-image values; seconds per method; images scored."""
    layer = LAYERS[model.id]
    size = model.preprocessing.size
    tolerance = pointing_tolerance(size)
    generator = torch.Generator().manual_seed(0)
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seconds: dict[str, float] = defaultdict(float)
    scored = 0
    for relpath, label in zip(dataset.files[:args.images], dataset.labels[:args.images]):
        mask = class_mask(dataset.root, relpath, label)
        if mask is None:  # the main shape is never hidden, but a dataset could have no masks
            continue
        mask = torch.from_numpy(mask_to_input(mask, model.preprocessing))
        with Image.open(dataset.root / relpath) as image:
            x = model.as_input(model.preprocessing(image)[None])
        target = model.labels.index(label)
        with model.lock:
            result = compute_cams(model.module, x, layer, args.methods, target=target)
        for method in result.maps:
            seconds[method] += result.seconds[method]
        maps = {method: postprocess(found.raw, size=result.input_size) for method, found in result.maps.items()}
        maps |= {name: baseline_map(name, size, generator) for name in BASELINES}
        for method, saliency in maps.items():
            row = values[method]
            row["pointing"].append(float(pointing_game(saliency, mask, tolerance).hit))
            energy = energy_pointing_game(saliency, mask)
            row["energy_mask"].append(energy.mask)
            row["energy_box"].append(energy.box)
            if scored < args.metric_images:
                with model.lock:
                    curves = deletion_insertion(model.module, x, saliency, target, steps=args.steps,
                                                batch_size=args.batch_size)
                    change = confidence_change(model.module, x, saliency, target)
                row["deletion"].append(curves["deletion"].auc)
                row["insertion"].append(curves["insertion"].auc)
                row["drop"].append(100 * change.drop)
                row["increase"].append(100 * float(change.increase))
        scored += 1
    return values, seconds, scored


def table(values: dict[str, dict[str, list[float]]], scored: int, metric_images: int) -> str:
    lines = [f"| method | pointing game (n={scored}) | energy, mask | energy, box | "
             f"deletion AUC (n={metric_images}, lower better) | insertion AUC (higher better) | "
             "average drop % (lower better) | increase in confidence % (higher better) |",
             "|---|---|---|---|---|---|---|---|"]
    for method, row in values.items():
        cells = []
        for column in COLUMNS:
            mean = statistics.fmean(row[column]) if row[column] else float("nan")
            cells.append(f"{100 * mean:.1f}%" if column == "pointing" else
                         f"{mean:.1f}" if column in ("drop", "increase") else f"{mean:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="held-out images for the pointing games")
    parser.add_argument("--metric-images", type=int, default=30,
                        help="the first of them also get deletion, insertion, drop and increase")
    parser.add_argument("--steps", type=int, default=112, help="deletion and insertion steps per curve")
    parser.add_argument("--batch-size", type=int, default=64, help="curve images per forward pass")
    parser.add_argument("--models", default=",".join(LAYERS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--system-allocator", action="store_true", help="skip app/allocator.py's settings")
    args = parser.parse_args()
    args.methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        split = write_split(root / "datasets", "heldout", args.images)
        dataset = scan_folder(split / "images")  # relative paths as the atlas catalog stores them
        # In scene order (the class cycles with the index), so the metric subset is balanced too.
        order = sorted(range(len(dataset)), key=lambda i: Path(dataset.files[i]).stem)
        dataset = type(dataset)(**{**dataset.__dict__, "files": tuple(dataset.files[i] for i in order),
                                   "labels": tuple(dataset.labels[i] for i in order)})
        store = load_store(Settings(data_dir=root / "data", auto_index_demo=False))
        print(f"{len(dataset)} held-out demo images, {torch.get_num_threads()} threads, "
              f"steps {args.steps}, batch {args.batch_size}", flush=True)
        for model_id in args.models.split(","):
            model = store.ready(model_id)
            started = time.perf_counter()
            values, seconds, scored = evaluate(model, dataset, args)
            timing = ", ".join(f"{method} {1000 * total / scored:.0f}" for method, total in seconds.items())
            print(f"\n### {model_id}, layer `{LAYERS[model_id]}`, input {model.preprocessing.size}, "
                  f"tolerance {pointing_tolerance(model.preprocessing.size)} px "
                  f"({time.perf_counter() - started:.0f} s)\n")
            print(table(values, scored, min(scored, args.metric_images)))
            print(f"\nCAM ms per image: {timing}", flush=True)


if __name__ == "__main__":
    main()
