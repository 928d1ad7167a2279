"""The dashboard in a real Chromium against a real server: home, model page, reload, back and forward."""

from __future__ import annotations

import pytest

from tests.browser import browser, screenshot
from tests.live_server import live_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The bundled demo models plus a folder with one broken card, served over real HTTP."""
    root = tmp_path_factory.mktemp("browser")
    broken = root / "cards"
    broken.mkdir()
    (broken / "broken.toml").write_text('id = "broken"\nname = "Broken card"\n[architecture]\n')
    with live_server(root / "data", "--model-dir", str(broken)) as base:
        yield base


def test_home_model_reload_back_forward(server):
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server + "/")
        cards = page.locator(".model-card")
        cards.first.wait_for()
        assert cards.count() == 3
        assert page.locator('.model-card[data-model="shapes-cnn"] .badge').inner_text() == "ready"
        assert page.locator('.model-card[data-model="broken"] .badge').inner_text() == "error"
        assert "architecture" in page.locator('.model-card[data-model="broken"] .error-text').inner_text()
        screenshot(page, "home-1280")

        page.click('.model-card[data-model="shapes-cnn"] a')
        page.wait_for_url(server + "/m/shapes-cnn")
        page.locator("tr[data-layer]").first.wait_for()
        assert page.locator("h1").inner_text() == "ShapesCNN (demo)"
        assert page.title() == "ShapesCNN (demo) · Fovea"
        default_rows = page.locator("tr[data-layer]").count()
        assert page.locator('tr[data-layer="block4"] td').nth(3).inner_text() == "7×7"

        page.fill("input[name=q]", "block3")
        page.wait_for_url(server + "/m/shapes-cnn?q=block3")
        assert 0 < page.locator("tr[data-layer]").count() < default_rows
        page.check("input[name=all]")
        page.wait_for_url(server + "/m/shapes-cnn?all=1&q=block3")
        filtered_all = page.locator("tr[data-layer]").count()
        screenshot(page, "model-1280")

        page.reload()
        page.locator("tr[data-layer]").first.wait_for()
        assert page.input_value("input[name=q]") == "block3"
        assert page.is_checked("input[name=all]")
        assert page.locator("tr[data-layer]").count() == filtered_all

        page.go_back()
        page.wait_for_url(server + "/")
        page.locator(".model-card").first.wait_for()
        assert page.locator("h1").inner_text() == "Models"
        page.go_forward()
        page.wait_for_url(server + "/m/shapes-cnn?all=1&q=block3")
        page.locator("tr[data-layer]").first.wait_for()
        assert page.locator("tr[data-layer]").count() == filtered_all

        page.click(".crumbs a")  # the breadcrumb back to the model page, then the brand link home
        page.click(".brand")
        page.wait_for_url(server + "/")
        assert errors == []


def test_narrow_screen_and_not_found(server):
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 390, "height": 844})
        page.goto(server + "/")
        page.locator(".model-card").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        screenshot(page, "home-390")
        page.goto(server + "/m/shapes-mobilenet")
        page.locator("tr[data-layer]").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "model-390")
        page.goto(server + "/m/no-such-model")
        page.locator(".problem").wait_for()
        assert "no model 'no-such-model'" in page.locator(".problem .error-text").inner_text()
        page.goto(server + "/m/broken")
        page.locator(".model-head .error-text").wait_for()
        screenshot(page, "model-broken-390")
