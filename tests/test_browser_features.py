"""Dictionary features in Chromium (issue 18): the model page's dictionary, its features' grid beside the
channels, a feature's page (its composition linking the channels, its nearest features, its visualisation, its
notes), the features that fire on an image, and the comparison with the channels on the concepts page. On a
live server over a small atlas of shapes-cnn, with a sparse autoencoder of block4 learned by `train_dictionary`."""

from __future__ import annotations

import re

import pytest

from app.atlas.dictionaries import DictionaryRequest, train_dictionary
from app.atlas.indexer import index_model
from tests.atlas_helpers import small_atlas
from tests.browser import browser, screenshot, watched_page
from tests.conftest import DEMO_MODELS_ONLY_ARGS, WITHOUT_MODEL_WORKER
from tests.live_server import live_server

pytestmark = pytest.mark.browser
KIND = "sae-48"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("features-server")
    settings, model, dataset, _ = small_atlas(root, 40, ["block3", "block4"], 8)
    train_dictionary(model, dataset, DictionaryRequest(layer="block4", method="sae", size=48, sparsity=4, steps=40,
                                                       max_vectors=2000), settings.data_dir, batch_size=16)
    atlas = index_model(model, dataset, settings, layers=["block3", "block4"], k=8)
    env = {"FOVEA_AUTO_INDEX_DEMO": "false", "FOVEA_VISUALIZATION_STEPS": "4", **WITHOUT_MODEL_WORKER}
    with live_server(settings.data_dir, *DEMO_MODELS_ONLY_ARGS, env=env) as base:
        yield base, atlas.name


def test_from_the_model_page_to_a_feature_its_channels_and_back(server):
    base, dataset = server
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(f"{base}/m/shapes-cnn")
        listed = page.locator(".dictionaries li")
        listed.first.wait_for()
        assert listed.count() == 1 and "TopK sparse autoencoder, 4 active, 48 features over 192 channels" in \
            listed.inner_text()
        assert re.search(r"explained on [\d,]+ held-out positions", listed.inner_text())  # how much it rests on
        listed.locator("a").click()
        page.wait_for_url(f"{base}/m/shapes-cnn/block4/{KIND}?dataset={dataset}")
        page.locator(".unit-cell.is-drawn").first.wait_for()
        assert page.locator("h1").inner_text() == f"block4 {KIND} features"
        switch = page.locator(".kind-switch a")
        assert switch.all_inner_texts() == ["channels", f"{KIND} features"]
        assert switch.nth(1).get_attribute("aria-current") == "page"
        screenshot(page, "feature-grid")

        page.locator('.unit-cell[data-unit="5"] a').click()
        page.wait_for_url(f"{base}/m/shapes-cnn/block4/{KIND}/5?dataset={dataset}")
        page.locator(".feature-composition li").first.wait_for()
        assert page.locator("h1").inner_text() == f"block4 {KIND}:5"
        assert page.locator(".badge-feature").inner_text() == f"feature of {KIND}"
        channels = page.locator(".feature-composition li a")
        assert channels.count() == 8
        assert all("/m/shapes-cnn/block4/" in href and KIND not in href
                   for href in channels.evaluate_all("(links) => links.map((a) => a.getAttribute('href'))"))
        nearest = page.locator(".feature-nearest li a")
        assert nearest.count() == 8 and nearest.first.inner_text().startswith(f"{KIND}:")
        page.locator(".visualization-image img").wait_for(timeout=60_000)
        assert "reaches" in page.locator(".visualization figcaption").inner_text()
        form = page.locator(".notes .note-form")  # a feature has notes of its own, as a channel has
        form.locator("textarea").fill("star points, any colour")
        form.locator("input").fill("ada")
        form.locator("button").click()
        page.locator(".notes .note-list li").wait_for()
        assert "star points, any colour" in page.locator(".notes .note-list").inner_text()
        screenshot(page, "feature-unit")

        page.keyboard.press("ArrowRight")  # steps through features, not channels
        page.wait_for_url(f"{base}/m/shapes-cnn/block4/{KIND}/6?dataset={dataset}")
        page.wait_for_function(f"document.querySelector('h1')?.textContent === 'block4 {KIND}:6'")
        first_channel = channels.first.get_attribute("href")
        channels.first.click()
        page.wait_for_url(base + first_channel)
        page.locator(".gallery-item").first.wait_for()
        assert page.locator(".badge-feature").count() == 0 and page.locator(".feature-composition").count() == 0
        page.locator(".notes .notes-body p").first.wait_for()
        assert page.locator(".notes .note-list").count() == 0  # the channel has none

        page.goto(f"{base}/m/shapes-cnn/block4/abc?dataset={dataset}")  # read as a kind of unit: not one here
        page.locator(".problem").wait_for()
        links = dict(page.locator(".problem a").evaluate_all(
            "(links) => links.map((a) => [a.textContent, a.getAttribute('href')])"))
        assert links["channel"] == f"/m/shapes-cnn/block4?dataset={dataset}"
        assert links[KIND] == f"/m/shapes-cnn/block4/{KIND}?dataset={dataset}"
        assert links["block4:0"] == f"/m/shapes-cnn/block4/0?dataset={dataset}"
        screenshot(page, "layer-unknown-kind")


