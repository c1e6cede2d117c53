"""`reconstruct`, `edit` and `diffae-directions`: the diffusion autoencoder (`core.diffae`) on one
image, and the attribute directions of a trained one."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cascade import sr_models, stage_settings, upscale_chain
from core.cli import finite, load_models, seed
from core.data.emoji import load_dataset
from core.diffae import (
    DEFAULT_STEPS,
    check_steps,
    check_strength,
    edit,
    fit_directions,
    fresh_noise,
    load_directions,
    reconstruct,
)
from core.images import open_image, pil_to_tensor, save_png, tensor_to_pil
from core.metrics import psnr
from core.tone_words import fit_tone_offsets


def _load_input(path, model):
    return pil_to_tensor(open_image(path), size=model.resolution).to(next(model.parameters()).device)


def run_reconstruct(args: argparse.Namespace) -> None:
    steps = check_steps(args.steps)
    models = load_models(args)
    model = models.get("diffae")
    x = _load_input(args.image, model)
    out = reconstruct(model, x, steps)
    error = float(psnr(out.cpu(), x.cpu(), 2.0)[0])
    if args.size > model.resolution:   # through the SR stages, unaugmented: the input is a faithful copy
        stages = sr_models(models, args.size, model.resolution)
        out = upscale_chain(stages, out, [0], stage_settings(stages, faithful=True))[args.size]
    params = {"command": "reconstruct", "image": str(args.image), "steps": steps, "size": args.size,
              "psnr": round(error, 2)}
    save_png(tensor_to_pil(out)[0], args.out, params)
    print(f"wrote {args.out} ({args.size} px; PSNR of the {model.resolution} px reconstruction {error:.2f} dB)")


def run_edit(args: argparse.Namespace) -> None:
    strength = check_strength(args.strength)
    steps = check_steps(args.steps)
    models = load_models(args)
    model = models.get("diffae")
    directions = load_directions(models)
    directions.index(args.attribute)
    x = _load_input(args.image, model)
    x_T = fresh_noise(model, [args.seed]) if args.fresh_noise else None
    out = edit(model, directions, x, args.attribute, strength, steps, x_T=x_T)
    params = {"command": "edit", "image": str(args.image), "attribute": args.attribute, "strength": strength,
              "steps": steps, "seed": args.seed, "fresh_noise": bool(args.fresh_noise)}
    save_png(tensor_to_pil(out)[0], args.out, params)
    print(f"wrote {args.out}")


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    r = sub.add_parser("reconstruct", help="DiffAE encode (z_sem + DDIM inversion) and decode an image",
                       parents=[models])
    r.add_argument("--image", required=True)
    r.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    r.add_argument("--size", type=int, choices=(32, 64, 128), default=32,
                   help="output size: the model's (32), or 64 / 128 through the super-resolution stages")
    r.add_argument("--out", required=True, help="output PNG file")
    r.set_defaults(handler=run_reconstruct, out_kind="file")

    e = sub.add_parser("edit", help="move an image along an attribute direction of the DiffAE semantic code",
                       parents=[models])
    e.add_argument("--image", required=True)
    e.add_argument("--attribute", required=True, help="a name from `python -m core attributes`")
    e.add_argument("--strength", type=finite, required=True,
                   help="in class gaps (-3..3): 1 moves an average image without the attribute onto the average "
                        "one with it; + towards the attribute, - away")
    e.add_argument("--seed", type=seed, default=0,
                   help="used with --fresh-noise only (encode/decode is deterministic DDIM)")
    e.add_argument("--fresh-noise", action="store_true",
                   help="decode with seeded fresh noise instead of the image's own x_T (keeps semantics only)")
    e.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    e.add_argument("--out", required=True, help="output PNG file")
    e.set_defaults(handler=run_edit, out_kind="file")

    d = sub.add_parser("diffae-directions", parents=[models],
                       help="fit and save the attribute directions and skin-tone offsets of a trained DiffAE")
    d.add_argument("--iterations", type=int, default=300)
    d.set_defaults(handler=run_directions)


def run_directions(args: argparse.Namespace) -> None:
    models = load_models(args)
    folder = Path(models.root) / "diffae"
    directions = fit_directions(models.get("diffae"), load_dataset(), args.iterations)
    directions.save(folder)
    print(f"wrote {len(directions.names)} directions ({', '.join(directions.names)}) to {folder}")
    offsets = fit_tone_offsets(models.get("diffae"), load_dataset())
    print(f"wrote the skin-tone offsets ({', '.join(map(str, offsets.counts.tolist()))} designs per tone) to "
          f"{offsets.save(folder)}")
