"""`mechanics`: the panels of the How it works tab (`core.mechanics`) from the command line, each
printing its table and writing its grid."""
from __future__ import annotations

import argparse
import sys

import torch
from PIL import Image

from core.cli import format_table, load_models, number_list, seed, text_list
from core.diffusion.samplers import SAMPLERS
from core.diffusion.schedules import SCHEDULES
from core.images import grid_image, open_image, pil_to_tensor, save_png
from core.mechanics import (
    BASE_MODELS,
    FORWARD_TIMES,
    GUIDANCE_SCALES,
    GUIDANCE_SEEDS,
    GUIDANCE_STEPS,
    NFE_BUDGETS,
    Condition,
    compare_samplers,
    fit_hspace_directions,
    forward_process,
    guidance_sweep,
    hspace_edit,
    likelihood,
    pink_noise,
    schedule_curves,
    trajectory,
    uniform_noise,
)
from core.pipeline import BASE_DEFAULTS


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    panels = sub.add_parser("mechanics", help="the panels of the How it works tab: grids and tables")
    panels.set_defaults(handler=run, out_kind="file")
    sub = panels.add_subparsers(dest="panel", required=True)
    condition = argparse.ArgumentParser(add_help=False)   # which base model, asked for what
    condition.add_argument("--model", choices=BASE_MODELS, default="text_base")
    condition.add_argument("--prompt", default="", help="for text_base")
    condition.add_argument("--label", default=None, help="for class_base: a class from `python -m core classes`")
    base = argparse.ArgumentParser(add_help=False)   # a base model without a condition
    base.add_argument("--model", choices=BASE_MODELS, default="text_base")

    sub.add_parser("curves", help="print alpha_bar and log SNR of the linear and cosine schedules")

    f = sub.add_parser("forward", help="x_t of an image at several t, linear and cosine schedules (rows)")
    f.add_argument("--image", required=True)
    f.add_argument("--t", type=number_list(float), default=list(FORWARD_TIMES), help="comma-separated, 0-999")
    f.add_argument("--size", type=int, default=32)
    f.add_argument("--seed", type=seed, default=0)
    f.add_argument("--out", required=True, help="output PNG")

    s = sub.add_parser("samplers", help="every sampler at equal NFE: a grid and a table", parents=[condition, models])
    s.add_argument("--samplers", type=text_list, default=list(SAMPLERS))
    s.add_argument("--nfe", type=number_list(int), default=list(NFE_BUDGETS), help="comma-separated NFE budgets")
    s.add_argument("--seeds", type=number_list(seed), default=[0, 1])
    s.add_argument("--guidance", type=float, default=BASE_DEFAULTS.guidance)
    s.add_argument("--no-threshold", action="store_true")
    s.add_argument("--out", required=True, help="output PNG (a line per sampler: budgets, seeds within each)")

    g = sub.add_parser("guidance", help="the same seeds at several guidance scales: fidelity vs diversity",
                       parents=[condition, models])
    g.add_argument("--scales", type=number_list(float), default=list(GUIDANCE_SCALES))
    g.add_argument("--seeds", type=number_list(seed), default=list(GUIDANCE_SEEDS))
    g.add_argument("--sampler", choices=SAMPLERS, default="ddim")
    g.add_argument("--steps", type=int, default=GUIDANCE_STEPS)
    g.add_argument("--no-threshold", action="store_true")
    g.add_argument("--out", required=True, help="output PNG (rows: scales, columns: seeds)")

    t = sub.add_parser("trajectory", help="x_t (top) and predicted x0 (bottom) at chosen steps of one run",
                       parents=[condition, models])
    t.add_argument("--seed", type=seed, default=0)
    t.add_argument("--sampler", choices=SAMPLERS, default="ddim")
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--guidance", type=float, default=BASE_DEFAULTS.guidance)
    t.add_argument("--frames", type=int, default=6)
    t.add_argument("--no-threshold", action="store_true")
    t.add_argument("--out", required=True, help="output PNG")

    lk = sub.add_parser("likelihood", help="bits per dimension of images under a base model",
                        parents=[condition, models])
    lk.add_argument("--image", action="append", default=[], help="an image file (repeat for more)")
    lk.add_argument("--references", action="store_true", help="also score uniform noise and 1/f (photo-like) noise")
    lk.add_argument("--method", choices=("ode", "vlb"), default="ode")
    lk.add_argument("--steps", type=int, default=None, help="ODE steps (default 20) or bound terms (default 25)")
    lk.add_argument("--probes", type=int, default=1, help="Hutchinson probes / bound draws per image")
    lk.add_argument("--seed", type=seed, default=0)

    sub.add_parser("hspace-directions", help="fit h-space directions on the emoji data set; stored with the model",
                   parents=[base, models])

    he = sub.add_parser("hspace", help="edit an image along an h-space direction (Asyrp-style)",
                        parents=[base, models])
    he.add_argument("--image", required=True)
    he.add_argument("--attribute", required=True)
    he.add_argument("--strength", type=float, required=True, help="in class-mean differences; - reverses it")
    he.add_argument("--steps", type=int, default=20)
    he.add_argument("--interval", type=float, default=0.5, help="edited fraction of the reverse process, from t=T")
    he.add_argument("--out", required=True, help="output PNG: input, reconstruction, edit")


