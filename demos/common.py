"""What every tab shares: the models (loaded once, read-only), ZeroGPU, friendly errors, a
worker that turns the sampler callback into progress and live previews, result PNGs that
carry their parameters, and example inputs made offline.

Import this module before anything that imports torch: on a ZeroGPU Space `spaces` has to
be imported before CUDA is initialised.
"""
from __future__ import annotations

try:  # Hugging Face ZeroGPU; absent everywhere else
    import spaces
except ImportError:
    spaces = None

import contextlib
import functools
import inspect
import json
import math
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw

from core import cancel
from core.cascade import base_defaults
from core.data.emoji import IMAGES_FILE, RECORDS_FILE, default_cache_dir, load_font, parse_emoji_test, render_emoji
from core.diffae import MAX_DECODER_GUIDANCE, fresh_noise_guidance
from core.images import ImageError, ImageSizeError, check_side, image_grid, image_size, open_image, save_png
from core.models.checkpoints import CheckpointError
from core.models.modelset import ModelSet
from core.semantic import DECODER_SAMPLER, DECODER_STEPS, decoder_sampling

MODEL_NAMES = ("clip", "text_base", "class_base", "sr64", "sr128", "palette", "diffae", "prior", "noisy_classifier",
               "code_classifier", "code_matcher")
BASE_CHOICES = {"semantic: prior over DiffAE's code → DiffAE decoder": "semantic",
                "pixel: a 32×32 UNet on pixels": "pixel"}
WORK_DIR = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "diffusion-hub"
OUTPUT_DIR = WORK_DIR / "outputs"
EXAMPLE_DIR = WORK_DIR / "examples"
OUTPUT_MAX_AGE_S = 3600
PREVIEW_EVERY_S = 0.4  # the live x0 preview is sent at most this often
PIXELATED = "pixelated"  # CSS class: small images scaled up without blur
STAGE = "stage"  # CSS class: an output image that fills its box, whatever its resolution
RESULTS = "results"  # CSS class: a gallery of results, each shown at most 256 px (2x of 128), one or many
TRUE_SIZE = "true-size"  # CSS class: an image shown at its own size (a labelled grid), shrunk only to fit
CSS = (f".{PIXELATED} img {{ image-rendering: pixelated; }}\n"
       f".{STAGE} img {{ width: 100%; height: 100%; object-fit: contain; }}\n"
       # Gradio gives a lone image the gallery's whole width (700 px for a 128 px emoji): fixed-size cells instead
       f".{RESULTS} .grid-container {{ grid-template-columns: repeat(auto-fill, minmax(96px, 256px)) !important; "
       "grid-template-rows: none !important; grid-auto-rows: auto !important; }\n"
       f".{RESULTS} .thumbnail-item {{ aspect-ratio: 1 / 1; }}\n"
       # below the box's label, which Gradio draws over the image's top-left corner (the grid's column names)
       f".{TRUE_SIZE} img {{ width: auto !important; height: auto !important; max-width: 100%; "
       "margin-top: 30px; }")
MAX_SEED = 2**32 - 1


def gpu(fn: Callable, duration: int = 120) -> Callable:
    """`spaces.GPU` on a ZeroGPU Space (a GPU is attached for each call), a no-op elsewhere."""
    return spaces.GPU(duration=duration)(fn) if spaces is not None else fn


