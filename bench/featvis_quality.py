"""Feature visualisation quality on the demo models' default layers (issue 16): for every unit, the activation
its rendered image reaches (the unit's spatial mean on the image, untransformed, at the model's input size:
what `fovea visualize` stores in each PNG) against the unit's best image in the demo atlas (the largest
spatial mean of any demo image, `mean_max`). Target: at least 90% of units reach it. Renders with the
settings a page asks for by default (the visualization_steps setting, Fourier images with the atlas's
colours, Lucid's transforms), builds the demo atlas first when missing, and prints per layer the share of
units that reach their best image, the ratio's 10th, 50th and 90th percentiles, and the seconds spent.
Usage:
    python bench/featvis_quality.py [--models shapes-cnn shapes-mobilenet] [--data-dir DIR] [--steps N]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.atlas.annotations import FEATURE_VISUALISATION, Annotations  # noqa: E402
from app.atlas.image_prior import render_prior  # noqa: E402
from app.atlas.indexer import DEMO_DATASET, demo_dataset, index_model  # noqa: E402
from app.atlas.registry import AtlasRegistry  # noqa: E402
from app.atlas.visualize import default_render_settings, render_scope, variant, visualize_layer  # noqa: E402
from app.settings import BUILTIN_MODEL_DIR, Settings  # noqa: E402
from app.store.store import load_store  # noqa: E402

TARGET = 0.9


def layer_quality(model, atlas, layer: str, data_dir: Path, settings) -> tuple[int, np.ndarray]:
    """(units, reached / best per unit) of `layer`, rendering what is not stored yet."""
    visualize_layer(model, layer, data_dir, settings, batch_size=48)
    store = Annotations(data_dir, model.id, FEATURE_VISUALISATION)
    scope, name = render_scope(model), variant(settings)
    indexed = atlas.layer(layer)
    ratios = []
    for unit in range(indexed.units):
        reached = float(Image.open(io.BytesIO(store.read(scope, layer, unit, name))).text["activation"])
        best = float(atlas.unit(indexed, unit)["mean_max"])
        ratios.append(reached / best if best > 0 else float("inf"))
    return indexed.units, np.array(ratios)


def model_quality(store, atlases: AtlasRegistry, settings: Settings, model_id: str, steps: int | None = None):
    """(variant, [(layer, units, seconds, reached / best per unit)] over the model's default layers), building
    the demo atlas first when missing."""
    model = store.ready(model_id)
    if DEMO_DATASET not in atlases.datasets(model_id):
        index_model(model, demo_dataset(settings), settings)
    atlas = atlases.get(model_id, DEMO_DATASET)
    size = (max(model.preprocessing.size),) * 2
    render = default_render_settings(settings, model, render_prior(atlases, model, size, "fft"))
    render = replace(render, steps=steps or render.steps)
    rows = []
    for info in (info for info in model.layers if info.default):
        started = time.perf_counter()
        units, ratios = layer_quality(model, atlas, info.name, settings.data_dir, render)
        rows.append((info.name, units, time.perf_counter() - started, ratios))
    return variant(render), rows


def demo_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, device="cpu", builtin_models=False, model_dirs=[BUILTIN_MODEL_DIR])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["shapes-cnn", "shapes-mobilenet"])
    parser.add_argument("--data-dir", type=Path, help="where atlases and renders go (default: a temporary folder)")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: the visualization_steps setting)")
    args = parser.parse_args()
    settings = demo_settings(args.data_dir or Path(tempfile.mkdtemp(prefix="featvis-quality-")))
    store, atlases = load_store(settings), AtlasRegistry(settings.data_dir)
    print(f"data in {settings.data_dir}")
    for model_id in args.models:
        name, rows = model_quality(store, atlases, settings, model_id, args.steps)
        print(f"\n{model_id}: {name}")
        print(f"{'layer':<14}{'units':>6}{'seconds':>9}{'>= best':>9}   reached / best, p10 / p50 / p90")
        for layer, units, seconds, ratios in rows:
            p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
            print(f"{layer:<14}{units:>6}{seconds:>9.1f}{np.mean(ratios >= 1):>9.0%}   "
                  f"{p10:.2f} / {p50:.2f} / {p90:.2f}")
        share = float(np.mean(np.concatenate([ratios >= 1 for *_, ratios in rows])))
        print(f"all default layers: {share:.1%} of units reach their best demo image (target {TARGET:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
