"""`ilvr-strip`: ILVR (`core.ilvr`) of one reference at several factors N, as a strip and its figures."""
from __future__ import annotations

import argparse
from dataclasses import replace

from core.bases import PIXEL_MODELS
from core.cli import format_table, load_models, number_list, seed
from core.ilvr import ILVR_DEFAULTS, STRIP_FACTORS, ilvr_strip
from core.images import open_image, save_png


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ilvr-strip", help="ILVR at several factors N: a strip and its figures", parents=[models])
    p.add_argument("--image", required=True, help="the reference (any size or mode)")
    p.add_argument("--factors", type=number_list(int), default=list(STRIP_FACTORS), help="comma-separated N at 32x32")
    p.add_argument("--seeds", type=number_list(seed), default=[0], help="comma-separated; 2 or more give the diversity")
    p.add_argument("--model", choices=PIXEL_MODELS, default="text_base")
    p.add_argument("--prompt", help="text base: guide with this prompt (default: unguided)")
    p.add_argument("--label", help="class base: guide with this class (default: unconditional)")
    p.add_argument("--size", type=int, choices=(32, 64, 128), default=32)
    p.add_argument("--steps", type=int, default=ILVR_DEFAULTS.steps)
    p.add_argument("--sampler", default=ILVR_DEFAULTS.sampler)
    p.add_argument("--out", required=True, help="output PNG: phi_N(reference) on top, a row per seed below")
    p.set_defaults(handler=run, out_kind="file")


def run(args: argparse.Namespace) -> None:
    settings = replace(ILVR_DEFAULTS, sampler=args.sampler, steps=args.steps)
    strip = ilvr_strip(load_models(args), open_image(args.image), args.factors, args.seeds, args.model,
                       args.prompt, args.label, args.size, settings)
    save_png(strip.image(), args.out, {**strip.parameters, "image": args.image, "figures": strip.rows})
    print(format_table(strip.rows))
    print(f"wrote {args.out}")