# ---- models ------------------------------------------------------------------------------------
class Models:
    """The app's ModelSet, every model loaded at start-up, and for each model that could not be
    loaded the reason, so one missing model disables only what needs it."""

    def __init__(self, model_set: ModelSet, errors: dict[str, str], loaded: Sequence[str] = (), deepfloyd=None,
                 location: str | None = None):
        self.set = model_set
        self.errors = {name: public(why) for name, why in errors.items()}
        self.names = list(loaded)
        self.deepfloyd = deepfloyd  # a core.deepfloyd.DeepFloydSet (loads on first use), or None: not offered
        self.location = location or Path(model_set.root).name  # what the page says: never the server's path

    @classmethod
    def load(cls, checkpoints: str | os.PathLike | None = None, device: str = "auto", deepfloyd=None) -> Models:
        """Load every model under `checkpoints` (a folder or Hub repo id; None: ./checkpoints).
        An unusable `checkpoints` or device raises CheckpointError / ValueError; an unusable
        model is recorded in `errors` and the others still load. `deepfloyd`: a DeepFloydSet
        offered beside them (checked, not loaded)."""
        model_set = ModelSet(checkpoints, device)
        errors: dict[str, str] = {}
        loaded: list[str] = []
        names = list(MODEL_NAMES)
        for name in names:
            try:
                model = model_set.get(name)
            except Exception as e:  # noqa: BLE001 - any broken checkpoint must leave the others usable
                errors[name] = str(e) or type(e).__name__
                continue
            loaded.append(name)
            encoder = getattr(model.config, "text_encoder", None) if name == "text_base" else None
            if encoder and encoder not in names:
                names.append(encoder)
        given = Path(str(checkpoints)).expanduser() if checkpoints is not None else None
        location = str(checkpoints) if given is not None and not given.is_dir() else None  # a Hub repo id as given
        return cls(model_set, errors, loaded, deepfloyd, location)

    @property
    def device(self) -> torch.device:
        return self.set.device

    @property
    def root(self) -> Path:
        return Path(self.set.root)

    def text_encoder_name(self) -> str:
        if "text_base" in self.errors:
            return "clip"
        return self.set.get("text_base").config.text_encoder or "clip"

    def unavailable(self, names: Sequence[str]) -> dict[str, str]:
        return {n: self.errors[n] for n in names if n in self.errors}

    def require(self, names: Sequence[str]) -> None:
        """gr.Error naming the first of `names` that is unavailable, and why."""
        for name, why in self.unavailable(names).items():
            raise error(f"{name!r} is unavailable, so this cannot run: {why}", "Model unavailable")

    def get(self, name: str):
        self.require([name])
        return self.set.get(name)

    def base_needs(self, base_model: str, text: bool) -> list[str]:
        """The models the 32 px base `base_model` (pixel / semantic) needs, for text or labels."""
        if base_model not in BASE_CHOICES.values():
            raise gr.Error(f"base must be one of {', '.join(BASE_CHOICES.values())}; got {base_model!r}",
                           title="Invalid input")
        if base_model == "semantic":
            return ["prior", "diffae"] + (["clip"] if text else [])
        return ["text_base", self.text_encoder_name()] if text else ["class_base"]

    def default_base(self, text: bool) -> str:
        """semantic when its models loaded (it draws recognisable emoji far more often), else pixel."""
        return "pixel" if self.unavailable(self.base_needs("semantic", text)) else "semantic"

    def status_markdown(self, names: Sequence[str], consequence: str = "") -> str:
        """A warning for the top of a tab listing its unavailable models ('' when all are there)."""
        missing = self.unavailable(names)
        if not missing:
            return ""
        lines = [f"- `{n}`: {why}" for n, why in missing.items()]
        return "⚠️ **Unavailable models** (the rest of the app works):\n" + "\n".join(lines) + (
            f"\n\n{consequence}" if consequence else "")

    def summary(self) -> str:
        loaded = ", ".join(self.names) or "none"
        text = f"models on {self.device.type} from {self.location}: loaded {loaded}"
        if self.errors:
            text += "; unavailable " + ", ".join(sorted(self.errors))
        return text


def decoder_guidance_input(models: Models) -> gr.Slider:
    """The DiffAE decoder's classifier-free guidance on the semantic code, starting at the scale its
    checkpoint names (1 for a decoder that knows no null code)."""
    start = 1.0 if models.unavailable(["diffae"]) else fresh_noise_guidance(models.set.get("diffae"))
    return gr.Slider(0, MAX_DECODER_GUIDANCE, value=start, step=0.1, label="Decoder guidance (semantic)",
                     info="classifier-free guidance of the DiffAE decoder on the semantic code (DALL-E 2's "
                          "decoder): above 1 draws the code's own details more firmly; 1 = none")


def base_inputs(models: Models, text: bool):
    """The base-model choice, the DiffAE decoder's steps and its guidance (used by the semantic base)."""
    base_model = gr.Radio(list(BASE_CHOICES.items()), value=models.default_base(text), label="Base model (32×32)",
                          info="semantic: a diffusion prior picks DiffAE's semantic code, its decoder draws it "
                               "(DALL-E 2's two stages); pixel: one UNet draws the pixels")
    start = DECODER_STEPS if models.unavailable(["diffae"]) else decoder_sampling(models.set.get("diffae"), "steps")
    decoder_steps = gr.Slider(1, 100, value=start, step=1, precision=0, label="Decoder steps (semantic)",
                              info=f"{DECODER_SAMPLER} steps of the DiffAE decoder; 'Steps' and 'Sampler' are the "
                                   "prior's")
    return base_model, decoder_steps, decoder_guidance_input(models)


