"""The shell, layer, unit and model pages in Chromium: copying a link without the clipboard API, the grid's
scroll kept across back and forward, heatmaps seen on any background with their colour scale, moving between
layers and units, a phone-sized screen, and what a keyboard or screen-reader user meets (issue 14, 19-25)."""

from __future__ import annotations

import io
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from tests.browser import browser, screenshot, watched_page
from tests.test_browser import _wait_for_atlases

pytestmark = pytest.mark.browser

UNIT = "/m/shapes-cnn/block3/5"


@pytest.fixture(scope="module")
def server(demo_server):
    """The session's demo server (tests/conftest.py), once its first start has built the demo atlases."""
    _wait_for_atlases(demo_server, ("shapes-cnn",))
    return demo_server


def _path(url: str) -> str:
    """A page's path and query without its `dataset` (atlas pages name theirs, item 2; these tests are not about it)."""
    parts = urlsplit(url)
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if k != "dataset"))
    return parts.path + (f"?{query}" if query else "")


def _arrive(page, path: str) -> None:
    page.wait_for_url(lambda url: _path(url) == path)


def _fixed(page, value: float) -> str:
    """`value` as the page writes it (JS's toFixed(2) rounds 3.125 up, Python's format to even)."""
    return page.evaluate(f"({value!r}).toFixed(2)")


# Plain http on a LAN host: not a secure context, so no navigator.clipboard. The copy event records what the
# page copied (the selected part of the field it copied from).
NO_CLIPBOARD = """
Object.defineProperty(Navigator.prototype, "clipboard", { get: () => undefined, configurable: true });
window.copied = [];
document.addEventListener("copy", (event) => {
  const field = event.target;
  window.copied.push(field.value.slice(field.selectionStart, field.selectionEnd));
}, true);
"""


def test_copy_link_without_the_clipboard_api_always_gives_the_link(server):
    with browser() as chromium:
        page = watched_page(chromium, init_script=NO_CLIPBOARD)
        page.goto(f"{server}{UNIT}?cmap=inferno")
        page.locator(".gallery-item").first.wait_for()
        assert page.evaluate("navigator.clipboard") is None
        page.click(".copy-link")
        page.wait_for_function("document.querySelector('.copy-link').textContent === 'Link copied'")
        assert page.evaluate("window.copied") == [page.url]  # by the copy command, on a selected field

        # The copy command refused as well: the link is shown, selected, for the reader to copy.
        page.evaluate("document.execCommand = () => false")
        page.click(".copy-link")
        field = page.locator(".copy-fallback input")
        field.wait_for()
        assert field.input_value() == page.url
        assert page.evaluate("document.activeElement === document.querySelector('.copy-fallback input')")
        assert page.evaluate("[document.activeElement.selectionStart, document.activeElement.selectionEnd]") == \
            [0, len(page.url)]
        assert "to copy the link" in page.locator(".copy-fallback").inner_text()
        screenshot(page, "unit-copy-fallback-1280")
        page.keyboard.press("Escape")  # put away, focus back on the button
        assert page.locator(".copy-fallback").count() == 0
        assert page.evaluate("document.activeElement.classList.contains('copy-link')")

        # The image page shares the component: it used to throw a TypeError here.
        image = watched_page(chromium, init_script=NO_CLIPBOARD)
        image.goto(f"{server}/image/demo:5?model=shapes-cnn&layer=block4")
        image.locator(".copy-link").wait_for()
        image.wait_for_url("**layer=block4**")
        image.click(".copy-link")
        image.wait_for_function("document.querySelector('.copy-link').textContent === 'Link copied'")
        assert image.evaluate("window.copied") == [image.url]
        assert page.errors == [] and image.errors == []


