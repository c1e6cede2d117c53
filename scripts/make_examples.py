"""The input files of the README's command-line and Python examples, in examples/.

    python scripts/make_examples.py [--out examples]

Emoji are rendered from the Noto Color Emoji font (Debian's fonts-noto-color-emoji) as the data
set renders them (128x128 on white); the sketch and the mask are drawn here. The files are
committed, so this is needed only to remake them.

    in.png      woman (no skin tone), 128 px: reconstruct, edit, variations, inpaint, the mechanics panels
    cat.png     cat face at 32 px: upscale (a 32 px input asked at 128 runs both SR stages)
    sketch.png  a rough drawing of an apple (red disc, brown stem, green leaf), 128 px: SDEdit
    gray.png    red apple in grey levels, 128 px: colorize
    mask.png    white = the region to fill (the middle of in.png's face), black = keep, 128 px: inpaint
    ref.png     dog face, 128 px: ILVR's reference
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.emoji import load_font, render_emoji  # noqa: E402

EMOJI = {"in": "\U0001F469", "cat": "\U0001F431", "gray": "\U0001F34E", "ref": "\U0001F436"}


def sketch() -> Image.Image:
    """An apple as a person might scribble it: flat colours, no shading."""
    im = Image.new("RGB", (128, 128), "white")
    d = ImageDraw.Draw(im)
    d.ellipse((22, 34, 106, 116), fill=(220, 30, 30))
    d.line((64, 38, 68, 16), fill=(110, 70, 30), width=6)
    d.ellipse((70, 14, 96, 30), fill=(60, 170, 60))
    return im


def mask() -> Image.Image:
    im = Image.new("RGB", (128, 128), "black")
    ImageDraw.Draw(im).rectangle((40, 44, 88, 92), fill="white")
    return im


def make(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    font = load_font()
    images = {name: render_emoji(font, emoji) for name, emoji in EMOJI.items()}
    images["cat"] = images["cat"].resize((32, 32), Image.Resampling.BOX)   # as the data set's 32 px images
    images["gray"] = images["gray"].convert("L")
    images["sketch"] = sketch()
    images["mask"] = mask()
    paths = []
    for name, image in images.items():
        path = out / f"{name}.png"
        image.save(path, optimize=True)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="examples")
    for path in make(Path(p.parse_args(argv).out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
