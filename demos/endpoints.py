"""Every endpoint answers with a named error: a malformed call, a value an input cannot take and
an unexpected failure (a bug) each become a gr.Error that says what is wrong, never {"error": null}."""
from __future__ import annotations

import functools
import inspect
import math
import traceback
from collections.abc import Callable

import gradio as gr

from demos.errors import error, excerpt, log_refusal
from demos.uploads import FILE_COMPONENTS, check_uploaded


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
