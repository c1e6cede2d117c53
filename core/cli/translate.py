"""`translate`: one image through SDEdit, Palette (colorization, inpainting), RePaint or ILVR
(`core.translate.translate`), written as a PNG with its parameters. Its options are the task specs'
parameters (`core.translate_capabilities.TRANSLATE_OPTIONS`, the Image to image tab's inputs): one task's
values are checked against its spec (`core.translate_capabilities.TRANSLATE_SPECS`); an option of another
task goes on to `translate`, which refuses those it does not take."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import load_models, spec_options, spec_values
from core.images import open_image, save_png
from core.translate import TASKS
from core.translate_capabilities import TRANSLATE_OPTIONS, TRANSLATE_SPECS


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("translate", help="image-to-image: SDEdit, colorization, inpainting, ILVR", parents=[models])
    p.add_argument("--task", required=True, metavar="|".join(TASKS))
    p.add_argument("--image", required=True, help="input image (any size or mode)")
    # --mask, --prompt, --negative-prompt, --strength, --seed, --steps, --sampler, --guidance, --method, --size,
    # --jump, --resample, --factor, --model, --label
    spec_options(p, TRANSLATE_OPTIONS)
    p.add_argument("--out", required=True, help="output PNG file")
    p.set_defaults(handler=run, out_kind="file")


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {args.task!r}")
    if args.task == "inpaint" and not args.mask:
        raise ValueError("--task inpaint needs --mask (white or opaque = the region to fill)")
    spec = TRANSLATE_SPECS[args.task]
    given = spec_values(args, TRANSLATE_OPTIONS)
    values = spec.check({k: v for k, v in given.items() if k in spec.names})
    values.update({k: v for k, v in given.items() if k not in spec.names})   # translate refuses what it must
    models = load_models(args)
    image = open_image(args.image)
    mask = open_image(args.mask) if args.mask else None
    result, params = spec.run(models, values, image, mask)
    params = {**params, "image": str(args.image), **({"mask": str(args.mask)} if args.mask else {})}
    save_png(result, out, params)
    if "note" in params:
        print(f"note: {params['note']}")
    print(f"wrote {out}")
