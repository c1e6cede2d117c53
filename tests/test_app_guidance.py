"""Classifier and CLIP guidance in the app, through gradio_client: the Class-conditional tab's choice of
guidance, the Text to image tab's CLIP guidance and the How it works panel that compares classifier-free,
classifier and CLIP guidance of the prior. The app runs on the tiny checkpoints (with tiny noise-aware
classifiers and code-text matcher), plus an untrained tiny judge for recognisability and diversity."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from core.images import read_parameters
from tests.test_app import AppServer, good_request, make_client, rgb_png


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    from core.evaluation.judge import Judge, JudgeNet
    from tests.tiny import CLASSES
    tmp = tmp_path_factory.mktemp("app-guidance")
    checkpoints = tmp / "checkpoints"   # the tiny checkpoints and a judge that knows their classes
    shutil.copytree(tiny_checkpoints, checkpoints)
    torch.manual_seed(0)
    Judge(JudgeNet(len(CLASSES), 0, width=8), CLASSES, {"width": 8, "threshold": 0.5}).save(
        checkpoints / "judge", "# tiny untrained judge\n")
    app = AppServer(["--checkpoints", checkpoints], tmp / "app.log", env={"GRADIO_TEMP_DIR": str(tmp / "gradio")})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return make_client(server.url, tmp_path_factory.mktemp("downloads"))


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_endpoints_are_named(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = [p["parameter_name"] for p in named["/class_conditional"]["parameters"]]
    assert params == ["label", "guidance", "sampler", "steps", "seed", "num_images", "size", "dynamic_thresholding",
                      "guidance_method", "classifier_scale", "base_model", "decoder_steps", "decoder_guidance"]
    assert [p["parameter_name"] for p in named["/guidance_comparison"]["parameters"]] == [
        "label", "cfg_scales", "classifier_scales", "seed", "num_samples", "steps", "clip_scales"]
    assert [p["parameter_name"] for p in named["/text_to_image"]["parameters"]][-2:] == ["clip_scale", "prompt_reading"]


def test_class_tab_with_classifier_guidance(client):
    grid, gallery, parameters = client.predict(label="cat-face", steps=2, num_images=2, seed=4, size=64,
                                               guidance_method="classifier", classifier_scale=8, base_model="pixel",
                                               api_name="/class_conditional")
    assert parameters["classifier_scale"] == 8 and parameters["base"]["guidance"] == 1.0
    assert parameters["base_model"] == "pixel"
    # the default (semantic) base: the unconditional prior steered by the code classifier
    semantic = client.predict(label="cat-face", steps=2, num_images=1, size=32, guidance_method="classifier",
                              classifier_scale=8, decoder_steps=2, api_name="/class_conditional")[2]
    assert semantic["base_model"] == "semantic" and semantic["classifier_scale"] == 8
    assert semantic["base"]["guidance"] == 0.0
    stored = read_parameters(rgb_png(gallery[1]["image"], 64))
    assert stored["classifier_scale"] == 8 and stored["seed"] == 5 and stored["label"] == "cat-face"
    # classifier guidance at 0 and CFG at 0 (on the pixel base) are the same unconditional model; at 100 the
    # classifier steers
    common = dict(label="cat-face", steps=4, num_images=1, seed=4, size=32, api_name="/class_conditional")
    by_classifier = client.predict(guidance_method="classifier", classifier_scale=0, base_model="pixel",
                                   **common)[1][0]["image"]
    unconditional = client.predict(guidance_method="cfg", guidance=0, base_model="pixel", **common)[1][0]["image"]
    steered = client.predict(guidance_method="classifier", classifier_scale=100, base_model="pixel",
                             **common)[1][0]["image"]
    assert np.abs(pixels(by_classifier) - pixels(unconditional)).max() <= 1
    assert np.abs(pixels(by_classifier) - pixels(steered)).max() > 4
    cfg = client.predict(label="cat-face", steps=2, num_images=1, size=32, api_name="/class_conditional")[2]
    assert "classifier_scale" not in cfg and cfg["base"]["guidance"] == 3.0   # the default is still CFG


def test_guidance_comparison_panel(client):
    grid, plot, table, params, caption = client.predict(
        label="cat-face", cfg_scales="0, 3", classifier_scales="0, 6", clip_scales="0, 6", num_samples=2, steps=2,
        api_name="/guidance_comparison")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert [(r["guidance"], r["scale"]) for r in rows] == [
        ("unguided", 0), ("classifier-free (label)", 0), ("classifier-free (label)", 3), ("classifier", 0),
        ("classifier", 6), ("classifier-free (text)", 0), ("classifier-free (text)", 3), ("CLIP", 0), ("CLIP", 6)]
    assert all(0 <= r["recognisability"] <= 1 for r in rows)
    for i in (1, 3, 5, 7):   # every guidance at scale 0 is the unguided prior
        assert rows[i]["diversity"] == pytest.approx(rows[0]["diversity"], abs=2e-3)
    assert Image.open(grid).size[1] == 22 + 9 * (128 + 4 + 2)   # a row per setting, samples at 4x, verdict bars
    assert Image.open(plot).size == (720, 480)
    assert read_parameters(grid)["rows"][4]["scale"] == 6
    assert params["cfg_scales"] == [0, 3] and params["clip_scales"] == [0, 6]
    assert "GLIDE's finding" in caption and "2 samples per setting" in caption


def test_text_tab_with_clip_guidance(client):
    parameters = client.predict(prompt="cat", size=32, num_images=1, steps=2, decoder_steps=2, clip_scale=5,
                                api_name="/text_to_image")[-1]
    assert parameters["clip_scale"] == 5 and parameters["base_model"] == "semantic"
    assert parameters["base"]["guidance"] == 0.0
    plain = client.predict(prompt="cat", size=32, num_images=1, steps=2, decoder_steps=2, api_name="/text_to_image")
    assert "clip_scale" not in plain[-1]   # old callers: no CLIP guidance


@pytest.mark.parametrize("kwargs, message", [
    (dict(label="cat-face", guidance_method="classifier", classifier_scale=500, api_name="/class_conditional"),
     "greater than maximum value 100"),
    (dict(label="cat-face", guidance_method="bogus", api_name="/class_conditional"), "bogus.*not in the list"),
    (dict(label="cat-face", classifier_scales="lots", api_name="/guidance_comparison"),
     "classifier-guidance scales must be comma-separated numbers"),
    (dict(label="cat-face", cfg_scales="-2", api_name="/guidance_comparison"),
     "guidance must be a number from 0 to 30"),
    (dict(label="cat-face", clip_scales="lots", api_name="/guidance_comparison"),
     "CLIP-guidance scales must be comma-separated numbers"),
])
def test_bad_input_is_a_clear_error(client, server, kwargs, message):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match=message):
        client.predict(steps=2, **kwargs)
    assert server.alive()
    good_request(client, server)
