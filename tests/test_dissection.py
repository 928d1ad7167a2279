"""Network Dissection, compositional labels and class selectivity: each piece against a brute-force or
hand-worked computation, then whole builds (a hand-built model on a label-map dataset, a Broden-layout
dataset, the demo) labelled as they must be."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from app.atlas.build import BuildCancelled, run_index
from app.atlas.concepts import open_concepts
from app.atlas.datasets import scan_folder
from app.atlas.indexer import demo_dataset, index_model, make_plan
from app.atlas.loader import batches_from_disk
from app.engine.dissection.auc import class_auc
from app.engine.dissection.labels import Formula, Formulas, beam_search, beam_searches, concept_iou
from app.engine.dissection.region import axis, count_region_pixels, upsample
from app.engine.dissection.signatures import SignatureTable, signature_map
from app.engine.dissection.top_activations import TopActivations
from app.errors import InvalidInput
from app.settings import Settings
from app.store.checkpoints import sha256_file
from app.store.store import load_store
from tests.atlas_helpers import all_activations
from tests.conftest import FIXTURES, card_toml

QUANTILE = 0.995  # Network Dissection's top 0.005


def _fed(maps: torch.Tensor, batch: int = 7, channels_last: bool = True) -> TopActivations:
    n, c, h, w = maps.shape
    top = TopActivations(c, (h, w), n, QUANTILE)
    for start in range(0, n, batch):
        part = maps[start:start + batch]
        part = part.contiguous(memory_format=torch.channels_last) if channels_last else part.contiguous()
        top.update(part, torch.arange(start, start + len(part)), part.amax(dim=(2, 3)))
    return top


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(40, 5, 7, 7), (25, 3, 14, 9), (6, 2, 28, 28)])
def test_threshold_is_numpys_top_0005_quantile_of_every_value(shape, channels_last):
    maps = torch.relu(torch.randn(*shape, generator=torch.Generator().manual_seed(1)))  # ReLU: ties at 0
    top = _fed(maps, channels_last=channels_last)
    expected = np.quantile(maps.transpose(0, 1).reshape(shape[1], -1).double().numpy(), QUANTILE, axis=1)
    assert np.array_equal(top.thresholds(), expected)


@pytest.mark.parametrize("offset", [-1000.0, 0.0])
def test_rising_and_negative_values_are_cut_to_exactly_the_entries_above_the_threshold(offset):
    """Maps that rise image after image make the buffers fill and be cut again and again; negative values and
    values drawn from 9 levels (ties at every cut) must be cut like any others. The entries above the
    threshold are exactly brute force's, with their neighbourhoods."""
    generator = torch.Generator().manual_seed(3)
    n, c, h, w = 60, 3, 12, 12
    levels = torch.randint(0, 9, (n, c, h, w), generator=generator).float()
    maps = offset + levels + torch.arange(n).view(n, 1, 1, 1) * 0.25  # later images higher
    maps[:, 2] = offset - torch.rand(n, h, w, generator=generator)  # a unit of negative values only
    top = _fed(maps)
    thresholds = top.thresholds()
    flat = maps.transpose(0, 1).reshape(c, -1).double().numpy()
    assert np.array_equal(thresholds, np.quantile(flat, QUANTILE, axis=1))
    found = top.above(thresholds)
    expected = {(unit, image, y, x) for unit, image, y, x in
                torch.nonzero(maps.transpose(0, 1) > torch.from_numpy(thresholds).view(c, 1, 1, 1)).tolist()}
    assert set(zip(found["unit"].tolist(), found["image"].tolist(), found["y"].tolist(), found["x"].tolist())) \
        == expected and len(found["unit"]) == len(expected)
    padded = F.pad(maps, (1, 1, 1, 1), mode="replicate")
    for unit, image, y, x, neighbourhood in zip(found["unit"], found["image"], found["y"], found["x"],
                                                found["neighbourhood"]):
        assert np.array_equal(neighbourhood, padded[image, unit, y:y + 3, x:x + 3].reshape(9).numpy())


def test_a_dead_unit_and_a_constant_unit_have_thresholds_too():
    maps = torch.zeros(30, 2, 5, 5)
    maps[:, 1] = 3.0
    top = _fed(maps)
    assert top.thresholds().tolist() == [0.0, 3.0]
    assert len(top.above(top.thresholds())["unit"]) == 0  # nothing strictly above