def test_back_to_the_layer_grid_returns_to_where_it_was_scrolled(server):
    with browser() as chromium:
        page = watched_page(chromium)
        grid = "/m/shapes-cnn/block4"
        page.goto(server + grid)
        page.locator(".unit-cell.is-drawn").first.wait_for()
        page.evaluate("window.scrollTo(0, 1500)")
        page.wait_for_function("[...document.querySelectorAll('.unit-cell.is-drawn')].some((c) => "
                               "c.getBoundingClientRect().top > 200)")
        unit = page.evaluate("""[...document.querySelectorAll('.unit-cell.is-drawn')].find((cell) => {
            const box = cell.getBoundingClientRect();
            return box.top > 200 && box.bottom < innerHeight; }).dataset.unit""")
        page.click(f'.unit-cell[data-unit="{unit}"] a')
        _arrive(page, f"{grid}/{unit}")
        page.locator(".gallery-item").first.wait_for()
        assert page.evaluate("scrollY") == 0  # a new page starts at its top

        def back_where_it_was():
            _arrive(page, grid)
            page.locator(f'.unit-cell.is-drawn[data-unit="{unit}"]').wait_for()
            assert page.evaluate("scrollY") == 1500
            box = page.locator(f'.unit-cell[data-unit="{unit}"]').bounding_box()
            assert 0 < box["y"] and box["y"] + box["height"] < 900  # the unit just opened is in view

        page.go_back()
        back_where_it_was()
        page.go_forward()
        _arrive(page, f"{grid}/{unit}")
        page.locator(".gallery-item").first.wait_for()
        assert page.evaluate("scrollY") == 0
        page.go_back()
        back_where_it_was()
        page.reload()  # a reload keeps the place too
        back_where_it_was()
        assert page.errors == []


