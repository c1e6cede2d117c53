"""The Gradio app as people and scripts use it: `python app.py` started on a free port with tiny
random checkpoints, every endpoint called through gradio_client, bad inputs answered with clear
errors while the server keeps serving, 8 clients at once, a missing model, and --share with no
network."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from core.images import read_parameters

REPO = Path(__file__).resolve().parent.parent
STEPS = dict(steps=2, sr64_steps=2, sr128_steps=2)  # tiny models, few steps: the tests check wiring


# ---- a real server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python app.py ARGS --port PORT` in a subprocess, its output in a log file."""

    def __init__(self, args, log_path: Path, env: dict | None = None, timeout: float = 300):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": "1", **(env or {})}
        full_env.pop("GRADIO_SERVER_PORT", None)
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port),
                                      *map(str, args)], cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env)
        self.startup_s = self._wait(timeout)

    def _wait(self, timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app.py did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:   # stop() closes it: the log is still on disk
            self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def make_client(url: str, download_dir: Path):
    from gradio_client import Client
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(download_dir))


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    app = AppServer(["--checkpoints", tiny_checkpoints], tmp / "app.log", env={"GRADIO_TEMP_DIR": str(tmp / "gradio")})
    print(f"app.py answered after {app.startup_s:.1f} s")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return make_client(server.url, tmp_path_factory.mktemp("downloads"))


# ---- helpers -------------------------------------------------------------------------------------
def rgb_png(path, size: int) -> Image.Image:
    with Image.open(path) as im:
        im.load()
    assert im.format == "PNG" and im.mode == "RGB" and im.size == (size, size), (im.format, im.mode, im.size)
    return im


def text_to_image(client, **kwargs):
    return client.predict(**{"prompt": "thumbs up", **STEPS, **kwargs}, api_name="/text_to_image")


def good_request(client, server) -> None:
    """A small valid generation: the server still serves after a bad request."""
    assert server.alive()
    *_, gallery, parameters = text_to_image(client, size=32, num_images=1, seed=7)
    assert len(gallery) == 1 and parameters["seeds"] == [7]
    rgb_png(gallery[0]["image"], 32)


def image_file(tmp_path: Path, mode: str, size=(100, 100), name: str = "input.png") -> Path:
    color = {"RGB": (200, 40, 40), "RGBA": (200, 40, 40, 128), "L": 90, "LA": (90, 128), "P": 3,
             "CMYK": (0, 200, 200, 0), "I;16": 40000, "1": 1}[mode]
    path = tmp_path / (name if mode != "CMYK" else Path(name).with_suffix(".jpg").name)
    Image.new(mode, size, color).save(path, format="JPEG" if mode == "CMYK" else "PNG")
    return path


