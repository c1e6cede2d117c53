"""The How it works tab as scripts use it: `python app.py` on tiny random checkpoints (the server of
tests/test_app.py, started once for this module), its endpoints called through gradio_client, and
bad inputs answered with clear errors while the server keeps serving."""
from __future__ import annotations

import pytest
from PIL import Image

from core.images import read_parameters
from tests.test_app import client, good_request, image_file, server  # noqa: F401 - fixtures


def handle(path):
    from gradio_client import handle_file
    return handle_file(str(path))


def test_endpoints_are_named(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    expected = {
        "/forward_process": ["image", "times", "seed"],
        "/compare_samplers": ["model", "prompt", "label", "sampler_names", "budgets", "seed", "num_samples",
                              "guidance", "thresholding"],
        "/guidance_sweep": ["model", "prompt", "label", "scales", "seed", "num_samples", "sampler", "steps",
                            "thresholding"],
        "/trajectory": ["model", "prompt", "label", "seed", "sampler", "steps", "guidance", "frames"],
        "/likelihood": ["image", "model", "prompt", "label", "method", "steps", "probes", "references"],
        "/hspace_edit": ["image", "model", "attribute", "strength", "steps", "interval", "diffae_strength"],
    }
    for name, params in expected.items():
        assert name in named, sorted(named)
        assert [p["parameter_name"] for p in named[name]["parameters"]] == params, name


def test_panels_through_the_client(client, tmp_path):
    image = handle(image_file(tmp_path, "RGBA"))
    grid, table = client.predict(image=image, times="0, 500", seed=2, api_name="/forward_process")
    assert Image.open(grid).size == (2 + 2 * 34, 2 + 2 * 34)
    assert [row[1] for row in table["data"]] == [0, 500, 0, 500]
    path, table, params = client.predict(model="text_base", prompt="thumbs up", sampler_names=["ddim", "heun"],
                                         budgets="3", num_samples=1, api_name="/compare_samplers")
    assert read_parameters(path)["samplers"] == ["ddim", "heun"] and len(table["data"]) == 2
    _, table, fidelity, diversity, _ = client.predict(model="class_base", label="cat-face", scales="1, 3",
                                                      num_samples=2, steps=2, api_name="/guidance_sweep")
    assert len(table["data"]) == 2
    strip, table, params = client.predict(model="text_base", prompt="thumbs up", steps=3, frames=2,
                                          api_name="/trajectory")
    assert params["steps"] == 3 and Image.open(strip).height == 18 + 2 + 2 * 66   # rows x_t, x0 at 2x, t on top
    assert [row[1] for row in table["data"]][-1] == "the sample (no noise left)"
    table, params = client.predict(image=image, model="class_base", steps=2, references=True, api_name="/likelihood")
    assert params["method"] == "ode" and len(table["data"]) >= 4 and table["headers"] == ["image", "bits/dim"]


def test_bad_inputs_are_clear_errors(client, server, tmp_path):
    from gradio_client.exceptions import AppError
    image = handle(image_file(tmp_path, "RGB"))
    with pytest.raises(AppError, match="each t must be between 0 and 999"):
        client.predict(image=image, times="5000", seed=0, api_name="/forward_process")
    with pytest.raises(AppError, match="prompt is empty"):
        client.predict(model="text_base", prompt="", budgets="2", api_name="/compare_samplers")
    with pytest.raises(AppError, match="hspace-directions --model text_base"):   # the tiny models have none
        client.predict(image=image, model="text_base", attribute="woman", steps=2, api_name="/hspace_edit")
    good_request(client, server)
