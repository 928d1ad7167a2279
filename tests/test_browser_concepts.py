"""Concept labels in Chromium (issue 17): search from the top bar to a unit, the search page, a model's
concepts page and its links, the label concept's pixels drawn over the top images, and a note written on a
unit page and found by search. On the session's demo server, whose first start dissects the demo models."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.browser import browser, screenshot, watched_page
from tests.test_browser import _wait_for_atlases

pytestmark = pytest.mark.browser
SQUARE_UNIT = "/m/shapes-cnn/block4/167?dataset=demo"  # labelled shape:square (tests/test_dissection.py)


@pytest.fixture(scope="module")
def server(demo_server):
    _wait_for_atlases(demo_server, ("shapes-cnn", "shapes-mobilenet"), timeout=600)
    return demo_server


def test_search_from_the_top_bar_to_a_unit_with_the_keyboard(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/")
        page.locator(".model-card").first.wait_for()
        page.keyboard.press("/")  # focuses the search box from anywhere
        page.keyboard.type("squ")
        options = page.locator("#search-suggestions [role=option]")
        options.first.wait_for()
        assert "square" in options.first.inner_text()
        assert page.locator("#search-box input").get_attribute("aria-expanded") == "true"
        page.keyboard.press("ArrowDown")
        assert options.first.get_attribute("aria-selected") == "true"
        screenshot(page, "search-box-suggestions")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/m/[^/]+/[^/]+/\d+"))
        page.locator(".unit-labels .chip-label").wait_for()
        assert page.locator(".unit-labels .chip-label").inner_text() == "square"
        assert "template" in page.locator(".unit-labels").inner_text()
        screenshot(page, "unit-labels")
        assert page.errors == []


def test_the_search_page_lists_units_with_their_top_images_a_page_at_a_time(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/search?q=square")
        results = page.locator(".search-result")
        results.first.wait_for()
        assert results.count() == 24
        page.wait_for_function("[...document.querySelectorAll('.search-thumb img')].slice(0, 3)"
                               ".every((img) => img.complete && img.naturalWidth > 0)")
        assert "label: shape:square" in results.first.inner_text()
        screenshot(page, "search-page")
        page.locator(".pager a[rel=next]").click()
        page.wait_for_url(re.compile(r"offset=24"))
        page.locator(".search-results[start='25']").wait_for()
        assert page.errors == []


def test_the_concepts_page_counts_labelled_units_and_links_to_them(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/m/shapes-cnn/concepts")
        page.locator(".concepts-labelled .concept-table").wait_for()
        page.wait_for_url(re.compile(r"/m/shapes-cnn/concepts\?dataset=demo"))  # the link names its atlas
        row = page.locator(".concepts-labelled tbody tr", has=page.locator("code", has_text=re.compile("^block4$")))
        count = row.locator("a[href*='category=shape']")
        labelled = int(count.inner_text())
        assert labelled > 10
        # No texture or region concept labels a unit of the demo: the page says why, with the bound it computes.
        note = page.locator(".concepts-labelled .panel-note").inner_text()
        summary = httpx.get(server + "/api/models/shapes-cnn/concepts").json()
        smallest = min(c["pixels"] for c in summary["concepts"] if c["category"] == "texture") / summary["pixels"]
        assert re.search(r"No unit is labelled with a concept of .*texture or region\.", note), note
        assert f"the texture concepts each cover at least {100 * smallest:.0f}% of them (IoU at most " \
               f"{summary['region_fraction'] / smallest:.3f})" in note, note
        screenshot(page, "concepts-page")
        count.click()
        page.wait_for_url(re.compile(r"/search\?category=shape&dataset=demo&kind=channel&layer=block4&model=shapes-cnn"))
        page.locator(".search-result").first.wait_for()
        assert f"{labelled} unit" in page.locator(".search-results-page").inner_text()
        assert page.errors == []


def test_the_label_concepts_pixels_are_drawn_over_the_top_images(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + SQUARE_UNIT)
        toggle = page.locator(".concept-toggle")
        toggle.wait_for()
        assert "shape:square" in toggle.inner_text()
        first = page.locator(".gallery-item canvas").first
        page.wait_for_function("document.querySelector('.gallery-item canvas').closest('li').querySelector('canvas')"
                               ".getContext('2d').getImageData(80, 80, 1, 1).data[3] > 0")
        before = first.evaluate("(c) => c.toDataURL()")
        toggle.locator("input").check()
        page.wait_for_url(re.compile(r"concept=1"))
        page.wait_for_function("(before) => document.querySelector('.gallery-item canvas').toDataURL() !== before",
                               arg=before)
        screenshot(page, "unit-concept-mask")
        page.reload()  # the link keeps the toggle
        page.locator(".concept-toggle input:checked").wait_for()
        assert page.errors == []


def test_a_note_written_on_a_unit_page_is_shown_and_found_by_search(server):
    word = f"corner{uuid.uuid4().hex[:8]}"
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + SQUARE_UNIT)
        form = page.locator(".note-form")
        form.wait_for()
        form.locator("textarea").fill(f"fires on {word}s <script>alert(1)</script>")
        form.locator("input[name=author]").fill("tester")
        form.locator("button[type=submit]").click()
        note = page.locator(".note-list li", has_text=word)
        note.wait_for()
        assert "<script>" in note.inner_text()  # shown as text, never run
        assert "tester" in note.inner_text()
        screenshot(page, "unit-notes")
        assert page.errors == []
    found = httpx.get(f"{server}/api/search", params={"q": word}).json()
    assert [(r["layer"], r["unit"], r["field"]) for r in found["results"]] == [("block4", 167, "note")]


def test_the_image_page_shows_the_label_of_each_fired_unit(server):
    labelled = {u["unit"]: u["label"]["name"] for u in httpx.get(
        f"{server}/api/models/shapes-cnn/layers/block4/units").json()["units"] if u["label"]}
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/image/demo:5?model=shapes-cnn&layer=block4")
        page.locator(".fired-list li").first.wait_for()
        shown = {int(li.get_attribute("data-unit")): li.locator(".fired-label").all_inner_texts()
                 for li in page.locator(".fired-list li").all()}
        assert any(shown.values())
        assert all(names == ([labelled[unit]] if unit in labelled else []) for unit, names in shown.items())
        screenshot(page, "image-fired-labels")
        assert page.errors == []
