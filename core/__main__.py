"""Command line: `python -m core generate|classes|upscale ...` (the contract of DESIGN.md).

Every failure exits non-zero with one line naming what is wrong; outputs are computed in
full before anything is written, and each file is written atomically.

A command imports only what it uses: `classes`, `attributes` and `--help` read JSON and need no
torch (`LIGHT_COMMANDS`, `COMMAND_HELP`); `generate` and `upscale` do not import the modules
that add the other commands (`EXTRA_COMMANDS`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

from core.models.checkpoints import CheckpointError
from core.cli import check_output, finite


EXTRA_COMMANDS = ("core.translate", "core.diffae", "core.deepfloyd")
BUILTIN_COMMANDS = ("generate", "variations", "classes", "upscale", "attributes")
LIGHT_COMMANDS = ("classes", "attributes")   # answered from JSON files, without torch
# Every command's one-line help, for `python -m core --help` without importing the modules that add
# them (tests/test_cli.py checks it against the full parser).
COMMAND_HELP = {
    "generate": "text-to-image or class-conditional generation through the cascade",
    "classes": "list the class labels, one per line",
    "upscale": "diffusion super-resolution of an image",
    "variations": "variations of an image: its semantic code decoded with fresh noise",
    "attributes": "list the DiffAE edit attributes, one per line",
    "translate": "image-to-image: SDEdit, colorization, inpainting, ILVR",
    "reconstruct": "DiffAE encode (z_sem + DDIM inversion) and decode an image",
    "edit": "move an image along an attribute direction of the DiffAE semantic code",
    "deepfloyd": "text-to-image with DeepFloyd IF (stage I 64x64, stage II 256x256)",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", default=None, help="checkpoints folder or Hub repo id (default: ./checkpoints)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def _light_parser() -> argparse.ArgumentParser:
    """Every command with its help; only the LIGHT_COMMANDS with their options (no torch import)."""
    parser = argparse.ArgumentParser(prog="python -m core", description="The diffusion demo hub without a UI.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in COMMAND_HELP.items():
        p = sub.add_parser(name, help=text, add_help=name in LIGHT_COMMANDS)
        if name in LIGHT_COMMANDS:
            _common(p)
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; for a built-in `command`, without the commands of EXTRA_COMMANDS."""
    from core.pipeline import BASE_DEFAULTS, SR_DEFAULTS, SR_STAGE_DEFAULTS
    from core.diffusion.samplers import SAMPLERS
    from core.semantic import DECODER_STEPS
    parser = argparse.ArgumentParser(prog="python -m core", description="The diffusion demo hub without a UI.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help=COMMAND_HELP["generate"])
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt")
    what.add_argument("--label", help="a class from `python -m core classes`")
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--guidance", type=finite, default=None,
                   help=f"classifier-free guidance scale (default {BASE_DEFAULTS.guidance:g}; 1 = none)")
    g.add_argument("--classifier-scale", type=finite, default=None,
                   help="with --label: classifier guidance instead of classifier-free guidance, with the noise-aware "
                        "classifier (checkpoints/noisy_classifier) at this scale (0 = unconditional samples)")
    g.add_argument("--steps", type=int, default=BASE_DEFAULTS.steps)
    g.add_argument("--sampler", choices=[s for s in SAMPLERS], default=BASE_DEFAULTS.sampler)
    g.add_argument("--eta", type=finite, default=0.0)
    g.add_argument("--no-threshold", action="store_true", help="turn thresholding of x0 off")
    g.add_argument("--threshold-max", type=finite, default=BASE_DEFAULTS.threshold_max,
                   help="cap of the dynamic-thresholding scale: 1 = static clipping (default), "
                        "larger = Imagen's dynamic thresholding at percentile 0.995")
    g.add_argument("--sr-steps", type=int, default=None,
                   help=f"steps of each SR stage (default {SR_STAGE_DEFAULTS[0].steps} at 64 px, "
                        f"{SR_STAGE_DEFAULTS[1].steps} at 128 px)")
    g.add_argument("--sr-noise", type=int, default=SR_DEFAULTS.aug_level, help="SR noise-augmentation level (0-999)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num", type=int, default=1)
    g.add_argument("--size", type=int, choices=(32, 64, 128), default=128)
    g.add_argument("--base", choices=("pixel", "semantic"), default=None,
                   help="the 32 px base: pixel (the text/class UNet) or semantic (a prior over the DiffAE's "
                        "semantic code, then its decoder); default: semantic when its models are there")
    g.add_argument("--decoder-steps", type=int, default=DECODER_STEPS,
                   help="semantic base: DDIM steps of the DiffAE decoder")
    g.add_argument("--out", required=True, help="folder; writes 000.png, 001.png, ...")
    g.set_defaults(out_kind="folder")
    _common(g)

    v = sub.add_parser("variations", help=COMMAND_HELP["variations"])
    v.add_argument("--image", required=True)
    v.add_argument("--num", type=int, default=4)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--size", type=int, choices=(32, 64, 128), default=128)
    v.add_argument("--prompt", default=None, help="move the image's semantics towards this prompt (with --mix)")
    v.add_argument("--mix", type=finite, default=0.0, help="0: the image's own code ... 1: the prompt's (default 0)")
    v.add_argument("--guidance", type=finite, default=BASE_DEFAULTS.guidance, help="the prior's guidance for --prompt")
    v.add_argument("--decoder-steps", type=int, default=DECODER_STEPS)
    v.add_argument("--sr-steps", type=int, help=f"steps of each SR stage (default {SR_STAGE_DEFAULTS[0].steps} at "
                                                f"64 px, {SR_STAGE_DEFAULTS[1].steps} at 128 px)")
    v.add_argument("--out", required=True, help="folder; writes 000.png, 001.png, ...")
    v.set_defaults(out_kind="folder")
    _common(v)

    c = sub.add_parser("classes", help=COMMAND_HELP["classes"])
    _common(c)

    a = sub.add_parser("attributes", help=COMMAND_HELP["attributes"])
    _common(a)

    u = sub.add_parser("upscale", help=COMMAND_HELP["upscale"])
    u.add_argument("--image", required=True)
    u.add_argument("--size", type=int, choices=(64, 128), required=True, help="output size")
    u.add_argument("--factor", type=int, choices=(2, 4), default=2,
                   help="2: the input is taken at SIZE/2 (one SR stage); 4: at 32 (both stages, SIZE 128 only)")
    u.add_argument("--steps", type=int, default=SR_DEFAULTS.steps)
    u.add_argument("--sampler", choices=[s for s in SAMPLERS], default=SR_DEFAULTS.sampler)
    u.add_argument("--noise", type=int, default=SR_DEFAULTS.aug_level, help="noise-augmentation level (0-999)")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--out", required=True, help="output PNG file")
    u.set_defaults(out_kind="file")
    _common(u)

    for module in EXTRA_COMMANDS:  # translate; reconstruct / edit (core.diffae); deepfloyd
        if command not in BUILTIN_COMMANDS and importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_cli(sub, _common)
    return parser


