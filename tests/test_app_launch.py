"""Starting `python app.py`: a taken --port is refused before any model loads, and failed logins
back off per address (Gradio alone allows unlimited guesses, which matters behind --share)."""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.test_app import REPO, AppServer


def test_a_taken_port_is_refused_before_the_models_load(tiny_checkpoints):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--checkpoints",
                              str(tiny_checkpoints)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: port {port} on 127.0.0.1 cannot be used"), lines
    assert "models on" not in out.stdout   # nothing was loaded


def login(url: str, user: str, password: str):
    """POST /login: the status and the (case-insensitive) headers."""
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "login", data), timeout=30) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


@pytest.mark.server
def test_failed_logins_back_off(tiny_checkpoints, tmp_path):
    app = AppServer(["--checkpoints", tiny_checkpoints, "--auth", "ann:secret", "--deepfloyd", "none"],
                    tmp_path / "app.log", env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    try:
        assert login(app.url, "ann", "secret")[0] == 200
        from demos.access import LoginBackoff
        for _ in range(LoginBackoff.FREE_FAILURES):
            assert login(app.url, "ann", "guess")[0] == 400
        status, headers = login(app.url, "ann", "guess")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert login(app.url, "ann", "secret")[0] == 429   # no guess is checked while this address waits
        assert app.alive()
    finally:
        app.stop()


def _request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10):
    """(status, body) of a GET (or a POST of `data`), whatever the status."""
    request = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read(2000)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.server
def test_under_auth_every_api_route_needs_the_login(tiny_checkpoints, tmp_path):
    """cancel, reset, heartbeat and the API description (also as embedded in the login page) need
    the login; the back-off holds when X-Forwarded-For changes on every guess."""
    app = AppServer(["--checkpoints", tiny_checkpoints, "--auth", "ann:secret", "--deepfloyd", "none"],
                    tmp_path / "app.log", env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    try:
        body = json.dumps({"session_hash": "abc", "fn_index": 0, "event_id": "x"}).encode()
        for path, data in (("gradio_api/cancel", body), ("gradio_api/reset", body), ("gradio_api/info", None),
                           ("gradio_api/heartbeat/abc", None), ("gradio_api/call/classes", b'{"data": []}'),
                           ("gradio_api/queue/join", body), ("gradio_api/upload", b"")):
            status, _ = _request(app.url + path, data)
            assert status == 401, (path, status)
        page = urllib.request.urlopen(app.url, timeout=30).read().decode()
        assert "window.gradio_api_info" in page and "/text_to_image" not in page and "upscale" not in page
        status, headers = login(app.url, "ann", "secret")   # logged in, the same routes answer
        cookie = "; ".join(c.split(";", 1)[0] for c in headers.get_all("Set-Cookie"))
        status, info = _request(app.url + "gradio_api/info", headers={"Cookie": cookie})
        assert status == 200 and b"named_endpoints" in info
        assert b"/text_to_image" in urllib.request.urlopen(urllib.request.Request(
            app.url, headers={"Cookie": cookie}), timeout=30).read()
        from demos.access import LoginBackoff
        for i in range(LoginBackoff.FREE_FAILURES + 1):
            status, _ = _login_from(app.url, "ann", "guess", f"10.1.2.{i}")
        assert status == 429
        assert _login_from(app.url, "ann", "secret", "10.9.9.9")[0] == 429   # a new header does not help
        assert app.alive()
    finally:
        app.stop()


def _login_from(url: str, user: str, password: str, forwarded_for: str):
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(url + "login", data, {"X-Forwarded-For": forwarded_for})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _attempt(backoff, password: str, seen: list) -> int:
    """One POST /login through the middleware to a stand-in for Gradio's route; the status sent."""
    async def route(scope, receive, send):
        seen.append(password)
        await send({"type": "http.response.start", "status": 200 if password == "secret" else 400, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    backoff.app = route
    scope = {"type": "http", "method": "POST", "path": "/login", "client": ("10.0.0.7", 5000), "headers": []}
    asyncio.run(backoff(scope, receive, send))
    return sent[0]["status"]


def test_the_back_off_doubles_expires_and_a_login_clears_it():
    from demos.access import LoginBackoff
    clock, seen = _Clock(), []
    backoff = LoginBackoff(None, clock=clock)
    for _ in range(LoginBackoff.FREE_FAILURES):
        assert _attempt(backoff, "guess", seen) == 400
    assert backoff.wait_s("10.0.0.7") == 1.0
    assert _attempt(backoff, "secret", seen) == 429 and seen[-1] == "guess"   # refused unchecked
    clock.now += 1.0
    assert _attempt(backoff, "guess", seen) == 400 and backoff.wait_s("10.0.0.7") == 2.0   # doubled
    clock.now += 2.0
    assert _attempt(backoff, "secret", seen) == 200 and backoff.wait_s("10.0.0.7") == 0.0
    assert _attempt(backoff, "guess", seen) == 400 and backoff.wait_s("10.0.0.7") == 0.0   # counted afresh


@pytest.mark.parametrize("path, method", [("/config", "GET"), ("/gradio_api/info", "GET"), ("/login", "GET")])
def test_other_requests_pass_untouched(path, method):
    from demos.access import LoginBackoff
    backoff = LoginBackoff(None)
    backoff.failures["10.0.0.7"] = (99, float("inf"))
    called = []

    async def route(scope, receive, send):
        called.append(scope["path"])

    backoff.app = route
    asyncio.run(backoff({"type": "http", "method": method, "path": path, "client": ("10.0.0.7", 1)}, None, None))
    assert called == [path]

