"""The image and upload pages in a real Chromium (issue 14, items 1, 7, 8, 18 and 22): a new image starts
from its own prediction, the layer picker marks the indexed layers and an empty map says why, models say
what they were trained on and the upload page offers samples, the file picker opens from the keyboard,
and the units that fire are drawn on the image and followed to the unit page."""

from __future__ import annotations

import io
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.demo.recipes import TRAINED_ON
from app.demo.render import render
from app.demo.scenes import sample_scene
from tests.browser import browser, screenshot
from tests.test_browser import _wait_for_atlases

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(demo_server):
    """The session's demo server (tests/conftest.py), once its first start has built both demo models'
    atlases of their default layers."""
    _wait_for_atlases(demo_server)
    return demo_server


@pytest.fixture
def chromium():
    with browser() as instance:
        yield instance


def open_page(chromium, width: int = 1280, errors: list | None = None):
    page = chromium.new_page(viewport={"width": width, "height": 900 if width > 600 else 844})
    if errors is not None:
        page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def scene_png(index: int) -> bytes:
    from PIL import Image

    pixels, _ = render(sample_scene(0, "heldout", index, 112))
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="PNG")
    return encoded.getvalue()


def upload(page, zone: str, index: int) -> None:
    page.set_input_files(f"{zone} input[type=file]",
                         files=[{"name": f"scene-{index}.png", "mimeType": "image/png", "buffer": scene_png(index)}])


def cam_status(page) -> str:
    return page.locator(".cam-status").inner_text()


def test_a_new_image_starts_from_its_own_top_prediction(server, chromium):
    """Item 1: after explaining class 7 with metrics on, a dropped image is explained as its own top class,
    with the metrics off; the model, layer, methods and drawing carry over."""
    errors = []
    page = open_page(chromium, errors=errors)
    page.goto(f"{server}/image/demo:0?cmap=turbo&layer=block4&methods=gradcam&metrics=1&model=shapes-cnn&target=7")
    page.wait_for_selector(".cam-card.is-drawn")
    assert "(class 7," in cam_status(page)
    upload(page, ".upload-another", 1)
    page.wait_for_url(lambda url: "/image/demo:0" not in url)
    new_id = page.url.split("/image/")[1].split("?")[0]
    page.wait_for_selector(f".image-head[data-image='{new_id}']")  # the new image's page, not the old one's
    page.wait_for_selector(".cam-card.is-drawn")
    url = page.url
    assert "target=" not in url and "metrics=" not in url, url
    assert "methods=gradcam" in url and "cmap=turbo" in url and "layer=block4" in url and "model=shapes-cnn" in url
    assert page.input_value("select[name=target]") == ""
    assert not page.is_checked("input[name=metrics]")
    page.wait_for_selector(".prediction-list li")
    top = page.locator(".prediction-list .label").first.inner_text()
    assert f"Explaining {top} (class" in cam_status(page) and "the top prediction" in cam_status(page)

    page.goto(f"{server}/image/demo:0?layer=block4&methods=gradcam&model=shapes-cnn&target=7")  # a link names one
    page.wait_for_selector(".cam-card.is-drawn")
    assert page.input_value("select[name=target]") == "7" and "(class 7," in cam_status(page)
    assert errors == []


def test_a_link_asking_for_what_is_not_here_says_what_was_shown_instead(server, chromium):
    """A shared link from another server (or an older one): the page opens with what it has, and says which of
    the link's choices it could not meet, instead of rewriting them silently."""
    errors = []
    page = open_page(chromium, errors=errors)
    page.goto(f"{server}/image/demo:0?model=shapes-cnn&layer=layer4&methods=gradcam,bogus&target=99&dataset=nope")
    notice = page.locator(".unmet-link")
    notice.wait_for()
    assert notice.locator("li").all_inner_texts() == [
        "layer “layer4”: shapes-cnn has none, so block4",
        "method “bogus”: not a method of this server",
        "class “99”: shapes-cnn has classes 0 to 9, so its top prediction",
        "dataset “nope”: shapes-cnn has no atlas on it, so “demo”"]
    page.wait_for_selector(".cam-card.is-drawn")
    assert "layer=block4" in page.url and "bogus" not in page.url and "target=" not in page.url
    screenshot(page, "image-unmet-link")
    page.goto(f"{server}/image/demo:0?model=shapes-cnn&layer=block4&methods=gradcam")
    page.wait_for_selector(".cam-card.is-drawn")
    assert page.locator(".unmet-link").count() == 0 and errors == []


