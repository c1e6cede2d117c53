"""The Image to image and Attribute editing tabs as scripts use them: `python app.py` on tiny
random checkpoints (the server of tests/test_app.py, started once for this module), every new
endpoint called through gradio_client with 2 steps, and bad inputs answered with clear errors while
the server keeps serving."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.masks import mask_from_image
from core.images import open_image, pil_to_tensor, read_parameters, tensor_to_pil
from tests.test_app import _bad_image, client, good_request, image_file, rgb_png, server  # noqa: F401 - fixtures

STEPS = 2
DIFFAE_RES = 32  # tests/tiny.py's tiny_diffae


def handle(path):
    from gradio_client import handle_file
    return handle_file(str(path))


def editor(path, layers=()):
    """The gr.ImageEditor value: the image as background, optional drawn layers."""
    return {"background": handle(path), "layers": [handle(p) for p in layers], "composite": None}


def box_mask(tmp_path, size=(100, 100), box=(20, 30, 60, 70), name="mask.png") -> str:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    path = tmp_path / name
    mask.save(path)
    return str(path)


def photo(tmp_path, size=(100, 100), name="photo.png") -> str:
    """An input whose pixels differ everywhere (a gradient), so that 'kept exactly' means something."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None].repeat(w, 1)
    arr = np.stack([x, y, 255 - (x + y) / 2], axis=-1).astype(np.uint8)
    path = tmp_path / name
    Image.fromarray(arr, "RGB").save(path)
    return str(path)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def assert_kept_outside(result, image_path, mask_path, size):
    expected = np.asarray(tensor_to_pil(pil_to_tensor(open_image(image_path), size=size))[0], dtype=np.int16)
    fill = mask_from_image(open_image(mask_path), size)[0, 0].numpy() > 0.5
    got = pixels(result)
    assert fill.any() and (~fill).any()
    assert np.array_equal(got[~fill], expected[~fill]), np.abs(got[~fill] - expected[~fill]).max()


# ---- the endpoints -------------------------------------------------------------------------------
def test_new_endpoints_are_named(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    expected = {
        "/sdedit": ["image", "prompt", "strength", "guidance", "sampler", "steps", "seed", "size", "method"],
        "/colorize": ["image", "sampler", "steps", "seed", "method", "size"],
        "/inpaint": ["editor", "mask", "method", "prompt", "sampler", "steps", "seed", "size"],
        "/reconstruct": ["image", "steps", "size"],
        "/edit": ["image", "attribute", "strength", "steps", "fresh_noise", "seed", "size"],
        "/edit_sweep": ["image", "attribute", "max_strength", "frames", "steps", "size"],
        "/interpolate": ["image_a", "image_b", "frames", "steps", "size"],
        "/attributes": [],
        "/variations": ["image", "num_images", "seed", "size", "prompt", "mix", "decoder_steps", "decoder_guidance"],
    }
    for name, params in expected.items():
        assert name in named, sorted(named)
        assert [p["parameter_name"] for p in named[name]["parameters"]] == params, name


@pytest.mark.parametrize("size, prompt, method", [(32, "", "diffae"), (128, "an emoji of a red apple", "diffae"),
                                                 (32, "", "text"), (64, "an emoji of a red apple", "text")])
def test_sdedit(client, tmp_path, size, prompt, method):
    path = image_file(tmp_path, "RGBA", size=(90, 60))
    view, result, params = client.predict(image=handle(path), prompt=prompt, strength=0.5, steps=STEPS, seed=4,
                                          size=size, method=method, api_name="/sdedit")
    rgb_png(view, size)
    stored = read_parameters(rgb_png(result, size))
    assert stored == params
    assert stored["task"] == "sdedit" and stored["strength"] == 0.5 and stored["seed"] == 4
    assert stored["size"] == size and stored["steps"] == STEPS and stored["image"] == path.name
    assert stored["prompt"] == (prompt or None) and stored["method"] == method


def test_sdedit_strength_0_is_the_input(client, tmp_path):
    path = photo(tmp_path)
    view, result, _ = client.predict(image=handle(path), strength=0.0, steps=STEPS, size=64, api_name="/sdedit")
    assert np.array_equal(pixels(view), pixels(result))


@pytest.mark.parametrize("method, size", [("palette", 64), ("diffae", 32), ("diffae", 64)])
def test_colorize(client, tmp_path, method, size):
    image = photo(tmp_path)
    view, result, params = client.predict(image=handle(image), steps=STEPS, seed=2, method=method, size=size,
                                          api_name="/colorize")
    gray = rgb_png(view, size)
    assert np.ptp(np.asarray(gray, dtype=np.int16), axis=-1).max() == 0  # the input shown is grayscale
    stored = read_parameters(rgb_png(result, size))
    assert stored == params and stored["task"] == "colorize" and stored["seed"] == 2 and stored["method"] == method
    if method == "diffae":   # the luminance constraint: the result's grey is the grey input, up to rounding
        luma = np.array([0.299, 0.587, 0.114])
        assert np.abs(pixels(result) @ luma - pixels(view)[..., 0]).max() <= 1.0


@pytest.mark.parametrize("method, size", [("palette", 64), ("repaint", 32), ("repaint", 128), ("diffae", 64)])
def test_inpaint_with_uploaded_mask_keeps_the_rest(client, tmp_path, method, size):
    image, mask = photo(tmp_path, size=(120, 90)), box_mask(tmp_path, size=(120, 90))
    view, result, params = client.predict(editor=editor(image), mask=handle(mask), method=method, steps=STEPS,
                                          seed=1, size=size, api_name="/inpaint")
    rgb_png(view, size)
    stored = read_parameters(rgb_png(result, size))
    assert stored == params and stored["method"] == method and stored["mask"] == "mask.png"
    assert 0 < stored["mask_coverage"] < 1
    assert_kept_outside(result, image, mask, size)


def test_inpaint_with_a_drawn_layer(client, tmp_path):
    """The browser sends the strokes as a transparent layer: what is opaque is filled."""
    image = photo(tmp_path)
    layer = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (50, 0, 100, 100))  # the right half painted
    layer_path = tmp_path / "layer.png"
    layer.save(layer_path)
    _, result, params = client.predict(editor=editor(image, [layer_path]), mask=None, method="palette",
                                       steps=STEPS, size=64, api_name="/inpaint")
    assert params["mask_coverage"] == 0.5 and "mask" not in params
    assert_kept_outside(result, image, str(layer_path), 64)


