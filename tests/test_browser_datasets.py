"""In Chromium: pages name the atlas dataset they show (a link without one is rewritten to name it), a picker
moves between a model's atlases, a saturated unit says so, and captions say the class is the image's."""

from __future__ import annotations

import re

import pytest

from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model
from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.store import load_store
from tests.atlas_helpers import two_datasets
from tests.browser import browser, screenshot, watched_page
from tests.conftest import WITHOUT_MODEL_WORKER
from tests.live_server import live_server
from tests.test_saturation import clamped_card

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-datasets")
    cards = clamped_card(root / "cards", root / "squares")
    # Datasets of 12 images in 10 classes: every class is scored (the setting's 10 images would leave them out).
    settings = Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False,
                        model_dirs=[cards], selectivity_min_class_images=1)
    alpha, beta = two_datasets(root)
    store = load_store(settings)
    index_model(store.ready("shapes-cnn"), scan_folder(alpha, name="alpha"), settings,
                layers=["block3", "block4"], k=4)
    index_model(store.ready("shapes-cnn"), scan_folder(beta, name="beta"), settings,
                layers=["block2", "block4"], k=4)
    index_model(store.ready("clamped"), scan_folder(root / "squares", name="squares"), settings, layers=["1"], k=4)
    # Unit pages render a feature visualisation.
    environment = {"FOVEA_AUTO_INDEX_DEMO": "false", "FOVEA_VISUALIZATION_STEPS": "4", **WITHOUT_MODEL_WORKER}
    # The user's folder, then the demo's, as Settings.card_dirs orders them (the built-in EfficientNet card left out).
    with live_server(root / "data", "--no-builtin-models", "--model-dir", str(cards), "--model-dir",
                     str(BUILTIN_MODEL_DIR), env=environment) as base:
        yield base


