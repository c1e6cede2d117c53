"""What a first-time visitor and a script meet, through `python app.py` on tiny random checkpoints
(the server of tests/test_app.py, started once for this module): no server paths in what the
page or an error shows, named errors for every malformed call, a capped prompt, and the layout
fixes of the tabs (read from the page's /config)."""
from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tests.test_app import client, good_request, server  # noqa: F401 - fixtures

ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.@+~=-]+/)+")   # "/a/b/..." (not URLs, not "1/f")


def handle(path):
    from gradio_client import handle_file
    return handle_file(str(path))


def page_config(server) -> dict:
    with urllib.request.urlopen(server.url + "config", timeout=30) as r:
        return json.load(r)


def truncated_png(tmp_path: Path) -> Path:
    """A PNG cut off half-way: its header reads, its pixels do not."""
    whole = tmp_path / "whole.png"
    Image.effect_noise((120, 120), 64).convert("RGB").save(whole)
    data = whole.read_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


# ---- server paths --------------------------------------------------------------------------------
@pytest.mark.parametrize("api_name, kwargs", [
    ("/upscale", dict(steps=2)),
    ("/sdedit", dict(steps=2, size=32)),
    ("/colorize", dict(steps=2)),
    ("/reconstruct", dict(steps=2)),
    ("/forward_process", dict(times="0, 500")),
])
def test_a_broken_upload_is_the_uploaded_image_not_a_path(client, server, tmp_path, api_name, kwargs):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as raised:
        client.predict(image=handle(truncated_png(tmp_path)), **kwargs, api_name=api_name)
    message = raised.value.message
    assert "the uploaded image cannot be read" in message and not ABSOLUTE_PATH.search(message), message
    good_request(client, server)


def test_the_page_never_shows_the_checkpoints_path(server, tiny_checkpoints):
    config = json.dumps(page_config(server))
    assert str(tiny_checkpoints) not in config
    assert f"from {Path(tiny_checkpoints).name}: loaded" in config


def test_missing_models_are_named_without_server_paths(tiny_checkpoints, tmp_path):
    """In-process: with sr128 and the diffae directions missing, the tabs' warnings and the
    errors of the functions name what is missing, never where on the server it was looked for."""
    import shutil

    import gradio as gr

    import app
    from demos import attribute_editing, common, super_resolution
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root, ignore=lambda d, names: [n for n in names if n in ("sr128",
                                                                                                "directions.safetensors")])
    models = common.Models.load(root, "cpu")
    demo = app.build_app(models)
    shown = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "sr128" in shown and "directions" in shown
    assert str(tmp_path) not in shown and not ABSOLUTE_PATH.search(shown), shown
    with pytest.raises(gr.Error) as raised:
        list(super_resolution.make_fn(models)(common.example_images()[0], 4, 128, "ddim", 2, 50, 0))
    assert "'sr128' is unavailable" in raised.value.message and str(tmp_path) not in raised.value.message
    _, _, edit, *_ = attribute_editing.make_fns(models)
    with pytest.raises(gr.Error) as raised:
        list(edit(common.example_images()[0], "woman", 1.0, 2, progress=lambda *a, **k: None))
    assert "directions are unavailable" in raised.value.message and str(tmp_path) not in raised.value.message


# ---- prompt length -------------------------------------------------------------------------------
def test_a_huge_prompt_is_cut_and_stored_cut(client):
    from core.images import read_parameters
    prompt = "woman dancing, dark skin tone, " * 35_000   # 1 MB
    *_, gallery, parameters = client.predict(prompt=prompt, size=32, num_images=1, steps=2,
                                             api_name="/text_to_image")
    png = Path(gallery[0]["image"])
    stored = read_parameters(png)
    assert prompt.startswith(stored["prompt"]) and 0 < len(stored["prompt"]) < 300
    assert stored["note"].startswith("the prompt was cut to the 32 tokens the text encoder reads")
    assert png.stat().st_size < 20_000 and parameters["prompt"] == stored["prompt"]