# ---- every endpoint ------------------------------------------------------------------------------
def test_every_tab_has_a_named_endpoint(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/text_to_image", "/class_conditional", "/upscale", "/classes"} <= set(named)
    params = [p["parameter_name"] for p in named["/text_to_image"]["parameters"]]
    assert params[:8] == ["prompt", "negative_prompt", "guidance", "sampler", "steps", "seed", "num_images", "size"]


def test_text_to_image_shows_how_the_prompt_was_read(client):
    pictures, words = client.predict(prompt="thumbs up", api_name="/read_prompt")
    assert len(pictures) == 5 and pictures[0]["caption"].startswith("👍 thumbs up (1.00)")
    rgb_png(pictures[0]["image"], 128)
    assert "**Read as**" in words and "Not understood" not in words
    _, words = client.predict(prompt="a zyzzyva giving a thumbs up", api_name="/read_prompt")
    assert "**Not understood**: `zyzzyva`, `giving`" in words and "read as `a a thumbs up`" in words
    assert client.predict(prompt="", api_name="/read_prompt") == ([], "")


def test_text_to_image_says_which_emoji_the_prompt_was_drawn_as(client):
    """The prompt reading "nearest" (the default) draws the name of the emoji a paraphrase is read as
    and says so under the results; "as typed" draws the prompt and says that."""
    kw = dict(prompt="a cat face", size=32, num_images=1, base_model="semantic", decoder_steps=2)
    *_, parameters = text_to_image(client, **kw)
    assert parameters["prompt_reading"] == "nearest" and parameters["prior_prompt"] == "cat face"
    assert parameters["read_as"]["name"] == "cat face"
    pictures, words = client.predict(prompt="a cat face", parameters=parameters, api_name="/read_prompt")
    assert words.startswith("**Drawn as** 🐱 **cat face**") and "`cat face`" in words
    assert pictures[0]["caption"].startswith("🐱 cat face")
    *_, typed = text_to_image(client, prompt_reading="as-typed", **kw)
    assert typed["prompt_reading"] == "as-typed" and "read_as" not in typed and "prior_prompt" not in typed
    _, words = client.predict(prompt="a cat face", parameters=typed, api_name="/read_prompt")
    assert words.startswith("**Drawn as typed**")


def test_text_to_image_full_cascade(client):
    s32, s64, s128, gallery, parameters = text_to_image(client, prompt="woman dancing, dark skin tone", seed=3,
                                                        num_images=2, size=128)
    for path, size in ((s32, 32), (s64, 64), (s128, 128)):
        rgb_png(path, size)
    assert [g["caption"] for g in gallery] == ["seed 3", "seed 4"]
    for item, seed in zip(gallery, (3, 4)):
        stored = read_parameters(rgb_png(item["image"], 128))
        assert stored["prompt"] == "woman dancing, dark skin tone" and stored["seed"] == seed
        assert stored["size"] == 128 and stored["base"]["steps"] == 2 and len(stored["sr"]) == 2
    assert parameters["seeds"] == [3, 4]


def test_text_to_image_stops_at_size_32(client):
    s32, s64, s128, gallery, parameters = text_to_image(client, size=32, num_images=1, negative_prompt="red",
                                                        dynamic_thresholding=False, sampler="euler")
    rgb_png(s32, 32)
    assert s64 is None and s128 is None
    stored = read_parameters(rgb_png(gallery[0]["image"], 32))
    assert stored["negative_prompt"] == "red" and stored["base"]["threshold"] is None
    assert stored["base"]["sampler"] == "euler" and stored["sr"] == []


def test_same_seed_same_image(client):
    a = text_to_image(client, size=32, num_images=1, seed=11)[3][0]["image"]
    b = text_to_image(client, size=32, num_images=1, seed=11)[3][0]["image"]
    assert Image.open(a).tobytes() == Image.open(b).tobytes()


def test_classes_and_class_conditional(client):
    from tests.tiny import CLASSES
    assert client.predict(api_name="/classes") == CLASSES
    grid, gallery, parameters = client.predict(label="cat-face", steps=2, num_images=3, seed=5, size=32,
                                               api_name="/class_conditional")
    assert len(gallery) == 3
    for item in gallery:
        stored = read_parameters(rgb_png(item["image"], 32))
        assert stored["label"] == "cat-face" and stored["prompt"] is None
    assert Image.open(grid).size == (96, 32)  # 3 samples side by side
    _, gallery, _ = client.predict(label="hand-fingers-open", steps=2, num_images=1, size=64, sampler="dpmpp-2m",
                                   api_name="/class_conditional")
    rgb_png(gallery[0]["image"], 64)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"])
def test_upscale_any_mode_gives_rgb(client, tmp_path, mode):
    from gradio_client import handle_file
    low, bicubic, result, parameters = client.predict(image=handle_file(str(image_file(tmp_path, mode))), factor=4,
                                                      size=128, steps=2, seed=1, api_name="/upscale")
    rgb_png(low, 32)
    rgb_png(bicubic, 128)
    stored = read_parameters(rgb_png(result, 128))
    assert stored == parameters and stored["factor"] == 4 and stored["command"] == "upscale"


def test_upscale_2x_and_non_square(client, tmp_path):
    from gradio_client import handle_file
    path = image_file(tmp_path, "RGB", size=(300, 120), name="wide.png")
    low, bicubic, result, parameters = client.predict(image=handle_file(str(path)), factor=2, size=64, steps=2,
                                                      api_name="/upscale")
    rgb_png(low, 32)
    rgb_png(result, 64)
    assert parameters["image"] == "wide.png"
    low, _, result, _ = client.predict(image=handle_file(str(path)), factor=2, size=128, steps=2, noise=0,
                                       sampler="heun", api_name="/upscale")
    rgb_png(low, 64)
    rgb_png(result, 128)


def test_both_bases_from_the_text_and_class_tabs(client, tiny_checkpoints):
    """The tabs default to the semantic base (prior -> DiffAE decoder) when it is there, offer the
    pixel base, and draw what core draws with the same settings."""
    import torch

    from core.cascade import generate
    from core.images import open_image, pil_to_tensor
    from core.models.modelset import ModelSet
    from core.pipeline import StageSettings
    from core.semantic import PRIOR_DEFAULTS

    s32, _, _, gallery, parameters = text_to_image(client, prompt="red apple", size=32, num_images=1, seed=2,
                                                   decoder_steps=3)
    assert parameters["base_model"] == "semantic" and parameters["decoder_steps"] == 3
    assert parameters["base"]["sampler"] == PRIOR_DEFAULTS.sampler   # the tab starts at the prior's defaults
    ours = generate(ModelSet(tiny_checkpoints, "cpu"), prompt="red apple", size=32, seed=2, base_model="semantic",
                    decoder_steps=3, base=StageSettings(sampler=PRIOR_DEFAULTS.sampler, steps=2))
    served = pil_to_tensor(open_image(gallery[0]["image"]))
    assert (served - ours.final).abs().max() <= 2 / 127.5   # the same image, up to 8-bit rounding
    *_, pixel_params = text_to_image(client, prompt="red apple", size=32, num_images=1, seed=2, base_model="pixel")
    assert pixel_params["base_model"] == "pixel" and "decoder_steps" not in pixel_params
    _, gallery, parameters = client.predict(label="cat-face", steps=2, num_images=2, size=32, base_model="semantic",
                                            decoder_steps=2, api_name="/class_conditional")
    assert parameters["base_model"] == "semantic" and len(gallery) == 2
    assert read_parameters(rgb_png(gallery[1]["image"], 32))["label"] == "cat-face"
    assert not torch.equal(pil_to_tensor(open_image(gallery[0]["image"])), served)


# ---- bad input: a clear error, and the server keeps serving ---------------------------------------
BAD_TEXT = {
    "empty prompt": (dict(prompt=""), "prompt is empty"),
    "blank prompt": (dict(prompt="   "), "prompt is empty"),
    "steps 0": (dict(steps=0), "less than minimum value 1"),
    "steps 1000": (dict(steps=1000), "greater than maximum value 100"),
    "guidance 100": (dict(guidance=100), "greater than maximum value 15"),
    "negative seed": (dict(seed=-1), "less than minimum value 0"),
    "num images 50": (dict(num_images=50), "greater than maximum value 8"),
    "noise level 5000": (dict(sr64_noise=5000), "greater than maximum value 999"),
    "unknown sampler": (dict(sampler="plms"), "not in the list of choices"),
    "unknown size": (dict(size=256), "not in the list of choices"),
    "unknown base": (dict(base_model="latent"), "not in the list of choices"),
    "decoder steps 0": (dict(decoder_steps=0), "less than minimum value 1"),
}


@pytest.mark.parametrize("case", list(BAD_TEXT))
def test_bad_text_input_is_a_clear_error(client, server, case):
    from gradio_client.exceptions import AppError
    kwargs, message = BAD_TEXT[case]
    with pytest.raises(AppError, match=message):
        text_to_image(client, **kwargs)
    good_request(client, server)


def test_unknown_class_is_a_clear_error(client, server):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="unicorn.*not in the list of choices"):
        client.predict(label="unicorn", steps=2, api_name="/class_conditional")
    good_request(client, server)


