"""A caller cannot make the server read its files: every file argument of every endpoint is taken
only from this server's uploads (or its examples), whatever the payload's shape (Gradio checks
only payloads with its "meta" marker), and the refusal is the same whether the path exists or not.
Runs on the server of tests/test_app.py (tiny random checkpoints)."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from demos.common import NOT_UPLOADED
from tests.test_app import client, good_request, server  # noqa: F401 - fixtures
from tests.test_app_ux import call_raw, default_arguments, endpoints

FILE_COMPONENTS = ("Image", "ImageEditor", "File", "Gallery")


def file_arguments(client) -> dict[str, list[int]]:
    """{endpoint: indices of its file arguments}."""
    found = {}
    for name, parameters in endpoints(client).items():
        idx = [i for i, p in enumerate(parameters) if p.get("component") in FILE_COMPONENTS]
        if idx:
            found[name] = idx
    return found


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    """A PNG on the server's disk that was never uploaded (outside Gradio's upload folder)."""
    path = tmp_path_factory.mktemp("private") / "secret.png"
    Image.new("RGB", (40, 40), (12, 34, 56)).save(path)
    return path


def payloads(path: str, editor: bool) -> list:
    """The shapes a file argument can take over HTTP, each naming `path`."""
    plain = [{"path": path}, {"path": path, "meta": {"_type": "gradio.FileData"}},
             {"path": path, "orig_name": "cat.png", "url": None, "size": 10, "mime_type": "image/png"}]
    if not editor:
        return plain
    return [{"background": p, "layers": [], "composite": p} for p in plain] + [
        {"background": None, "layers": [plain[0]], "composite": plain[1]}]


def test_every_endpoint_refuses_a_file_that_was_never_uploaded(client, server, secret, tmp_path):
    uploads = tmp_path / "gradio"   # the app's GRADIO_TEMP_DIR is a sibling of this folder in other runs:
    targets = {"a server PNG": str(secret),                    # an existing image,
               "a missing file": str(secret.with_name("missing.png")),   # a path that does not exist,
               "a folder": str(secret.parent),                 # a folder,
               "a system file": "/etc/passwd",                 # a file that is no image,
               "an escape from the uploads": str(uploads / ".." / ".." / secret.parent.name / secret.name)}
    found = file_arguments(client)
    assert {"/upscale", "/sdedit", "/colorize", "/inpaint", "/reconstruct", "/edit"} <= set(found), found
    all_parameters = endpoints(client)
    checked = 0
    for name, indices in found.items():
        parameters = all_parameters[name]
        for i in indices:
            editor = parameters[i]["component"] == "ImageEditor"
            for what, path in targets.items():
                for payload in payloads(path, editor)[:2 if what != "a server PNG" else None]:
                    data = default_arguments(parameters)
                    data[i] = payload
                    event, answer = call_raw(server, name, data)
                    assert event == "error", (name, what, payload, answer)
                    message = answer["error"]
                    assert message and NOT_UPLOADED in message, (name, what, message)
                    assert path not in message and "Error" not in message.split(":", 1)[1], (name, what, message)
                    checked += 1
    assert checked >= 60, checked
    good_request(client, server)


def test_the_refusal_does_not_tell_whether_a_path_exists(client, server, secret):
    parameters = endpoints(client)["/upscale"]
    answers = []
    for path in (str(secret), str(secret.with_name("missing.png")), "/etc/shadow", "/"):
        data = default_arguments(parameters)
        data[0] = {"path": path}
        answers.append(call_raw(server, "/upscale", data))
    assert all(a == answers[0] for a in answers), answers


def test_uploads_and_examples_still_work(client, server, tmp_path):
    """The check keeps what a user does: an upload through the client, and an uploaded file's path
    sent again (the way the page sends an earlier result back)."""
    from gradio_client import handle_file
    path = tmp_path / "mine.png"
    Image.new("RGB", (48, 48), (200, 40, 40)).save(path)
    low, _, result, parameters = client.predict(image=handle_file(str(path)), factor=2, size=64, steps=2,
                                                api_name="/upscale")
    assert Image.open(result).size == (64, 64)
    assert json.dumps(parameters)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_huge_images_are_refused_from_their_header(client, server, tmp_path):
    """Five 9000x9000 PNGs (a few hundred KB each, 81 MB once decoded) are refused in one line before
    anything decodes them, so the server's memory stays where it was."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from tests.test_cli import bomb_png
    bomb = bomb_png(tmp_path / "huge.png", 9000)
    good_request(client, server)
    before = rss_mb(server.proc.pid)
    for _ in range(5):
        with pytest.raises(AppError) as raised:
            client.predict(image=handle_file(str(bomb)), factor=2, size=64, steps=2, api_name="/upscale")
        assert "the uploaded image is 9000x9000; each side must be between" in raised.value.message
    assert rss_mb(server.proc.pid) - before < 50
    good_request(client, server)


def test_memory_stays_flat_over_many_new_sessions(client, server):
    """Each /call request is a new session; Gradio keeps per-session state for 10,000 sessions by
    default (about 0.8 MB each); the app keeps 128. After a warm-up of 150, 300 more sessions grow the
    server by less than 100 MB (Gradio's default: about 240 MB)."""
    for _ in range(150):
        call_raw(server, "/classes", [])
    before = rss_mb(server.proc.pid)
    for _ in range(300):
        event, _ = call_raw(server, "/classes", [])
        assert event == "complete"
    grown = rss_mb(server.proc.pid) - before
    print(f"300 new sessions: RSS {before:.0f} MB -> +{grown:.1f} MB")
    assert grown < 100


BAD_VALUES = [None, "\ud800", "x" * 100_000]   # and 10**9 for numbers


def test_a_bad_input_sweep_over_every_endpoint_gets_named_short_errors(client, server):
    """Every argument of every endpoint given values it cannot take: each answer is a result or an
    error with a message (never null) of a few hundred characters at most (no echo of a large value)."""
    import time
    start, answers, errors = time.monotonic(), 0, 0
    for name, parameters in endpoints(client).items():
        for i, p in enumerate(parameters):
            numeric = p["python_type"]["type"] in ("float", "int")
            for bad in BAD_VALUES + ([10**9] if numeric else []):
                data = default_arguments(parameters)
                data[i] = bad
                event, answer = call_raw(server, name, data)
                answers += 1
                if event == "error":
                    errors += 1
                    message = answer.get("error")
                    assert message, (name, p["parameter_name"], excerpt_of(bad), answer)
                    assert len(message) < 400, (name, p["parameter_name"], message[:500])
    print(f"{answers} calls, {errors} errors, {time.monotonic() - start:.0f} s")
    assert errors > answers // 2
    good_request(client, server)


def excerpt_of(value) -> str:
    text = repr(value)
    return text[:60]