# ---- malformed calls over HTTP -------------------------------------------------------------------
def call_raw(server, api_name: str, data: list) -> tuple[str, dict | list]:
    """POST /gradio_api/call/NAME with `data` as JSON (NaN allowed, as Python writes it); the
    final event ("complete" or "error") and its payload."""
    url = f"{server.url}gradio_api/call/{api_name.lstrip('/')}"
    request = urllib.request.Request(url, json.dumps({"data": data}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{url}/{event_id}", timeout=300) as r:
        lines = r.read().decode().splitlines()
    event = [line.split(": ", 1)[1] for line in lines if line.startswith("event: ")][-1]
    payload = [line.split(": ", 1)[1] for line in lines if line.startswith("data: ")][-1]
    return event, json.loads(payload)


def endpoints(client) -> dict[str, list[dict]]:
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    return {name: info["parameters"] for name, info in named.items()}


def default_arguments(parameters: list[dict]) -> list:
    """A value for every parameter: its default, else its example (files: none)."""
    values = []
    for p in parameters:
        value = p["parameter_default"] if p.get("parameter_has_default") else p.get("example_input")
        values.append(None if "filepath" in json.dumps(p.get("python_type", {})) else value)
    return values


def test_too_few_arguments_are_a_named_error(client, server):
    for name, parameters in endpoints(client).items():
        if not parameters:
            continue
        event, payload = call_raw(server, name, [])
        assert event == "error" and payload["error"], (name, payload)
        assert payload["error"].startswith(f"Missing arguments: {name} takes {len(parameters)} arguments"), payload
        assert all(p["parameter_name"] in payload["error"] for p in parameters), payload


def test_nan_or_nothing_in_a_number_is_a_named_error(client, server):
    checked = 0
    for name, parameters in endpoints(client).items():
        for i, p in enumerate(parameters):
            if p["python_type"]["type"] not in ("float", "int"):
                continue
            for bad in (float("nan"), None):
                data = default_arguments(parameters)
                data[i] = bad
                event, payload = call_raw(server, name, data)
                assert event == "error" and payload["error"], (name, p["parameter_name"], payload)
                assert "must be a finite number" in payload["error"], (name, p["parameter_name"], payload)
                checked += 1
    assert checked > 40
    good_request(client, server)


# ---- errors carry their titles -------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, title, text", [
    (dict(prompt="", steps=2), "Cannot do that", "prompt is empty"),
    (dict(prompt="cat", size=128, seed=-1), "Cannot do that", "Seed: value -1 is less than minimum value 0"),
])
def test_an_error_says_its_title(client, kwargs, title, text):
    """Gradio 6.31's page heads every error toast "Error", so the app's title leads the message."""
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as raised:
        client.predict(**kwargs, api_name="/text_to_image")
    assert raised.value.title == title and text in raised.value.message
    if title != "Error":
        assert raised.value.message.startswith(f"{title}: {text}")


def test_an_unreadable_upload_says_its_title(client, tmp_path):
    from gradio_client.exceptions import AppError
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(AppError) as raised:
        client.predict(image=handle(bad), steps=2, api_name="/upscale")
    assert raised.value.message.startswith("Unreadable image: notes.png cannot be read as an image")


# ---- the server's console -------------------------------------------------------------------------
def test_a_refusal_is_one_line_on_the_console_not_a_traceback(client, server):
    """Bad input (an empty prompt; a seed out of range, refused by the input's own check) is the
    caller's mistake: the console gets one line naming the endpoint or input and the message."""
    from gradio_client.exceptions import AppError
    before = len(server.log())
    for kwargs in (dict(prompt="", steps=2), dict(prompt="cat", seed=-1)):
        with pytest.raises(AppError):
            client.predict(**kwargs, api_name="/text_to_image")
    good_request(client, server)
    log = server.log()[before:]
    assert "* refused /text_to_image: Cannot do that: prompt is empty; describe the emoji to generate\n" in log, log
    assert "* refused input 'Seed': Cannot do that: Seed: value -1 is less than minimum value 0\n" in log, log
    assert "Traceback" not in log, log