def sampling_of(models: Models, base_model: str, text: bool):
    """The default sampling (a core.pipeline.StageSettings) of a base: the semantic base's prior's,
    or the pixel UNet's with the guidance its checkpoint names (when the model is loaded)."""
    loaded = not models.unavailable(models.base_needs(base_model, text))
    return base_defaults(base_model, models.set if loaded else None, text)


def base_sampling(models: Models, text: bool):
    """The default sampling of the base a tab starts with."""
    return sampling_of(models, models.default_base(text), text)


def follow_base_defaults(models: Models, text: bool, base_model: gr.Radio, sampler: gr.Dropdown, steps: gr.Slider,
                         guidance: gr.Slider) -> None:
    """When the base changes, the sampler, steps and guidance become that base's defaults (the pixel
    UNet samples with 10 DPM-Solver++ steps at the guidance its card measured best, the semantic
    base's prior with 25 DDIM steps at guidance 3)."""
    def defaults(choice: str):
        d = sampling_of(models, choice, text)
        return gr.update(value=d.sampler), gr.update(value=d.steps), gr.update(value=d.guidance)
    base_model.change(defaults, inputs=base_model, outputs=[sampler, steps, guidance], queue=False,
                      api_visibility="private")


# ---- errors ------------------------------------------------------------------------------------
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


def open_upload(path: str, name: str = "the uploaded image") -> Image.Image:
    """An uploaded file as an image; errors call it `name`, never by its path on the server."""
    return open_image(path, name=name)


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


def named_errors(demo: gr.Blocks) -> gr.Blocks:
    """Make every endpoint answer a malformed call with a gr.Error that names what is wrong, where
    Gradio would answer {"error": null} (it shows only its own gr.Error messages): too few
    arguments name the endpoint's arguments; a file argument that is not one of this server's
    uploads or examples is refused before anything opens it (`check_uploaded`); a value an input
    cannot take (NaN, no number, an unreadable upload, a number out of range, a choice not offered,
    text that is no valid Unicode) names the input and shows at most a short excerpt of the value;
    and an unexpected failure (a bug) is answered "Internal error" with its type, its traceback
    printed to the server's log, never {"error": null}. Wrapped on the instances (subclassing a
    component makes Gradio write a .pyi stub next to this module); call it once the layout is built."""
    for block in demo.blocks.values():
        if isinstance(block, gr.components.Component):
            _readable_preprocess(block)
    for block_fn in demo.fns.values():
        block_fn.fn = _never_unnamed(block_fn.fn, f"/{block_fn.api_name or block_fn.name}")
    validate = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        try:
            check_inputs(block_fn, inputs)
        except gr.Error as e:
            log_refusal(e, f"/{block_fn.api_name or block_fn.name}")
            raise

    def check_inputs(block_fn, inputs):
        if len(inputs) < len(block_fn.inputs):
            names = [p.name for p in inspect.signature(block_fn.fn).parameters.values()
                     if not isinstance(p.default, gr.Progress)][:len(block_fn.inputs)]
            raise error(f"/{block_fn.api_name or block_fn.name} takes {len(block_fn.inputs)} arguments "
                        f"({', '.join(names)}); got {len(inputs)}", "Missing arguments")
        for block, value in zip(block_fn.inputs, inputs):   # before Gradio reads or moves any file
            if isinstance(block, FILE_COMPONENTS) and value is not None:
                check_uploaded(value, block)
        validate(block_fn, inputs)

    demo.validate_inputs = validate_inputs
    return demo


