"""Running a tab's work with progress: a job on a worker thread whose sampler callbacks become the
progress bar and live previews, stopped when its request is cancelled or runs past its budget."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import gradio as gr
import torch
from PIL import Image

from core import cancel
from core.images import image_grid

PREVIEW_EVERY_S = 0.4  # the live x0 preview is sent at most this often

JOB_THREAD = "diffusion-job"  # the name of every job's worker thread

REQUEST_BUDGET_S = 300.0   # the longest one request may compute (app.py --request-budget)


class OverBudget(cancel.Cancelled):
    """A job stopped because it ran past the time one request may use."""


class Job:
    """Runs `work(callback)` on a worker thread: iterating yields the sampler callback dicts (step,
    total, t, x, x0, stage) as they come, and None whenever none came for PREVIEW_EVERY_S; then
    `result` holds what `work` returned. An exception in `work` is raised by the iteration.
    Leaving the iteration early (Gradio closes a generator when its request is cancelled or its
    client goes away) stops the worker at its next network evaluation (core.cancel), and so does
    running past `budget_s` (REQUEST_BUDGET_S): then the iteration raises OverBudget. The budget
    also bounds a job whose client never reads its results (a /call POST without its stream)."""

    def __init__(self, work: Callable[[Callable[[dict], None]], object], budget_s: float | None = None):
        self.result = None
        self.budget_s = REQUEST_BUDGET_S if budget_s is None else budget_s
        self._deadline = time.monotonic() + self.budget_s
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name=JOB_THREAD, daemon=True)
        self._thread.start()

    def _callback(self, info: dict) -> None:
        cancel.check()
        self._events.put(("step", info))

    def _over_budget(self) -> bool:
        return time.monotonic() > self._deadline

    def _run(self, work) -> None:
        try:
            with cancel.stop_when(lambda: self._cancel.is_set() or self._over_budget()):
                result = work(self._callback)
            self._events.put(("done", result))
        except cancel.Cancelled as e:
            over = not self._cancel.is_set() and self._over_budget()
            self._events.put(("error", OverBudget(f"the run took longer than the {self.budget_s:g} s one request "
                                                  "may use; ask for less (fewer images, steps or budgets)")
                              if over else e))
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread
            self._events.put(("error", e))

    def __iter__(self) -> Iterator[dict | None]:
        try:
            while True:
                try:
                    kind, value = self._events.get(timeout=PREVIEW_EVERY_S)
                except queue.Empty:
                    yield None
                    continue
                if kind == "step":
                    yield value
                elif kind == "done":
                    self.result = value
                    return
                else:
                    raise value
        finally:
            self._cancel.set()


def follow(job: Job, outputs: int, on_step: Callable[[dict], dict | None] | None = None):
    """Relay a running job from a Gradio generator function: `result = yield from follow(...)`.
    `on_step(info)` may return {output index: new value} (a live preview); the first such update
    also clears the other outputs (the last run's results), later ones leave them. Between
    updates, at least every PREVIEW_EVERY_S, it yields no change, so that Gradio gets the chance
    to close the generator when the request is cancelled or its client goes away, which stops
    the job. Returns what the job's work returned."""
    cleared, last = False, time.monotonic()
    for info in job:
        update = on_step(info) if (info is not None and on_step is not None) else None
        now = time.monotonic()
        if update is not None:
            rest = gr.skip() if cleared else None
            cleared, last = True, now
            values = tuple(update.get(i, rest) for i in range(outputs))
            yield values if outputs > 1 else values[0]
        elif now - last >= PREVIEW_EVERY_S:
            last = now
            yield no_change(outputs)
    return job.result


def wait_for(work: Callable[[], object], outputs: int):
    """`result = yield from wait_for(work, outputs)`: `work()` (no progress of its own) on a Job,
    relayed by `follow`, so that cancelling the request stops it."""
    return (yield from follow(Job(lambda callback: work()), outputs))


def no_change(outputs: int):
    """What a generator yields to leave its `outputs` outputs as they are."""
    return (gr.skip(),) * outputs if outputs > 1 else gr.skip()


class StageProgress:
    """The progress bar of a job's sampler callbacks, and when to preview. With `stage_steps`
    ({stage: steps}) one bar runs over all the stages; without, each stage has its own bar of the
    total its callbacks give (SDEdit's, for one, depends on the strength)."""

    def __init__(self, progress: gr.Progress, labels: dict, stage_steps: dict[int, int] | None = None):
        self.progress, self.labels = progress, labels
        self.offsets, self.total = {}, None
        if stage_steps is not None:
            self.total = 0
            for stage, steps in stage_steps.items():
                self.offsets[stage] = self.total
                self.total += steps
        self._last_preview = 0.0

    def update(self, info: dict) -> bool:
        """Advance the bar; True when a preview is due (throttled, and at each stage's end)."""
        stage = info.get("stage", next(iter(self.offsets), None))
        step = f"step {info['step'] + 1}/{info['total']}"
        if self.total is None:
            self.progress((info["step"] + 1, info["total"]), desc=f"{self.labels.get(stage, 'sampling')}: {step}",
                          unit="steps")
        else:
            done = min(self.offsets.get(stage, 0) + info["step"] + 1, self.total)
            self.progress((done, self.total), desc=f"{self.labels.get(stage, stage)}: {step}", unit="steps")
        now = time.monotonic()
        if now - self._last_preview >= PREVIEW_EVERY_S or info["step"] + 1 >= info["total"]:
            self._last_preview = now
            return True
        return False


def stream(work: Callable[[Callable[[dict], None]], object], outputs: int, progress: gr.Progress,
           labels: dict, show: Callable[[dict], dict], stage_steps: dict[int, int] | None = None):
    """`result = yield from stream(...)`: `work(callback)` on a Job, its progress on one bar
    (`StageProgress` of `labels` and `stage_steps`) and, whenever a preview is due, the outputs
    `show(info)` returns ({output index: value}); returns what `work` returned."""
    bar = StageProgress(progress, labels, stage_steps)
    return (yield from follow(Job(work), outputs, lambda info: show(info) if bar.update(info) else None))


def preview(x0: torch.Tensor, limit: int | None = 1) -> Image.Image:
    """The predicted x0 of the first sample (or a grid of the first `limit`) as an image."""
    return image_grid(x0.detach()[:limit].float().clamp(-1, 1))
