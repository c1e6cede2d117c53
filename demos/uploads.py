"""Inputs: uploaded files (only this server's uploads and examples are accepted, an image too large
is refused from its header), whole numbers, seeds and read-only tables."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
from PIL import Image

from core.images import ImageError, ImageSizeError, check_side, image_size, open_image
from demos.errors import error
from demos.examples import EXAMPLE_DIR

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


def open_upload(path: str, name: str = "the uploaded image") -> Image.Image:
    """An uploaded file as an image; errors call it `name`, never by its path on the server."""
    return open_image(path, name=name)


def image_input(**kwargs) -> gr.Image:
    """gr.Image that passes the uploaded file through untouched (core converts any mode and checks
    the size)."""
    return gr.Image(type="filepath", image_mode=None, format="png", **kwargs)


MAX_SEED = 2**32 - 1


def as_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer input that may arrive as None (a cleared box) or a float; with `low` and `high`,
    one of the bounds a tab sets on the work a request may ask for."""
    if value is None or (isinstance(value, float) and not value.is_integer()):
        raise error(f"{name} must be a whole number, got {value!r}", "Cannot do that")
    value = int(value)
    if low is not None and not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value


def seed_input(value: int = 0) -> tuple[gr.Number, gr.Button]:
    """A seed box with a button beside it that draws a random seed in the browser (no server round
    trip); the two share a row, so the button never stands alone."""
    with gr.Row(equal_height=True):
        seed = gr.Number(value=value, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, scale=3)
        button = gr.Button("🎲", scale=0, min_width=48, size="lg")
    button.click(None, outputs=seed, js=f"() => Math.floor(Math.random() * {MAX_SEED})")
    return seed, button


def table_output(label: str, columns: Sequence[str]) -> gr.Dataframe:
    """A read-only table that shows its column names before its first result (an empty
    gr.Dataframe shows placeholder headers "1 2 3")."""
    import pandas as pd
    return gr.Dataframe(pd.DataFrame(columns=list(columns)), label=label, interactive=False)