def _load(path: str, size: int) -> torch.Tensor:
    return pil_to_tensor(open_image(path), size=size)


def _save(image: Image.Image, path: str, parameters: dict) -> None:
    save_png(image, path, parameters)
    print(f"wrote {path}")


def _condition(args) -> Condition:
    return Condition(model=args.model, prompt=args.prompt or "", label=args.label)


def run(args: argparse.Namespace) -> None:
    command = args.panel
    models = load_models(args) if command not in ("curves", "forward") else None
    if command == "curves":
        print(format_table(schedule_curves(points=11)))
    elif command == "forward":
        image = _load(args.image, args.size)
        rows = forward_process(image, args.t, args.seed)
        _save(grid_image(list(rows)), args.out, {"panel": "forward", "image": args.image, "t": args.t,
                                                  "rows": list(SCHEDULES), "seed": args.seed})
    elif command == "samplers":
        result = compare_samplers(models, _condition(args), args.samplers, args.nfe, args.seeds, args.guidance,
                                  not args.no_threshold, progress=lambda s: print(s, file=sys.stderr))
        print(format_table(result.rows))
        _save(result.grid(), args.out, result.parameters)
    elif command == "guidance":
        result = guidance_sweep(models, _condition(args), args.scales, args.seeds, args.sampler, args.steps,
                                not args.no_threshold, progress=lambda s: print(s, file=sys.stderr))
        print(format_table(result.rows))
        _save(result.grid(), args.out, result.parameters)
    elif command == "trajectory":
        result = trajectory(models, _condition(args), args.seed, args.sampler, args.steps, args.guidance,
                            args.frames, not args.no_threshold)
        print(format_table([{"step": s, "t": t} for s, t in zip(result.steps, result.times)]))
        _save(result.strip(), args.out, result.parameters)
    elif command == "likelihood":
        resolution = models.get(args.model).resolution
        named = {p: _load(p, resolution) for p in args.image}
        if args.references:
            named["uniform noise"] = uniform_noise(resolution, args.seed)
            named["1/f noise (photo-like)"] = pink_noise(resolution, args.seed)
        if not named:
            raise ValueError("give --image (one or more) or --references")
        result = likelihood(models, _condition(args), torch.cat(list(named.values())), args.method, args.steps,
                            args.probes, args.seed)
        rows = [{"image": name, **row} for name, row in zip(named, result.rows())]
        print(f"{result.method}, {result.steps} steps, {result.probes} probe(s), {result.nfe} NFE per probe")
        print(format_table(rows))
    elif command == "hspace-directions":
        print(f"wrote {fit_hspace_directions(models, args.model)}")
    elif command == "hspace":
        model = models.get(args.model)
        result = hspace_edit(models, args.model, _load(args.image, model.resolution), args.attribute, args.strength,
                             args.steps, args.interval)
        print(f"h shifted on {result.edited_steps} of {args.steps} reverse steps")
        _save(grid_image([torch.cat([_load(args.image, model.resolution), result.reconstruction.cpu(),
                                     result.edited.cpu()])]), args.out,
              {"panel": "hspace", "image": args.image, "model": args.model, "attribute": args.attribute,
               "strength": args.strength, "steps": args.steps, "interval": args.interval,
               "columns": ["input", "DDIM reconstruction", "h-space edit"]})
