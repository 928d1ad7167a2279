"""The front end's data layer in Chromium (issue 15, item 5): a unit page and three arrow-key steps fetch the
model's card and its atlases once, and a step updates the page in place (its skeleton, the toolbar and the
layer bar, are the same elements after it); the layer page's sort menu comes from /api/statistics."""

from __future__ import annotations

import os
import re

import httpx
import pytest

from tests.browser import browser, screenshot, wait_or_explain, watched_page
from tests.test_browser import _wait_for_atlases

pytestmark = pytest.mark.browser

UNIT = "/m/shapes-cnn/block3/5"
CARD = re.compile(r"/api/models/shapes-cnn$")
ATLASES = re.compile(r"/api/models/shapes-cnn/atlases$")


@pytest.fixture(scope="module")
def server(demo_server):
    _wait_for_atlases(demo_server, ("shapes-cnn",), timeout=600)  # a first start on two cores takes minutes
    return demo_server


def test_a_unit_page_and_three_steps_fetch_the_card_once_and_keep_the_skeleton(server):
    with browser() as chromium:
        page = watched_page(chromium)
        paths = []
        page.on("request", lambda request: paths.append(request.url.split("?")[0].removeprefix(server)))
        page.goto(f"{server}{UNIT}?cmap=inferno")
        page.locator(".gallery-item").first.wait_for()
        page.evaluate("document.querySelector('.toolbar').dataset.mark = 'kept'")
        for unit in (6, 7, 8):
            page.keyboard.press("ArrowRight")
            page.wait_for_url(f"{server}/m/shapes-cnn/block3/{unit}?cmap=inferno&dataset=demo")
            page.wait_for_function(f"document.querySelector('h1')?.textContent === 'block3:{unit}'")
            page.locator('.gallery-item[data-rank="0"] canvas').first.wait_for()
        page.wait_for_timeout(300)
        cards = sum(bool(CARD.search(path)) for path in paths)
        atlases = sum(bool(ATLASES.search(path)) for path in paths)
        print(f"\nmodel card fetches: {cards}; atlases fetches: {atlases}")
        if os.environ.get("FOVEA_MEASURE_ONLY"):
            return
        assert (cards, atlases) == (1, 1)
        # The step redrew the content, not the page: the toolbar is the element the first visit built.
        assert page.evaluate("document.querySelector('.toolbar').dataset.mark") == "kept"
        assert page.input_value("select[name=colormap]") == "inferno"
        assert page.locator(".gallery-item").count() == 32
        page.go_back()  # history is as before: each step is an entry
        page.wait_for_url(f"{server}/m/shapes-cnn/block3/7?cmap=inferno&dataset=demo")
        page.wait_for_function("document.querySelector('h1')?.textContent === 'block3:7'")
        assert page.errors == []


def test_the_layer_page_sorts_by_what_the_server_lists(server):
    sorts = httpx.get(f"{server}/api/statistics").json()["sorts"]
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(f"{server}/m/shapes-cnn/block3?sort=max_max&order=desc")
        page.locator(".unit-cell.is-drawn").first.wait_for()
        options = page.locator("select[name=sort] option").evaluate_all(
            "(all) => all.map((o) => [o.value, o.textContent])")
        assert options == [[sort["id"], sort["label"]] for sort in sorts]
        assert page.input_value("select[name=sort]") == "max_max"
        screenshot(page, "layer-sorts-from-api")
        assert page.errors == []


def test_the_unit_page_lists_every_declared_statistic_and_the_grid_labels_by_the_sorted_one(server):
    listed = httpx.get(f"{server}/api/statistics").json()["statistics"]
    detail = httpx.get(f"{server}/api/models/shapes-cnn/layers/block3/units/5").json()
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(f"{server}{UNIT}")
        page.locator(".unit-summary dd").first.wait_for()
        rows = page.locator(".unit-summary dl > div").evaluate_all(
            "(all) => all.map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])")
        assert [label for label, _ in rows] == [s["label"] for s in listed]
        shown = dict(rows)
        border = detail["stats"]["border_peaks"]
        # One decimal of a percentage; JavaScript's toFixed rounds a tie (6.25) up where Python's format rounds to even.
        assert shown["peaks on the border"].endswith("%")
        assert float(shown["peaks on the border"][:-1]) == pytest.approx(border * 100, abs=0.05 + 1e-9)
        assert shown["max activation"] == f"{detail['stats']['max_max']:.3f}"
        screenshot(page, "unit-statistics-declared")
        page.goto(f"{server}/m/shapes-cnn/block3?sort=border_peaks&order=desc")
        page.locator(".unit-cell.is-drawn").first.wait_for()
        first = httpx.get(f"{server}/api/models/shapes-cnn/layers/block3/units",
                          params={"sort": "border_peaks", "order": "desc", "limit": 1}).json()["units"][0]
        label = page.locator(".unit-cell").first.inner_text()
        shown_percent = re.fullmatch(rf"{first['unit']} (\d+)%", label.strip())
        assert page.locator(".unit-cell .unit-label span").first.get_attribute("title") == "peaks on the border"
        assert shown_percent and abs(int(shown_percent[1]) - first["border_peaks"] * 100) <= 0.5, label
        screenshot(page, "layer-sorted-by-border-peaks")
        assert page.errors == []