def test_state_round_trip_mid_way_ends_the_same():
    maps = torch.randn(50, 4, 9, 9, generator=torch.Generator().manual_seed(2))
    whole = _fed(maps)
    first = _fed(maps[:21])
    resumed = TopActivations(4, (9, 9), 50, QUANTILE)
    resumed.keep = whole.keep
    resumed.load({key: np.copy(value) for key, value in _fed_prefix(maps, 21, 50).state().items()})
    for start in range(21, 50, 7):
        part = maps[start:start + 7].contiguous(memory_format=torch.channels_last)
        resumed.update(part, torch.arange(start, start + len(part)), part.amax(dim=(2, 3)))
    assert np.array_equal(resumed.thresholds(), whole.thresholds())
    assert first.seen == 21 * 81
    for key in ("unit", "image", "y", "x", "value", "neighbourhood"):
        assert np.array_equal(resumed.above(whole.thresholds())[key], whole.above(whole.thresholds())[key])


def _fed_prefix(maps: torch.Tensor, stop: int, images: int) -> TopActivations:
    n, c, h, w = maps.shape
    top = TopActivations(c, (h, w), images, QUANTILE)
    for start in range(0, stop, 7):
        part = maps[start:min(start + 7, stop)].contiguous(memory_format=torch.channels_last)
        top.update(part, torch.arange(start, start + len(part)), part.amax(dim=(2, 3)))
    return top


@pytest.mark.parametrize("geometry", [(7, 7, 112, 112), (14, 14, 56, 56), (5, 9, 33, 40), (28, 28, 28, 28),
                                      (3, 3, 112, 112)])
def test_region_pixels_equal_the_upsampled_map_thresholded(geometry):
    """The rebuilt regions against F.interpolate of every whole map, pixel for pixel, by signature."""
    h, w, height, width = geometry
    n, units, signatures = 30, 4, 6
    maps = torch.relu(torch.randn(n, units, h, w, generator=torch.Generator().manual_seed(3)))
    top = _fed(maps)
    thresholds = top.thresholds()
    signature_maps = np.random.default_rng(0).integers(0, signatures, (n, height, width)).astype(np.int32)
    counted = count_region_pixels(top.above(thresholds), thresholds, (h, w), signature_maps, np.arange(n),
                                  signatures, units)
    active = upsample(maps, (height, width)).double() > torch.from_numpy(thresholds)[None, :, None, None]
    expected = np.stack([np.bincount(signature_maps[active[:, u].numpy()], minlength=signatures)
                         for u in range(units)])
    assert counted.sum() > 0
    assert np.array_equal(counted, expected)


@pytest.mark.parametrize("geometry", [(7, 7, 112, 112), (3, 3, 112, 112), (28, 28, 56, 56)])
def test_region_pixels_where_values_sit_within_float32_steps_of_the_threshold(geometry):
    """Map values at the threshold's own value or one or two float32 steps from it, so that pixels between
    them are decided by the last bit of the interpolation's rounding. The counting skips a row when exact
    arithmetic puts it below the threshold by a rounding bound: it must count every pixel that the same
    float32 arithmetic, pixel by pixel, puts above it in a cell with a corner above it. (F.interpolate may
    round such a pixel the other way: its kernels fuse multiply-adds on some CPUs and not on others.)"""
    h, w, height, width = geometry
    n, units = 40, 3
    rng = np.random.default_rng(7)
    level = np.float32(0.7311)
    kind = rng.choice(5, size=(n, units, h, w), p=[0.004, 0.02, 0.3, 0.3, 0.376])
    steps = np.array([1, 0, -1, -2, 0])[kind]
    values = np.where(kind < 4, level + steps * np.spacing(level), rng.random((n, units, h, w)) * 0.6)
    maps = torch.from_numpy(values.astype(np.float32))
    top = _fed(maps)
    thresholds = top.thresholds()
    signature_maps = np.random.default_rng(1).integers(0, 3, (n, height, width)).astype(np.int32)
    counted = count_region_pixels(top.above(thresholds), thresholds, (h, w), signature_maps, np.arange(n), 3, units)
    ys, xs = axis(h, height), axis(w, width)
    single = values.astype(np.float32)
    corner = {(i, j): single[:, :, rows][:, :, :, columns] for i, rows in enumerate((ys.low, ys.high))
              for j, columns in enumerate((xs.low, xs.high))}
    wx0, wx1 = xs.weight_low.numpy(), xs.weight_high.numpy()
    wy0, wy1 = ys.weight_low.numpy()[:, None], ys.weight_high.numpy()[:, None]
    pixels = (corner[0, 0] * wx0 + corner[0, 1] * wx1) * wy0 + (corner[1, 0] * wx0 + corner[1, 1] * wx1) * wy1
    limit = thresholds[None, :, None, None]
    active = torch.from_numpy((pixels > limit) & (np.max(list(corner.values()), axis=0) > limit))
    expected = np.stack([np.bincount(signature_maps[active[:, u].numpy()], minlength=3) for u in range(units)])
    assert counted.sum() > 50
    assert np.array_equal(counted, expected)