def test_the_layer_picker_marks_indexed_layers_and_an_empty_map_says_why(server, chromium):
    """Item 7: MobileNet's 13 indexed layers come first, the 190 others apart, each choice saying whether
    it is indexed; a map with nothing positive after ReLU says so, and unticking ReLU shows it signed."""
    errors = []
    page = open_page(chromium, errors=errors)
    page.goto(f"{server}/image/demo:0?model=shapes-mobilenet")
    page.wait_for_selector(".fired-list li")
    groups = page.eval_on_selector_all("select[name=layer] optgroup",
                                       "groups => groups.map((g) => [g.label, g.children.length])")
    assert groups == [["Indexed in the demo atlas", 13], ["Not indexed: maps only", 190]]
    assert page.input_value("select[name=layer]") == "features" and "layer=features&" in page.url
    assert page.locator(".layer-index-note").inner_text() == "dataset demo: layer indexed"
    screenshot(page, "image-layers-1280")

    page.select_option("select[name=layer]", "features.4.block.0.0")
    page.wait_for_url("**layer=features.4.block.0.0*")
    page.wait_for_selector(".layer-index-note:has-text('layer not indexed, so maps only')")  # the new page's
    page.wait_for_selector(".fired-strip:has-text('is not indexed in the demo atlas')")
    assert page.locator(".fired-strip code", has_text="features.11").count() == 1  # where units are ranked

    # ShapesCNN's stem has no positive Grad-CAM evidence for this scene's class (raw maximum -0.0002).
    page.goto(f"{server}/image")
    upload(page, ".upload-slot", 1)
    page.wait_for_url("**/image/*?*")
    image_url = page.url.split("?")[0]
    page.goto(f"{image_url}?layer=stem&methods=gradcam%2Clayercam&model=shapes-cnn")
    page.wait_for_selector(".cam-card.is-drawn[data-method=gradcam]")
    blank = page.locator(".cam-card.is-blank[data-method=gradcam] .nothing-positive")
    assert "No positive evidence for square at this layer" in blank.inner_text()
    assert "Untick ReLU" in blank.inner_text()
    assert page.locator(".cam-card.is-blank[data-method=layercam]").count() == 0  # LayerCAM has positive values
    screenshot(page, "image-empty-map-1280")
    page.uncheck("input[name=relu]")
    page.wait_for_url("**relu=0*")
    page.wait_for_function("document.querySelectorAll('.cam-card.is-drawn').length === 2")
    assert page.locator(".cam-card.is-blank").count() == 0
    assert page.locator(".cam-legend .legend-low").inner_text() == "min"
    assert "signed" in page.locator(".cam-legend").inner_text()
    narrow = open_page(chromium, 390, errors)
    narrow.goto(f"{image_url}?layer=stem&methods=gradcam%2Clayercam&model=shapes-cnn")
    narrow.wait_for_selector(".cam-card.is-blank .nothing-positive")
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(narrow, "image-empty-map-390")
    assert errors == []


