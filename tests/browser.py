"""Playwright on Debian's Chromium (never a downloaded browser)."""

from __future__ import annotations

import atexit
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return path


_shared: dict = {}  # one Chromium for the whole test session: starting one costs about a second


@contextmanager
def browser():
    """The session's Chromium. What a test opens in it (contexts, and so pages) is closed when its block ends,
    so each test starts from a browser with nothing open."""
    if "chromium" not in _shared:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        _shared["chromium"] = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        atexit.register(_close, playwright)
    instance = _shared["chromium"]
    try:
        yield instance
    finally:
        for context in instance.contexts:
            context.close()


def _close(playwright) -> None:
    _shared.pop("chromium").close()
    playwright.stop()


def watched_page(chromium, width: int = 1280, height: int = 900, init_script: str | None = None):
    """A page in its own context; its script errors are kept in `page.errors`, and the answers of 400 and above
    it got in `page.failed` ("STATUS URL"), for a test's message when a view ends in an error."""
    # Reduced motion, as a user may ask for it: no pulsing placeholders repainting while a test waits.
    context = chromium.new_context(viewport={"width": width, "height": height}, reduced_motion="reduce")
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.errors = []
    page.failed = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("response", lambda response: response.status >= 400 and
            page.failed.append(f"{response.status} {response.url}"))
    return page


def wait_or_explain(page, selector: str, timeout: float = 30_000) -> None:
    """Waits for `selector` on a `watched_page`; if it never shows, fails with what the page shows instead, the
    answers that failed and the script errors (a bare timeout says none of it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator(selector).first.wait_for(timeout=timeout)
    except PlaywrightTimeout:
        shown = page.locator("body").inner_text()[:1500]
        raise AssertionError(f"{selector!r} did not appear within {timeout / 1000:g} s; the page shows:\n{shown}\n"
                             f"answers that failed: {page.failed}\nscript errors: {page.errors}") from None


def screenshot(page, name: str) -> Path:
    """A full-page JPEG for a person to look at: half the CPU of a PNG (0.17 against 0.33 s a page of heatmaps),
    which the suite's hundred screenshots feel."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.jpg"
    page.screenshot(path=str(path), full_page=True, type="jpeg", quality=85)
    return path