def test_region_pixels_of_a_chunk_of_images_only():
    maps = torch.relu(torch.randn(20, 2, 7, 7, generator=torch.Generator().manual_seed(4)))
    top = _fed(maps)
    thresholds = top.thresholds()
    signature_maps = np.zeros((20, 28, 28), dtype=np.int32)
    whole = count_region_pixels(top.above(thresholds), thresholds, (7, 7), signature_maps, np.arange(20), 1, 2)
    rows = np.full(20, -1)
    rows[[3, 11, 12]] = [0, 1, 2]
    part = count_region_pixels(top.above(thresholds), thresholds, (7, 7), signature_maps[[3, 11, 12]], rows, 1, 2)
    active = upsample(maps[[3, 11, 12]], (28, 28)).double() > torch.from_numpy(thresholds)[None, :, None, None]
    assert part[:, 0].tolist() == active.sum(dim=(0, 2, 3)).tolist()
    assert (part <= whole).all()


def test_netdissect_iou_worked_by_hand_on_a_4x4_example():
    """NetDissect-Lite: iou = both / (units_cat + labels - both). One image, labels 4 x 4:

        region (unit above threshold)   concept 'sky' (category scene-part)   concept 'red' (colour)
        1 1 0 0                          1 1 1 1                                0 0 0 0
        1 1 0 0                          1 1 1 1                                0 1 1 0
        1 0 0 0                          0 0 0 0                                0 1 1 0
        0 0 0 0                          0 0 0 0                                0 0 0 0

    sky: both = 4, region = 5, labels = 8 -> 4 / (5 + 8 - 4) = 4/9; red: both = 1, labels = 4 -> 1/8."""
    region = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    sky = np.zeros((4, 4), dtype=bool)
    sky[:2] = True
    red = np.zeros((4, 4), dtype=bool)
    red[1:3, 1:3] = True
    table = SignatureTable([0, 1], categories=2)
    regions = sky.astype(int) + 2 * red.astype(int)  # region numbers 0..3: (sky, red) combinations
    ids = table.intern([[], [0], [1], [0, 1]])
    signature_map = ids[regions]
    counts = np.bincount(signature_map[region], minlength=len(table))[None, :]
    pixels = np.bincount(signature_map.ravel(), minlength=len(table))
    iou, intersection, union = concept_iou(counts, pixels, table.concepts(), table.labelled(), np.array([0, 1]))
    assert intersection.tolist() == [[4, 1]]
    assert union.tolist() == [[9, 8]]
    assert iou[0] == pytest.approx([4 / 9, 1 / 8], abs=1e-15)


def test_region_counts_only_images_labelled_in_the_concepts_category():
    """The region's pixels on an image with no label of a category are left out of that category's unions."""
    table = SignatureTable([0, 1], categories=2)
    labelled_both = table.intern([[0, 1]])  # image 1: both categories labelled
    only_first = table.intern([[0]])  # image 2: category 1 unlabelled
    counts = np.zeros((1, len(table)))
    counts[0, labelled_both[0]], counts[0, only_first[0]] = 3, 5
    pixels = np.zeros(len(table))
    pixels[labelled_both[0]], pixels[only_first[0]] = 10, 10
    _, _, union = concept_iou(counts, pixels, table.concepts(), table.labelled(), np.array([0, 1]))
    assert union.tolist() == [[8 + 20 - 8, 3 + 10 - 3]]


def test_a_unit_saturated_at_its_maximum_has_an_empty_region():
    """A ReLU6-like clamp ties the top values at the maximum, which is then the quantile: as in NetDissect,
    nothing lies strictly above it (the unit page points to the layer before the clamp)."""
    maps = torch.zeros(40, 1, 6, 6)
    maps[:5, 0, 2:4, 2:4] = 6.0  # 20 of 1,440 values at the clamp: more than the top 0.005
    maps[5:, 0] = torch.rand(35, 6, 6) * 5
    top = _fed(maps)
    assert top.thresholds()[0] == 6.0
    assert len(top.above(top.thresholds())["unit"]) == 0


