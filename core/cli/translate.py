"""`translate`: one image through SDEdit, Palette (colorization, inpainting), RePaint or ILVR
(`core.translate.translate`), written as a PNG with its parameters."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import load_models, seed
from core.images import open_image, save_png
from core.translate import (
    METHODS,
    REPAINT_JUMP,
    REPAINT_RESAMPLE,
    SDEDIT_METHODS,
    SDEDIT_STRENGTHS,
    SEMANTIC_STEPS,
    TASKS,
    TRANSLATE_DEFAULTS,
    translate,
)


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("translate", help="image-to-image: SDEdit, colorization, inpainting, ILVR", parents=[models])
    p.add_argument("--task", required=True, metavar="|".join(TASKS))
    p.add_argument("--image", required=True, help="input image (any size or mode)")
    p.add_argument("--mask", help="inpaint: mask image, white (or opaque) = the region to fill")
    p.add_argument("--prompt", help="sdedit / repaint / ilvr: text guidance (none = unguided)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--strength", type=float,
                   help="sdedit: how much is redrawn, 0 (the input) .. 1 (ignores the input); default "
                        f"{SDEDIT_STRENGTHS['diffae']} with the diffae method (the design kept, details redrawn; "
                        f"a prompt turns it into that emoji), {SDEDIT_STRENGTHS['text']} with the text method")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--steps", type=int,
                   help=f"sampling steps (default {TRANSLATE_DEFAULTS.steps}; diffae {SEMANTIC_STEPS})")
    p.add_argument("--sampler", help="ddpm|ddim|euler|heun|euler-maruyama|dpmpp-2m (default ddim; diffae: ddpm only)")
    p.add_argument("--guidance", type=float, help="sdedit / repaint with a prompt (default 3; sdedit diffae: the "
                                                  "prior's); diffae colorize / inpaint: the decoder's "
                                                  "guidance on the semantic code (colorize: default 1; "
                                                  "inpaint: default its checkpoint's)")
    p.add_argument("--method", metavar="|".join(dict.fromkeys([*METHODS, *SDEDIT_METHODS])),
                   help="colorize: diffae (the default: the DiffAE decoder draws the emoji under the grey image's "
                        "luma, + SR) or palette (64x64); inpaint: diffae (the default: RePaint with the DiffAE "
                        "decoder and the code of the visible pixels, + SR), palette (64x64) or repaint (text base); "
                        "sdedit: diffae (the default: the DiffAE decoder redraws the input's own code, or the "
                        "prompt's code from the prior) or text (the text base)")
    p.add_argument("--size", type=int, help="sdedit / repaint / diffae: 32|64|128 (default 128); Palette tasks: 64")
    p.add_argument("--jump", type=int, default=REPAINT_JUMP, help="repaint / diffae inpainting: jump length")
    p.add_argument("--resample", type=int, default=REPAINT_RESAMPLE,
                   help="repaint / diffae inpainting: resamplings per jump")
    p.add_argument("--factor", type=int, help="ilvr: the low-pass factor N at 32x32 (1, 2, 4, 8, 16, 32; default 4): "
                                              "the sample keeps the reference downsampled by N")
    p.add_argument("--model", help="ilvr: the base, text_base (default) or class_base (the default with --label)")
    p.add_argument("--label", help="ilvr with --model class_base: guide with this class (default: unconditional)")
    p.add_argument("--out", required=True, help="output PNG file")
    p.set_defaults(handler=run, out_kind="file")


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.task == "inpaint" and not args.mask:
        raise ValueError("--task inpaint needs --mask (white or opaque = the region to fill)")
    models = load_models(args)
    image = open_image(args.image)
    mask = open_image(args.mask) if args.mask else None
    result, params = translate(models, args.task, image, mask=mask, prompt=args.prompt, strength=args.strength,
                               seed=args.seed, method=args.method, size=args.size, steps=args.steps,
                               sampler=args.sampler, guidance=args.guidance, negative_prompt=args.negative_prompt,
                               jump=args.jump, resample=args.resample, factor=args.factor, label=args.label,
                               model=args.model)
    params = {**params, "image": str(args.image), **({"mask": str(args.mask)} if args.mask else {})}
    save_png(result, out, params)
    if "note" in params:
        print(f"note: {params['note']}")
    print(f"wrote {out}")
