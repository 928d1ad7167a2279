"""The index build against brute force, on a demo model and a torchvision model with random weights."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.atlas.reader import Atlas
from app.demo.dataset import write_split
from app.settings import Settings
from app.store.store import load_store
from tests.atlas_helpers import all_activations, brute_force_unit_stats
from tests.conftest import DEMO_MODELS_ONLY, card_toml

K = 5


def _settings(tmp_path, **overrides) -> Settings:
    values = dict(data_dir=tmp_path / "data", device="cpu", index_batch_size=16, index_workers=0,
                  auto_index_demo=False, **DEMO_MODELS_ONLY)
    return Settings(**(values | overrides))


def _check_against_brute_force(atlas: Atlas, model, dataset, layers: list[str]) -> None:
    activations, logits = all_activations(model, dataset, layers, atlas.meta["batch_size"])
    with sqlite3.connect(atlas.folder / "atlas.sqlite") as db:
        predictions = [row[0] for row in db.execute("SELECT prediction FROM images ORDER BY id")]
    assert predictions == logits.argmax(1).tolist()
    for name in layers:
        layer = atlas.layer(name)
        expected = brute_force_unit_stats(activations[name], K)
        units = activations[name].shape[1]
        h, w = activations[name].shape[2:]
        for unit in range(units):
            top = atlas.top_images(layer, unit)
            assert [row["image"] for row in top] == expected["topk"][unit].tolist(), (name, unit)
            assert [row["y"] * w + row["x"] for row in top] == expected["positions"][unit].tolist()
            assert np.allclose([row["value"] for row in top], expected["values"][unit], rtol=1e-6, atol=0)
            maps = np.asarray(atlas.maps(layer, unit), dtype=np.float32)
            brute_maps = activations[name][expected["topk"][unit], unit].astype(np.float16).astype(np.float32)
            assert np.array_equal(maps, brute_maps)
            row = atlas.unit(layer, unit)
            for key in ("max_mean", "max_std", "max_max", "fraction_active"):
                assert row[key] == pytest.approx(expected[key][unit], rel=1e-6, abs=1e-9), (name, unit, key)
            for key in ("mean_mean", "mean_std", "mean_max"):  # spatial means are summed in float32
                assert row[key] == pytest.approx(expected[key][unit], rel=1e-5, abs=1e-7), (name, unit, key)
            assert bool(row["dead"]) == (expected["fraction_active"][unit] == 0)
            assert row["images_at_max"] == expected["images_at_max"][unit]
        pooled = np.load(atlas.folder / f"layer-{layer.idx:03d}.pooled.npy")
        assert np.allclose(pooled, expected["spatial_mean"], rtol=1e-3, atol=1e-3)
        # The 99.5% quantile: where every position is histogrammed (maps no larger than the sample count) it
        # lies between the order statistics around rank 0.995 * N, give or take one histogram bin; from
        # sampled positions otherwise, so within sampling error of the exact quantile.
        quantiles = np.array([atlas.unit(layer, u)["quantile_995"] for u in range(units)])
        values = np.sort(activations[name].transpose(1, 0, 2, 3).reshape(units, -1), axis=1)
        peak = np.abs(values).max(axis=1)
        if h * w <= atlas.meta["histogram_samples"]:
            rank = 0.995 * values.shape[1]
            low = values[:, max(int(np.floor(rank)) - 1, 0)] - 4 * peak / 2048
            high = values[:, min(int(np.ceil(rank)), values.shape[1] - 1)] + 4 * peak / 2048
            bad = np.flatnonzero(~((low <= quantiles) & (quantiles <= high)))
            assert len(bad) == 0, (name, bad, low[bad], quantiles[bad], high[bad], peak[bad])
        else:
            assert np.median(np.abs(quantiles - expected["quantile_995"]) / np.maximum(peak, 1e-6)) < 0.05, name
        _check_similar(atlas, layer, pooled)


def _check_similar(atlas: Atlas, layer, pooled: np.ndarray) -> None:
    with np.errstate(divide="ignore", invalid="ignore"):  # dead units have no correlation
        correlation = np.corrcoef(pooled.astype(np.float64).T)
    for unit in range(pooled.shape[1]):
        similar = atlas.similar(layer, unit)
        if np.std(pooled[:, unit].astype(np.float64)) == 0:  # float16 std underflows
            assert similar == [], (layer.name, unit, [tuple(r) for r in similar])
            continue
        for row in similar:
            assert row["correlation"] == pytest.approx(correlation[unit, row["other"]], abs=1e-6)
        values = [row["correlation"] for row in similar]
        assert values == sorted(values, reverse=True)
        others = np.delete(correlation[unit], unit)
        others = others[~np.isnan(others)]
        assert values[0] == pytest.approx(others.max(), abs=1e-6)


def test_demo_model_matches_brute_force(tmp_path):
    settings = _settings(tmp_path)
    write_split(tmp_path / "demo", "heldout", 45)
    dataset = scan_folder(tmp_path / "demo" / "heldout" / "images")
    model = load_store(settings).ready("shapes-cnn")
    layers = ["stem.0", "block2", "block4"]
    folder = index_model(model, dataset, settings, layers=layers, k=K)
    atlas = Atlas(folder)
    assert atlas.meta["images"] == 45 and atlas.meta["readable"] == 45
    assert list(atlas.layers) == layers
    _check_against_brute_force(atlas, model, dataset, layers)


def test_torchvision_model_with_random_weights_matches_brute_force(tmp_path):
    import torchvision

    torch.manual_seed(0)
    cards = tmp_path / "cards"
    cards.mkdir()
    save_file(torchvision.models.resnet18(weights=None, num_classes=7).state_dict(), str(cards / "r18.safetensors"))
    (cards / "r18.toml").write_text(card_toml({
        "id": "r18", "name": "ResNet-18, random weights",
        "architecture": {"torchvision": "resnet18", "kwargs": {"num_classes": 7}},
        "weights": {"file": "r18.safetensors"},
        "input": {"size": [64, 64], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(37):
        Image.fromarray(rng.integers(0, 256, (80, 72, 3), dtype=np.uint8)).save(images / f"{i:03d}.png")
    settings = _settings(tmp_path, model_dirs=[cards], builtin_models=False)
    model = load_store(settings).ready("r18")
    dataset = scan_folder(images)
    layers = ["layer1", "layer3.0", "layer4"]
    atlas = Atlas(index_model(model, dataset, settings, layers=layers, k=K))
    assert atlas.meta["classes"] == []  # a flat folder: no labels
    _check_against_brute_force(atlas, model, dataset, layers)


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    folder = tmp_path / "images" / "things"
    folder.mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (40, 30), (40 * i, 0, 0)).save(folder / f"{i}.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    (folder / "notes.txt").write_text("not an image, not listed")
    settings = _settings(tmp_path)
    model = load_store(settings).ready("shapes-cnn")
    atlas = Atlas(index_model(model, scan_folder(tmp_path / "images"), settings, layers=["block4"], k=3))
    assert (atlas.meta["images"], atlas.meta["readable"], atlas.meta["unreadable"]) == (7, 5, 2)
    assert sorted(atlas.meta["unreadable_examples"]) == ["things/empty.png", "things/truncated.jpg"]
    assert atlas.meta["classes"] == ["things"]
    top = atlas.top_images(atlas.layer("block4"), 0)
    assert all(row["path"].endswith(".png") and row["path"] != "things/empty.png" for row in top)


def test_best_per_row_equals_a_stable_sort_with_ties():
    from app.atlas.writer import _best_per_row

    rng = np.random.default_rng(0)
    for _ in range(200):
        units, count = int(rng.integers(1, 30)), int(rng.integers(0, 10))
        keys = rng.integers(0, 5, (units, units)).astype(float)  # few distinct values: ties everywhere
        keys[rng.random((units, units)) < 0.2] = np.inf
        rows, columns = _best_per_row(keys, count)
        expected = np.argsort(keys, axis=1, kind="stable")[:, :count]
        assert np.array_equal(rows, np.repeat(np.arange(units), expected.shape[1]))
        assert np.array_equal(columns, expected.ravel())


def test_a_build_removes_what_a_killed_write_left(tmp_path):
    """A build killed while it wrote its atlas leaves a staging folder (and maybe a replaced one) beside it,
    hidden from readers; the next build of that atlas removes them."""
    settings = _settings(tmp_path)
    write_split(tmp_path / "demo", "heldout", 6)
    dataset = scan_folder(tmp_path / "demo" / "heldout" / "images", name="six")
    model = load_store(settings).ready("shapes-cnn")
    folder = settings.data_dir / "atlases" / "shapes-cnn"
    for leftover in (".six-a1b2c3", ".six.old-d4e5f6"):
        (folder / leftover).mkdir(parents=True)
        (folder / leftover / "layer-000.maps.npy").write_bytes(b"\0" * 1024)
    target = index_model(model, dataset, settings, layers=["block4"], k=2)
    assert sorted(path.name for path in folder.iterdir() if path.is_dir()) == ["six"]
    assert target == folder / "six" and Atlas(target).meta["images"] == 6