def test_models_say_what_they_were_trained_on_and_the_upload_page_offers_samples(server, chromium):
    """Item 8: the predictions panel and the model page carry the card's `trained_on`; the upload page
    offers one demo image per class, each opening the image page."""
    errors = []
    page = open_page(chromium, errors=errors)
    page.goto(f"{server}/image")
    page.wait_for_selector(".sample-list li img")
    samples = page.locator(".sample-list li")
    assert samples.count() == 10
    assert sorted(samples.all_inner_texts()) == sorted(["arrow", "circle", "crescent", "cross", "heart", "hexagon",
                                                        "ring", "square", "star", "triangle"])
    page.wait_for_function("[...document.querySelectorAll('.sample-list img')].every((img) => img.naturalWidth > 0)")
    screenshot(page, "upload-samples-1280")
    href = samples.first.locator("a").get_attribute("href")
    assert href.endswith("?model=shapes-cnn")  # a model that knows these images, whatever model is listed first
    samples.first.locator("a").click()
    page.wait_for_url(f"{server}{href.split('?')[0]}?*")
    page.wait_for_selector(".prediction-list li")
    assert page.locator(".predictions .trained-on").inner_text() == f"Trained on: {TRAINED_ON}"
    screenshot(page, "image-trained-on-1280")
    page.goto(f"{server}/m/shapes-mobilenet")
    page.wait_for_selector(".facts .trained-on dd")
    assert page.locator(".facts .trained-on dd").inner_text() == TRAINED_ON
    screenshot(page, "model-trained-on-1280")

    narrow = open_page(chromium, 390, errors)
    narrow.goto(f"{server}/image")
    narrow.wait_for_selector(".sample-list li img")
    narrow.wait_for_function("[...document.querySelectorAll('.sample-list img')].every((img) => img.naturalWidth > 0)")
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(narrow, "upload-samples-390")
    narrow.goto(f"{server}/m/shapes-cnn")
    narrow.wait_for_selector(".facts .trained-on dd")
    screenshot(narrow, "model-trained-on-390")
    narrow.goto(f"{server}/image/demo:3?model=shapes-cnn")
    narrow.wait_for_selector(".predictions .trained-on")
    narrow.wait_for_selector(".cam-card.is-drawn")
    screenshot(narrow, "image-trained-on-390")
    assert errors == []


def test_the_keyboard_alone_opens_the_file_picker(server, chromium):
    """Item 18: Tab reaches the upload zone, and Enter or Space opens the file picker, on the upload page
    and on the image page's "Another image"."""
    errors = []
    page = open_page(chromium, errors=errors)
    # Playwright turns on its interception of file pickers without waiting for it; a listener from the start
    # makes sure it is on before the first key press (else the picker opens unseen).
    page.on("filechooser", lambda _chooser: None)
    page.goto(f"{server}/image")
    page.wait_for_selector(".upload-zone")
    focus_by_tab(page, ".upload-zone")
    assert page.evaluate("document.activeElement.getAttribute('role')") == "button"
    screenshot(page, "upload-focused-1280")
    with page.expect_file_chooser(timeout=5000) as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(files=[{"name": "scene.png", "mimeType": "image/png", "buffer": scene_png(2)}])
    page.wait_for_url("**/image/*?*")
    page.wait_for_selector(".prediction-list li")  # the page has settled (it may focus its heading when drawn)
    focus_by_tab(page, ".upload-another .upload-zone", presses=120)
    with page.expect_file_chooser(timeout=5000):
        page.keyboard.press(" ")
    assert errors == []


