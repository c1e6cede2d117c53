"""What callers may do to the server: ASGI middleware that `app.py` installs.

- `EventCancel` (always): Gradio 6.31's /cancel stops every job of the caller's session on that
  endpoint, so a client that cancels its queued job B also kills its running job A. It answers
  /cancel itself, for the one event named.

Under `--auth`:
- `AuthGate`: Gradio 6.31 leaves some routes open without the login (`/gradio_api/cancel`, `/reset`,
  `/heartbeat/...`) and embeds the whole API description in the login page. Without a valid login
  cookie, every `/gradio_api/` route but the theme and start-up ones is refused (HTTP 401), and the
  page's embedded API description is emptied.
- `LoginBackoff`: a growing wait after repeated failed logins from one address. The address is the
  connecting peer's; uvicorn takes it from X-Forwarded-For only for the proxies that
  `--forwarded-allow-ips` names (none by default), so a caller cannot dodge the wait by changing
  that header.
"""
from __future__ import annotations

import asyncio
import json
import math
import re
import time

OPEN_API_PATHS = ("/gradio_api/theme.css", "/gradio_api/startup-events")   # what the login page loads
EMBEDDED_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)
EMPTY_API_INFO = b"window.gradio_api_info = " + json.dumps(
    {"named_endpoints": {}, "unnamed_endpoints": {}}).encode() + b";</script>"


def logged_in(scope) -> bool:
    """Whether the request carries a login cookie of this Gradio app (`app.tokens`)."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return False
    cookies = {}
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                cookies[key] = val
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return token is not None and token in tokens


async def _refuse(scope, receive, send, status: int, detail: str, headers: dict | None = None) -> None:
    from starlette.responses import JSONResponse
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


async def _json_body(receive) -> dict | None:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
        if sum(map(len, chunks)) > 10_000:
            return None
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class EventCancel:
    """POST /gradio_api/cancel for one event: Gradio's own handler, but cancelling only the task of
    the event named (Gradio cancels every task of the session and function)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or \
                not scope["path"].rstrip("/").endswith("/gradio_api/cancel"):
            return await self.app(scope, receive, send)
        body = await _json_body(receive)
        fields = ("session_hash", "fn_index", "event_id")
        if body is None or not all(isinstance(body.get(k), (str, int)) for k in fields):
            return await _refuse(scope, receive, send, 422, "a cancel names session_hash, fn_index and event_id")
        from gradio.server_messages import ProcessCompletedMessage
        from gradio.utils import safe_aclose_iterator
        session, event = str(body["session_hash"]), str(body["event_id"])
        name = f"{session}_{body['fn_index']}<gradio-sep>{event}"   # gradio.utils.set_task_name
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == name]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        app = scope["app"]
        queue = app.get_blocks()._queue
        session_open = session in queue.pending_messages_per_session
        running = event in queue.pending_event_ids_session.get(session, {})
        await queue.remove_from_queue(event)
        if session_open and running:   # complete the event, so that its client stops waiting
            queue.pending_messages_per_session[session].put_nowait(
                ProcessCompletedMessage(output={}, success=True, event_id=event))
        if event in app.iterators:
            async with app.lock:
                try:
                    await safe_aclose_iterator(app.iterators[event])
                except Exception:  # noqa: BLE001, S110 - as Gradio's own handler: the iterator is gone either way
                    pass
                del app.iterators[event]
                app.iterators_to_reset.add(event)
        from starlette.responses import JSONResponse
        await JSONResponse({"success": True})(scope, receive, send)


class AuthGate:
    """Refuses every `/gradio_api/` route to a caller without the login (but the login page's own
    assets), and empties the API description the login page would embed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or logged_in(scope):
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if path.startswith("/gradio_api/") and path.rstrip("/") not in OPEN_API_PATHS:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _refuse(scope, receive, send, 401, "Not authenticated: log in first")
        if scope["type"] != "http" or scope["method"] != "GET" or path != "/":
            return await self.app(scope, receive, send)
        start, body = {}, []

        async def buffered(message):   # the login page: hold it, drop the API description, send it
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = EMBEDDED_API_INFO.sub(lambda m: EMPTY_API_INFO, b"".join(body))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(page)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, buffered)


class LoginBackoff:
    """ASGI middleware: Gradio's /login allows unlimited guesses, which matters behind --share. After
    FREE_FAILURES failed logins from one address, that address's next login attempts are refused
    (HTTP 429, saying how long to wait) for a time that doubles with each further failure, up to
    MAX_WAIT_S; a successful login clears its count. Behind a tunnel every visitor may share one
    address: then the wait is everyone's, which still bounds the guessing."""
    FREE_FAILURES = 5
    MAX_WAIT_S = 300.0

    def __init__(self, app, clock=time.monotonic):
        self.app, self.clock = app, clock
        self.failures: dict[str, tuple[int, float]] = {}   # address -> (failed logins, refused until)

    def wait_s(self, address: str) -> float:
        return max(0.0, self.failures.get(address, (0, 0.0))[1] - self.clock())

    def record(self, address: str, succeeded: bool) -> None:
        if succeeded:
            self.failures.pop(address, None)
            return
        count = self.failures.get(address, (0, 0.0))[0] + 1
        wait = 0.0 if count < self.FREE_FAILURES else min(2.0 ** (count - self.FREE_FAILURES), self.MAX_WAIT_S)
        self.failures[address] = (count, self.clock() + wait)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        address = (scope.get("client") or ("unknown",))[0]
        wait = self.wait_s(address)
        if wait > 0:
            return await _refuse(scope, receive, send, 429, f"Too many failed logins: try again in {math.ceil(wait)} s",
                                 {"Retry-After": str(math.ceil(wait))})
        status = {}

        async def watched(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watched)
        self.record(address, succeeded=status.get("code") == 200)
