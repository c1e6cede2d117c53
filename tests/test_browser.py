"""The real browser: headless Debian Chromium (driven by Python playwright) opens the app, sees the
first tab as a visitor does (DeepFloyd IF folded away when it cannot run), makes a run fail and
then succeed (the failed run's toast goes), and in every tab and sub-tab clicks the first example and
the main button and sees a result with no error toast."""
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


def for_every_panel(tiny_checkpoints, tmp) -> tuple[Path, Path]:
    """The tiny checkpoints plus what the last panels need: h-space directions fitted on random
    images, a tiny untrained judge, and a classifier folder holding an untrained subgroup classifier
    (so the guidance comparison panel trains none)."""
    from dataclasses import asdict

    import torch

    from core import hspace, mechanics
    from core.data.emoji import load_dataset
    from core.evaluation.classifiers import (
        FORMAT_VERSION,
        Classifier,
        ClassifierSettings,
        data_fingerprint,
        task_classes,
    )
    from core.evaluation.judge import Judge, JudgeNet
    from core.models.modelset import ModelSet
    from core.models.small_cnn import SmallCNN
    from tests.tiny import CLASSES
    checkpoints = tmp / "checkpoints"
    shutil.copytree(tiny_checkpoints, checkpoints)
    pictures = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = {name: (torch.arange(8), torch.tensor([0, 1] * 4)) for name in ("dark-skin", "woman", "smiling")}
    for name in ("text_base", "class_base"):
        model, cond = mechanics.model_and_cond(ModelSet(checkpoints, "cpu"), mechanics.Condition(model=name))
        hspace.fit_directions(model, cond, pictures, labels, anchors=3).save(checkpoints / name)
    torch.manual_seed(0)
    Judge(JudgeNet(len(CLASSES), 0, width=8), CLASSES, {"width": 8, "threshold": 0.5}).save(
        checkpoints / "judge", "# tiny untrained judge\n")
    data = load_dataset()
    settings = ClassifierSettings()
    info = {"format_version": FORMAT_VERSION, "task": "subgroup", "settings": asdict(settings),
            "data_fingerprint": data_fingerprint(data)}
    classes = task_classes("subgroup", data)
    Classifier(SmallCNN(len(classes), settings.width), classes, info).save(tmp / "classifiers" / "subgroup")
    return checkpoints, tmp / "classifiers"


@pytest.fixture(scope="module")
def app_url(tiny_checkpoints, tmp_path_factory):
    """The app as `python app.py` builds and launches it, served from this process."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    pytest.importorskip("playwright")
    import os

    import app
    checkpoints, classifiers = for_every_panel(tiny_checkpoints, tmp_path_factory.mktemp("browser"))
    saved = os.environ.get("DIFFUSION_HUB_CLASSIFIERS")
    os.environ["DIFFUSION_HUB_CLASSIFIERS"] = str(classifiers)
    demo = app.start(app.parse_args(["--checkpoints", str(checkpoints), "--host", "127.0.0.1",
                                     "--port", str(free_port()), "--device", "cpu"]))
    yield demo.local_url
    demo.close()
    if saved is None:
        os.environ.pop("DIFFUSION_HUB_CLASSIFIERS", None)
    else:
        os.environ["DIFFUSION_HUB_CLASSIFIERS"] = saved


def test_type_a_prompt_click_generate_see_an_image(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, timeout=120_000)   # a first load on a busy 2-core machine
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
            page.goto(app_url, timeout=120_000)   # a first load on a busy 2-core machine
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


# ---- every tab: its first example, its main button, a result and no error -------------------------
PANELS = [
    ("Text to image", None),
    ("Class-conditional", None),
    ("Super-resolution", None),
    ("Image to image", "SDEdit"),
    ("Image to image", "Colorize"),
    ("Image to image", "Inpaint"),
    ("Image to image", "ILVR"),
    ("Attribute editing", "Edit"),
    ("Attribute editing", "Strength sweep"),
    ("Attribute editing", "Interpolate"),
    ("Attribute editing", "Variations"),
    ("How it works", "Forward process"),
    ("How it works", "Samplers at equal cost"),
    ("How it works", "Guidance sweep"),
    ("How it works", "Classifier vs classifier-free guidance"),
    ("How it works", "Trajectory"),
    ("How it works", "Likelihood"),
    ("How it works", "h-space editing"),
]
# what a panel shows: images (not the inline icons) and table rows; counted after the example has
# filled the inputs, so an increase is a result (a preview first, then the final one)
RESULTS_JS = """() => {
  const shown = e => e.offsetParent !== null;
  const images = Array.from(document.querySelectorAll('img'))
      .filter(i => shown(i) && i.naturalWidth > 0 && !i.src.startsWith('data:'));
  const rows = Array.from(document.querySelectorAll('.virtual-row, table tbody tr'))   // a Dataframe's rows
      .filter(r => shown(r) && r.innerText.trim());
  return images.length + rows.length;
}"""
BUSY_JS = """() => Array.from(document.querySelectorAll('.progress-text, .eta-bar, .wrap.pending'))
  .some(e => e.offsetParent !== null)"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.parametrize("tab, sub_tab", PANELS)
def test_every_tab_runs_its_first_example(app_url, browser, tab, sub_tab):
    """As a visitor: open the tab, click its first example (where it has examples), click its main
    button, and see a result appear with no error toast."""
    from playwright.sync_api import expect
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app_url, timeout=120_000)   # a first load on a busy 2-core machine
        page.get_by_role("tab", name=tab, exact=True).click()
        if sub_tab:
            page.get_by_role("tab", name=sub_tab, exact=True).click()
        button = page.locator("button.primary:visible").first
        expect(button).to_be_visible(timeout=60_000)
        # a table of examples sets several inputs (an edit's attribute, interpolation's pair): the panel's own;
        # a panel without examples (the samplers, the guidance sweep, the trajectory) runs from its defaults
        examples = page.locator("tr.tr-body:visible")
        examples = examples if examples.count() else page.locator("button.gallery-item:visible")
        if examples.count():
            examples.first.click()
            page.wait_for_timeout(2_000)   # the example fills its inputs asynchronously
        before = page.evaluate(RESULTS_JS)
        button.click()
        page.wait_for_function(f"() => document.querySelector('.toast-body.error') "
                               f"|| (({RESULTS_JS})() > {before} && !({BUSY_JS})())", timeout=180_000)
        page.wait_for_timeout(500)
        expect(page.locator(".toast-body.error")).to_have_count(0)
        name = f"{tab}-{sub_tab or ''}".lower().replace(" ", "-")
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    finally:
        page.close()
