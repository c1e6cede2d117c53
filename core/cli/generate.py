"""`generate`, `variations` and `upscale`: images through the cascade (`core.cascade`), written as
PNGs that carry their parameters."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from core.capabilities import CLASS_CONDITIONAL, TEXT_TO_IMAGE, UPSCALE
from core.cascade import sr_defaults, upscale_factor, variations
from core.cli import finite, load_models, seed, spec_options, spec_values
from core.data.emoji import DataSourceMissing, load_dataset
from core.images import open_image, pil_to_tensor, save_png, tensor_to_pil
from core.pipeline import SR_STAGE_DEFAULTS
from core.reading import read_prompt
from core.semantic import DECODER_SAMPLER, DECODER_STEPS, PRIOR_DEFAULTS

HELP = {"generate": "text-to-image or class-conditional generation through the cascade",
        "variations": "variations of an image: its semantic code decoded with fresh noise",
        "upscale": "diffusion super-resolution of an image"}


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    g = sub.add_parser("generate", help=HELP["generate"], parents=[models])
    what = g.add_mutually_exclusive_group(required=True)   # a prompt: text to image; a label: class-conditional
    spec_options(what, [TEXT_TO_IMAGE["prompt"], CLASS_CONDITIONAL["label"]])
    spec_options(g, generate_params())
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
    u.add_argument("--image", required=True, help=UPSCALE["image"].help)
    spec_options(u, UPSCALE.params)   # --factor, --size, --sampler, --steps, --noise, --seed
    u.add_argument("--out", required=True, help="output PNG file")
    u.set_defaults(handler=run_upscale, out_kind="file")


def generate_params() -> list:
    """The options of `generate`: the parameters of both specs but the prompt and the label; one both
    take with different ranges or defaults (num_images) spans both here, and the spec that runs checks its
    own and fills in its own default."""
    params = {p.name: p for p in TEXT_TO_IMAGE.params if p.name != "prompt"}
    for p in CLASS_CONDITIONAL.params:
        q = params.get(p.name)
        if q is None and p.name != "label":
            params[p.name] = p
        elif q is not None and (q.low, q.high, q.default) != (p.low, p.high, p.default):
            params[p.name] = replace(q, low=min(q.low, p.low), high=max(q.high, p.high), default=None,
                                     help=f"{q.help} (--prompt: {q.low:g} to {q.high:g}, default {q.default}; "
                                          f"--label: {p.low:g} to {p.high:g}, default {p.default})")
    return list(params.values())


def run_generate(args: argparse.Namespace) -> None:
    """Text to image (`core.capabilities.TEXT_TO_IMAGE`) for --prompt, class-conditional generation
    (`CLASS_CONDITIONAL`) for --label, with the options given and the spec's defaults."""
    if args.classifier_scale is not None and args.label is None:
        raise ValueError("classifier guidance steers towards a class: give a label, not a prompt")
    if args.clip_scale is not None and args.prompt is None:
        raise ValueError("CLIP guidance steers towards a text: give a prompt, not a label")
    if args.clip_scale is not None and args.base_model == "pixel":
        raise ValueError("--clip-scale steers the semantic base's prior: use --base semantic (or no --base)")
    spec = TEXT_TO_IMAGE if args.prompt is not None else CLASS_CONDITIONAL
    given = spec_values(args, spec.params)
    if spec is CLASS_CONDITIONAL:   # --classifier-scale asks for classifier guidance
        given["guidance_method"] = "classifier" if args.classifier_scale is not None else "cfg"
    values = spec.check(given)
    models = load_models(args)
    result = spec.run(models, values)
    write_all(result, Path(args.out), values["seed"], "generate")
    if args.prompt is not None and result.parameters["base_model"] == "semantic":
        print_reading(models.get(models.get("prior").config.text_encoder), args.prompt)
        print(drawn_as(result.parameters))


def drawn_as(parameters: dict) -> str:
    """One line: the known emoji the base drew the prompt as, or that it drew the prompt."""
    read_as = parameters.get("read_as")
    if read_as is not None:
        loose = "" if read_as.get("confident", True) else ", a loose reading"
        return (f"drawn as: {read_as['emoji']} {read_as['name']} (score {read_as['score']:.2f}{loose}; the base drew "
                f"{parameters.get('prior_prompt', parameters['prompt'])!r}; --prompt-reading as-typed draws the "
                "prompt itself)")
    if parameters.get("prompt_reading") == "nearest":
        return "drawn as typed: the prompt has no word the text encoder knows to go by"
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


def run_upscale(args: argparse.Namespace) -> None:
    """`core.capabilities.UPSCALE` of the image file, with the options given and the spec's defaults."""
    image = open_image(args.image)
    values = UPSCALE.check(spec_values(args, UPSCALE.params))
    values["factor"] = upscale_factor(values["size"], max(image.size), values["factor"])
    models = load_models(args)
    low = pil_to_tensor(image, size=values["size"] // values["factor"])
    result = UPSCALE.run(models, values, low, str(args.image))
    save_png(tensor_to_pil(result.final)[0], args.out, result.parameters)
    print(f"wrote {args.out}")


def write_all(result, out: Path, seed: int, command: str) -> None:
    """Every final image of a CascadeResult as out/000.png, 001.png, ... with its parameters."""
    for i, image in enumerate(tensor_to_pil(result.final)):
        save_png(image, out / f"{i:03d}.png", {**result.parameters, "seed": seed + i, "command": command})
    if "note" in result.parameters:
        print(f"note: {result.parameters['note']}")
    print(f"wrote {len(result.final)} image(s) to {out}")
