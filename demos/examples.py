"""Example inputs made offline: emoji PNGs from the Noto font, else the data set cache, else a
drawn face; the class labels with their emoji."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.data.emoji import IMAGES_FILE, RECORDS_FILE, default_cache_dir, load_font, parse_emoji_test, render_emoji
from core.images import save_png
from demos.outputs import WORK_DIR

EXAMPLE_DIR = WORK_DIR / "examples"

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
