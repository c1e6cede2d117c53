"""`evaluate-translate` and `evaluate-diffae`: the evaluations of `core.evaluation` on held-out emoji."""
from __future__ import annotations

import argparse
import json

from core.checks import check_int
from core.cli import finite, load_models
from core.diffae import DEFAULT_STEPS, check_steps, check_strength
from core.evaluation import diffae, translate


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    t = sub.add_parser("evaluate-translate", parents=[models],
                       help="measure Palette / RePaint / SDEdit on held-out emoji; prints markdown")
    t.add_argument("--n", type=int, default=32, help="held-out images")
    t.add_argument("--steps", type=int, default=25)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--inpaint-samples", type=int, default=1,
                   help="also score Palette inpainting as the mean of this many samples per image")
    t.set_defaults(handler=run_translate)

    d = sub.add_parser("evaluate-diffae", parents=[models],
                       help="DiffAE reconstruction PSNR and edit success on held-out emoji")
    d.add_argument("--n", type=int, default=32)
    d.add_argument("--strength", type=finite, default=None,
                   help="edit strength in class gaps for every attribute (default: 1)")
    d.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    d.add_argument("--grid", help="also write a strength-sweep image grid (PNG) here")
    d.set_defaults(handler=run_diffae)


def run_translate(args: argparse.Namespace) -> None:
    results = translate.evaluate(load_models(args), n=args.n, steps=args.steps, seed=args.seed,
                                 inpaint_samples=args.inpaint_samples)
    print(translate.markdown(results))


def run_diffae(args: argparse.Namespace) -> None:
    n = check_int("--n", args.n, 1)
    strength = None if args.strength is None else check_strength(args.strength)
    steps = check_steps(args.steps)
    print(json.dumps(diffae.evaluate(load_models(args), n, strength, steps, grid=args.grid), indent=2))