def test_the_unit_page_shows_what_drives_the_unit_most(server):
    """The feature visualisation, rendered on the first visit (its caption follows the steps), then kept: the
    panel shows the image, the activation it reaches and the dataset's best."""
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(f"{server}/m/shapes-cnn/block3/12")
        # The image, or the caption that says why there is none (then the test says it, and what failed).
        wait_or_explain(page, ".visualization img, .visualization figcaption:text-matches('^no visualisation')",
                        timeout=120_000)
        assert page.locator(".visualization img").count() == 1, \
            (page.locator(".visualization figcaption").inner_text(), page.failed)
        page.wait_for_function("document.querySelector('.visualization img').naturalWidth > 0")
        caption = page.locator(".visualization figcaption").inner_text()
        assert re.match(r"reaches \d+\.\d\d \(mean activation\); the dataset's best image: \d+\.\d\d", caption), caption
        assert page.evaluate("document.querySelector('.visualization img').naturalWidth") == 112
        screenshot(page, "unit-visualization")
        page.keyboard.press("ArrowRight")  # the next unit's, in place
        page.wait_for_function("document.querySelector('.visualization img')?.alt === 'Feature visualisation of "
                               "block3:13'", timeout=120_000)

        # Facets and the negative image are one click away, and the link keeps the view.
        page.get_by_role("button", name="Facets").click()
        page.wait_for_url(f"{server}/m/shapes-cnn/block3/13?dataset=demo&fv=facets")
        page.wait_for_function("document.querySelectorAll('.facet > img').length > 0 && [...document.querySelectorAll("
                               "'.facet > img')].every((image) => image.naturalWidth > 0)", timeout=120_000)
        facets = page.locator(".facet").count()
        assert 1 <= facets <= 3 and page.locator(".facet-members a").count() >= facets
        assert page.get_by_role("button", name="Facets").get_attribute("aria-pressed") == "true"
        screenshot(page, "unit-visualization-facets")
        page.get_by_role("button", name="Negative").click()
        page.wait_for_url(f"{server}/m/shapes-cnn/block3/13?dataset=demo&fv=negative")
        page.wait_for_function("document.querySelector('.visualization img')?.alt === 'Negative feature "
                               "visualisation of block3:13'", timeout=120_000)
        caption = page.locator(".visualization figcaption").inner_text()
        assert re.match(r"(lowers it to -?\d+\.\d\d|silences it)", caption), caption
        assert "fv=negative" in page.locator('.stepper a[rel="next"]').get_attribute("href")  # the next keeps the view
        screenshot(page, "unit-visualization-negative")
        fresh = watched_page(chromium)
        fresh.goto(f"{server}/m/shapes-cnn/block3/13?dataset=demo&fv=facets")  # a shared link: the same view
        fresh.wait_for_selector(".facet > img")
        assert fresh.locator(".facet").count() == facets
        assert page.errors == [] and fresh.errors == []


def test_the_layer_grid_shows_feature_visualisations_when_asked(server):
    """The grid's toggle draws each cell's feature visualisation instead of its top image; the choice is in
    the link, so a shared link opens on visualisations."""
    with browser() as chromium:
        page = watched_page(chromium, 900, 700)
        page.goto(f"{server}/m/shapes-cnn/stem")
        page.wait_for_selector(".unit-cell.is-drawn")
        before = page.eval_on_selector(".unit-cell canvas", "canvas => canvas.toDataURL()")
        page.select_option("select[name=show]", "visualizations")
        page.wait_for_url(f"{server}/m/shapes-cnn/stem?dataset=demo&show=visualizations")
        page.wait_for_function("document.querySelectorAll('.unit-cell.is-drawn').length >= 8", timeout=120_000)
        assert page.eval_on_selector(".unit-cell canvas", "canvas => canvas.toDataURL()") != before
        screenshot(page, "layer-grid-visualizations")
        fresh = watched_page(chromium, 900, 700)
        fresh.goto(f"{server}/m/shapes-cnn/stem?dataset=demo&show=visualizations")
        assert fresh.locator("select[name=show]").input_value() == "visualizations"
        fresh.wait_for_selector(".unit-cell.is-drawn")
        assert page.errors == [] and fresh.errors == []