def test_attributes(client):
    assert client.predict(api_name="/attributes") == ["dark-skin", "woman", "smiling"]


def test_reconstruct_and_edit_strength_0_are_equal(client, tmp_path):
    path = handle(image_file(tmp_path, "RGB", size=(80, 80)))
    view, rec, params = client.predict(image=path, steps=STEPS, size=DIFFAE_RES, api_name="/reconstruct")
    rgb_png(view, DIFFAE_RES)
    stored = read_parameters(rgb_png(rec, DIFFAE_RES))
    assert stored == params and stored["command"] == "reconstruct" and stored["steps"] == STEPS
    _, zero, _ = client.predict(image=path, attribute="smiling", strength=0, steps=STEPS, size=DIFFAE_RES,
                                api_name="/edit")
    assert np.array_equal(pixels(zero), pixels(rec))
    _, edited, params = client.predict(image=path, attribute="woman", strength=3, steps=STEPS, size=DIFFAE_RES,
                                       api_name="/edit")
    stored = read_parameters(rgb_png(edited, DIFFAE_RES))
    assert stored == params and stored["attribute"] == "woman" and stored["strength"] == 3
    assert not np.array_equal(pixels(edited), pixels(rec))


@pytest.mark.parametrize("size", [64, 128])
def test_edits_are_shown_through_the_super_resolution_stages(client, tmp_path, size):
    """The DiffAE draws 32×32; the edit at 64 or 128 goes through the SR stages, and at strength 0
    it is still the reconstruction at that size."""
    path = handle(image_file(tmp_path, "RGB", size=(80, 80)))
    view, rec, params = client.predict(image=path, steps=STEPS, size=size, api_name="/reconstruct")
    rgb_png(view, DIFFAE_RES)
    assert read_parameters(rgb_png(rec, size)) == params and params["size"] == size
    _, zero, _ = client.predict(image=path, attribute="woman", strength=0, steps=STEPS, size=size, api_name="/edit")
    _, edited, params = client.predict(image=path, attribute="woman", strength=1, steps=STEPS, size=size,
                                       api_name="/edit")
    assert np.array_equal(pixels(zero), pixels(rec)) and not np.array_equal(pixels(edited), pixels(rec))
    assert read_parameters(rgb_png(edited, size))["size"] == size