def test_a_bug_keeps_its_traceback_on_the_console(capsys):
    """An unexpected exception is answered "Internal error (its type)" and its whole traceback is
    printed once; a named error raised by the same wrapper prints one line."""
    import gradio as gr

    from demos import common

    def buggy():
        return {}["missing"]

    def refusing():
        raise common.error("no mask: draw over the region to fill", "Cannot do that")

    with pytest.raises(gr.Error, match="Internal error: .*KeyError"):
        common._never_unnamed(buggy, "/buggy")()
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1 and "KeyError: 'missing'" in err
    with pytest.raises(gr.Error) as raised:
        common._never_unnamed(refusing, "/inpaint")()
    assert capsys.readouterr().err == "* refused /inpaint: Cannot do that: no mask: draw over the region to fill\n"
    assert raised.value.print_exception is False


# ---- the layout, as the page receives it ---------------------------------------------------------
class Page:
    """The page's /config: its components by id and the layout tree."""

    def __init__(self, config: dict):
        self.components = {c["id"]: c for c in config["components"]}
        self.parent: dict[int, int] = {}

        def walk(node, parent=None):
            if parent is not None:
                self.parent[node["id"]] = parent
            for child in node.get("children", []):
                walk(child, node["id"])

        walk(config["layout"])

    def find(self, kind: str, **props) -> list[dict]:
        return [c for c in self.components.values() if c.get("type") == kind
                and all(c.get("props", {}).get(k) == v for k, v in props.items())]

    def ancestors(self, component_id: int) -> list[dict]:
        out = []
        while component_id in self.parent:
            component_id = self.parent[component_id]
            out.append(self.components.get(component_id, {}))
        return out

    def children(self, component_id: int) -> list[dict]:
        """What sits directly in a container; Gradio's own 'form' wrappers are looked through."""
        out = []
        for child_id in [i for i, parent in self.parent.items() if parent == component_id]:
            child = self.components[child_id]
            out += self.children(child_id) if child.get("type") == "form" else [child]
        return out

    def shown(self, component_id: int) -> bool:
        """Visible, and so are all its containers (a closed accordion still counts as shown)."""
        chain = [self.components[component_id], *self.ancestors(component_id)]
        return all(c.get("props", {}).get("visible", True) is not False for c in chain)


def test_first_tab_folds_deepfloyd_away_when_it_cannot_run(server, client):
    """The test server has no GPU: IF is unavailable, so its outputs and settings are hidden and
    one folded line says so; the endpoint stays and says why."""
    from gradio_client.exceptions import AppError
    page = Page(page_config(server))
    for label in ("IF stage I (64×64)", "IF stage II (256×256)"):
        (image,) = page.find("image", label=label)
        assert not page.shown(image["id"])
    (settings,) = page.find("accordion", label="Generate with DeepFloyd IF (Hub)")
    assert not page.shown(settings["id"])
    (status,) = page.find("accordion", label="DeepFloyd IF (Hub): unavailable on this server")
    assert page.shown(status["id"]) and status["props"]["open"] is False
    why = [m for m in page.find("markdown") if "Why: no CUDA GPU here" in str(m["props"].get("value"))]
    assert len(why) == 1 and status in page.ancestors(why[0]["id"])   # the details are inside the fold
    with pytest.raises(AppError, match="DeepFloyd IF \\(Hub\\) is unavailable: no CUDA GPU here"):
        client.predict(prompt="a corgi", api_name="/text_to_image_deepfloyd")


def test_the_inpainting_brush_shows_on_white_and_offers_any_colour(server):
    (editor,) = Page(page_config(server)).find("imageeditor")
    brush = editor["props"]["brush"]
    assert brush["default_color"].lower() not in ("#ffffff", "#fff", "white") and brush["color_mode"] != "fixed"


