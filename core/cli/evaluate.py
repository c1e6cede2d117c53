"""`evaluate`, `evaluate-translate` and `evaluate-diffae`: the evaluations of `core.evaluation` on
held-out emoji."""
from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

import torch

from core.checks import check_int
from core.cli import finite, load_models, number_list, seed
from core.diffae import DEFAULT_STEPS, check_steps, check_strength
from core.evaluation import diffae, translate
from core.evaluation.classifiers import ClassifierSettings
from core.evaluation.evaluate import DEFAULT_GUIDANCE, DEFAULT_N, DEFAULT_N_SR, MODELS, evaluate
from core.evaluation.report import format_report, json_safe
from core.training.classifiers import load_or_train


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("evaluate", parents=[models], help="evaluate the bases and SR stages on the held-out split "
                       "(markdown report)", description="Evaluation of the trained models on the held-out split of "
                       "the emoji data set (see core.evaluation.evaluate).")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"held-out emoji per section (default {DEFAULT_N})")
    p.add_argument("--n-sr", type=int, default=DEFAULT_N_SR,
                   help=f"held-out images per SR stage, at most --n (default {DEFAULT_N_SR})")
    p.add_argument("--steps", type=int, help="sampling steps of every stage (default: each stage's default)")
    p.add_argument("--guidance", type=number_list(finite), default=list(DEFAULT_GUIDANCE),
                   help="guidance sweep, e.g. 1,3,5")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--batch", type=int, default=32, help="images per sampling batch")
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--clip", help="CLIP folder for the CLIP metrics (default <checkpoints>/clip)")
    p.add_argument("--classifiers", help="classifier cache folder (default ~/.cache/diffusion-hub/classifiers)")
    p.add_argument("--classifier-steps", type=int, help="train the classifiers with this many steps instead of "
                   "the default (a quick check; cached beside the default ones, never replacing them)")
    p.add_argument("--no-timing", action="store_true", help="skip the cascade timing")
    p.add_argument("--judge", help="judge folder (default <checkpoints>/judge)")
    p.add_argument("--judge-n", type=int, help="samples per split for the judge's scorecard (default --n)")
    p.add_argument("--grid-dir", help="also write the labelled grids of the fixed prompts and classes to "
                   "GRID_DIR/<model>/grid.png")
    p.add_argument("--old-judge", help="another judge folder (e.g. an earlier one) whose verdicts on the same "
                   "samples are reported beside the judge's")
    p.add_argument("--threads", type=int, help="torch threads")
    p.set_defaults(handler=run_evaluate)

    t = sub.add_parser("evaluate-translate", parents=[models],
                       help="measure Palette / RePaint / SDEdit on held-out emoji; prints markdown")
    t.add_argument("--n", type=int, default=32, help="held-out images")
    t.add_argument("--steps", type=int, default=25)
    t.add_argument("--seed", type=seed, default=0)
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
    print(json.dumps(diffae.evaluate(load_models(args), n, strength, steps, grid=args.grid,
                                     train_missing=load_or_train), indent=2))


def run_evaluate(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(check_int("--threads", args.threads, 1))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    clf_settings = ClassifierSettings(steps=args.classifier_steps) if args.classifier_steps is not None else None
    results = evaluate(args.checkpoints, models=models, n=args.n, n_sr=args.n_sr, steps=args.steps,
                       guidance=args.guidance, device=args.device, seed=args.seed, classifiers=args.classifiers,
                       classifier_settings=clf_settings, clip=args.clip, timing=not args.no_timing,
                       batch=args.batch, judge=args.judge, judge_n=args.judge_n, grid_dir=args.grid_dir,
                       old_judge=args.old_judge, train_missing=partial(load_or_train, log=log), log=log)
    print(format_report(results))
    if args.json:   # written whole, then moved into place
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(json_safe(results), indent=1))
        os.replace(tmp, path)