def test_edit_sweep(client, tmp_path):
    strip, frames, params = client.predict(image=handle(photo(tmp_path)), attribute="dark-skin", max_strength=3,
                                           frames=7, steps=STEPS, size=DIFFAE_RES, api_name="/edit_sweep")
    with Image.open(strip) as im:
        assert im.size == (7 * DIFFAE_RES, DIFFAE_RES)
        assert read_parameters(im) == params
    assert params["strengths"] == [-3, -2, -1, 0, 1, 2, 3]
    assert [f["caption"] for f in frames] == ["-3", "-2", "-1", "+0", "+1", "+2", "+3"]
    for f in frames:
        rgb_png(f["image"], DIFFAE_RES)


def test_variations(client, tmp_path):
    path = handle(photo(tmp_path))
    strip, items, params = client.predict(image=path, num_images=3, seed=4, size=64, decoder_steps=STEPS,
                                          api_name="/variations")
    with Image.open(strip) as im:
        assert im.size == (3 * 64, 64)
    assert [i["caption"] for i in items] == ["seed 4", "seed 5", "seed 6"]
    stored = read_parameters(rgb_png(items[0]["image"], 64))
    assert stored["command"] == "variations" and stored["seed"] == 4 and stored["mix"] == 0.0
    assert not np.array_equal(pixels(items[0]["image"]), pixels(items[1]["image"]))   # fresh noise per seed
    _, items, params = client.predict(image=path, num_images=1, seed=4, size=32, prompt="red apple", mix=0.5,
                                      decoder_steps=STEPS, api_name="/variations")
    assert params["prompt"] == "red apple" and params["mix"] == 0.5
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="number of images must be from 1 to 8|greater than maximum value 8"):
        client.predict(image=path, num_images=20, seed=0, size=32, api_name="/variations")


def test_interpolate(client, tmp_path):
    a, b = photo(tmp_path), image_file(tmp_path, "RGBA", name="b.png")
    strip, frames, params = client.predict(image_a=handle(a), image_b=handle(b), frames=4, steps=STEPS,
                                           size=DIFFAE_RES, api_name="/interpolate")
    with Image.open(strip) as im:
        assert im.size == (4 * DIFFAE_RES, DIFFAE_RES) and read_parameters(im) == params
    assert len(frames) == 4 and params["image_b"] == "b.png"
    _, rec_a, _ = client.predict(image=handle(a), steps=STEPS, size=DIFFAE_RES, api_name="/reconstruct")
    assert np.array_equal(pixels(frames[0]["image"]), pixels(rec_a))  # the first frame is a's reconstruction


def test_every_inpainting_example_runs_end_to_end(client, server):
    """Each example of the Inpaint tab (an image and its mask, as the page offers them) inpaints
    with the tab's default method and keeps the pixels outside the mask."""
    from tests.test_app_ux import Page, page_config
    page = Page(page_config(server))
    (examples,) = page.find("dataset", label="Examples (image and mask)")
    samples = examples["props"]["samples"]
    assert len(samples) >= 4
    for image_cell, mask_cell in samples:
        image, mask = image_cell.get("background", image_cell)["path"], mask_cell["path"]   # the editor's image
        view, result, params = client.predict(editor=editor(image), mask=handle(mask), steps=STEPS, size=64,
                                              api_name="/inpaint")
        assert params["method"] == "diffae" and params["mask_coverage"] in (0.25, 0.5)   # the middle, a half
        assert_kept_outside(result, image, mask, 64)
        fill = mask_from_image(open_image(mask), 64)[0, 0].numpy() > 0.5
        before = np.asarray(tensor_to_pil(pil_to_tensor(open_image(image), size=64))[0], dtype=np.int16)
        assert np.abs(pixels(result)[fill] - before[fill]).max() > 0   # the hole is drawn anew


