"""Errors a visitor can read: core's refusals as named gr.Errors with no server path in them, and
the wiring of a run that closes the toasts of earlier failed runs."""
from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator

import gradio as gr

from core import cancel
from core.models.checkpoints import CheckpointError
from demos.jobs import OverBudget

CLOSE_ERROR_TOASTS = ("() => document.querySelectorAll('.toast-body.error [data-testid=toast-close]')"
                      ".forEach(button => button.click())")

MAX_ERROR_CHARS = 300


def error(message: str, title: str) -> gr.Error:
    """A gr.Error whose message starts with its title. Gradio 6.31's page heads every error toast
    "Error", whatever the title (its frontend reads a field the server does not send), so the
    title goes into the text, where the page and API clients both see it. A message that quotes a
    large value is cut to MAX_ERROR_CHARS characters."""
    if len(message) > MAX_ERROR_CHARS:
        message = f"{message[:MAX_ERROR_CHARS - 40]}... (cut: {len(message):,} characters)"
    return gr.Error(f"{title}: {message}", title=title)


def log_refusal(e: gr.Error, where: str) -> None:
    """A named error (bad input, a missing model, a run stopped) as one line on the server's
    console, instead of the traceback Gradio would print: it is the caller's mistake, not a bug.
    Unexpected errors (`_internal`) keep their traceback."""
    e.print_exception = False
    print(f"* refused {where}: {e.message}", file=sys.stderr, flush=True)


def run_on(triggers, fn: Callable, **kwargs):
    """Wire a run: gr.on(triggers, fn, ...) in the queue all runs share (one device), and once it
    succeeds, close the error toasts of earlier failed runs, which Gradio would leave up beside
    the new result."""
    event = gr.on(triggers, fn, concurrency_id="device", **kwargs)
    event.success(None, js=CLOSE_ERROR_TOASTS, queue=False, api_visibility="private")
    return event


_SERVER_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.@+~=-]+/)*([\w.@+~=-]+)")


def public(message: str) -> str:
    """A message for the page: every absolute path in it (core names files in its errors, which
    suits the command line) shortened to its last part, so visitors never see the server's
    folders (the upload folder, the checkpoints, the Hub cache). URLs and ratios are left alone."""
    return _SERVER_PATH.sub(lambda m: m.group(1), message)


def show_note(note: str | None) -> None:
    """A note of core's (a prompt cut to the encoder's context, an empty mask) as a warning toast."""
    if note:
        gr.Warning(public(note), title="Note")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Bad input (core raises ValueError, ImageError, CheckpointError; a missing data file is a
    FileNotFoundError) becomes a gr.Error with core's message; anything else stays a bug."""
    try:
        yield
    except gr.Error:
        raise
    except OverBudget as e:
        raise error(str(e), "Too long") from e
    except cancel.Cancelled as e:
        raise error("the run was stopped before it finished", "Cancelled") from e
    except (ValueError, FileNotFoundError) as e:
        title = "Model unavailable" if isinstance(e, CheckpointError) else "Cannot do that"
        raise error(public(str(e)), title) from e


def excerpt(value, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: an error never echoes a large value back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