def names(args: argparse.Namespace) -> None:
    """`classes` / `attributes`: names from the checkpoints' JSON files (core.models.names), no torch."""
    from core.models.checkpoints import resolve_checkpoints
    from core.models.names import attribute_names, class_names
    root = resolve_checkpoints(args.checkpoints)
    print("\n".join(class_names(root) if args.command == "classes" else attribute_names(root / "diffae")))


def run(args: argparse.Namespace) -> None:
    if args.command in LIGHT_COMMANDS:
        names(args)
        return
    from core.cascade import ModelSet, generate, set_cpu_threads
    from core.images import open_image, pil_to_tensor, save_png, tensor_to_pil
    from core.pipeline import BASE_DEFAULTS, SR_STAGE_DEFAULTS, StageSettings
    set_cpu_threads()
    models = ModelSet(args.checkpoints, args.device)
    if hasattr(args, "handler"):  # a command added by a module of EXTRA_COMMANDS
        args.handler(args, models)
        return
    if args.command == "generate":
        if args.classifier_scale is not None and args.guidance is not None:
            raise ValueError("--guidance (classifier-free) and --classifier-scale (classifier guidance) are "
                             "alternatives; give one")
        guidance = BASE_DEFAULTS.guidance if args.guidance is None else args.guidance
        base = StageSettings(sampler=args.sampler, steps=args.steps, guidance=guidance, eta=args.eta,
                             threshold=None if args.no_threshold else BASE_DEFAULTS.threshold,
                             threshold_max=args.threshold_max)
        sr = tuple(replace(d, steps=d.steps if args.sr_steps is None else args.sr_steps, aug_level=args.sr_noise)
                   for d in SR_STAGE_DEFAULTS)
        out = Path(args.out)
        result = generate(models, prompt=args.prompt, negative_prompt=args.negative_prompt, label=args.label,
                          num=args.num, seed=args.seed, size=args.size, base=base, sr=sr,
                          base_model=args.base, decoder_steps=args.decoder_steps,
                          classifier_scale=args.classifier_scale)
        _write_all(result, out, args.seed, "generate")
        return
    if args.command == "variations":
        from core.cascade import variations
        out = Path(args.out)
        image = pil_to_tensor(open_image(args.image))
        sr = tuple(d if args.sr_steps is None else replace(d, steps=args.sr_steps) for d in SR_STAGE_DEFAULTS)
        result = variations(models, image, num=args.num, seed=args.seed, size=args.size, prompt=args.prompt,
                            mix=args.mix, guidance=args.guidance, decoder_steps=args.decoder_steps, sr=sr)
        result.parameters["image"] = Path(args.image).name
        _write_all(result, out, args.seed, "variations")
        return
    if args.command == "upscale":
        from core.pipeline import upscale
        if args.size == 64 and args.factor == 4:
            raise ValueError("--factor 4 needs --size 128 (the cascade starts at 32)")
        stage_names = ["sr64", "sr128"] if args.factor == 4 else [f"sr{args.size}"]
        low = pil_to_tensor(open_image(args.image), size=args.size // args.factor)
        x = low
        settings = StageSettings(sampler=args.sampler, steps=args.steps, guidance=1.0, aug_level=args.noise)
        for i, name in enumerate(stage_names):
            x = upscale(models.get(name), x, [args.seed], settings, stage=i + 1)
        params = {"command": "upscale", "image": str(args.image), "size": args.size, "factor": args.factor,
                  "steps": args.steps,
                  "sampler": args.sampler, "noise": args.noise, "seed": args.seed}
        save_png(tensor_to_pil(x)[0], args.out, params)
        print(f"wrote {args.out}")


def _write_all(result, out: Path, seed: int, command: str) -> None:
    from core.images import save_png, tensor_to_pil
    for i, image in enumerate(tensor_to_pil(result.final)):
        params = {**result.parameters, "seed": seed + i, "command": command}
        save_png(image, out / f"{i:03d}.png", params)
    if "note" in result.parameters:
        print(f"note: {result.parameters['note']}")
    print(f"wrote {len(result.final)} image(s) to {out}")


def check_out(args: argparse.Namespace) -> None:
    """The output path of any command that has one, before any work (core.cli.check_output).
    Each command says whether --out is a file or a folder (`out_kind`)."""
    if getattr(args, "out", None) is not None:
        check_output(args.out, {"folder": True, "file": False}.get(getattr(args, "out_kind", None)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    if command is None or command in LIGHT_COMMANDS or command in ("-h", "--help"):
        args = _light_parser().parse_args(argv)
    else:
        args = build_parser(command).parse_args(argv)
    try:
        check_out(args)
        run(args)
    except (ValueError, CheckpointError, OSError) as e:  # ImageError is a ValueError; OSError: e.g. a full disk
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