def test_beam_search_finds_a_planted_and_concept():
    """Signatures are every combination of 4 concepts; the region is exactly the pixels with concept 1 AND 3."""
    combinations = [[c for c in range(4) if bits >> c & 1] for bits in range(16)]
    table = SignatureTable([0, 0, 1, 1], categories=2)
    ids = table.intern(combinations)
    concepts = table.concepts()
    pixels = np.full(len(table), 100.0)
    region = np.where(concepts[:, 1] & concepts[:, 3], 100.0, 0.0)
    formula, iou = beam_search(region, Formulas.of(concepts, pixels), length=3, beam=5)
    assert formula.terms[:2] in ((1, 3), (3, 1)) and formula.operators[0] == "AND"
    assert iou == 1.0
    assert len(ids) == 16
    # A single concept stays single: no formula beats it, and ties keep the shorter one.
    formula, iou = beam_search(np.where(concepts[:, 2], 100.0, 0.0), Formulas.of(concepts, pixels))
    assert formula == Formula((2,), ()) and iou == 1.0


def test_units_searched_together_get_what_each_gets_alone():
    """The beam search runs for many units at once (and in groups of UNITS_AT_ONCE): each unit's formula and
    IoU are those of its own search, with fewer concepts than the beam and units whose region is tiny."""
    rng = np.random.default_rng(3)
    for signatures, concepts in ((60, 3), (120, 9)):
        table = rng.random((signatures, concepts)) < 0.3
        formulas = Formulas.of(table, rng.integers(1, 500, signatures).astype(np.float64))
        regions = rng.integers(0, 40, (150, signatures)) * (rng.random((150, signatures)) < 0.3)
        regions[5] = 0
        regions[5, 7] = 3
        together = beam_searches(regions, formulas, length=3, beam=5)
        assert together == [beam_search(region, formulas, length=3, beam=5) for region in regions]
        assert any(len(formula.terms) == 3 for formula, _ in together)


def test_a_planted_and_not_concept_and_formula_names():
    combinations = [[c for c in range(3) if bits >> c & 1] for bits in range(8)]
    table = SignatureTable([0, 1, 2], categories=3)
    table.intern(combinations)
    concepts = table.concepts()
    region = np.where(concepts[:, 0] & ~concepts[:, 2], 50.0, 0.0)
    formula, iou = beam_search(region, Formulas.of(concepts, np.full(len(table), 50.0)))
    assert (formula.terms, formula.operators, iou) == ((0, 2), ("AND NOT",), 1.0)
    names = ["red", "square", "dots"]
    assert Formula((0, 1, 2), ("OR", "AND NOT")).name(names) == "(red OR square) AND NOT dots"


def test_class_auc_agrees_with_scikit_learn():
    from sklearn.metrics import roc_auc_score  # here: 1.6 s of import for the worker that runs it only
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 300)
    values = np.round(rng.normal(size=(300, 6)) + (labels[:, None] == np.arange(6) % 4), 1)  # rounded: ties
    auc = class_auc(values, labels, 5)  # class 4 has no image
    for unit in range(6):
        for cls in range(4):
            assert auc[unit, cls] == pytest.approx(roc_auc_score(labels == cls, values[:, unit]), abs=1e-12)
    assert np.isnan(auc[:, 4]).all()
    # A unit's NaN maxima tie with each other above every number, as +inf values would.
    values[rng.random(values.shape) < 0.1] = np.nan
    assert np.array_equal(class_auc(values, labels, 4), class_auc(np.nan_to_num(values, nan=np.inf), labels, 4))


# Whole builds ---------------------------------------------------------------------------------------------

COLOURS = {1: "red", 2: "grey"}
TEXTURES = {3: "stripes", 4: "plain"}