def _bad_image(tmp_path: Path, kind: str) -> Path:
    if kind == "corrupt":
        path = tmp_path / "corrupt.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not the rest of a png" * 10)
        return path
    if kind == "text file":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
        return path
    side = {"1x1": 1, "5000x5000": 5000}[kind]
    return image_file(tmp_path, "RGB", size=(side, side), name=f"{kind}.png")


@pytest.mark.parametrize("kind, message", [
    ("1x1", "image is 1x1; each side must be between 8 and 4096"),
    ("5000x5000", "image is 5000x5000; each side must be between 8 and 4096"),
    ("corrupt", "corrupt.png cannot be read as an image"),
    ("text file", "notes.txt cannot be read as an image"),
])
def test_bad_image_is_a_clear_error(client, server, tmp_path, kind, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match=message):
        client.predict(image=handle_file(str(_bad_image(tmp_path, kind))), steps=2, api_name="/upscale")
    good_request(client, server)


@pytest.mark.parametrize("kwargs, message", [
    (dict(factor=4, size=64), "4x needs output size 128"),
    (dict(factor=3), "not in the list of choices"),
    (dict(steps=101), "greater than maximum value 100"),
])
def test_bad_upscale_settings_are_clear_errors(client, server, tmp_path, kwargs, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match=message):
        client.predict(image=handle_file(str(image_file(tmp_path, "RGB"))), **{"steps": 2, **kwargs},
                       api_name="/upscale")
    good_request(client, server)


