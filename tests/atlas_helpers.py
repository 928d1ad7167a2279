"""Brute force for the atlas tests: every activation of every image kept in memory, statistics computed
the obvious way, to compare with the streaming build."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.atlas.datasets import ImageDataset, scan_folder
from app.atlas.indexer import index_model
from app.demo.dataset import write_split
from app.engine.hooks import forward_hooks
from app.settings import Settings
from app.store.store import LoadedModel, load_store


def all_activations(model: LoadedModel, dataset: ImageDataset, layers: list[str],
                    batch_size: int) -> tuple[dict, np.ndarray]:
    """{layer: (n, c, h, w) float32} and the logits (n, classes), in the build's batches and memory layout
    (convolutions give the same floats only for the same batch composition and layout)."""
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    logits = []
    with torch.no_grad(), forward_hooks(model.module, layers,
                                        lambda name, out: captured[name].append(out.clone().numpy())):
        for start in range(0, len(dataset), batch_size):
            ids = range(start, min(start + batch_size, len(dataset)))
            batch = model.preprocessing.batch([Image.open(dataset.path(i)) for i in ids])
            logits.append(model.module(model.as_input(batch)).numpy())
    return {name: np.concatenate(parts) for name, parts in captured.items()}, np.concatenate(logits)


def brute_force_unit_stats(activations: np.ndarray, k: int) -> dict:
    n, c, h, w = activations.shape
    flat = activations.reshape(n, c, h * w).astype(np.float64)
    spatial_max, spatial_mean = flat.max(2), flat.mean(2)
    # Ties on the maximum go to the higher mean (float32, as the build computes it), then the lower id.
    mean32 = torch.from_numpy(activations).reshape(n, c, h * w).mean(2).numpy()
    order = [np.lexsort((np.arange(n), -mean32[:, unit], -spatial_max[:, unit]))[:k] for unit in range(c)]
    return {
        "topk": np.array(order),
        "positions": np.array([[_peak(flat[i, unit], w) for i in order[unit]] for unit in range(c)]),
        "values": np.array([spatial_max[order[unit], unit] for unit in range(c)]),
        "max_mean": spatial_max.mean(0), "max_std": spatial_max.std(0), "max_max": spatial_max.max(0),
        "mean_mean": spatial_mean.mean(0), "mean_std": spatial_mean.std(0), "mean_max": spatial_mean.max(0),
        "fraction_active": (spatial_max > 0).mean(0),
        "images_at_max": (spatial_max == spatial_max.max(0)).sum(0),
        "quantile_995": np.quantile(activations.transpose(1, 0, 2, 3).reshape(c, -1), 0.995, axis=1),
        "spatial_mean": spatial_mean,
    }


def _peak(values: np.ndarray, width: int) -> int:
    """Of the positions at the maximum, the first nearest to their centroid."""
    at_max = np.flatnonzero(values == values.max())
    ys, xs = at_max // width, at_max % width
    distance = (ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2
    return int(at_max[np.argmin(distance)])


def demo_atlas(root: Path, settings: Settings, images: int) -> Path:
    """`images` held-out demo scenes written under `root/demo`, and shapes-cnn's `block4` atlas of them
    (k = 4) in the settings' data directory: what the API tests of images and CAMs serve."""
    from tests.conftest import DEMO_MODELS_ONLY

    write_split(root / "demo", "heldout", images)
    model = load_store(settings.model_copy(update=DEMO_MODELS_ONLY)).ready("shapes-cnn")
    index_model(model, scan_folder(root / "demo" / "heldout" / "images", name="demo"), settings,
                layers=["block4"], k=4)
    return root


def small_atlas(root: Path, images: int, layers: list[str], k: int):
    """shapes-cnn's atlas of `layers` on `images` held-out demo scenes under `root`, and the settings of an app
    that serves it (the demo models only): (settings, model, dataset, atlas)."""
    from app.atlas.reader import Atlas
    from tests.conftest import DEMO_MODELS_ONLY

    # A few images per class: every class is scored (the setting's 10 would leave them all out), so that the
    # tests of class selectivity have units to check.
    settings = Settings(data_dir=root / "data", device="cpu", index_batch_size=16, index_workers=0,
                        auto_index_demo=False, selectivity_min_class_images=1, **DEMO_MODELS_ONLY)
    write_split(root / "demo", "heldout", images)
    dataset = scan_folder(root / "demo" / "heldout" / "images")
    model = load_store(settings).ready("shapes-cnn")
    return settings, model, dataset, Atlas(index_model(model, dataset, settings, layers=layers, k=k))


def two_datasets(root: Path, images: int = 24) -> tuple[Path, Path]:
    """Two image folders of different demo scenes, `root/alpha` and `root/beta` (alternate files of one
    held-out split, class folders kept), for a model with atlases on two datasets."""
    write_split(root / "scenes", "heldout", images)
    files = sorted((root / "scenes" / "heldout" / "images").rglob("*.png"))
    for name, parity in (("alpha", 0), ("beta", 1)):
        for path in files[parity::2]:
            target = root / name / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return root / "alpha", root / "beta"


VOLATILE_META = {"seconds", "dissection_seconds", "created", "first_built"}
ATLAS_TABLES = ("images", "layers", "units", "topk", "similar", "concepts", "unit_concepts", "unit_dissection",
                "unit_classes")


def atlas_contents(folder: Path) -> dict:
    """Every table (rows in order), the meta but its timings, and every array of an atlas folder."""
    with sqlite3.connect(folder / "atlas.sqlite") as db:
        tables = {table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall() for table in ATLAS_TABLES}
        meta = {key: value for key, value in db.execute("SELECT key, value FROM meta") if key not in VOLATILE_META}
    arrays = {}
    for path in sorted(folder.glob("*.np[yz]")):
        if path.suffix == ".npy":
            arrays[path.name] = np.load(path)
        else:
            with np.load(path) as data:
                arrays.update({f"{path.name}:{key}": data[key] for key in data.files})
    return {"tables": tables, "meta": meta, "arrays": arrays}


def assert_same_atlas(folder: Path, expected: Path, float64_tolerance: float = 0.0) -> None:
    """The two atlases are equal: every table, the meta and every array. With a tolerance, float64 values
    (the statistics, sums over images) may differ by that much relative to their size; nothing else may."""
    got, want = atlas_contents(folder), atlas_contents(expected)
    assert got["meta"] == want["meta"]
    for table in ATLAS_TABLES:
        assert len(got["tables"][table]) == len(want["tables"][table]), table
        for row, wanted in zip(got["tables"][table], want["tables"][table]):
            assert len(row) == len(wanted) and all(_close(a, b, float64_tolerance) for a, b in zip(row, wanted)), (
                table, row, wanted)
    assert got["arrays"].keys() == want["arrays"].keys()
    for key, wanted in want["arrays"].items():
        array = got["arrays"][key]
        if float64_tolerance and wanted.dtype == np.float64:
            np.testing.assert_allclose(array, wanted, rtol=float64_tolerance, atol=float64_tolerance, err_msg=key)
        else:
            assert array.dtype == wanted.dtype and np.array_equal(array, wanted, equal_nan=True), key


def _close(a, b, tolerance: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and tolerance:
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
