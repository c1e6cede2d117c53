"""Where a request's PNGs go: a fresh folder per request (old ones removed), every image as a file
that carries its parameters."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from core.images import save_png

WORK_DIR = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "diffusion-hub"

OUTPUT_DIR = WORK_DIR / "outputs"

OUTPUT_MAX_AGE_S = 3600


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
