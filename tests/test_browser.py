"""The dashboard in a real Chromium against a real server: home, model page, reload, back and forward."""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path

import httpx
import pytest

from app.demo.render import render
from app.demo.scenes import sample_scene
from app.settings import BUILTIN_CARD_DIRS
from tests.browser import browser, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(demo_server):
    """The session's demo server: the bundled models plus a broken card (tests/conftest.py)."""
    return demo_server


def test_home_model_reload_back_forward(server):
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server + "/")
        cards = page.locator(".model-card")
        cards.first.wait_for()
        bundled = sum(len(list(folder.glob("*.toml"))) for folder in BUILTIN_CARD_DIRS)
        assert cards.count() == bundled + 1  # and `broken`
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

        page.fill("main input[name=q]", "block3")  # the layer filter, not the top bar's search
        page.wait_for_url(server + "/m/shapes-cnn?q=block3")
        assert 0 < page.locator("tr[data-layer]").count() < default_rows
        page.check("input[name=all]")
        page.wait_for_url(server + "/m/shapes-cnn?all=1&q=block3")
        filtered_all = page.locator("tr[data-layer]").count()
        screenshot(page, "model-1280")

        page.reload()
        page.locator("tr[data-layer]").first.wait_for()
        assert page.input_value("main input[name=q]") == "block3"
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
        answer = page.goto(server + "/no/such/page")  # the page, with 404, not the API's JSON
        assert answer.status == 404
        page.locator(".problem").wait_for()
        assert page.locator(".problem h1").inner_text() == "Not found"
        assert page.locator(".problem .error-text").inner_text() == "No page at /no/such/page."
        page.goto(server + "/m/shapes-cnn/block3/-1")  # no unit, and no kind of unit either
        page.locator(".problem").wait_for()
        assert "a unit is a number from 0 (/m/shapes-cnn/block3/0)" in page.locator(".problem .error-text").inner_text()
        screenshot(page, "not-a-unit-390")
        page.goto(server + "/m/broken")
        page.locator(".model-head .error-text").wait_for()
        screenshot(page, "model-broken-390")