def excerpt(value, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: an error never echoes a large value back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _internal(e: Exception) -> gr.Error:
    traceback.print_exception(e)   # a bug: the whole story goes to the server's log, its type to the caller
    internal = error(f"the server could not finish this request ({type(e).__name__}); it has been logged",
                     "Internal error")
    internal.print_exception = False   # its traceback is printed above, once
    return internal


def _never_unnamed(fn: Callable, where: str = "") -> Callable:
    """`fn` (a function or generator function) with every exception that is not a gr.Error turned
    into one that says "Internal error" and the exception's type (Gradio answers other exceptions
    with {"error": null}); a gr.Error (a named refusal) is logged as one line (`log_refusal`)."""
    if fn is None or getattr(fn, "_never_unnamed", False) or inspect.iscoroutinefunction(fn) \
            or inspect.isasyncgenfunction(fn):
        return fn   # no server function (a js-only event), already wrapped, or async (none in this app)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            try:
                return (yield from fn(*args, **kwargs))
            except gr.Error as e:
                log_refusal(e, where)
                raise
            except Exception as e:  # noqa: BLE001 - anything else is a bug, named, not null
                raise _internal(e) from e
    else:
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error as e:
                log_refusal(e, where)
                raise
            except Exception as e:  # noqa: BLE001 - anything else is a bug, named, not null
                raise _internal(e) from e
    wrapped._never_unnamed = True
    return wrapped


FILE_COMPONENTS = (gr.Image, gr.ImageEditor, gr.File, gr.Gallery, gr.Audio, gr.Video)
NOT_UPLOADED = "only uploaded files are accepted: upload the image (or pick an example) and run again"


def _file_paths(payload) -> list:
    """Every `path` in a file argument as it arrives (a file dict, an ImageEditor's dict of
    background, layers and composite, a Gallery's list)."""
    if isinstance(payload, dict):   # a file names a path (a url alone, such as a data: URL, is refused)
        own = [payload.get("path")] if "path" in payload or "url" in payload else []
        return own + [p for k, v in payload.items() if k != "path" for p in _file_paths(v)]
    if isinstance(payload, (list, tuple)):
        return [p for v in payload for p in _file_paths(v)]
    return []


def upload_roots() -> list[Path]:
    """The folders a file argument may come from: Gradio's upload folder (uploads, and the
    examples Gradio copied there) and this app's example folder."""
    from gradio.utils import get_upload_folder
    return [Path(get_upload_folder()).resolve(), EXAMPLE_DIR.resolve()]


EDITOR_KEYS = {"background", "layers", "composite", "id"}


def _well_formed(payload, component) -> bool:
    """Whether a file argument has the shape its component takes: a file (a dict naming a path),
    an ImageEditor's image (a dict of background, layers and composite), a Gallery's list."""
    if isinstance(component, gr.Gallery):
        return isinstance(payload, list)
    if isinstance(component, gr.ImageEditor):
        return isinstance(payload, dict) and bool(payload) and set(payload) <= EDITOR_KEYS
    return isinstance(payload, dict) and ("path" in payload or "url" in payload)


def check_uploaded(payload, component) -> None:
    """Refuse a file argument that is not a file of this server's uploads or examples, whatever the
    payload's shape: Gradio checks only payloads that carry its "meta" marker, and without it a caller
    could name any file on the server. The refusal is the same whether the path exists or not, and
    never names it. An image too large is refused from its header, before anything decodes it."""
    if not _well_formed(payload, component):
        raise error(NOT_UPLOADED, "Invalid input")   # a bare string, a number, a dict of something else
    roots = upload_roots()
    image = isinstance(component, (gr.Image, gr.ImageEditor))
    for path in _file_paths(payload):
        try:
            real = Path(os.path.realpath(str(path)))   # symlinks and ".." resolved before the check
            ok = isinstance(path, (str, os.PathLike)) and any(real.is_relative_to(r) for r in roots) \
                and real.is_file()
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise error(NOT_UPLOADED, "Invalid input")
        if image:
            try:   # the size from the header, before Gradio or core decode the pixels
                check_side("the uploaded image", image_size(real, "the uploaded image"))
            except ImageSizeError as e:
                raise error(str(e), "Cannot do that") from e
            except ImageError:
                pass   # unreadable: the component's preprocess names it (named_errors)


def _readable_preprocess(component) -> None:
    preprocess = component.preprocess
    label = component.label or type(component).__name__
    numeric = isinstance(component, (gr.Number, gr.Slider))
    upload = isinstance(component, (gr.Image, gr.ImageEditor))
    low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
    choices = None
    if isinstance(component, (gr.Radio, gr.Dropdown)) and not getattr(component, "multiselect", False) \
            and not getattr(component, "allow_custom_value", False):
        choices = [c[1] if isinstance(c, (tuple, list)) else c for c in component.choices]
    optional = isinstance(component, gr.Dropdown)   # a dropdown may have nothing chosen; a radio always has

    def readable_preprocess(payload):
        try:
            return checked_preprocess(payload)
        except gr.Error as e:
            log_refusal(e, f"input {label!r}")
            raise

    def checked_preprocess(payload):
        if numeric:
            if not (isinstance(payload, (int, float)) and not isinstance(payload, bool) and math.isfinite(payload)):
                raise error(f"{label} must be a finite number, got {excerpt(payload)}", "Cannot do that")
            if low is not None and payload < low:
                raise error(f"{label}: value {excerpt(payload)} is less than minimum value {low:g}", "Cannot do that")
            if high is not None and payload > high:
                raise error(f"{label}: value {excerpt(payload)} is greater than maximum value {high:g}",
                            "Cannot do that")
        if isinstance(payload, str):
            try:
                payload.encode("utf-8")
            except UnicodeEncodeError:
                raise error(f"{label} is not valid text (it holds a lone surrogate): "
                            f"{excerpt(payload)}", "Cannot do that") from None
        if choices is not None and payload not in choices and not (payload is None and optional):
            shown = ", ".join(map(str, choices[:8])) + (", ..." if len(choices) > 8 else "")
            raise error(f"{label}: value {excerpt(payload)} is not in the list of choices ({shown})", "Cannot do that")
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file
            if upload:
                file = getattr(payload, "background", payload)  # an ImageEditor's image is its background
                name = getattr(file, "orig_name", None) or "the upload"
                name = name if len(name) <= 60 else f"{name[:60]}..."
                raise error(f"{name} cannot be read as an image ({type(e).__name__}); upload a PNG, JPEG, "
                            "WebP, GIF or BMP file", "Unreadable image") from e
            raise error(f"{label} cannot take {excerpt(payload)} ({type(e).__name__})", "Cannot do that") from e

    component.preprocess = readable_preprocess


def image_input(**kwargs) -> gr.Image:
    """gr.Image that passes the uploaded file through untouched (core converts any mode and checks
    the size)."""
    return gr.Image(type="filepath", image_mode=None, format="png", **kwargs)


# ---- running a job with progress ---------------------------------------------------------------
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


# ---- outputs -----------------------------------------------------------------------------------
def output_folder() -> Path:
    """A fresh folder for one request's PNGs; folders older than an hour are removed."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - OUTPUT_MAX_AGE_S
    for old in OUTPUT_DIR.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    folder = OUTPUT_DIR / uuid.uuid4().hex
    folder.mkdir()
    return folder


class RequestFiles:
    """One request's output files, in a fresh folder. Every image goes out as a file path: Gradio
    copies a file into its cache atomically, whereas a PIL image it re-encodes and rewrites in
    place when the same pixels come again (as a preview repeats), which a download of the
    earlier copy can catch half-written."""

    def __init__(self):
        self.folder = output_folder()
        self._count = 0

    def image(self, image: Image.Image) -> str:
        """A view (preview, stage, comparison) as a PNG file."""
        self._count += 1
        path = self.folder / f"view-{self._count}.png"
        image.save(path, format="PNG")
        return str(path)

    def results(self, images: Sequence[Image.Image], parameters: Sequence[dict], names: Sequence[str]) -> list[str]:
        """Each image as `<name>.png` carrying its parameters (core.images.save_png)."""
        return [str(save_png(im, self.folder / f"{name}.png", params))
                for im, params, name in zip(images, parameters, names)]


def as_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer input that may arrive as None (a cleared box) or a float; with `low` and `high`,
    one of the bounds a tab sets on the work a request may ask for."""
    if value is None or (isinstance(value, float) and not value.is_integer()):
        raise error(f"{name} must be a whole number, got {value!r}", "Cannot do that")
    value = int(value)
    if low is not None and not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value


def table_output(label: str, columns: Sequence[str]) -> gr.Dataframe:
    """A read-only table that shows its column names before its first result (an empty
    gr.Dataframe shows placeholder headers "1 2 3")."""
    import pandas as pd
    return gr.Dataframe(pd.DataFrame(columns=list(columns)), label=label, interactive=False)


def seed_input(value: int = 0) -> tuple[gr.Number, gr.Button]:
    """A seed box with a button beside it that draws a random seed in the browser (no server round
    trip); the two share a row, so the button never stands alone."""
    with gr.Row(equal_height=True):
        seed = gr.Number(value=value, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, scale=3)
        button = gr.Button("🎲", scale=0, min_width=48, size="lg")
    button.click(None, outputs=seed, js=f"() => Math.floor(Math.random() * {MAX_SEED})")
    return seed, button


# ---- example inputs, made offline --------------------------------------------------------------
EXAMPLE_EMOJI = {"cat-face": "🐱", "thumbs-up": "👍", "red-apple": "🍎", "woman-dancing-dark": "💃🏿"}
# people with a skin tone, for the skin and gender edits (a cat has neither)
PEOPLE_EMOJI = {"woman-dancing-light": "💃🏻", "man-light": "👨🏻"}


def _from_font(emoji: str) -> Image.Image | None:
    try:
        return render_emoji(load_font(), emoji)
    except (OSError, ValueError):
        return None


def _from_dataset(emoji: str) -> Image.Image | None:
    cache = default_cache_dir()
    try:
        records = json.loads((cache / RECORDS_FILE).read_text(encoding="utf-8"))
        index = next(i for i, r in enumerate(records) if r.get("emoji") == emoji)
        return Image.fromarray(np.load(cache / IMAGES_FILE, mmap_mode="r")[index].copy(), "RGB")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def _drawn_face() -> Image.Image:
    """A plain smiley, for a machine with neither the emoji font nor the data set cache."""
    im = Image.new("RGB", (128, 128), "white")
    d = ImageDraw.Draw(im)
    d.ellipse((12, 12, 116, 116), fill=(255, 204, 77), outline=(200, 140, 20), width=3)
    d.ellipse((42, 44, 54, 62), fill=(60, 40, 20))
    d.ellipse((74, 44, 86, 62), fill=(60, 40, 20))
    d.arc((36, 50, 92, 96), 20, 160, fill=(60, 40, 20), width=5)
    return im


def example_image(name: str, emoji: str) -> str:
    """The PNG of one emoji, written once (from the Noto font, else the data set cache, else a
    drawn face)."""
    EXAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    path = EXAMPLE_DIR / f"{name}.png"
    if not path.is_file():
        image = _from_font(emoji) or _from_dataset(emoji) or _drawn_face()
        save_png(image, path, {"example": name, "emoji": emoji})
    return str(path)


def people_first_examples() -> list[str]:
    """Example images for the attribute edits: people first (the skin and gender edits show on
    them), then the usual examples, the dark-skinned dancer among the people."""
    people = [example_image(name, emoji) for name, emoji in PEOPLE_EMOJI.items()]
    others = example_images(transparent=False)
    dancer = [p for p in others if Path(p).stem == "woman-dancing-dark"]
    return people[:1] + dancer + people[1:] + [p for p in others if p not in dancer]


def example_images(transparent: bool = True) -> list[str]:
    """PNGs of a few emoji, written once (from the Noto font, else the data set cache, else a
    drawn face), plus (with `transparent`) the first on a transparent background, to show that RGBA
    input works: it looks the same as the first, so tabs that take RGBA like any image leave it out."""
    paths = [example_image(name, emoji) for name, emoji in EXAMPLE_EMOJI.items()]
    rgba = EXAMPLE_DIR / "cat-face-transparent.png"
    if not rgba.is_file():
        im = Image.open(paths[0]).convert("RGBA")
        alpha = Image.eval(im.convert("L"), lambda v: 0 if v >= 250 else 255)
        im.putalpha(alpha)
        save_png(im, rgba, {"example": "cat-face on a transparent background"})
    return paths + [str(rgba)] if transparent else paths


def class_labels(classes: Sequence[str]) -> list[tuple[str, str]]:
    """Dropdown choices (label, value): each subgroup with its first emoji when emoji-test.txt
    is installed, the plain name otherwise."""
    try:
        first: dict[str, str] = {}
        for record in parse_emoji_test(keywords={}):
            first.setdefault(record.subgroup, record.emoji)
    except (OSError, ValueError):
        first = {}
    return [(f"{first[c]}  {c}" if c in first else c, c) for c in classes]