# ---- bad input: a clear error, and the server keeps serving ---------------------------------------
def _call(client, tmp_path, case):
    image = image_file(tmp_path, "RGB")
    if case == "empty mask":
        return client.predict(editor=editor(image), mask=handle(box_mask(tmp_path, box=(0, 0, 0, 0))),
                              steps=STEPS, api_name="/inpaint")
    if case == "no mask":
        return client.predict(editor=editor(image), mask=None, steps=STEPS, api_name="/inpaint")
    if case == "no image":
        return client.predict(editor=None, mask=handle(box_mask(tmp_path)), steps=STEPS, api_name="/inpaint")
    if case == "palette at 128":
        return client.predict(editor=editor(image), mask=handle(box_mask(tmp_path)), method="palette", size=128,
                              steps=STEPS, api_name="/inpaint")
    if case == "full mask":
        return client.predict(editor=editor(image), mask=handle(box_mask(tmp_path, box=(0, 0, 100, 100))),
                              method="repaint", size=32, steps=STEPS, api_name="/inpaint")
    if case == "corrupt editor image":
        return client.predict(editor=editor(_bad_image(tmp_path, "corrupt")), mask=handle(box_mask(tmp_path)),
                              steps=STEPS, api_name="/inpaint")
    if case == "corrupt sdedit image":
        return client.predict(image=handle(_bad_image(tmp_path, "corrupt")), steps=STEPS, api_name="/sdedit")
    if case == "sdedit strength 2":
        return client.predict(image=handle(image), strength=2, steps=STEPS, api_name="/sdedit")
    if case == "unknown attribute":
        return client.predict(image=handle(image), attribute="unicorn", strength=1, steps=STEPS, api_name="/edit")
    if case == "strength 4":
        return client.predict(image=handle(image), attribute="woman", strength=4, steps=STEPS, api_name="/edit")
    if case == "sweep strength 0":
        return client.predict(image=handle(image), attribute="woman", max_strength=0, steps=STEPS,
                              api_name="/edit_sweep")
    if case == "sweep strength 5":
        return client.predict(image=handle(image), attribute="woman", max_strength=5, steps=STEPS,
                              api_name="/edit_sweep")
    if case == "corrupt edit image":
        return client.predict(image=handle(_bad_image(tmp_path, "corrupt")), attribute="woman", strength=1,
                              steps=STEPS, api_name="/edit")
    if case == "1x1 reconstruct image":
        return client.predict(image=handle(_bad_image(tmp_path, "1x1")), steps=STEPS, api_name="/reconstruct")
    if case == "interpolate without b":
        return client.predict(image_a=handle(image), image_b=None, steps=STEPS, api_name="/interpolate")
    raise AssertionError(case)


BAD = {
    "empty mask": "the mask is empty",
    "no mask": "no mask: draw over the region",
    "no image": "upload an image",
    "palette at 128": "Palette inpaints at 64",
    "full mask": "the mask covers the whole image",
    "corrupt editor image": "corrupt.png cannot be read as an image",
    "corrupt sdedit image": "corrupt.png cannot be read as an image",
    "sdedit strength 2": "greater than maximum value 1",
    "unknown attribute": "unicorn.*not in the list of choices",
    "strength 4": "greater than maximum value 3",
    "sweep strength 0": "less than minimum value 0.1",
    "sweep strength 5": "greater than maximum value 3",
    "corrupt edit image": "corrupt.png cannot be read as an image",
    "1x1 reconstruct image": "image is 1x1; each side must be between 8 and 4096",
    "interpolate without b": "upload image b",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_clear_error(client, server, tmp_path, case):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match=BAD[case]):
        _call(client, tmp_path, case)
    good_request(client, server)


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -4.0])
def test_non_finite_strength_is_a_clear_error(tiny_checkpoints, strength):
    """JSON (so gradio_client and the browser) cannot carry NaN / inf; a direct caller of the
    functions can, and gets the same clear gr.Error as for out-of-range strengths."""
    import gradio as gr

    from demos import attribute_editing, common
    models = common.Models.load(tiny_checkpoints, "cpu")
    _, _, edit, sweep, _, _ = attribute_editing.make_fns(models)
    example = common.example_images()[0]
    with pytest.raises(gr.Error, match="strength must be a finite number between -3 and 3"):
        list(edit(example, "woman", strength, STEPS, progress=lambda *a, **k: None))
    with pytest.raises(gr.Error, match="strength must be a finite number between -3 and 3"):
        list(sweep(example, "woman", strength, 7, STEPS, progress=lambda *a, **k: None))