def _clipboard_page(chromium, server: str, errors: list[str]):
    """A 1280 px page that may read what "Copy link" wrote; its script errors are collected in `errors`."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def _wait_for_atlases(server: str, model_ids=("shapes-cnn", "shapes-mobilenet"), timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(httpx.get(f"{server}/api/models/{m}/atlases").json()["atlases"] for m in model_ids):
            return
        time.sleep(1)
    raise AssertionError("the first-run atlases were not built in time")


def test_first_run_builds_atlases_then_grid_unit_and_shared_link(server):
    with browser() as chromium:
        errors = []
        page = _clipboard_page(chromium, server, errors)
        # Right after start the demo atlases are still being built: the page says so, then reloads itself.
        page.goto(server + "/m/shapes-mobilenet/features")
        page.locator(".problem, .unit-cell").first.wait_for()
        if page.locator(".problem").count():
            assert "being built" in page.locator(".problem").inner_text()
            screenshot(page, "layer-building")
        _wait_for_atlases(server)
        page.locator(".unit-cell.is-drawn").first.wait_for(timeout=20_000)
        # Only the rows near the viewport exist; scrolling to the end re-binds them to the last units.
        near_top = page.locator(".unit-cell").count()
        assert 0 < near_top < 200
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.locator('.unit-cell.is-drawn[data-unit="575"]').wait_for()
        assert page.locator('.unit-cell[data-unit="0"]').count() == 0
        assert page.locator(".unit-cell").count() < 200
        page.evaluate("window.scrollTo(0, document.body.scrollHeight / 2)")  # back up: cells go in front
        page.wait_for_timeout(300)
        order = page.evaluate("[...document.querySelectorAll('.unit-cell')].map((cell) => +cell.dataset.index)")
        assert order == sorted(order)  # the document, and so the tab order, follows the grid
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        screenshot(page, "layer-end-1280")

        page.goto(server + "/m/shapes-cnn/block4")
        page.select_option("select[name=sort]", "max_max")  # in its natural order: the strongest first
        page.wait_for_url(server + "/m/shapes-cnn/block4?dataset=demo&order=desc&sort=max_max")
        assert page.is_checked("input[name=desc]")
        page.locator(".unit-cell").first.wait_for()
        page.wait_for_timeout(500)
        screenshot(page, "layer-1280")
        top_unit = page.locator(".unit-cell").first.get_attribute("data-unit")
        page.locator(".unit-cell a").first.click()
        page.wait_for_url(f"{server}/m/shapes-cnn/block4/{top_unit}?dataset=demo")
        page.locator(".gallery-item").first.wait_for()
        assert page.locator(".gallery-item").count() == 32
        page.select_option("select[name=colormap]", "inferno")
        page.fill("input[name=opacity]", "0.8")
        page.check("input[name=mask]")
        page.wait_for_url(f"{server}/m/shapes-cnn/block4/{top_unit}?cmap=inferno&dataset=demo&mask=1&opacity=0.8")
        page.wait_for_timeout(500)
        screenshot(page, "unit-1280")

        page.keyboard.press("ArrowRight")  # next unit keeps the view options
        options = "cmap=inferno&dataset=demo&mask=1&opacity=0.8"
        page.wait_for_url(f"{server}/m/shapes-cnn/block4/{int(top_unit) + 1}?{options}")
        page.wait_for_function(f"document.querySelector('h1')?.textContent === 'block4:{int(top_unit) + 1}'")
        page.keyboard.press("ArrowLeft")
        page.wait_for_url(f"{server}/m/shapes-cnn/block4/{top_unit}?cmap=inferno&dataset=demo&mask=1&opacity=0.8")
        page.locator(".gallery-item").first.wait_for()
        page.click(".copy-link")
        link = page.evaluate("navigator.clipboard.readText()")
        assert link == f"{server}/m/shapes-cnn/block4/{top_unit}?cmap=inferno&dataset=demo&mask=1&opacity=0.8"

        fresh = chromium.new_context(viewport={"width": 390, "height": 844}).new_page()
        fresh.goto(link)
        fresh.locator(".gallery-item").first.wait_for()
        assert fresh.locator("h1").inner_text() == f"block4:{top_unit}"
        assert fresh.input_value("select[name=colormap]") == "inferno"
        assert fresh.input_value("input[name=opacity]") == "0.8"
        assert fresh.is_checked("input[name=mask]")
        fresh.wait_for_timeout(500)
        screenshot(fresh, "unit-390")

        # Crops follow the receptive field: block3 sees 61 of 112 px around its peak.
        page.goto(server + "/m/shapes-cnn/block3/5?crop=1")
        page.locator(".gallery-item").first.wait_for()
        assert page.is_checked("input[name=crop]")
        page.wait_for_timeout(500)
        screenshot(page, "unit-crop-1280")

        # An atlas not built is a state to act on, not a failure: the command, in plain text, not in red.
        page.goto(server + "/m/shapes-cnn/block3?dataset=elsewhere")
        page.locator(".problem").wait_for()
        assert page.locator(".problem .error-text").count() == 0
        said = page.locator(".problem").inner_text()
        assert "No atlas yet: the 'elsewhere' atlas" in said and "run fovea index shapes-cnn --dataset" in said, said
        assert page.locator(".problem code", has_text="fovea index shapes-cnn --dataset PATH").count() == 1
        screenshot(page, "layer-no-atlas-1280")
        page.locator(".problem a", has_text="demo").click()  # the atlases there are, each a link
        page.wait_for_url(server + "/m/shapes-cnn/block3?dataset=demo")
        page.locator(".unit-cell.is-drawn").first.wait_for()
        assert errors == []


def test_upload_an_image_then_predictions_fired_units_and_back(server):
    _wait_for_atlases(server)
    picture = httpx.get(f"{server}/api/images/demo:5/file").content  # a real demo scene, sent as an upload
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server}/")
        page.click("text=Study an image")
        page.wait_for_selector(".upload-zone")
        page.goto(f"{server}/image?model=shapes-cnn")  # a shapes scene: an upload opens with a demo model if asked
        page.wait_for_selector(".upload-zone")
        screenshot(page, "upload-1280")
        page.set_input_files(".upload-zone input[type=file]",
                             files=[{"name": "scene.png", "mimeType": "image/png", "buffer": picture}])
        page.wait_for_url("**/image/*?layer=*&model=*")
        image_url = page.url
        page.wait_for_selector(".prediction-list li")
        page.wait_for_selector(".fired-list li a")
        assert page.locator(".prediction-list li").count() == 5
        assert page.locator(".fired-list li").count() == 12
        assert page.locator("h1").inner_text() == "Uploaded image"  # an upload keeps no file name (item 14)
        screenshot(page, "image-1280")

        page.set_input_files(".upload-another input[type=file]",  # refused files keep the page and say why
                             files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}])
        page.wait_for_selector(".upload-another .upload-status.error-text")
        assert "not an image" in page.locator(".upload-another .upload-status").inner_text()
        assert page.url == image_url

        first = page.locator(".fired-list li a").first
        unit = first.get_attribute("data-unit")
        first.click()
        page.wait_for_url(f"**/m/shapes-cnn/*/{unit}?*image=*")  # the unit on this image
        page.wait_for_selector(".gallery-item a")
        page.go_back()
        page.wait_for_selector(".prediction-list li")
        assert page.url == image_url

        page.goto(f"{server}/m/shapes-cnn/block4/3")  # any gallery image opens on the image page
        page.locator(".gallery-item a").first.click()
        page.wait_for_url("**/image/demo:*")
        page.wait_for_selector(".prediction-list li")
        assert page.locator("select[name=layer]").input_value() == "block4"
        assert errors == []


def test_cam_studio_three_methods_then_the_copied_link_shows_the_same_maps(server):
    _wait_for_atlases(server)
    picture = httpx.get(f"{server}/api/images/demo:7/file").content
    with browser() as chromium:
        errors = []
        page = _clipboard_page(chromium, server, errors)
        page.goto(f"{server}/image?model=shapes-cnn")
        page.set_input_files(".upload-zone input[type=file]",
                             files=[{"name": "scene.png", "mimeType": "image/png", "buffer": picture}])
        page.wait_for_url("**/image/*?*methods=*")
        page.wait_for_selector(".cam-card.is-drawn")
        assert page.locator(".cam-card[data-method]").count() == 3  # the default three gradient maps

        for method in ("gradcampp", "layercam"):
            page.uncheck(f"input[name=method][value={method}]")
        score_chip = page.locator("label.chip", has=page.locator("input[value=scorecam]"))
        assert score_chip.locator(".cost").inner_text() == "×192"  # block4: one pass per channel
        assert "(up to 192 passes)" in score_chip.get_attribute("title")
        for method in ("eigencam", "scorecam"):
            page.check(f"input[name=method][value={method}]")
        page.select_option("select[name=target]", "2")
        page.select_option("select[name=colormap]", "turbo")
        page.fill("input[name=opacity]", "0.8")
        page.wait_for_url("**methods=gradcam%2Ceigencam%2Cscorecam*")
        page.wait_for_selector(".cam-card.is-drawn[data-method=scorecam]")
        page.wait_for_function("document.querySelectorAll('.cam-card.is-drawn').length === 3")
        names = page.locator(".cam-card[data-method] figcaption b").all_inner_texts()
        assert names == ["Grad-CAM", "EigenCAM", "Score-CAM"]
        assert "class 2" in page.locator(".cam-status").inner_text()
        shown = _cam_pixels(page)
        assert len(set(shown.values())) == 3  # three different maps, each drawn
        screenshot(page, "image-cam-1280")

        with page.expect_download() as saving:
            page.click(".cam-card[data-method=eigencam] a.save")
        saved = saving.value
        image_id = page.url.split("/image/")[1].split("?")[0]
        assert saved.suggested_filename == f"{image_id}-block4-class2-eigencam.png"
        assert Path(saved.path()).read_bytes() == base64.b64decode(shown["eigencam"].split(",", 1)[1])

        page.click(".copy-link")
        link = page.evaluate("navigator.clipboard.readText()")
        assert link == page.url and "target=2" in link and "cmap=turbo" in link and "opacity=0.8" in link

        fresh = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
        fresh.on("pageerror", lambda error: errors.append(str(error)))
        fresh.goto(link)
        fresh.wait_for_function("document.querySelectorAll('.cam-card.is-drawn').length === 3")
        assert fresh.input_value("select[name=target]") == "2"
        assert fresh.input_value("select[name=colormap]") == "turbo"
        assert fresh.input_value("input[name=opacity]") == "0.8"
        assert _cam_pixels(fresh) == shown  # the same maps, drawn the same way
        assert fresh.url == link

        fresh.check("input[name=metrics]")  # faithfulness scores; an upload has no object mask to point at
        fresh.wait_for_url("**metrics=1*")
        fresh.wait_for_function("document.querySelectorAll('.cam-card .badges .metric').length >= 9")
        assert "no pointing game" in fresh.locator(".cam-status").inner_text()

        top = fresh.locator(".prediction-list button").first  # a prediction explains its class
        top.click()
        fresh.wait_for_url(f"**target={top.get_attribute('data-class')}*")
        assert fresh.input_value("select[name=target]") == top.get_attribute("data-class")

        fresh.goto(f"{server}/image/demo:7?layer=block4&methods=gradcam%2Cscorecam%2Cguided-gradcam&metrics=1"
                   "&model=shapes-cnn")  # a demo image has its object's mask: the pointing game too
        fresh.wait_for_function("document.querySelectorAll('.cam-card .badges .metric').length >= 15")
        assert fresh.locator(".cam-card .metric.good, .cam-card .metric.bad").count() >= 3
        assert "pointing game on the" in fresh.locator(".cam-status").inner_text()
        screenshot(fresh, "image-cam-metrics-1280")

        narrow = chromium.new_context(viewport={"width": 390, "height": 844}).new_page()
        narrow.goto(link)
        narrow.wait_for_function("document.querySelectorAll('.cam-card.is-drawn').length === 3")
        screenshot(narrow, "image-cam-390")
        assert errors == []


def _cam_pixels(page) -> dict[str, str]:
    return page.evaluate("Object.fromEntries([...document.querySelectorAll('.cam-card[data-method]')].map((card) => "
                         "[card.dataset.method, card.querySelector('canvas').toDataURL()]))")


def test_a_long_request_shows_its_progress_and_a_second_one_says_it_waits(scoring_server):
    """Faithfulness with one-pixel curve steps: 25,092 scored images for one map, time enough to watch.
    The page counts them with a bar; a second page asking the same model for maps and predictions says in
    both places that it is waiting for the model; closing the first page stops its work, and the second
    gets its maps."""
    base = scoring_server  # tests/conftest.py: curves of one pixel per step
    with browser() as chromium:
        picture = _scene_png()
        image_id = httpx.post(f"{base}/api/images", files={"file": ("scene.png", picture, "image/png")}).json()["id"]
        view = f"{base}/image/{image_id}?model=shapes-cnn&layer=block4&methods=gradcam"
        errors = []
        scoring = _clipboard_page(chromium, base, errors)
        scoring.goto(f"{view}&metrics=1")
        scoring.wait_for_selector(".metrics-note progress")
        note = scoring.locator(".metrics-note").inner_text()
        assert re.fullmatch(r"Scoring faithfulness…\s+[\d,]+ of 25,092 images", note.strip()), note
        screenshot(scoring, "image-cam-progress-1280")

        waiting = _clipboard_page(chromium, base, errors)
        waiting.goto(f"{view},layercam")
        for panel in (".cam-status", ".predictions"):  # each of the page's requests queues
            waiting.wait_for_function(
                f"document.querySelector('{panel}')?.textContent.toLowerCase().includes('waiting for the model')")
        screenshot(waiting, "image-cam-waiting-1280")
        scoring.context.close()  # its connection goes: the server stops scoring and frees the model
        waiting.wait_for_function("document.querySelectorAll('.cam-card.is-drawn').length === 2", timeout=30_000)
        assert errors == []


def _scene_png(size: int = 112) -> bytes:
    from PIL import Image

    pixels, _ = render(sample_scene(0, "heldout", 3, size))
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="PNG")
    return encoded.getvalue()