def test_pages_name_their_dataset_and_pick_another(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/m/shapes-cnn/block4/5")
        page.wait_for_url(server + "/m/shapes-cnn/block4/5?dataset=alpha")  # the link now names what it shows
        page.locator(".gallery-item canvas").first.wait_for()
        assert page.locator("select[name=dataset]").input_value() == "alpha"
        assert page.locator(".gallery-item a").first.get_attribute("href").startswith("/image/alpha:")
        assert page.locator(".stepper a[rel=next]").get_attribute("href") == "/m/shapes-cnn/block4/6?dataset=alpha"
        screenshot(page, "unit-dataset-1280")

        page.select_option("select[name=dataset]", "beta")
        page.wait_for_url(server + "/m/shapes-cnn/block4/5?dataset=beta")
        page.locator('.gallery-item a[href^="/image/beta:"]').first.wait_for()
        assert page.locator("select[name=dataset]").input_value() == "beta"
        page.go_back()  # the old link still shows what it showed
        page.wait_for_url(server + "/m/shapes-cnn/block4/5?dataset=alpha")
        page.locator('.gallery-item a[href^="/image/alpha:"]').first.wait_for()

        # A layer that only the newer atlas has opens from a link that names it; its units keep the dataset.
        page.goto(server + "/m/shapes-cnn/block2?dataset=beta")
        page.locator(".unit-cell.is-drawn").first.wait_for()
        assert page.locator(".unit-cell a").first.get_attribute("href").endswith("?dataset=beta")

        page.goto(server + "/m/shapes-cnn")
        page.locator("tr[data-layer]").first.wait_for()
        assert page.locator('tr[data-layer="block4"] a').first.get_attribute("href") == \
            "/m/shapes-cnn/block4?dataset=alpha"
        assert page.locator('tr[data-layer="block3"] .tag-indexed').count() == 1
        page.select_option("select[name=dataset]", "beta")
        page.wait_for_url(server + "/m/shapes-cnn?dataset=beta")
        page.locator('tr[data-layer="block2"] .tag-indexed').wait_for()
        assert page.locator('tr[data-layer="block3"] .tag-indexed').count() == 0
        screenshot(page, "model-datasets-1280")

        # The image page ranks fired units against the atlas picked there.
        page.goto(server + "/image/alpha:0?model=shapes-cnn&layer=block4")
        page.locator(".fired-list li").first.wait_for()
        assert page.locator("select[name=dataset]").input_value() == "alpha"
        page.select_option("select[name=dataset]", "beta")
        page.wait_for_url(lambda url: "dataset=beta" in url)
        page.locator(".fired-strip", has_text="of dataset beta").wait_for()
        assert page.locator("select[name=dataset]").input_value() == "beta"
        screenshot(page, "image-datasets-1280")
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: the picker wraps with the toolbar
        assert page.locator("select[name=dataset]").bounding_box()["width"] <= 390
        screenshot(page, "image-datasets-390")
        assert page.errors == []


@pytest.mark.parametrize("width", [1280, 390])
def test_a_saturated_unit_says_so_and_captions_name_the_image_class(server, width):
    with browser() as chromium:
        page = watched_page(chromium, width)
        page.goto(server + "/m/clamped/1/0")
        page.wait_for_url(server + "/m/clamped/1/0?dataset=squares")
        note = page.locator(".saturation-note")
        note.wait_for()
        assert "8 images reach exactly 6.000" in note.inner_text()
        assert note.locator("a").get_attribute("href") == "/m/clamped/0/0?dataset=squares"
        screenshot(page, f"unit-saturated-{width}")
        page.goto(server + "/m/shapes-cnn/block4/5?dataset=alpha")
        page.locator(".gallery-item .caption").first.wait_for()
        assert "image:" in page.locator(".gallery-item .caption").first.inner_text()
        assert page.get_by_role("heading", name="Image classes among the top images").count() == 1
        screenshot(page, f"unit-captions-{width}")
        assert page.errors == []


def test_a_dataset_of_classes_shows_class_selectivity_not_concept_overlap(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/m/shapes-cnn/concepts?dataset=alpha")
        table = page.locator(".class-selectivity .concept-table")
        table.wait_for()
        assert "no concept masks" in page.locator(".page-head").inner_text()
        assert page.locator("text=Units labelled, per layer and category").count() == 0  # no IoU on classes alone
        row = table.locator("tbody tr", has=page.locator("code", has_text="block4"))
        selective = int(row.locator("td").nth(1).inner_text().split()[0])
        chips = row.locator(".class-column a.chip")
        assert selective > 0 and sum(int(c.split()[-1]) for c in chips.all_inner_texts()) == selective
        screenshot(page, "concepts-classes-only")
        name, count = chips.first.inner_text().split()
        chips.first.click()  # to exactly the units it counts
        page.wait_for_url(lambda url: "/search?" in url and f"class={name}" in url and "layer=block4" in url
                          and "dataset=alpha" in url)
        page.locator(".search-result").first.wait_for()
        assert page.locator(".search-results-page > p").inner_text().split()[0] == count
        assert page.locator(".search-result").count() == min(int(count), 24)  # a page of results
        screenshot(page, "search-by-class")

        # The unit most selective for that class is labelled with it on its page, by AUC; no concept panel.
        page.locator(".search-result a").first.click()
        page.locator(".unit-labels .chip-label").wait_for()
        assert page.locator(".unit-labels .chip-label").inner_text() == name
        assert "AUC" in page.locator(".unit-labels").inner_text()
        panel = page.locator(".concept-labels")
        assert panel.locator("h2").inner_text() == "Class selectivity" and "overlaps" not in panel.inner_text()
        assert not page.locator(".concept-toggle").is_visible()
        screenshot(page, "unit-classes-only")

        page.goto(server + "/m/shapes-cnn/block4?dataset=alpha")  # the grid's chips name the classes too
        chip = page.locator(".chip[title^='class:']").first
        chip.wait_for()
        assert re.fullmatch(r"class:(\w+), AUC (0\.9\d|1\.00)", chip.get_attribute("title"))
        assert chip.get_attribute("title").split(",")[0] == f"class:{chip.inner_text()}"
        assert page.errors == []


def test_your_own_model_comes_first_and_the_image_page_opens_with_it(server):
    """A user who starts Fovea with their model sees it first, and an image opens with it, not the demo's."""
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/")
        page.locator(".model-card").first.wait_for()
        assert page.locator(".model-card").first.get_attribute("data-model") == "clamped"
        page.goto(server + "/image/alpha:0")
        page.wait_for_url("**/image/alpha:0?*model=clamped*")
        assert page.locator("select[name=model]").input_value() == "clamped"
        assert page.errors == []