def focus_by_tab(page, selector: str, presses: int = 60) -> None:
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement?.matches({selector!r})"):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_fired_units_are_drawn_on_the_image_and_their_pages_show_it(server, chromium):
    """Item 22: each unit that fires is drawn on the image, with its top dataset image beside; its link
    opens the unit page with an "On your image" card first, its rank there the strip's."""
    errors = []
    page = open_page(chromium, errors=errors)
    thumbnails = []  # (url, status) of each visualisation asked for
    page.on("response", lambda response: thumbnails.append((response.url, response.status))
            if "/visualization.png" in response.url else None)
    page.goto(f"{server}/image?model=shapes-cnn")
    upload(page, ".upload-slot", 4)
    page.wait_for_url("**/image/*?*")
    image_id = page.url.split("/image/")[1].split("?")[0]
    page.wait_for_function("document.querySelectorAll('.fired-list .fired-map.is-drawn').length === 12")
    page.wait_for_function("document.querySelectorAll('.fired-list .fired-top.is-drawn').length === 12")
    assert len(set(page.eval_on_selector_all(".fired-map", "maps => maps.map((c) => c.toDataURL())"))) == 12
    # A fired unit's feature visualisation shows once rendered (other tests of this server may have rendered
    # some), and is left out otherwise: the strip never starts an optimisation, and asks only for those stored.
    page.wait_for_function("[...document.querySelectorAll('.fired-list .fired-vis')].every((image) => "
                           "image.classList.contains('is-drawn') && image.naturalWidth > 0)")
    assert len(thumbnails) == page.locator(".fired-list .fired-vis").count()
    assert all("render=false" in url and status == 200 for url, status in thumbnails), thumbnails
    page.wait_for_selector(".cam-card.is-drawn")
    screenshot(page, "image-fired-1280")

    first = page.locator(".fired-list li a").first
    unit = first.get_attribute("data-unit")
    percentile = first.locator(".value").inner_text()
    first.click()
    page.wait_for_url(f"{server}/m/shapes-cnn/block4/{unit}?dataset=demo&image={image_id}")
    page.wait_for_selector(".on-image.is-drawn")
    card = page.locator(".on-image").inner_text()
    assert "1 of 192 units" in card and f"{percentile} of" in card and image_id in card
    # First on the page: above the unit's own top images.
    assert page.evaluate("document.querySelector('.on-image').compareDocumentPosition("
                         "document.querySelector('.gallery')) & Node.DOCUMENT_POSITION_FOLLOWING") > 0
    screenshot(page, "unit-on-image-1280")
    page.wait_for_function("document.querySelector('.visualization img')?.naturalWidth > 0")  # this unit's, rendered
    page.locator(".on-image a").first.click()
    # The image page then writes its defaults into the address (replacing it): compare the query, not its order.
    wanted = {"model": ["shapes-cnn"], "layer": ["block4"]}
    page.wait_for_url(lambda url: url.startswith(f"{server}/image/{image_id}?")
                      and wanted.items() <= parse_qs(urlsplit(url).query).items())

    narrow = open_page(chromium, 390, errors)
    narrow.goto(f"{server}/image/{image_id}?model=shapes-cnn&layer=block4")
    narrow.wait_for_function("document.querySelectorAll('.fired-list .fired-map.is-drawn').length === 12")
    narrow.wait_for_function(f"document.querySelector('.fired-list li[data-unit=\"{unit}\"] .fired-vis')"
                             "?.naturalWidth > 0")  # the one the unit page rendered now shows on the strip
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(narrow, "image-fired-390")
    narrow.goto(f"{server}/m/shapes-cnn/block4/{unit}?dataset=demo&image={image_id}")
    narrow.wait_for_selector(".on-image.is-drawn")
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(narrow, "unit-on-image-390")
    assert errors == []


def test_a_photo_opens_with_a_model_that_knows_photos(server, chromium):
    """An upload whose link names no model opens with the first ready model that is not a demo model (those
    know only their shapes: a photo of a cat got "heart")."""
    ready = [model for model in httpx.get(f"{server}/api/models").json() if model["status"] == "ready"]
    expected = next(model["id"] for model in ready if not model["demo"])  # the test extra installs EfficientNet
    assert {model["id"]: model["demo"] for model in ready}.get("shapes-cnn") is True
    errors = []
    page = open_page(chromium, errors=errors)
    page.goto(f"{server}/image")
    cat = (files("skimage.data") / "chelsea.png").read_bytes()
    page.set_input_files(".upload-zone input[type=file]",
                         files=[{"name": "cat.png", "mimeType": "image/png", "buffer": cat}])
    page.wait_for_url("**/image/*?*")
    assert parse_qs(urlsplit(page.url).query)["model"] == [expected]
    page.wait_for_selector(".prediction-list li")
    screenshot(page, "image-photo-1280")
    assert errors == []