# ---- many users at once --------------------------------------------------------------------------
def test_eight_clients_at_once(server, tmp_path):
    from gradio_client import handle_file
    example = str(image_file(tmp_path, "RGBA"))
    results, errors = {}, []

    def user(i: int) -> None:
        try:
            c = make_client(server.url, tmp_path / f"client{i}")
            if i % 3 == 0:
                out = c.predict(label="cat-face", steps=2, num_images=1, seed=i, size=32, api_name="/class_conditional")
                results[i] = (out[1][0]["image"], 32)
            elif i % 3 == 1:
                out = text_to_image(c, prompt=f"prompt {i}", size=64, num_images=1, seed=i)
                results[i] = (out[3][0]["image"], 64)
            else:
                out = c.predict(image=handle_file(example), steps=2, seed=i, api_name="/upscale")
                results[i] = (out[2], 128)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    for i, (path, size) in results.items():
        assert read_parameters(rgb_png(path, size))["seed"] == i


# ---- start-up: missing model, --share with no network, bad flags ---------------------------------
@pytest.fixture(scope="module")
def checkpoints_without_sr128(tiny_checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("partial") / "checkpoints"
    shutil.copytree(tiny_checkpoints, root, ignore=lambda d, names: ["sr128"] if Path(d) == Path(tiny_checkpoints)
                    else [])
    return root


@pytest.mark.server
def test_share_without_network_and_a_missing_model(checkpoints_without_sr128, tmp_path):
    """--share with no network: one line says there is no link, the app keeps serving locally;
    sr128 missing: the app starts, says so, and everything that does not need sr128 works."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    app = AppServer(["--checkpoints", checkpoints_without_sr128, "--share", "--auth", "ann:secret"],
                    tmp_path / "app.log", env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    try:
        from gradio_client import Client
        deadline = time.monotonic() + 120  # the share attempt runs after the page first answers
        while "share link" not in app.log() and "public URL" not in app.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        log = app.log()
        share_lines = [line for line in log.splitlines() if "share" in line.lower() or "public url" in line.lower()]
        if any("public URL" in line for line in share_lines):
            pytest.skip("this machine has network access, so the share link was created")
        assert len(share_lines) == 1, log
        assert share_lines[0].startswith("* No share link") and app.url in share_lines[0], log
        assert "unavailable: sr128" in log
        with pytest.raises(ValueError):  # auth is on
            make_client(app.url, tmp_path / "anon")
        c = Client(app.url, verbose=False, analytics_enabled=False, auth=("ann", "secret"),
                   download_files=str(tmp_path / "dl"))
        *_, gallery, _ = text_to_image(c, size=64, num_images=1)
        rgb_png(gallery[0]["image"], 64)
        with pytest.raises(AppError, match="'sr128' is unavailable"):
            text_to_image(c, size=128)
        with pytest.raises(AppError, match="'sr128' is unavailable"):
            c.predict(image=handle_file(str(image_file(tmp_path, "RGB"))), factor=4, api_name="/upscale")
        _, _, result, _ = c.predict(image=handle_file(str(image_file(tmp_path, "RGB"))), factor=2, size=64,
                                    steps=2, api_name="/upscale")
        rgb_png(result, 64)
        assert app.alive()
    finally:
        app.stop()


def test_share_needs_auth():
    """Refused before anything loads: a share link without a login would open the machine."""
    out = subprocess.run([sys.executable, "app.py", "--share"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--auth USER:PASS" in out.stderr and "--share-without-auth" in out.stderr
    out = subprocess.run([sys.executable, "app.py", "--auth", "nopassword"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "USER:PASS" in out.stderr


def test_bad_checkpoints_location_is_one_line(tmp_path, capsys):
    import app
    assert app.main(["--checkpoints", str(tmp_path / "nowhere"), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoints") and "nowhere" in err and len(err.splitlines()) == 1


def test_missing_models_are_named_in_the_tabs(tmp_path):
    """In-process: with an empty checkpoints folder the app builds, each tab names what is missing,
    and each function answers with a gr.Error naming the model."""
    import gradio as gr

    import app
    from demos import class_conditional, common, super_resolution, text_to_image
    (tmp_path / "empty").mkdir()
    models = common.Models.load(tmp_path / "empty", "cpu")
    assert set(models.errors) == set(common.MODEL_NAMES)
    demo = app.build_app(models)
    markdown = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    for name in common.MODEL_NAMES:
        assert f"`{name}`" in markdown
    with pytest.raises(gr.Error, match="'text_base' is unavailable"):
        list(text_to_image.make_fn(models)("thumbs up", "", 3.0, "ddim", 2, 0, 1, 32, True, 0.995, 0.0,
                                           2, 50, 2, 50))
    run, classes = class_conditional.make_fns(models)
    assert classes() == []
    with pytest.raises(gr.Error, match="'class_base' is unavailable"):
        list(run("cat-face", 3.0, "ddim", 2, 0, 1, 32, True))
    with pytest.raises(gr.Error, match="'sr64' is unavailable"):
        list(super_resolution.make_fn(models)(str(common.example_images()[0]), 2, 64, "ddim", 2, 50, 0))


def test_decoder_guidance_reaches_the_semantic_base(client):
    """The text and class tabs' "Decoder guidance" is the semantic base's (the DiffAE decoder's
    classifier-free guidance on the code), stored with the result; the pixel base ignores it."""
    *_, gallery, parameters = text_to_image(client, size=32, num_images=1, base_model="semantic",
                                            decoder_guidance=2.0)
    assert parameters["decoder_guidance"] == 2.0
    assert read_parameters(rgb_png(gallery[0]["image"], 32))["decoder_guidance"] == 2.0
    *_, parameters = text_to_image(client, size=32, num_images=1, base_model="pixel", decoder_guidance=2.0)
    assert "decoder_guidance" not in parameters
    _, _, parameters = client.predict(label="cat-face", steps=2, num_images=1, size=32, base_model="semantic",
                                      decoder_guidance=3.0, api_name="/class_conditional")
    assert parameters["decoder_guidance"] == 3.0