def write_label_map_dataset(root: Path, count: int = 48, size: int = 32, seed: int = 0) -> Path:
    """Fovea's label-map layout: grey noise images, some with a red square, some with a patch of horizontal
    stripes, labelled per pixel by colour and texture."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    for category in ("colour", "texture"):
        (root / "labels" / category).mkdir(parents=True)
    with open(root / "concepts.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["number", "name", "category"])
        writer.writerows([[n, name, "colour"] for n, name in COLOURS.items()]
                         + [[n, name, "texture"] for n, name in TEXTURES.items()])
    for index in range(count):
        image = rng.uniform(0.4, 0.6, (size, size, 1)).repeat(3, axis=2)
        colour = np.full((size, size), 2, dtype=np.uint8)
        texture = np.full((size, size), 4, dtype=np.uint8)
        if index % 2 == 0:
            side = int(rng.integers(8, 13))
            y, x = rng.integers(0, size // 2 - side // 2, 2)
            image[y:y + side, x:x + side] = (0.85, 0.15, 0.15) + rng.uniform(-0.1, 0.1, (side, side, 3))
            colour[y:y + side, x:x + side] = 1
        if index % 3 == 0:
            y, x = rng.integers(size // 2, size - 10, 2)
            patch = np.where(np.arange(10)[:, None] % 2 == 0, 0.85, 0.15) + rng.uniform(-0.1, 0.1, (10, 10))
            image[y:y + 10, x:x + 10] = patch[..., None]
            texture[y:y + 10, x:x + 10] = 3
        name = f"{index:03d}"
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(colour).save(root / "labels" / "colour" / f"{name}.png")
        Image.fromarray(texture).save(root / "labels" / "texture" / f"{name}.png")
    return root


def write_concept_card(folder: Path) -> None:
    shutil.copy(FIXTURES / "concept_net.py", folder / "concept_net.py")
    import sys
    sys.path.insert(0, str(FIXTURES))
    try:
        from concept_net import concept_net
    finally:
        sys.path.remove(str(FIXTURES))
    weights = folder / "concepts.safetensors"
    save_file(concept_net().state_dict(), str(weights))
    (folder / "concepts.toml").write_text(card_toml({
        "id": "concepts", "name": "Fixed concept filters",
        "architecture": {"callable": "concept_net:concept_net", "kwargs": {"num_classes": 2}},
        "weights": {"file": weights.name, "sha256": sha256_file(weights)},
        "input": {"size": [32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "labels": {"names": ["a", "b"]},
    }))


def catalog_rows(atlas: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(atlas / "atlas.sqlite") as db:
        rows = db.execute(sql, params).fetchall()
    db.close()
    return rows


def unit_concepts(atlas: Path, layer: str) -> dict[int, list[tuple[str, float]]]:
    rows = catalog_rows(atlas, "SELECT uc.unit, c.id, uc.iou FROM unit_concepts uc "
                               "JOIN concepts c ON c.idx = uc.concept JOIN layers l ON l.idx = uc.layer "
                               "WHERE l.name = ? ORDER BY uc.unit, uc.rank", layer)
    found: dict[int, list] = {}
    for unit, concept, iou in rows:
        found.setdefault(unit, []).append((concept, iou))
    return found


@pytest.fixture
def concept_build(tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    write_concept_card(cards)
    root = write_label_map_dataset(tmp_path / "concept-set")
    settings = Settings(data_dir=tmp_path / "data", model_dirs=[cards], builtin_models=False, device="cpu",
                        index_workers=0, auto_index_demo=False)
    model = load_store(settings).ready("concepts")
    dataset = scan_folder(root)  # the concept folder stands for its images/
    atlas = index_model(model, dataset, settings, layers=["detectors"], k=4)
    return model, dataset, atlas


def test_fixed_filters_are_labelled_with_their_concepts(concept_build):
    _, dataset, atlas = concept_build
    assert dataset.root.name == "images" and len(dataset) == 48
    labels = unit_concepts(atlas, "detectors")
    # A region is the top 0.005 of the values (245 pixels here), so its IoU with a concept of ~2,000 pixels
    # is at most ~0.1; each detector's concept is far ahead of the rest.
    assert labels[0][0][0] == "colour:red" and labels[0][0][1] > 0.08 > 5 * labels[0][1][1]
    assert labels[1][0][0] == "texture:stripes" and labels[1][0][1] > 0.12 > 5 * labels[1][1][1]


def test_stored_iou_equals_brute_force_netdissect(concept_build):
    """Every stored IoU against NetDissect's definition computed from every whole map of every image."""
    model, dataset, atlas = concept_build
    activations, _ = all_activations(model, dataset, ["detectors"], batch_size=64)
    maps = torch.from_numpy(activations["detectors"])
    n, units = maps.shape[:2]
    thresholds = np.quantile(maps.transpose(0, 1).reshape(units, -1).double().numpy(), QUANTILE, axis=1)
    region = upsample(maps, (32, 32)).double() > torch.from_numpy(thresholds)[None, :, None, None]
    source = open_concepts(dataset.root)
    names = [c.id for c in source.concepts]
    masks = np.zeros((len(names), n, 32, 32), dtype=bool)
    for i, file in enumerate(dataset.files):
        regions, concepts = source.regions(file)
        for number, region_concepts in enumerate(concepts):
            for concept in region_concepts:
                masks[concept, i] |= regions == number
    stored = unit_concepts(atlas, "detectors")
    thresholds_stored = [t for (t,) in catalog_rows(atlas, "SELECT threshold FROM unit_dissection ORDER BY unit")]
    assert np.array_equal(np.array(thresholds_stored), thresholds)
    for unit in range(units):
        active = region[:, unit].numpy()
        for concept, iou in stored[unit]:
            mask = masks[names.index(concept)]
            both = (active & mask).sum()
            expected = both / (active.sum() + mask.sum() - both)  # every image labels both categories
            assert iou == pytest.approx(expected, abs=1e-12), (unit, concept)