def _solid_png(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    encoded = io.BytesIO()
    Image.new("RGB", (112, 112), rgb).save(encoded, format="PNG")
    return encoded.getvalue()


# WCAG 2 contrast of two [r, g, b, ...] colours, for the scripts below.
WCAG_RATIO = """
  const linear = (v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
  const lum = (c) => 0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2]);
  const ratio = (a, b) => {
    const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
"""

# For each canvas: the highest WCAG contrast between one of its pixels and the (solid) picture under the map.
CANVAS_CONTRAST = """([selector, rgb]) => {""" + WCAG_RATIO + """
  return [...document.querySelectorAll(selector)].map((canvas) => {
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    let best = 1;
    for (let i = 0; i < data.length; i += 4) best = Math.max(best, ratio([data[i], data[i + 1], data[i + 2]], rgb));
    return best;
  });
}"""

# viridis's own high end (yellow), and a green from its middle: colours its heat used to vanish into.
BACKGROUNDS = {"yellow": (253, 231, 37), "green": (53, 183, 121)}


@pytest.mark.parametrize("colour", BACKGROUNDS)
def test_heatmaps_stand_out_on_any_background_with_a_colour_scale(server, colour):
    rgb = BACKGROUNDS[colour]
    maps = httpx.get(f"{server}/api/models/shapes-cnn/layers/block3/units/5/maps").json()
    with browser() as chromium:
        page = watched_page(chromium)
        picture = _solid_png(rgb)
        page.route("**/api/datasets/*/images/*", lambda route: route.fulfill(body=picture, content_type="image/png"))
        page.goto(server + UNIT)
        page.locator(".gallery-item").first.wait_for()
        page.wait_for_function("(() => { const c = document.querySelectorAll('.gallery-item canvas')[3];"
                               " return c && c.getContext('2d').getImageData(0, 0, 1, 1).data[3] > 0; })()")
        # The top images reach the unit's 99.5% quantile: each one's region is marked at 3:1 or more.
        contrast = page.evaluate(CANVAS_CONTRAST, [".gallery-item:nth-child(-n+4) canvas", list(rgb)])
        assert min(contrast) >= 3, contrast
        scale = page.locator(".unit-head .color-scale")
        assert scale.locator(".scale-end").all_inner_texts() == ["0", _fixed(page, maps["range"][1])]
        assert scale.locator(".scale-mark").count() == 1  # where the outlined region begins
        assert f"99.5% quantile, {_fixed(page, maps['threshold'])}" in scale.inner_text()
        screenshot(page, f"unit-heat-{colour}-1280")

        page.goto(f"{server}/m/shapes-cnn/block3")
        page.wait_for_function("document.querySelectorAll('.unit-cell.is-drawn').length >= 9")
        contrast = page.evaluate(CANVAS_CONTRAST, [".unit-cell.is-drawn:not(.is-dead) canvas", list(rgb)])
        assert min(contrast) >= 3, contrast
        note = page.locator(".page-head .color-scale").inner_text()
        assert "Each cell is scaled to its own unit's maximum" in note
        screenshot(page, f"layer-heat-{colour}-1280")

        # One scale for the whole layer instead: the scale's top is the layer's strongest unit.
        page.select_option("select[name=scale]", "layer")
        _arrive(page, "/m/shapes-cnn/block3?scale=layer")
        top = httpx.get(f"{server}/api/models/shapes-cnn/layers/block3/units?sort=max_max&order=desc&limit=1").json()
        page.wait_for_function("[...document.querySelectorAll('.page-head .color-scale .scale-end')].at(-1)"
                               f"?.textContent === '{_fixed(page, top['units'][0]['max_max'])}'")
        assert "One scale for every unit" in page.locator(".page-head .color-scale").inner_text()
        assert page.errors == []


def test_previous_and_next_layer_a_unit_by_number_and_what_a_layer_is(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(f"{server}/m/shapes-cnn/block3")
        page.locator(".layer-bar").wait_for()
        assert page.locator("[data-step=previous-layer]").inner_text() == "← block3.2"
        assert "layer 6 of 8" in page.locator(".layer-bar").inner_text()
        assert page.locator(".layer-role").inner_text() == \
            "the whole block's output: the same values as its last module, block3.5 (ReLU)"
        page.click("[data-step=next-layer]")
        _arrive(page, "/m/shapes-cnn/block4.2")
        assert page.locator("h1").inner_text() == "block4.2"
        assert page.locator(".layer-role").inner_text() == \
            "in block4, after block4.1 (BatchNorm2d); after the activation: what the next layer reads"
        page.click("[data-step=previous-layer]")
        _arrive(page, "/m/shapes-cnn/block3")

        page.fill("input[name=jump]", "47")
        page.keyboard.press("Enter")
        _arrive(page, "/m/shapes-cnn/block3/47")
        page.locator(".gallery-item").first.wait_for()

        page.goto(f"{server}{UNIT}?cmap=inferno")  # the unit page has both, and a jump keeps the view options
        page.locator(".gallery-item").first.wait_for()
        assert _path(page.locator("[data-step=next-layer]").get_attribute("href")) == "/m/shapes-cnn/block4.2"
        page.fill("input[name=jump]", "999")
        page.click(".unit-jump button")
        assert page.locator(".unit-jump .error-text").inner_text() == "No unit 999: block3 has units 0 to 95."
        assert page.get_attribute("input[name=jump]", "aria-invalid") == "true"
        assert _path(page.url) == f"{UNIT}?cmap=inferno"
        page.fill("input[name=jump]", "12")
        page.keyboard.press("Enter")
        _arrive(page, "/m/shapes-cnn/block3/12?cmap=inferno")
        page.locator(".gallery-item").first.wait_for()
        page.fill("input[name=jump]", "block4:3")  # another layer's unit, written as the API writes it
        page.keyboard.press("Enter")
        _arrive(page, "/m/shapes-cnn/block4/3?cmap=inferno")
        page.locator(".gallery-item").first.wait_for()

        # The model page says how block3.2 (ReLU) and block3 differ, in its table and in a note on naming.
        page.goto(f"{server}/m/shapes-cnn")
        page.locator("tr[data-layer]").first.wait_for()
        assert page.locator('tr[data-layer="block3.2"] .layer-note').inner_text() == \
            "in block3, after block3.1 (BatchNorm2d); after the activation: what the next layer reads"
        assert page.locator('tr[data-layer="block3"] .layer-note').inner_text() == \
            "the whole block's output: the same values as its last module, block3.5 (ReLU)"
        page.click(".naming summary")
        naming = page.locator(".naming").inner_text()
        assert "So block2 is a whole block (Sequential) and block2.2 (ReLU) is module 2 inside it" in naming
        screenshot(page, "model-naming-1280")
        assert page.errors == []


# Whether an element is as wide as its text (the fraction of a pixel an ellipsis takes is enough to fail).
FITS = """(element) => {
  const text = document.createRange();
  text.selectNodeContents(element);
  return element.getBoundingClientRect().width >= text.getBoundingClientRect().width;
}"""


WORD_FITS = """(input, word) => {
  const style = getComputedStyle(input);
  const context = document.createElement("canvas").getContext("2d");
  context.font = `${style.fontSize} ${style.fontFamily}`;
  return input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)
    >= context.measureText(word).width;
}"""


def test_a_phone_sized_screen_keeps_the_bar_short_the_crumb_whole_and_the_summary_first(server):
    with browser() as chromium:
        page = watched_page(chromium, 390, 844)
        shown = ((390, UNIT, "5"), (390, "/m/shapes-cnn/block3", "block3"),
                 (320, "/m/shapes-cnn/block4.2/191", "191"), (320, "/m/shapes-cnn/block4.2", "block4.2"))
        for width, path, crumb in shown:
            page.set_viewport_size({"width": width, "height": 844})
            page.goto(server + path)
            page.locator(".page-head").wait_for()
            page.wait_for_function("document.querySelector('.crumbs a:last-child')")
            assert page.locator(".topbar").bounding_box()["height"] <= 48
            last = page.locator(".crumbs a:last-child")
            assert last.inner_text() == crumb
            box = last.bounding_box()
            assert box["x"] + box["width"] <= width
            assert last.evaluate(FITS), path  # not cut off with an ellipsis
            assert last.evaluate("(a) => a.getBoundingClientRect().right <= "  # nor clipped by the crumbs' box
                                 "a.parentElement.getBoundingClientRect().right + 0.5"), path
            parents = page.locator(".crumbs a:nth-last-child(3)")  # the page's parent, legible; those above hidden
            assert parents.evaluate("(a) => a.getBoundingClientRect().width >= Math.min(a.scrollWidth, 40)"), path
            assert page.locator(".crumbs a").evaluate_all("(links) => links.filter((a) => a.offsetParent).length") == 2
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            link = page.locator(".topbar-link:not(.wide-only)").bounding_box()  # the bar keeps its right padding
            assert link["x"] + link["width"] <= width - 8, path
            if width >= 360:  # the smallest phones cut the box's word for the page's crumb
                assert page.locator(".search-box input").evaluate(WORD_FITS, "Search"), path  # not "Sear"
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(server + UNIT)
        page.locator(".gallery-item").first.wait_for()
        summary = page.locator(".unit-summary").bounding_box()
        assert summary["y"] + summary["height"] < page.locator(".gallery").bounding_box()["y"]
        assert summary["y"] < 844  # the statistics are on the first screen, not under the gallery
        page.wait_for_timeout(300)
        screenshot(page, "unit-narrow-390")
        page.goto(f"{server}/m/shapes-cnn/block3")
        page.locator(".unit-cell.is-drawn").first.wait_for()
        captions = page.locator(".unit-cell.is-drawn .unit-label")
        assert all(captions.nth(i).evaluate(FITS) for i in range(4)), captions.all_inner_texts()[:4]  # "0 2.93"
        screenshot(page, "layer-narrow-390")
        page.goto(f"{server}/m/shapes-cnn")
        page.locator("tr[data-layer]").first.wait_for()
        screenshot(page, "model-narrow-390")
        assert page.errors == []


# Every element with text of its own, with the WCAG contrast of its colour against the backgrounds under it
# (each ancestor's, composited; the element's opacity applied), below AA: 4.5:1, or 3:1 for large text.
LOW_CONTRAST = """() => {""" + WCAG_RATIO + """
  const parse = (c) => {
    const p = c.match(/[\\d.]+/g).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const failures = [];
  for (const element of document.querySelectorAll("body *")) {
    const text = [...element.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
    if (!text || !element.checkVisibility() || element.closest("[aria-hidden=true], :disabled")) continue;
    const chain = [];
    for (let e = element; e; e = e.parentElement) chain.unshift(e);
    let background = [255, 255, 255, 1];
    let opacity = 1;
    for (const e of chain) {
      const style = getComputedStyle(e);
      background = over(parse(style.backgroundColor), background);
      opacity *= Number(style.opacity);
    }
    const style = getComputedStyle(element);
    const colour = parse(style.color);
    const shown = over([...colour.slice(0, 3), colour[3] * opacity], background);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    const contrast = ratio(shown, background);
    const name = `${element.tagName.toLowerCase()}.${element.className} "${text.slice(0, 24)}"`;
    if (contrast < (large ? 3 : 4.5)) failures.push(`${name}: ${contrast.toFixed(2)}`);
  }
  return failures;
}"""

# A link's focus ring, inflated by its width and offset, must lie inside every ancestor that clips.
RING_CLIPPED = """(link) => {
  const style = getComputedStyle(link);
  if (style.outlineStyle === "none") return "no focus ring";
  const grow = parseFloat(style.outlineWidth) + parseFloat(style.outlineOffset);
  const box = link.getBoundingClientRect();
  for (let e = link.parentElement; e; e = e.parentElement) {
    if (getComputedStyle(e).overflow === "visible") continue;
    const clip = e.getBoundingClientRect();
    const inner = { left: clip.left + e.clientLeft, top: clip.top + e.clientTop };
    if (box.left - grow < inner.left || box.top - grow < inner.top || box.right + grow > inner.left + e.clientWidth
        || box.bottom + grow > inner.top + e.clientHeight) return `clipped by ${e.tagName}.${e.className}`;
  }
  return "";
}"""


def test_keyboard_and_screen_reader_users_follow_page_changes(server):
    with browser() as chromium:
        page = watched_page(chromium)
        page.goto(server + "/")
        page.locator(".model-card").first.wait_for()
        assert page.get_attribute("main", "aria-live") is None  # no longer read out whole on every render
        assert page.get_attribute("#announcer", "aria-live") == "polite"
        page.keyboard.press("Tab")  # the skip link comes first and lands in the page's content
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "view"
        assert page.url == server + "/"

        page.click('.model-card[data-model="shapes-cnn"] a')
        page.wait_for_url(server + "/m/shapes-cnn")
        page.wait_for_function("document.getElementById('announcer').textContent === 'ShapesCNN (demo)'")
        assert page.evaluate("document.activeElement.tagName") == "H1"  # focus moves to the new page
        page.click('tr[data-layer="block3"] a')
        _arrive(page, "/m/shapes-cnn/block3")
        page.wait_for_function("document.getElementById('announcer').textContent === 'block3 · ShapesCNN (demo)'")
        assert page.evaluate("document.activeElement.textContent") == "block3"
        page.focus("select[name=sort]")
        page.select_option("select[name=sort]", "max_max")  # the same page redrawn: focus stays on the control
        _arrive(page, "/m/shapes-cnn/block3?order=desc&sort=max_max")
        page.locator(".unit-cell").first.wait_for()
        assert page.evaluate("document.activeElement.name") == "sort"
        page.go_back()
        page.wait_for_url(server + "/m/shapes-cnn")
        page.wait_for_function("document.getElementById('announcer').textContent === 'ShapesCNN (demo)'")
        assert page.evaluate("document.activeElement.tagName") == "H1"

        page.goto(server + UNIT)
        page.locator(".gallery-item").first.wait_for()
        names = page.locator(".gallery-item a").evaluate_all("(all) => all.map((a) => a.getAttribute('aria-label'))")
        assert len(set(names)) == len(names) == 32
        top = httpx.get(f"{server}/api/models/shapes-cnn/layers/block3/units/5").json()["top"][0]
        assert names[0] == f"Rank 1: {_fixed(page, top['value'])} on image demo:{top['image']}, class {top['label']}"
        page.keyboard.press("Shift")  # a keyboard user: the ring shows on focus
        first = page.locator(".gallery-item a").first
        first.focus()
        assert first.evaluate(RING_CLIPPED) == ""
        screenshot(page, "unit-focus-1280")

        failures = []
        for path in ("/", "/m/shapes-cnn", "/m/shapes-cnn/block3", UNIT):
            page.goto(server + path)
            page.locator(".model-card, tr[data-layer], .unit-cell.is-drawn, .gallery-item").first.wait_for()
            failures += [f"{path}: {failure}" for failure in page.evaluate(LOW_CONTRAST)]
        assert failures == []
        assert page.errors == []
