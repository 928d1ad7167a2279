"""Real data: the third-party ResNet-20 indexed on a fixed sample of the CIFAR-10 test JPEGs (the first 200
of each class: 2,000 images, class-balanced as the whole set is). Its layer3 units are class-selective: for
most of them the top-32 images are far from a uniform mix of the 10 classes.

Criterion: a unit is selective when its most common class holds at least 30% of its top 32 images
(uniform sampling gives 10%; 10 or more of 32 from p = 0.1 happens with probability about 0.01). At least
75% of layer3's 64 units must be selective. The unit page then loads in Chromium."""

from __future__ import annotations

import shlex

import pytest

from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.atlas.reader import Atlas
from app.cli import build_parser
from app.settings import Settings
from app.store.store import load_store
from tests.browser import browser, screenshot
from tests.live_server import live_server
from tests.test_byo_resnet20 import CLASSES, cifar_sample, pytestmark, write_resnet20_card  # noqa: F401 (skip without data)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("resnet20-atlas")
    cards = root / "cards"
    cards.mkdir()
    write_resnet20_card(cards)
    settings = Settings(data_dir=root / "data", model_dirs=[cards], builtin_models=False, device="cpu",
                        auto_index_demo=False, index_batch_size=250)
    sample = root / "cifar10-sample"  # links to the sample's files, in the ImageFolder layout
    for path in cifar_sample():
        (sample / path.parent.name).mkdir(parents=True, exist_ok=True)
        (sample / path.parent.name / path.name).symlink_to(path)
    model = load_store(settings).ready("resnet20-cifar10")
    folder = index_model(model, scan_folder(sample), settings, layers=["layer1", "layer2", "layer3"], k=32)
    return root, cards, Atlas(folder)


def test_layer3_units_are_class_selective(indexed):
    _, _, atlas = indexed
    assert atlas.meta["readable"] == len(cifar_sample()) and atlas.meta["classes"] == CLASSES
    layer = atlas.layer("layer3")
    shares = []
    for unit in range(layer.units):
        classes = atlas.class_histogram(atlas.top_images(layer, unit))
        shares.append(classes[0]["count"] / 32 if classes else 0.0)
    selective = sum(share >= 0.3 for share in shares) / layer.units
    print(f"layer3: {selective:.0%} of units selective; median top-class share {sorted(shares)[32]:.2f}")
    assert selective >= 0.75


def test_unit_page_loads_in_chromium(indexed):
    root, cards, atlas = indexed
    with live_server(root / "data", "--model-dir", str(cards), "--no-builtin-models",
                     env={"FOVEA_AUTO_INDEX_DEMO": "false"}) as base, browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/m/resnet20-cifar10/layer3/0")
        page.locator(".gallery-item").first.wait_for()
        assert page.locator(".gallery-item").count() == 32
        assert page.locator(".bars li").count() >= 1
        page.wait_for_timeout(500)
        screenshot(page, "unit-resnet20")

        # A layer not indexed suggests the command that adds it, runnable as printed: with this server's card
        # folder and data folder, which a bare `fovea index` would not know.
        page.goto(f"{base}/m/resnet20-cifar10/layer2.0")
        command = page.locator("code", has_text="fovea index").first.inner_text()
        words = shlex.split(command)
        assert words[:2] == ["fovea", "index"]
        args = build_parser().parse_args(words[1:])
        assert (args.model, args.layers[-1], args.model_dirs, args.data_dir) == (
            "resnet20-cifar10", "layer2.0", [cards], root / "data")
        assert args.dataset == str(atlas.dataset_root)
        screenshot(page, "layer-not-indexed-resnet20")

        # The upload page offers this model's own images, one per class, and asks for nothing that fails (it
        # asked for the demo's samples, which a server of one's own model does not have: a 404).
        failed = []
        page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
        page.goto(f"{base}/image")
        page.wait_for_selector(".sample-list li img")
        assert sorted(page.locator(".sample-list li").all_inner_texts()) == sorted(CLASSES)
        assert "resnet20-cifar10" in page.locator(".sample-list a").first.get_attribute("href")
        assert failed == []
        screenshot(page, "upload-samples-resnet20")