def test_features_fire_on_an_image_and_compare_with_the_channels(server):
    base, dataset = server
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(f"{base}/image/{dataset}:3?model=shapes-cnn&layer=block4&dataset={dataset}")
        features = page.locator(f'.fired-features[data-kind="{KIND}"] .fired-list li')
        features.first.wait_for(timeout=60_000)
        assert features.count() == 12
        link = features.first.locator("a").get_attribute("href")
        assert link.startswith(f"/m/shapes-cnn/block4/{KIND}/") and f"image={dataset}" in link
        screenshot(page, "image-fired-features")
        page.wait_for_load_state("networkidle")
        assert page.failed == [], page.failed  # a quiet console: no thumbnail asked for that is not stored

        page.goto(f"{base}/m/shapes-cnn/concepts?dataset={dataset}")
        rows = page.locator(".comparison tbody tr")
        rows.first.wait_for()
        assert [row.get_attribute("data-kind") for row in rows.all()] == ["channel", KIND]
        assert rows.nth(1).locator("td").nth(1).inner_text() == "48"
        screenshot(page, "concepts-comparison")


def test_a_feature_page_fits_a_phone(server):
    base, dataset = server
    with browser() as chromium:
        page = watched_page(chromium, 390, 844)
        page.goto(f"{base}/m/shapes-cnn/block4/{KIND}/5?dataset={dataset}")
        page.locator(".feature-composition li").first.wait_for()
        page.locator(".notes .notes-body > *").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        assert page.locator(".crumbs a:last-child").inner_text() == "5"
        screenshot(page, "feature-unit-390")
        assert page.errors == []


def test_top_images_that_do_not_activate_a_feature_at_all_are_marked(server):
    """A sparse feature on a small dataset can be active on fewer images than its gallery holds: those at 0 are
    dimmed and counted, not shown as if they drove it (the unit's answer is given three such images here); and
    its correlations say how few images they rest on."""
    base, dataset = server
    with browser() as chromium:
        page = watched_page(chromium)

        def three_at_zero(route):
            answer = route.fetch()
            body = answer.json()
            for item in body["top"][-3:]:
                item["value"] = 0.0
            route.fulfill(response=answer, json=body)

        page.route("**/api/models/shapes-cnn/layers/block4/units/7?*", three_at_zero)
        page.goto(f"{base}/m/shapes-cnn/block4/{KIND}/7?dataset={dataset}")
        page.locator(".gallery-item").first.wait_for()
        assert page.locator(".gallery-item.is-inactive").count() == 3
        assert [int(rank) for rank in page.locator(".gallery-item.is-inactive").evaluate_all(
            "(items) => items.map((item) => item.dataset.rank)")] == [5, 6, 7]
        assert "3 of them do not activate it at all" in page.locator(".gallery-note").inner_text()
        similar = page.locator("section.panel", has=page.locator("h2", has_text="Most correlated units"))
        assert "over the 40 images of the dataset: few" in similar.locator(".panel-note").inner_text()
        page.wait_for_timeout(300)
        screenshot(page, "feature-unit-inactive-top-images")
        assert page.errors == []
