"""The CUDA path against the CPU on the demo, for a machine with a GPU (CI has none; `bench/gpu_check.sh` runs it
on a lent one). Convolutions round differently on each device, so results are compared with tolerances and the
differences printed; a line starting `FAIL` is a disagreement beyond them.

  1. The index build of shapes-cnn's default layers on the demo's held-out images (dissection included): per
     layer, the fraction of units whose top-k images are the same on both devices, the largest relative
     difference of the top values and of each unit's statistics, and whether the concept labels agree.
  2. CAMs of a few demo images by the gradient methods and Score-CAM at block4: the largest difference of the
     shown maps (scaled to [0, 1]) and whether the target class agrees.
  3. A sparse autoencoder's codes of block4's activations, computed on both devices from the same dictionary.
  4. Facets of a block4 unit rendered on the device at the default settings (precision auto; a Fourier image
     begun from the unit's top images): that they render, and the precision chosen.

Usage: python bench/cuda_agreement.py [--images 300] [--device auto]   (without a GPU: a dry run, CPU against CPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.atlas.indexer import demo_dataset, index_model
from app.atlas.labels import layer_labels
from app.atlas.reader import Atlas
from app.atlas.visualize import default_render_settings, visualize_facets
from app.engine.dictionary import SaeTrainer, encode_maps
from app.engine.featurevis.prior import LUCID
from app.engine.probe import run_to
from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.store import load_store
from app.studio.explain import CamRequest, explain

MODEL = "shapes-cnn"
CAM_METHODS = ("gradcam", "gradcampp", "layercam", "scorecam")
SAME_TOP_K = 0.98  # of a layer's units: near-ties may swap places between devices
VALUE_RTOL, MAP_ATOL, CODE_ATOL = 1e-3, 2e-2, 1e-3


def settings_for(root: Path, device: str, images: int) -> Settings:
    return Settings(data_dir=root / device.replace(":", "-"), device=device, demo_images=images,
                    builtin_models=False, model_dirs=[BUILTIN_MODEL_DIR], auto_index_demo=False)


def compare_atlases(cpu: Atlas, other: Atlas, settings: Settings) -> bool:
    agree, thresholds = True, (settings.dissection_iou_threshold, settings.selectivity_auc_threshold)
    print(f"{'layer':10}{'units':>7}{'same top-k':>12}{'top values':>12}{'statistics':>12}{'same label':>12}")
    for name, layer in cpu.layers.items():
        theirs = other.layers[name]
        same, value_error, stat_error = 0, 0.0, 0.0
        mine_labels, their_labels = layer_labels(cpu, layer, *thresholds), layer_labels(other, theirs, *thresholds)
        labels = sum((mine_labels.get(u) or {}).get("id") == (their_labels.get(u) or {}).get("id")
                     for u in range(layer.units))
        for unit in range(layer.units):
            mine, their = cpu.top_images(layer, unit), other.top_images(theirs, unit)
            same += {r["image"] for r in mine} == {r["image"] for r in their}
            value_error = max(value_error, _relative([r["value"] for r in mine], [r["value"] for r in their]))
            a, b = cpu.unit(layer, unit), other.unit(theirs, unit)
            stat_error = max(stat_error, _relative([a[k] for k in ("max_max", "max_mean", "mean_max")],
                                                   [b[k] for k in ("max_max", "max_mean", "mean_max")]))
        share = same / layer.units
        ok = share >= SAME_TOP_K and value_error <= VALUE_RTOL and stat_error <= VALUE_RTOL
        agree &= ok
        print(f"{'' if ok else 'FAIL '}{name:10}{layer.units:7d}{share:12.3f}{value_error:12.2e}{stat_error:12.2e}"
              f"{labels / layer.units:12.3f}")
    return agree


def _relative(mine, theirs) -> float:
    a, b = np.asarray(mine, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-6))) if a.size else 0.0


def compare_cams(cpu_model, other_model, dataset, settings: Settings, count: int) -> bool:
    agree, worst = True, dict.fromkeys(CAM_METHODS, 0.0)
    request = CamRequest(layer="block4", methods=CAM_METHODS)
    for image_id in range(count):
        picture = Image.open(dataset.path(image_id))
        batch = cpu_model.preprocessing.batch([picture])
        mine = explain(cpu_model, cpu_model.as_input(batch), request, settings)
        theirs = explain(other_model, other_model.as_input(batch), request, settings)
        if mine.result.target != theirs.result.target:
            print(f"FAIL image {image_id}: target class {mine.result.target} on the CPU, {theirs.result.target}")
            agree = False
        for a, b in zip(mine.maps, theirs.maps):
            worst[a.method.id] = max(worst[a.method.id], (a.shown - b.shown.cpu()).abs().max().item())
    for method, error in worst.items():
        ok = error <= MAP_ATOL
        agree &= ok
        print(f"{'' if ok else 'FAIL '}{method:12} largest difference of the shown maps over {count} images: "
              f"{error:.2e}")
    return agree


def compare_codes(cpu_model, other_model, dataset) -> bool:
    images = cpu_model.preprocessing.batch([Image.open(dataset.path(i)) for i in range(32)])
    with torch.no_grad():
        cpu_maps = run_to(cpu_model.module, "block4", cpu_model.as_input(images))
        other_maps = run_to(other_model.module, "block4", other_model.as_input(images))
    vectors = cpu_maps.permute(0, 2, 3, 1).reshape(-1, cpu_maps.shape[1]).contiguous()
    trainer = SaeTrainer(vectors, size=2 * vectors.shape[1], k=24, steps=50, batch_size=512)
    trainer.run(trainer.steps)
    sae = trainer.dictionary()
    mine = encode_maps(sae, cpu_maps)
    theirs = encode_maps(sae.to(other_maps.device), other_maps).cpu()
    error = (mine - theirs).abs().max().item()
    ok = error <= CODE_ATOL * max(mine.abs().max().item(), 1.0)
    print(f"{'' if ok else 'FAIL '}sae codes of block4 on 32 images: largest difference {error:.2e}")
    return ok


def render_facets(model, atlas: Atlas, settings: Settings) -> bool:
    render_settings = dataclasses.replace(default_render_settings(settings, model, LUCID), steps=16)
    facets = visualize_facets(model, atlas, "block4", 0, 2, settings.data_dir, render_settings)
    ok = bool(facets) and all(Image.open(io.BytesIO(facet.png)).size == render_settings.size for facet in facets)
    print(f"{'' if ok else 'FAIL '}{len(facets)} facets of block4:0 rendered on {model.device} in "
          f"{render_settings.precision}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--cams", type=int, default=8, help="images whose CAMs are compared")
    parser.add_argument("--device", default="auto", help="the device compared with the CPU (auto: the GPU)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cpu_settings = settings_for(root, "cpu", args.images)
        other_settings = settings_for(root, args.device, args.images)
        cpu_model = load_store(cpu_settings).ready(MODEL)
        other_model = load_store(other_settings).ready(MODEL)
        print(f"torch {torch.__version__}; {MODEL} on cpu and on {other_model.device}"
              f"{' (' + torch.cuda.get_device_name() + ')' if other_model.device.type == 'cuda' else ''}")
        dataset = demo_dataset(cpu_settings)
        atlases = [Atlas(index_model(model, dataset, settings))
                   for model, settings in ((cpu_model, cpu_settings), (other_model, other_settings))]
        agree = compare_atlases(*atlases, cpu_settings)
        agree &= compare_cams(cpu_model, other_model, dataset, cpu_settings, args.cams)
        agree &= compare_codes(cpu_model, other_model, dataset)
        agree &= render_facets(other_model, atlases[1], other_settings)
    print("the devices agree" if agree else "FAIL: the devices disagree (lines above)")
    raise SystemExit(0 if agree else 1)


if __name__ == "__main__":
    main()
