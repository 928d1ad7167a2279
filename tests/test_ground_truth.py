"""Object masks of the demo split (app/atlas/ground_truth.py): the pixels of the scene's shapes of a kind,
read from the split's own files, refused outside it, and mapped to a model's input like the image."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.atlas import ground_truth
from app.atlas.datasets import scan_folder
from app.atlas.ground_truth import class_mask, mask_to_input, scenes
from app.demo.dataset import write_split
from app.demo.render import render
from app.demo.scenes import sample_scene
from app.engine.preprocess import Preprocessing
from app.errors import InvalidInput

SIZE = 48


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return write_split(tmp_path_factory.mktemp("demo"), "heldout", 6, size=SIZE)


def records(split: Path) -> list[dict]:
    return [json.loads(line) for line in (split / "scenes.jsonl").read_text().splitlines()]


def expected_mask(record: dict, kind: str) -> np.ndarray:
    """Straight from the renderer: the instance map's pixels of shapes of `kind` (shape i has id i + 1)."""
    _, instances = render(sample_scene(0, "heldout", record["index"], SIZE))
    ids = [i + 1 for i, shape in enumerate(record["scene"]["shapes"]) if shape["kind"] == kind]
    return np.isin(instances, ids)


def test_the_scenes_own_class_gives_its_shapes_pixels(split):
    checked = 0
    for record in records(split):
        kinds = {shape["kind"] for shape in record["scene"]["shapes"]}
        for kind in kinds:
            found = class_mask(split, record["image"], kind)
            expected = expected_mask(record, kind)
            if not expected.any():  # a shape hidden under another is not there to point at
                assert found is None
                continue
            assert found.dtype == bool and found.shape == (SIZE, SIZE)
            assert np.array_equal(found, expected)
            checked += 1
    assert checked >= 6


def test_a_scene_with_two_shapes_keeps_them_apart(split):
    # Image 1 of the held-out split is a square (shape 2) with a ring (shape 1).
    record = records(split)[1]
    assert [shape["kind"] for shape in record["scene"]["shapes"]] == ["ring", "square"]
    with Image.open(split / record["mask"]) as file:
        instances = np.asarray(file)
    assert np.array_equal(class_mask(split, record["image"], "square"), instances == 2)
    assert np.array_equal(class_mask(split, record["image"], "ring"), instances == 1)


def test_the_catalogs_paths_relative_to_the_images_folder_work_too(split):
    dataset = scan_folder(split / "images")  # what the demo atlas catalogs: "circle/00000.png"
    assert dataset.files[0] == "circle/00000.png"
    for relpath, label in zip(dataset.files, dataset.labels):
        record = next(r for r in records(split) if r["image"] == f"images/{relpath}")
        assert np.array_equal(class_mask(dataset.root, relpath, label), class_mask(split, record["image"], label))


def test_an_absent_class_gives_none(split):
    record = records(split)[0]  # a circle alone
    assert class_mask(split, record["image"], "arrow") is None
    assert class_mask(split, record["image"], "not-a-shape") is None


def test_no_scene_descriptions_gives_none(tmp_path):
    folder = tmp_path / "plain" / "cats"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    assert class_mask(tmp_path / "plain", "cats/a.png", "cats") is None


@pytest.mark.parametrize("relpath", ["../heldout/scenes.jsonl", "../../etc/passwd", "/etc/passwd",
                                     "images/../../outside.png", "."])
def test_paths_that_leave_the_root_are_refused(split, relpath):
    with pytest.raises(InvalidInput, match="outside the dataset folder"):
        class_mask(split / "images", relpath, "circle")


def test_a_link_out_of_the_root_is_refused(split, tmp_path):
    outside = tmp_path / "elsewhere.png"
    Image.new("L", (SIZE, SIZE)).save(outside)
    link = split / "images" / "circle" / "link.png"
    link.symlink_to(outside)
    try:
        with pytest.raises(InvalidInput):
            class_mask(split, "images/circle/link.png", "circle")
    finally:
        link.unlink()


def test_scenes_are_read_once_per_split_and_again_when_rewritten(split, monkeypatch, tmp_path):
    calls = []
    real = ground_truth._read_scenes
    monkeypatch.setattr(ground_truth, "_read_scenes", lambda path: calls.append(path) or real(path))
    copy = write_split(tmp_path, "heldout", 2, size=SIZE)
    threads = [threading.Thread(target=scenes, args=(copy,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(3):
        class_mask(copy, "images/circle/00000.png", "circle")
    assert len(calls) == 1
    write_split(tmp_path, "heldout", 3, size=SIZE)  # rewritten whole: a new file
    assert len(scenes(copy)) == 3 and len(calls) == 2


def test_mapping_to_a_smaller_input_is_a_nearest_resize(split):
    mask = class_mask(split, "images/circle/00000.png", "circle")
    found = mask_to_input(mask, Preprocessing(size=(20, 20), resize=None, mean=(0, 0, 0), std=(1, 1, 1)))
    expected = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((20, 20), Image.NEAREST)) > 0
    assert found.shape == (20, 20) and found.dtype == bool
    assert np.array_equal(found, expected)


def test_mapping_through_resize_and_centre_crop(split):
    # Shorter side 48 -> 40, then the centre 32x32: rows and columns 4..35 of the resized mask.
    mask = class_mask(split, "images/circle/00000.png", "circle")
    preprocessing = Preprocessing(size=(32, 32), resize=40, mean=(0, 0, 0), std=(1, 1, 1))
    found = mask_to_input(mask, preprocessing)
    resized = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((40, 40), Image.NEAREST)) > 0
    assert found.shape == (32, 32) and np.array_equal(found, resized[4:36, 4:36])


def test_the_mapped_mask_covers_what_the_image_view_shows(split):
    # The circle's centroid, scaled by 80/48, lands within a pixel in the mapped mask (the same geometry as
    # the image's bilinear view, which puts the circle there too).
    record = records(split)[0]
    mask = class_mask(split, record["image"], "circle")
    preprocessing = Preprocessing(size=(80, 80), resize=None, mean=(0, 0, 0), std=(1, 1, 1))
    found = mask_to_input(mask, preprocessing)
    with Image.open(split / record["image"]) as image:
        assert preprocessing.view(image).size == (80, 80)
    before = np.argwhere(mask).mean(axis=0) + 0.5
    after = np.argwhere(found).mean(axis=0) + 0.5
    assert np.abs(after - before * 80 / 48).max() < 1.0
    assert found.sum() == pytest.approx(mask.sum() * (80 / 48) ** 2, rel=0.1)