def test_a_method_ticked_later_is_computed_alone_beside_the_maps_already_drawn(server, chromium):
    """Ticking a slow method keeps the maps already drawn on screen while it computes, and asks for it alone;
    unticking one asks for nothing. The review found Grad-CAM blanked for the 45 s of a Score-CAM."""
    errors = []
    page = open_page(chromium, errors=errors)
    asked = []
    page.on("request", lambda request: asked.append(parse_qs(urlsplit(request.url).query).get("methods"))
            if "/cam?" in request.url else None)
    page.goto(f"{server}/image/demo:0?model=shapes-cnn&layer=block4&methods=gradcam")
    page.wait_for_selector(".cam-card.is-drawn[data-method=gradcam]")
    drawn = _map_pixels(page, "gradcam")
    asked.clear()
    page.check("input[name=method][value=scorecam]")
    page.wait_for_function("[...document.querySelectorAll('.cam-card')].some((card) => card.dataset.method === "
                           "'scorecam')")
    assert page.locator(".cam-card.is-drawn[data-method=gradcam]").count() == 1  # still there, not loading
    page.wait_for_selector(".cam-card.is-drawn[data-method=scorecam]")
    assert asked == [["scorecam"]]
    assert _map_pixels(page, "gradcam") == drawn
    page.uncheck("input[name=method][value=scorecam]")
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("methods") == ["gradcam"])
    page.wait_for_timeout(400)  # past the picker's 250 ms pause
    assert asked == [["scorecam"]] and page.locator(".cam-card[data-method]").count() == 1
    assert _map_pixels(page, "gradcam") == drawn

    # Ablation-CAM may finish before the untick lands (CI saw it): its request is held until then.
    held, ended = [], []
    page.route("**/cam?*methods=ablationcam*", lambda route: held.append(route))
    for outcome in ("requestfailed", "requestfinished"):
        page.on(outcome, lambda request: ended.append(request) if "ablationcam" in request.url else None)
    page.check("input[name=method][value=ablationcam]")
    page.wait_for_function("document.querySelector('.cam-status').textContent.startsWith('Computing 1 map')")
    page.uncheck("input[name=method][value=ablationcam]")
    page.wait_for_function("document.querySelector('.cam-status').textContent.startsWith('Explaining')")
    assert len(held) == 1
    held[0].continue_()
    for _ in range(600):  # its answer comes (or the page dropped it)
        if ended:
            break
        page.wait_for_timeout(50)
    page.wait_for_timeout(400)  # an answer drawn would show by now
    assert page.evaluate("document.querySelector('.cam-status').textContent").startswith("Explaining")
    assert page.locator(".cam-card.is-drawn[data-method]").count() == 1 and _map_pixels(page, "gradcam") == drawn
    assert errors == []


def test_a_link_with_a_slow_method_draws_the_quick_maps_first(server, chromium):
    """A link naming Grad-CAM, LayerCAM and Score-CAM: the first two are asked for alone and drawn while
    Score-CAM (held here until they are) is computed, then it joins them. The review waited 20-31 s for maps
    that took 26 ms."""
    errors = []
    page = open_page(chromium, errors=errors)
    asked, held = [], []
    page.on("request", lambda request: asked.append(parse_qs(urlsplit(request.url).query).get("methods"))
            if "/cam?" in request.url else None)
    page.route("**/cam?*methods=scorecam*", lambda route: held.append(route))
    page.goto(f"{server}/image/demo:0?model=shapes-cnn&layer=block4&methods=gradcam,layercam,scorecam")
    page.wait_for_selector(".cam-card.is-drawn[data-method=layercam]")
    assert page.locator(".cam-card.is-drawn[data-method=gradcam]").count() == 1
    for _ in range(200):  # the second request follows the first's answer
        if held:
            break
        page.wait_for_timeout(50)
    assert asked == [["gradcam,layercam"], ["scorecam"]] and len(held) == 1
    assert page.locator(".cam-card.is-drawn[data-method=scorecam]").count() == 0
    held[0].continue_()
    page.wait_for_selector(".cam-card.is-drawn[data-method=scorecam]")
    assert page.locator(".cam-card.is-drawn[data-method]").count() == 3 and errors == []


def _map_pixels(page, method: str) -> str:
    return page.eval_on_selector(f".cam-card[data-method={method}] canvas", "canvas => canvas.toDataURL()")


def test_a_model_without_an_atlas_points_to_the_models_with_one(scoring_server, chromium):
    """The units of a model with no atlas have nothing to be ranked against: the strip names the models that
    have one, each a link to this image with it, and the command for an atlas of one's own images."""
    errors = []
    page = open_page(chromium, errors=errors)
    page.goto(f"{scoring_server}/image/demo:3?model=shapes-mobilenet")  # its copy of the demo atlas is shapes-cnn's
    strip = page.locator(".fired-strip")
    strip.get_by_role("link", name="ShapesCNN (demo)").wait_for()
    said = strip.inner_text()
    assert "MobileNetV3-Small (demo) has no atlas yet" in said and "has one: see its units on this image" in said
    assert "fovea index shapes-mobilenet --dataset PATH" in said
    screenshot(page, "image-no-atlas-1280")
    strip.get_by_role("link", name="ShapesCNN (demo)").click()
    page.wait_for_url(lambda url: "/image/demo:3?" in url and "model=shapes-cnn" in url)
    page.locator(".fired-list li").first.wait_for()
    assert errors == []
