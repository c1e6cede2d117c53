"""`generate`, `variations` and `upscale`: images through the cascade (`core.cascade`), written as
PNGs that carry their parameters."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from core.cascade import base_defaults, default_base, generate, sr_defaults, variations
from core.cli import finite, load_models, seed
from core.data.emoji import DataSourceMissing, load_dataset
from core.diffusion.samplers import SAMPLERS
from core.images import open_image, pil_to_tensor, save_png, tensor_to_pil
from core.pipeline import BASE_DEFAULTS, SR_DEFAULTS, SR_STAGE_DEFAULTS, StageSettings, upscale
from core.reading import DEFAULT_PROMPT_READING, PROMPT_READINGS, read_prompt
from core.semantic import CLIP_SCALE, CODE_CLASSIFIER_SCALE, DECODER_SAMPLER, DECODER_STEPS, PRIOR_DEFAULTS

HELP = {"generate": "text-to-image or class-conditional generation through the cascade",
        "variations": "variations of an image: its semantic code decoded with fresh noise",
        "upscale": "diffusion super-resolution of an image"}


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    g = sub.add_parser("generate", help=HELP["generate"], parents=[models])
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt")
    what.add_argument("--label", help="a class from `python -m core classes`")
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--guidance", type=finite, default=None,
                   help=f"classifier-free guidance scale (default {BASE_DEFAULTS.guidance:g}, or the guidance the "
                        "pixel base's checkpoint names; 1 = none)")
    g.add_argument("--classifier-scale", type=finite, default=None,
                   help="with --label: classifier guidance at this scale; the semantic base's prior steered by the "
                        "noise-aware classifier of its codes (checkpoints/code_classifier; default scale "
                        f"{CODE_CLASSIFIER_SCALE:g}), the pixel class base by the noise-aware image classifier "
                        "(checkpoints/noisy_classifier). The prior runs unconditionally unless --guidance is given "
                        "(then the gradient steers the classifier-free guided prior); 0 = no classifier guidance")
    g.add_argument("--clip-scale", type=finite, default=None,
                   help="with --prompt, semantic base: CLIP guidance at this scale, the prior steered by the "
                        "noise-aware code-text matcher (checkpoints/code_matcher; default scale "
                        f"{CLIP_SCALE:g}); unconditional prior unless --guidance is given")
    g.add_argument("--prompt-reading", choices=PROMPT_READINGS, default=None,
                   help="semantic base: nearest = when the prompt is read confidently as a known emoji, the prior "
                        "draws that emoji's name (\"a blue car\" -> a training emoji's name; printed as 'drawn as'); "
                        f"as-typed = the prior draws the prompt itself (default {DEFAULT_PROMPT_READING})")
    g.add_argument("--steps", type=int, default=None,
                   help=f"steps of the base (default {BASE_DEFAULTS.steps} for the pixel base, "
                        f"{PRIOR_DEFAULTS.steps} for the semantic base's prior)")
    g.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help=f"sampler of the base (default {BASE_DEFAULTS.sampler} for the pixel base, "
                        f"{PRIOR_DEFAULTS.sampler} for the semantic base's prior)")
    g.add_argument("--eta", type=finite, default=0.0)
    g.add_argument("--no-threshold", action="store_true", help="turn thresholding of x0 off")
    g.add_argument("--threshold-max", type=finite, default=BASE_DEFAULTS.threshold_max,
                   help="cap of the dynamic-thresholding scale: 1 = static clipping (default), "
                        "larger = Imagen's dynamic thresholding at percentile 0.995")
    g.add_argument("--sr-steps", type=int, default=None,
                   help=f"steps of each SR stage (default {SR_STAGE_DEFAULTS[0].steps} at 64 px, "
                        f"{SR_STAGE_DEFAULTS[1].steps} at 128 px)")
    g.add_argument("--sr-noise", type=int, default=None,
                   help=f"SR noise level (0-999; default: each stage checkpoint's, {SR_DEFAULTS.aug_level})")
    g.add_argument("--seed", type=seed, default=0)
    g.add_argument("--num", type=int, default=1)
    g.add_argument("--size", type=int, choices=(32, 64, 128), default=128)
    g.add_argument("--base", choices=("pixel", "semantic"), default=None,
                   help="the 32 px base: pixel (the text/class UNet) or semantic (a prior over the DiffAE's "
                        "semantic code, then its decoder); default: semantic when its models are there")
    g.add_argument("--decoder-steps", type=int, default=None,
                   help=f"semantic base: {DECODER_SAMPLER} steps of the DiffAE decoder (default: its checkpoint's, "
                        f"{DECODER_STEPS})")
    g.add_argument("--decoder-guidance", type=finite, default=None,
                   help="semantic base: classifier-free guidance of the DiffAE decoder on the semantic code "
                        "(default: the scale its checkpoint names; 1 = none)")
    g.add_argument("--out", required=True, help="folder; writes 000.png, 001.png, ...")
    g.set_defaults(handler=run_generate, out_kind="folder")

    v = sub.add_parser("variations", help=HELP["variations"], parents=[models])
    v.add_argument("--image", required=True)
    v.add_argument("--num", type=int, default=4)
    v.add_argument("--seed", type=seed, default=0)
    v.add_argument("--size", type=int, choices=(32, 64, 128), default=128)
    v.add_argument("--prompt", default=None, help="move the image's semantics towards this prompt (with --mix)")
    v.add_argument("--mix", type=finite, default=0.0, help="0: the image's own code ... 1: the prompt's (default 0)")
    v.add_argument("--guidance", type=finite, default=None,
                   help=f"the prior's guidance for --prompt (default: its checkpoint's, {PRIOR_DEFAULTS.guidance:g})")
    v.add_argument("--decoder-steps", type=int, default=None,
                   help=f"{DECODER_SAMPLER} steps of the DiffAE decoder (default: its checkpoint's, {DECODER_STEPS})")
    v.add_argument("--decoder-guidance", type=finite, default=None,
                   help="classifier-free guidance of the DiffAE decoder on the semantic code "
                        "(default: the scale its checkpoint names; 1 = none)")
    v.add_argument("--sr-steps", type=int, help=f"steps of each SR stage (default {SR_STAGE_DEFAULTS[0].steps} at "
                                                f"64 px, {SR_STAGE_DEFAULTS[1].steps} at 128 px)")
    v.add_argument("--out", required=True, help="folder; writes 000.png, 001.png, ...")
    v.set_defaults(handler=run_variations, out_kind="folder")

    u = sub.add_parser("upscale", help=HELP["upscale"], parents=[models])
    u.add_argument("--image", required=True)
    u.add_argument("--size", type=int, choices=(64, 128), required=True, help="output size")
    u.add_argument("--factor", type=int, choices=(2, 4), default=None,
                   help="2: the input is taken at SIZE/2 (one SR stage); 4: at 32 (both stages, SIZE 128 only); "
                        "default: from the input, 4 for an input of at most 32 px at SIZE 128, else 2")
    u.add_argument("--steps", type=int, default=SR_DEFAULTS.steps)
    u.add_argument("--sampler", choices=list(SAMPLERS), default=SR_DEFAULTS.sampler)
    u.add_argument("--noise", type=int, default=SR_DEFAULTS.aug_level, help="noise-augmentation level (0-999)")
    u.add_argument("--seed", type=seed, default=0)
    u.add_argument("--out", required=True, help="output PNG file")
    u.set_defaults(handler=run_upscale, out_kind="file")


def run_generate(args: argparse.Namespace) -> None:
    if args.classifier_scale is not None and args.label is None:
        raise ValueError("classifier guidance steers towards a class: give a label, not a prompt")
    if args.clip_scale is not None and args.prompt is None:
        raise ValueError("CLIP guidance steers towards a text: give a prompt, not a label")
    if args.clip_scale is not None and args.base == "pixel":
        raise ValueError("--clip-scale steers the semantic base's prior: use --base semantic (or no --base)")
    if args.classifier_scale is not None and args.guidance is not None and args.base == "pixel":
        raise ValueError("--guidance (classifier-free) and --classifier-scale (classifier guidance) are "
                         "alternatives on the pixel base; give one")
    models = load_models(args)
    # the defaults of the base that will run: the pixel UNet's or the semantic base's prior's
    base_model = args.base or default_base(models)
    defaults = base_defaults(base_model, models, args.prompt is not None)
    if base_model == "semantic" and (args.classifier_scale is not None or args.clip_scale is not None):
        defaults = replace(defaults, guidance=0.0)   # the unconditional prior, steered by the gradient alone
    base = StageSettings(sampler=args.sampler or defaults.sampler,
                         steps=defaults.steps if args.steps is None else args.steps,
                         guidance=defaults.guidance if args.guidance is None else args.guidance, eta=args.eta,
                         threshold=None if args.no_threshold else BASE_DEFAULTS.threshold,
                         threshold_max=args.threshold_max)
    sr = tuple(replace(d, steps=d.steps if args.sr_steps is None else args.sr_steps,
                       aug_level=d.aug_level if args.sr_noise is None else args.sr_noise)
               for d in sr_defaults(models, args.size))
    result = generate(models, prompt=args.prompt, negative_prompt=args.negative_prompt, label=args.label,
                      num=args.num, seed=args.seed, size=args.size, base=base, sr=sr,
                      base_model=args.base, decoder_steps=args.decoder_steps, decoder_guidance=args.decoder_guidance,
                      classifier_scale=args.classifier_scale, clip_scale=args.clip_scale,
                      prompt_reading=args.prompt_reading)
    write_all(result, Path(args.out), args.seed, "generate")
    if args.prompt is not None and base_model == "semantic":
        print_reading(models.get(models.get("prior").config.text_encoder), args.prompt)
        print(drawn_as(result.parameters))


def drawn_as(parameters: dict) -> str:
    """One line: the known emoji the semantic base drew the prompt as, or that it drew the prompt."""
    read_as = parameters.get("read_as")
    if read_as is not None:
        return (f"drawn as: {read_as['emoji']} {read_as['name']} (score {read_as['score']:.2f}; the prior drew "
                f"{parameters.get('prior_prompt', parameters['prompt'])!r}; --prompt-reading as-typed draws the "
                "prompt itself)")
    if parameters.get("prompt_reading") == "nearest":
        return "drawn as typed: the prompt is not read confidently as a known emoji"
    return "drawn as typed (--prompt-reading as-typed)"


def print_reading(encoder, prompt: str) -> None:
    """How the text encoder read the prompt: the nearest emoji names, and the words it does not know."""
    try:
        data = load_dataset()
    except DataSourceMissing as e:   # no emoji data set here: the images are written, the reading is not shown
        print(f"note: how the prompt was read is not shown ({e})")
        return
    print(read_prompt(encoder, prompt, data).summary())


def run_variations(args: argparse.Namespace) -> None:
    models = load_models(args)
    image = pil_to_tensor(open_image(args.image))
    sr = tuple(d if args.sr_steps is None else replace(d, steps=args.sr_steps) for d in sr_defaults(models, args.size))
    result = variations(models, image, num=args.num, seed=args.seed, size=args.size, prompt=args.prompt,
                        mix=args.mix, guidance=args.guidance, decoder_steps=args.decoder_steps, sr=sr,
                        decoder_guidance=args.decoder_guidance)
    result.parameters["image"] = Path(args.image).name
    write_all(result, Path(args.out), args.seed, "variations")


def upscale_factor(size: int, input_side: int, factor: int | None) -> int:
    """The factor of an upscale to `size`: the one given, else from the input's longer side (an
    input of at most 32 px taken to 128 gets both SR stages, as the cascade runs them)."""
    if factor is None:
        factor = 4 if size == 128 and input_side <= 32 else 2
    if size == 64 and factor == 4:
        raise ValueError("--factor 4 needs --size 128 (the cascade starts at 32)")
    return factor


def run_upscale(args: argparse.Namespace) -> None:
    image = open_image(args.image)
    args.factor = upscale_factor(args.size, max(image.size), args.factor)
    models = load_models(args)
    stage_names = ["sr64", "sr128"] if args.factor == 4 else [f"sr{args.size}"]
    x = pil_to_tensor(image, size=args.size // args.factor)
    settings = StageSettings(sampler=args.sampler, steps=args.steps, guidance=1.0, aug_level=args.noise)
    for i, name in enumerate(stage_names):
        x = upscale(models.get(name), x, [args.seed], settings, stage=i + 1)
    params = {"command": "upscale", "image": str(args.image), "size": args.size, "factor": args.factor,
              "steps": args.steps, "sampler": args.sampler, "noise": args.noise, "seed": args.seed}
    save_png(tensor_to_pil(x)[0], args.out, params)
    print(f"wrote {args.out}")


def write_all(result, out: Path, seed: int, command: str) -> None:
    """Every final image of a CascadeResult as out/000.png, 001.png, ... with its parameters."""
    for i, image in enumerate(tensor_to_pil(result.final)):
        save_png(image, out / f"{i:03d}.png", {**result.parameters, "seed": seed + i, "command": command})
    if "note" in result.parameters:
        print(f"note: {result.parameters['note']}")
    print(f"wrote {len(result.final)} image(s) to {out}")
