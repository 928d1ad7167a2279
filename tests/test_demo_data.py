"""The procedural demo dataset: deterministic, and its masks cover exactly the drawn pixels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from app.demo.dataset import render_split, write_split
from app.demo.render import BACKGROUND, concept_masks, render
from app.demo.scenes import COLOURS, SHAPE_KINDS, Background, Scene, Shape, sample_scene


def _plain_scene(*shapes: Shape, background: str = "black") -> Scene:
    return Scene(size=112, background=Background(background, "solid"), shapes=shapes, label=shapes[-1].kind)


def test_same_seed_gives_identical_images_and_masks():
    for index in (0, 7, 1234):
        first_image, first_mask = render(sample_scene(3, "train", index))
        second_image, second_mask = render(sample_scene(3, "train", index))
        assert first_image.tobytes() == second_image.tobytes()
        assert first_mask.tobytes() == second_mask.tobytes()
    other_image, _ = render(sample_scene(4, "train", 0))
    assert other_image.tobytes() != render(sample_scene(3, "train", 0))[0].tobytes()


def test_splits_differ_and_classes_are_balanced():
    assert sample_scene(0, "train", 5) != sample_scene(0, "heldout", 5)
    _, labels = render_split("heldout", 40)
    assert np.bincount(labels, minlength=10).tolist() == [4] * 10
    assert [sample_scene(0, "heldout", i).label for i in range(10)] == list(SHAPE_KINDS)


def test_square_mask_is_exactly_the_hand_computed_rectangle():
    # Circumradius 20 -> half side 16; pixel centres x + 0.5 within [40, 72] -> columns 40..71 (32 pixels).
    scene = _plain_scene(Shape("square", "red", "solid", cx=56, cy=56, radius=20))
    image, instances = render(scene)
    expected = np.zeros((112, 112), dtype=bool)
    expected[40:72, 40:72] = True
    assert np.array_equal(instances == 1, expected)
    assert (instances == 1).sum() == 32 * 32
    # Drawn pixels carry the shape colour, every other pixel the background colour.
    assert (image[expected] == COLOURS["red"]).all()
    assert (image[~expected] == COLOURS["black"]).all()


def test_circle_mask_matches_a_per_pixel_count():
    scene = _plain_scene(Shape("circle", "white", "solid", cx=30.0, cy=70.0, radius=10.0))
    _, instances = render(scene)
    by_hand = {(y, x) for y in range(112) for x in range(112) if (x + 0.5 - 30) ** 2 + (y + 0.5 - 70) ** 2 <= 100}
    assert set(zip(*np.nonzero(instances == 1))) == by_hand
    assert len(by_hand) == 316  # close to pi * 10^2 = 314.2


def test_occlusion_and_concept_masks():
    # A blue striped ring under a red solid square: the square wins where they overlap.
    ring = Shape("ring", "blue", "stripes", cx=40, cy=40, radius=20)
    square = Shape("square", "red", "solid", cx=60, cy=60, radius=15)
    scene = _plain_scene(ring, square, background="white")
    image, instances = render(scene)
    square_pixels = np.zeros((112, 112), dtype=bool)
    square_pixels[48:72, 48:72] = True  # half side 12: centres within [48, 72]
    assert np.array_equal(instances == 2, square_pixels)
    masks = concept_masks(scene, instances)
    assert set(masks) == {"shape:ring", "shape:square", "colour:blue", "colour:red", "colour:white",
                          "texture:stripes", "texture:solid"}
    assert np.array_equal(masks["shape:square"], square_pixels)
    assert np.array_equal(masks["shape:ring"], instances == 1)
    assert not (masks["shape:ring"] & square_pixels).any()
    # Solid covers the square and the (solid) background, not the striped ring.
    assert np.array_equal(masks["texture:solid"], (instances == 2) | (instances == BACKGROUND))
    assert np.array_equal(masks["colour:white"], instances == BACKGROUND)
    # The ring's hole shows the background.
    assert instances[40, 40] == BACKGROUND
    assert math.isclose(masks["colour:blue"].sum(), (instances == 1).sum())


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_every_shape_kind_draws_a_plausible_area(kind):
    scene = _plain_scene(Shape(kind, "yellow", "checker", cx=56, cy=56, radius=30))
    _, instances = render(scene)
    area = (instances == 1).sum()
    assert 0.25 * math.pi * 30 ** 2 < area <= 1.3 * math.pi * 30 ** 2  # about its circle, not a sliver


def test_write_split_layout(tmp_path):
    target = write_split(tmp_path, "heldout", 12)
    assert sorted(p.name for p in target.iterdir()) == ["dataset.json", "images", "masks", "scenes.jsonl"]
    records = [json.loads(line) for line in (target / "scenes.jsonl").read_text().splitlines()]
    assert len(records) == 12
    first = records[0]
    image = np.asarray(Image.open(target / first["image"]))
    mask = np.asarray(Image.open(target / first["mask"]))
    expected_image, expected_mask = render(sample_scene(0, "heldout", 0))
    assert np.array_equal(image, expected_image) and np.array_equal(mask, expected_mask)
    assert first["image"].startswith(f"images/{first['scene']['label']}/")
    assert json.loads((target / "dataset.json").read_text())["count"] == 12
    # Rewriting replaces the split whole and leaves no staging folders behind.
    write_split(tmp_path, "heldout", 3)
    assert len((target / "scenes.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".heldout.lock", "heldout"]  # the lock file stays


def test_the_demo_atlas_dataset_takes_the_first_demo_images(tmp_path):
    """`demo_images` makes a first start quicker: its atlases are built on the first N held-out images."""
    from app.atlas.indexer import demo_dataset
    from app.settings import Settings

    dataset = demo_dataset(Settings(data_dir=tmp_path, demo_images=7))
    assert len(dataset) == 7 and dataset.name == "demo"
