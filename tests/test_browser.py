"""The real browser: headless Debian Chromium (driven by Python playwright) opens the app, sees the
first tab as a visitor does (DeepFloyd IF folded away when it cannot run), makes a run fail and
then succeed (the failed run's toast goes), and visits every tab."""
from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser   # (its app_url fixture marks every test `server` too)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SCREENSHOT_FOR_THE_LEAD = Path("/tmp/app_screenshot.png")
SCREENSHOTS = Path("/tmp/app_screenshots")   # every tab's first view, for people to look at


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_checkpoints):
    """The app as `python app.py` builds and launches it, served from this process."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    pytest.importorskip("playwright")
    import app
    demo = app.start(app.parse_args(["--checkpoints", str(tiny_checkpoints), "--host", "127.0.0.1",
                                     "--port", str(free_port()), "--device", "cpu"]))
    yield demo.local_url
    demo.close()


def test_type_a_prompt_click_generate_see_an_image(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url)
            expect(page.get_by_role("tab", name="Text to image")).to_be_visible(timeout=60_000)
            for tab in ("Class-conditional", "Super-resolution"):
                expect(page.get_by_role("tab", name=tab)).to_be_visible()
            # the first view: DeepFloyd IF cannot run here, so only one folded line says so
            expect(page.get_by_text("DeepFloyd IF (Hub): unavailable on this server")).to_be_visible()
            expect(page.get_by_text("no CUDA GPU here")).to_be_hidden()
            expect(page.get_by_text("IF stage I (64×64)")).to_be_hidden()
            page.screenshot(path=str(SCREENSHOTS / "text-to-image-first-view.png"), full_page=True)
            # a failed run: its toast says what went wrong under the app's title ...
            page.get_by_role("button", name="Generate").first.click()
            toast = page.locator(".toast-body.error")
            expect(toast).to_contain_text("Cannot do that: prompt is empty", timeout=60_000)
            page.get_by_label("Prompt", exact=True).fill("woman dancing, dark skin tone")
            start = time.monotonic()
            page.get_by_role("button", name="Generate").first.click()
            result = page.locator(".gallery img, button.thumbnail-item img").first
            expect(result).to_be_visible(timeout=120_000)
            elapsed = time.monotonic() - start
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=result.element_handle())
            assert page.evaluate("img => img.naturalWidth", result.element_handle()) == 128
            expect(page.locator(".stage img").first).to_be_visible()
            expect(toast).to_have_count(0)   # ... and it does not stay up beside the next run's result
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            shutil.copy(shot, SCREENSHOT_FOR_THE_LEAD)
            print(f"first image in the browser after {elapsed:.1f} s; screenshot {shot}")
        finally:
            browser.close()


def test_pick_an_example_image_and_upscale(app_url):
    """The offline example images load, fill the input, and the upscale shows beside bicubic."""
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url)
            page.get_by_role("tab", name="Super-resolution").click()
            page.locator("img[src*='woman-dancing-dark.png']").first.click()
            # the example fills the input asynchronously: wait for it before asking for the upscale
            expect(page.get_by_role("button", name="Remove Image").first).to_be_visible(timeout=60_000)
            page.get_by_role("button", name="Upscale", exact=True).click()
            result = page.locator("img[src*='woman-dancing-dark-sr4x-128px']").first
            expect(result).to_be_visible(timeout=120_000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=result.element_handle())
            assert page.evaluate("img => img.naturalWidth", result.element_handle()) == 128
        finally:
            browser.close()