def write_broden(root: Path, count: int = 24, size: int = 32) -> Path:
    """Broden's layout: index.csv, label.csv, category.csv, images and label PNGs (R + 256 G); the red label's
    number is 300, so its PNGs need the green channel; scene is an image-level category."""
    rng = np.random.default_rng(7)
    (root / "images" / "toy").mkdir(parents=True)
    labels = [(1, "wall", "object(20)"), (300, "red-c", "color(12)"), (2, "grey-c", "color(24)"),
              (3, "street", "scene(12)"), (4, "indoor", "scene(12)")]
    with open(root / "label.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        writer.writerow([0, "-", "", 0, 0, ""])
        writer.writerows([[n, name, cat, 1, 0.1, ""] for n, name, cat in labels])
    with open(root / "category.csv", "w", newline="") as out:
        out.write("name,first,last,count,frequency\nobject,1,1,1,1\ncolor,2,300,2,1\nscene,3,4,2,1\n")
    rows = []
    for index in range(count):
        image = rng.uniform(0.4, 0.6, (size, size, 1)).repeat(3, axis=2)
        colour = np.full((size, size), 2, dtype=np.int64)
        if index % 2 == 0:
            y, x = rng.integers(0, size - 12, 2)
            image[y:y + 12, x:x + 12] = (0.85, 0.15, 0.15) + rng.uniform(-0.1, 0.1, (12, 12, 3))
            colour[y:y + 12, x:x + 12] = 300
        name = f"toy/{index:03d}"
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(root / "images" / f"{name}.jpg",
                                                                                 quality=95)
        encoded = np.stack([colour % 256, colour // 256, np.zeros_like(colour)], axis=2).astype(np.uint8)
        Image.fromarray(encoded).save(root / "images" / f"{name}_color.png")
        wall = np.zeros((size, size, 3), dtype=np.uint8)
        wall[: size // 4, :, 0] = 1
        Image.fromarray(wall).save(root / "images" / f"{name}_object.png")
        rows.append([f"{name}.jpg", "train", size, size, size, size, f"{name}_color.png", f"{name}_object.png",
                     3 if index % 2 else 4])
    with open(root / "index.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["image", "split", "ih", "iw", "sh", "sw", "color", "object", "scene"])
        writer.writerows(rows)
    return root


def test_a_broden_layout_dataset_is_read_and_dissected(tmp_path):
    root = write_broden(tmp_path / "broden1_32")
    dataset = scan_folder(root)
    assert len(dataset) == 24 and all(f.endswith(".jpg") for f in dataset.files)  # label PNGs are not images
    assert set(dataset.labels) == {None}
    source = open_concepts(dataset.root)
    assert source.layout == "broden"
    assert {c.id for c in source.concepts} == {"object:wall", "color:red-c", "color:grey-c", "scene:street",
                                               "scene:indoor"}
    regions, concepts = source.regions("toy/000.jpg")
    names = [source.concepts[i].id for i in range(len(source.concepts))]
    red = [i for i, region in enumerate(concepts) if names.index("color:red-c") in region]
    assert (np.isin(regions, red)).sum() == 144  # the 12 x 12 red square, through R + 256 G
    assert all(names.index("scene:indoor") in region for region in concepts)  # image-level: every region
    cards = tmp_path / "cards"
    cards.mkdir()
    write_concept_card(cards)
    settings = Settings(data_dir=tmp_path / "data", model_dirs=[cards], builtin_models=False, device="cpu",
                        index_workers=0, auto_index_demo=False)
    atlas = index_model(load_store(settings).ready("concepts"), dataset, settings, layers=["detectors"], k=4)
    assert unit_concepts(atlas, "detectors")[0][0][0] == "color:red-c"


@pytest.mark.slow_build
def test_the_demo_square_unit_is_labelled_shape_square(tmp_path):
    """shapes-cnn block4:167, which the atlas shows as a square detector, on 400 held-out demo images."""
    settings = Settings(data_dir=tmp_path / "data", device="cpu", index_workers=0, auto_index_demo=False,
                        demo_images=400)
    atlas = index_model(load_store(settings).ready("shapes-cnn"), demo_dataset(settings), settings,
                        layers=["block4"], k=4)
    labels = unit_concepts(atlas, "block4")
    assert labels[167][0][0] == "shape:square"
    top_class = catalog_rows(atlas, "SELECT class, auc FROM unit_classes WHERE unit = 167 AND rank = 0")
    assert top_class and 0.5 < top_class[0][1] <= 1


def test_fovea_dissect_prints_the_labelled_fractions_and_refuses_a_dataset_without_labels(tmp_path, capsys,
                                                                                         monkeypatch):
    from app.cli import main

    cards = tmp_path / "cards"
    cards.mkdir()
    write_concept_card(cards)
    root = write_label_map_dataset(tmp_path / "concept-set", count=24)
    flags = ["--data-dir", str(tmp_path / "data"), "--model-dir", str(cards), "--no-builtin-models",
             "--device", "cpu"]
    assert main(["dissect", "concepts", "--dataset", str(root), "--layers", "detectors", "--k", "4", *flags]) == 0
    out = capsys.readouterr().out
    assert "units labelled (IoU >= 0.04)" in out and "colour" in out and "texture" in out
    assert re.search(r"detectors\s+3\s+33%\s+67%\s+100%", out), out  # red: colour; stripes, bright: texture
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(flat / f"{i}.png")
    # Images without classes are scored against the classes the model predicts; with that off, refused.
    assert main(["dissect", "concepts", "--dataset", str(flat), "--layers", "detectors", *flags]) == 0
    captured = capsys.readouterr()
    assert "the model's predicted classes" in captured.err and "predicted class selectivity" in captured.out
    monkeypatch.setenv("FOVEA_PREDICTED_CLASS_SELECTIVITY", "false")
    assert main(["dissect", "concepts", "--dataset", str(flat), *flags]) == 1
    assert "neither concept labels" in capsys.readouterr().err


def test_a_demo_mask_numbering_a_shape_its_scene_lacks_is_refused(tmp_path):
    """The demo's instance maps are read raw: a mask numbering a region beyond its scene's shapes is a broken
    label file (its image then counts as unlabelled), and the compiled signature map refuses such a number."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "0.png")
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 2:4] = 1
    mask[6, 6] = 7  # the scene below has one shape
    Image.fromarray(mask).save(tmp_path / "masks" / "0.png")
    scene = {"background": {"colour": "blue", "texture": "noise"},
             "shapes": [{"kind": "circle", "colour": "red", "texture": "dots"}]}
    (tmp_path / "scenes.jsonl").write_text(json.dumps({"image": "images/0.png", "mask": "masks/0.png",
                                                       "scene": scene}) + "\n")
    concepts = open_concepts(tmp_path / "images")  # the dataset is images/, its labels beside it
    with pytest.raises(ValueError, match="masks/0.png numbers a region its scene does not have"):
        concepts.regions("0.png")
    mask[6, 6] = 1
    Image.fromarray(mask).save(tmp_path / "masks" / "0.png")
    regions, region_concepts = concepts.regions("0.png")
    assert len(region_concepts) == 2 and regions.max() == 1
    assert concepts.regions("../scenes.jsonl") is None  # a key, never a file opened
    out = np.empty((8, 8), dtype=np.int32)
    occurs = signature_map(regions, np.array([5, 9], dtype=np.int32), out)
    assert occurs.tolist() == [True, True] and np.array_equal(out, np.where(regions == 1, 9, 5))
    with pytest.raises(IndexError):
        signature_map(regions, np.array([5], dtype=np.int32), out)


def test_a_broken_label_file_leaves_its_image_unlabelled_and_is_counted(tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    write_concept_card(cards)
    root = write_label_map_dataset(tmp_path / "concept-set", count=12)
    (root / "labels" / "colour" / "003.png").write_bytes(b"not a png")
    settings = Settings(data_dir=tmp_path / "data", model_dirs=[cards], builtin_models=False, device="cpu",
                        index_workers=0, auto_index_demo=False)
    atlas = index_model(load_store(settings).ready("concepts"), scan_folder(root), settings, layers=["detectors"],
                        k=2)
    meta = catalog_rows(atlas, "SELECT value FROM meta WHERE key = 'dissection'")[0][0]
    assert '"unreadable_labels": 1' in meta and "003.png" in meta
    assert unit_concepts(atlas, "detectors")[0]


def test_a_layout_with_no_concept_is_refused_and_an_index_cannot_list_files_outside(tmp_path):
    root = write_label_map_dataset(tmp_path / "empty", count=2)
    (root / "concepts.csv").write_text("number,name,category\n")
    with pytest.raises(InvalidInput, match="lists no concept"):
        open_concepts(root / "images")
    broden = write_broden(tmp_path / "broden", count=4)
    (tmp_path / "secret.jpg").write_bytes((broden / "images" / "toy" / "000.jpg").read_bytes())
    with open(broden / "index.csv", "a", newline="") as out:
        csv.writer(out).writerow(["../../secret.jpg", "train", 32, 32, 32, 32, "", "", 3])
    assert scan_folder(broden).files == tuple(f"toy/{i:03d}.jpg" for i in range(4))


def test_beam_search_finds_a_planted_or_then_and_not():
    """A planted (a OR b) AND NOT c: "a OR b" scores below "a AND NOT c" at the second step and must stay in
    a beam of 3 (no slot spent on "a OR a", nor on "b OR a" beside "a OR b")."""
    combinations = [[c for c in range(4) if bits >> c & 1] for bits in range(16)]
    table = SignatureTable([0, 1, 2, 3], categories=4)
    table.intern(combinations)
    concepts = table.concepts()
    region = np.where((concepts[:, 0] | concepts[:, 1]) & ~concepts[:, 2], 10.0, 0.0)
    formula, iou = beam_search(region, Formulas.of(concepts, np.full(len(table), 10.0)), beam=3)
    assert iou == 1.0 and set(formula.terms) == {0, 1, 2} and formula.operators == ("OR", "AND NOT")


def test_a_dissection_over_the_memory_setting_is_refused_before_the_pass(tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    write_concept_card(cards)
    root = write_label_map_dataset(tmp_path / "concept-set", count=4)
    settings = Settings(data_dir=tmp_path / "data", model_dirs=[cards], builtin_models=False, device="cpu",
                        index_workers=0, auto_index_demo=False, dissection_max_bytes=1000)
    with pytest.raises(InvalidInput, match="dissection_max_bytes.*detectors"):
        index_model(load_store(settings).ready("concepts"), scan_folder(root), settings, layers=["detectors"], k=2)
    assert not (tmp_path / "data" / "atlases").exists()


def test_a_build_stopped_while_labelling_resumes_there_to_the_same_atlas(tmp_path):
    """Stopped once the pass is over (the labelling step checks between chunks), the next run resumes from the
    last checkpoint (the pass's end when it would otherwise lose more than the checkpoint interval) and ends
    with the atlas of an uninterrupted build."""
    cards = tmp_path / "cards"
    cards.mkdir()
    write_concept_card(cards)
    root = write_label_map_dataset(tmp_path / "concept-set", count=20)

    def build(data: str, cancel_at_end: bool):
        settings = Settings(data_dir=tmp_path / data, model_dirs=[cards], builtin_models=False, device="cpu",
                            index_workers=0, auto_index_demo=False, index_batch_size=8)
        plan = make_plan(load_store(settings).ready("concepts"), scan_folder(root), settings, layers=["detectors"],
                         k=2)
        batches = partial(batches_from_disk, plan.dataset, plan.model.preprocessing, plan.batch_size, workers=0)
        cancel, seen = threading.Event(), []

        def progress(done, total):
            seen.append(done)
            if cancel_at_end and done == total:
                cancel.set()
        return lambda: run_index(plan, settings.data_dir, batches, 0.0, progress, cancel), seen

    whole, _ = build("whole", False)
    stopped, first = build("stopped", True)
    expected = whole()
    with pytest.raises(BuildCancelled, match="labelling"):
        stopped()
    resumed, second = build("stopped", False)
    atlas = resumed()
    assert first[-1] == 20 and second[0] > 0  # resumed from a checkpoint, not from the first image
    for table in ("concepts", "unit_concepts", "unit_dissection", "units", "topk"):
        assert catalog_rows(atlas, f"SELECT * FROM {table} ORDER BY 1, 2") == \
            catalog_rows(expected, f"SELECT * FROM {table} ORDER BY 1, 2"), table