def test_palette_is_not_offered_sizes_it_refuses(server):
    """Palette draws 64×64 only: the sizes are shown with the other methods alone (the default,
    diffae, draws through the SR stages at 128), and the API takes them (tests/test_app_editing.py
    inpaints at 32 and 128)."""
    page = Page(page_config(server))
    (method,) = page.find("radio", label="Method", value="diffae", choices=[["palette", "palette"],
                                                                             ["repaint", "repaint"],
                                                                             ["diffae", "diffae"]])
    (size,) = page.find("radio", label="Output size (repaint, diffae)")
    assert page.shown(size["id"]) and size["props"]["value"] == 128
    assert [c[1] for c in size["props"]["choices"]] == [32, 64, 128]
    (size,) = page.find("radio", label="Output size (diffae)")   # colorization
    assert page.shown(size["id"]) and size["props"]["value"] == 128


def test_the_inpainting_examples_carry_masks_and_the_brush_suits_64_px(server):
    page = Page(page_config(server))
    (examples,) = page.find("dataset", label="Examples (image and mask)")
    assert all(len(sample) == 2 and sample[1] for sample in examples["props"]["samples"])
    assert {b["props"]["value"] for b in page.find("button")} >= {"Mask the middle", "Mask the left half"}
    (editor,) = page.find("imageeditor")
    assert editor["props"]["brush"]["default_size"] == 16   # 8 px of the 64 px image the models fill


def test_tables_show_their_columns_before_a_run(server, client, tmp_path):
    page = Page(page_config(server))
    tables = page.find("dataframe")
    assert len(tables) >= 7   # every panel with a table, the ILVR figures and the guidance comparison too
    for table in tables:
        headers = table["props"]["value"]["headers"]
        assert headers and not any(h.isdigit() for h in map(str, headers)), (table["props"]["label"], headers)
    (forward,) = page.find("dataframe", label="ᾱ_t and log SNR at these t")
    truncated_png(tmp_path)   # writes whole.png beside it
    _, result = client.predict(image=handle(tmp_path / "whole.png"), times="0, 500", api_name="/forward_process")
    assert result["headers"] == forward["props"]["value"]["headers"]


def test_every_seed_shares_a_row_with_its_dice(server):
    page = Page(page_config(server))
    dice = page.find("button", value="🎲")
    assert len(dice) >= 10
    for button in dice:
        row = page.components[page.parent[button["id"]]]
        together = [c["props"].get("label") or c["props"].get("value") for c in page.children(row["id"])]
        assert row["type"] == "row" and together == ["Seed", "🎲"], together


def test_the_sdedit_examples_span_the_page(server):
    """A table of image, prompt and strength was cut off inside the settings' column."""
    page = Page(page_config(server))
    labels = {c["id"]: c["props"].get("label") for c in page.components.values()}
    (examples,) = [d for d in page.find("dataset") if [labels[i] for i in d["props"]["component_ids"]]
                   == ["Image (any size, mode and format)", "Prompt (optional)", "Strength"]]
    assert "column" not in [a.get("type") for a in page.ancestors(examples["id"])]


def test_no_tab_shows_the_same_example_twice(server):
    page = Page(page_config(server))
    for dataset in page.find("dataset"):
        names = [Path(str(cell.get("path") or cell.get("url"))).name for sample in dataset["props"]["samples"]
                 for cell in sample if isinstance(cell, dict)]
        shown = [n.replace("-transparent", "") for n in names]   # the transparent cat looks like the cat
        above = {a.get("props", {}).get("label") for a in page.ancestors(dataset["id"])}
        if above & {"Attribute editing", "How it works"}:
            assert len(set(shown)) == len(shown), (above, names)


def tab_of(page: Page, component_id: int) -> list[str]:
    """The labels of the tabs a component sits in, innermost first."""
    return [a["props"]["label"] for a in page.ancestors(component_id) if a.get("type") == "tabitem"]


