"""Stopping long work from outside it: whoever runs a long job (the app's worker thread) sets a
stop check for the code it calls, and every network evaluation asks it (`check`). So every
sampler, DDIM inversion, likelihood integral or h-space edit stops within one step of being
cancelled, without each loop taking a flag. The check lives in a context variable: it belongs
to the thread (context) that set it, never to other requests.

    with stop_when(event.is_set):
        generate(...)            # raises Cancelled at the next network evaluation once event is set
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator


class Cancelled(Exception):
    """The job was stopped from outside (its request was cancelled or its client went away)."""

    def __init__(self, message: str = "the job was cancelled"):
        super().__init__(message)


_should_stop: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("should_stop",
                                                                                            default=None)


@contextlib.contextmanager
def stop_when(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Within the block, `check()` raises Cancelled as soon as `should_stop()` is true."""
    token = _should_stop.set(should_stop)
    try:
        yield
    finally:
        _should_stop.reset(token)


def check() -> None:
    """Raise Cancelled when the running job has been asked to stop; a no-op outside `stop_when`."""
    should_stop = _should_stop.get()
    if should_stop is not None and should_stop():
        raise Cancelled()