# ---- missing models ------------------------------------------------------------------------------
def test_missing_palette_and_diffae_are_named(tiny_checkpoints, tmp_path):
    """In-process, on checkpoints without palette and diffae: the tabs name them, their functions
    answer with a gr.Error naming the model, and SDEdit / RePaint (text base only) still work."""
    import shutil

    import gradio as gr

    import app
    from demos import attribute_editing, common, image_to_image
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root, ignore=lambda d, names: [n for n in names if n in ("palette", "diffae")])
    models = common.Models.load(root, "cpu")
    assert set(models.errors) == {"palette", "diffae"}
    demo = app.build_app(models, [image_to_image, attribute_editing])
    markdown = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "`palette`" in markdown and "`diffae`" in markdown

    def progress(*args, **kwargs):
        pass

    sdedit, colorize, inpaint, ilvr = image_to_image.make_fns(models)
    example = common.example_images()[0]
    mask = box_mask(tmp_path)
    with pytest.raises(gr.Error, match="'palette' is unavailable"):
        list(colorize(example, "ddim", STEPS, 0, progress=progress))
    with pytest.raises(gr.Error, match="'palette' is unavailable"):
        list(inpaint({"background": example, "layers": []}, mask, "palette", "", "ddim", STEPS, 0, 64,
                     progress=progress))
    *_, (_, result, params) = sdedit(example, "", 0.5, 3.0, "ddim", STEPS, 0, 32, progress=progress)
    rgb_png(result, 32)
    *_, (_, result, params) = inpaint({"background": example, "layers": []}, mask, "repaint", "", "ddim", STEPS, 0,
                                      32, progress=progress)
    assert params["method"] == "repaint"
    *_, (_, result, _, _, params) = ilvr(example, 4, 0, "text_base", "", "", 32, STEPS, progress=progress)
    assert params["task"] == "ilvr"   # ILVR needs only the text base
    rgb_png(result, 32)
    reconstruct, attributes, edit, sweep, interpolate, _ = attribute_editing.make_fns(models)
    assert attributes() == []
    for call in (lambda: reconstruct(example, STEPS, progress=progress),
                 lambda: edit(example, "woman", 1.0, STEPS, progress=progress),
                 lambda: sweep(example, "woman", 3.0, 7, STEPS, progress=progress),
                 lambda: interpolate(example, example, 3, STEPS, progress=progress)):
        with pytest.raises(gr.Error, match="'diffae' is unavailable"):
            list(call())


# ---- ILVR ------------------------------------------------------------------------------------------
def test_ilvr_endpoint_is_named(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in named["/ilvr"]["parameters"]] == [
        "image", "factor", "seed", "model", "prompt", "label", "size", "steps"]


def test_ilvr_factor_1_is_the_reference(client, tmp_path):
    path = photo(tmp_path, size=(90, 60))
    view, result, strip, table, params = client.predict(image=handle(path), factor=1, seed=3, size=32, steps=STEPS,
                                                        api_name="/ilvr")
    expected = np.asarray(tensor_to_pil(pil_to_tensor(open_image(path), size=32))[0], dtype=np.int16)
    assert np.abs(pixels(result) - expected).max() <= 1          # nothing is left to the model
    stored = read_parameters(rgb_png(result, 32))
    assert stored == params and stored["task"] == "ilvr" and stored["factor"] == 1 and stored["seed"] == 3
    # N = 1, 2, 4, 8, 16; reference low-pass, sample: 32 px frames at 3x (96 px), "N = n" under each
    assert Image.open(strip).size == (4 + 5 * (96 + 4), 4 + 2 * (96 + 18 + 4))
    assert [row[0] for row in table["data"]] == [1, 2, 4, 8, 16]
    # the low-pass of every sample is the reference's (up to clamping), while the samples themselves are not
    assert all(row[1] < 0.06 and row[1] < row[2] / 4 for row in table["data"][1:])


@pytest.mark.parametrize("model, condition, size", [("class_base", {"label": "cat-face"}, 64),
                                                    ("text_base", {"prompt": "red apple"}, 32)])
def test_ilvr_with_each_base(client, tmp_path, model, condition, size):
    view, result, strip, table, params = client.predict(image=handle(photo(tmp_path)), factor=8, model=model,
                                                        size=size, steps=STEPS, api_name="/ilvr", **condition)
    rgb_png(view, size)
    stored = read_parameters(rgb_png(result, size))
    assert stored["model"] == model and stored["factor"] == 8 and stored["guidance"] == 3.0
    assert stored.get("label") == condition.get("label") and stored.get("prompt") == condition.get("prompt")
    frame = size * -(-96 // size)   # enlarged to at least 96 px, "N = n" under each
    assert Image.open(strip).size == (4 + 4 * (frame + 4), 4 + 2 * (frame + 18 + 4))   # N = 2, 4, 8, 16
    rows = {row[0]: row for row in table["data"]}
    assert rows[2][2] < rows[16][2]   # the sample drifts from the reference as N grows


@pytest.mark.parametrize("kwargs, message", [
    ({"factor": 3}, "3.*not in the list of choices"),
    ({"image": None}, "upload a reference image"),
    ({"model": "class_base", "label": "nope"}, "nope.*not in the list of choices"),
])
def test_ilvr_bad_input_is_a_clear_error(client, server, tmp_path, kwargs, message):
    from gradio_client.exceptions import AppError
    kwargs = {"image": handle(photo(tmp_path)), **kwargs}
    with pytest.raises(AppError, match=message):
        client.predict(steps=STEPS, api_name="/ilvr", **kwargs)
    good_request(client, server)