def test_attribute_editing_outputs_sit_in_their_own_sub_tab(server):
    """The shared "Input as the model sees it" and "Result" boxes stayed empty under Strength sweep,
    Interpolate and Variations: they belong to Edit, and each sub-tab has its own parameters."""
    page = Page(page_config(server))
    for label in ("Input as the model sees it", "Result (PNG with parameters)"):
        (image,) = [i for i in page.find("image", label=label) if "Attribute editing" in tab_of(page, i["id"])]
        assert tab_of(page, image["id"]) == ["Edit", "Attribute editing"]
    parameters = [tab_of(page, j["id"])[0] for j in page.find("json", label="Parameters")
                  if "Attribute editing" in tab_of(page, j["id"])]
    assert sorted(parameters) == ["Edit", "Interpolate", "Strength sweep", "Variations"]


def test_the_attribute_edits_start_from_a_person(server):
    """The default attribute is dark-skin: the first example is a person with a skin tone, not a cat,
    and the example edits pair each attribute with someone it shows on."""
    page = Page(page_config(server))
    labels = {c["id"]: c["props"].get("label") for c in page.components.values()}
    for dataset in page.find("dataset"):
        if tab_of(page, dataset["id"])[-1:] != ["Attribute editing"]:
            continue
        first = Path(dataset["props"]["samples"][0][0]["path"]).stem
        assert first == "woman-dancing-light", first
        if [labels[i] for i in dataset["props"]["component_ids"]][1:] == ["Attribute", "Strength (class gaps)"]:
            pairs = [(Path(s[0]["path"]).stem, s[1], s[2]) for s in dataset["props"]["samples"]]
            assert ("woman-dancing-light", "dark-skin", 1.0) in pairs and all("cat" not in p for p, *_ in pairs)
    (attribute,) = [a for a in page.find("dropdown", label="Attribute") if tab_of(page, a["id"])[0] == "Edit"]
    assert attribute["props"]["value"] == "dark-skin"


def test_every_tab_that_draws_defaults_to_128_px(server):
    page = Page(page_config(server))
    sizes = {tab_of(page, r["id"])[-1]: r["props"]["value"] for r in page.find("radio", label="Final size")}
    assert sizes == {"Text to image": 128, "Class-conditional": 128, "Attribute editing": 128}, sizes
    (label,) = page.find("dropdown", label="Class (emoji subgroup)")
    assert label["props"]["value"] == "cat-face"   # an example, not the alphabetically first subgroup


def test_result_galleries_show_one_image_at_a_sensible_size(server):
    """One 128 px result filled the gallery's width (700 px): the results galleries have fixed-size cells."""
    from demos import common
    page = Page(page_config(server))
    for label in ("Results (PNG with parameters)", "Samples (PNG with parameters)"):
        (gallery,) = page.find("gallery", label=label)
        assert common.RESULTS in gallery["props"]["elem_classes"]
    assert "minmax(96px, 256px)" in page_config(server)["css"]


def test_h_space_uses_the_one_model_selector(server):
    """The h-space panel had its own "Base model" radio beside the shared one; its four images sit two
    to a row, so no label is cut."""
    config = page_config(server)
    page = Page(config)
    radios = [r for r in page.find("radio") if "How it works" in tab_of(page, r["id"])]
    assert [r["props"]["label"] for r in radios if r["props"]["choices"][0][1] == "text_base"] == ["Base model"]
    (dependency,) = [d for d in config["dependencies"] if d.get("api_name") == "hspace_edit"]
    (shared,) = [r for r in radios if r["props"]["label"] == "Base model"]
    assert dependency["inputs"][1] == shared["id"]
    for label in ("Input", "DDIM reconstruction", "h-space edit", "DiffAE edit"):
        (image,) = page.find("image", label=label)
        row = page.components[page.parent[image["id"]]]
        assert row["type"] == "row" and len(page.children(row["id"])) == 2, label
