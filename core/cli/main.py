"""`python -m core COMMAND ...`: every command line of the hub, each added by one module of
`core.cli` (`COMMANDS`). Every failure exits with status 2 and one line naming what is wrong;
outputs are checked before any work (`check_output`), computed in full before anything is
written, and each file is written atomically.

A command imports only what it uses: `--help` lists the commands from `COMMANDS` alone, and
`classes`, `attributes` read JSON files (`core.cli.names`), so none of them imports torch; any
other command builds the parsers of its own module and of those light ones, no more.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from core.cli import OneLineParser, check_output, model_options
from core.models.checkpoints import CheckpointError

LIGHT = "core.cli.names"   # the commands answered without torch
# command -> (the module of core.cli that adds it, its one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("core.cli.generate", "text-to-image or class-conditional generation through the cascade"),
    "classes": (LIGHT, "list the class labels, one per line"),
    "upscale": ("core.cli.generate", "diffusion super-resolution of an image"),
    "variations": ("core.cli.generate", "variations of an image: its semantic code decoded with fresh noise"),
    "attributes": (LIGHT, "list the DiffAE edit attributes, one per line"),
    "translate": ("core.cli.translate", "image-to-image: SDEdit, colorization, inpainting, ILVR"),
    "reconstruct": ("core.cli.diffae", "DiffAE encode (z_sem + DDIM inversion) and decode an image"),
    "edit": ("core.cli.diffae", "move an image along an attribute direction of the DiffAE semantic code"),
    "diffae-directions": ("core.cli.diffae",
                          "fit and save the attribute directions and skin-tone offsets of a trained DiffAE"),
    "deepfloyd": ("core.cli.deepfloyd", "text-to-image with DeepFloyd IF (stage I 64x64, stage II 256x256)"),
    "ilvr-strip": ("core.cli.ilvr", "ILVR at several factors N: a strip and its figures"),
    "mechanics": ("core.cli.mechanics", "the panels of the How it works tab: grids and tables"),
    "train": ("core.cli.train", "train (or resume) a model, or all of them in order"),
    "evaluate": ("core.cli.evaluate", "evaluate the bases and SR stages on the held-out split (markdown report)"),
    "evaluate-translate": ("core.cli.evaluate",
                           "measure Palette / RePaint / SDEdit on held-out emoji; prints markdown"),
    "evaluate-diffae": ("core.cli.evaluate", "DiffAE reconstruction PSNR and edit success on held-out emoji"),
    "judge": ("core.cli.judge", "score images with the judge, or train it"),
    "guidance-comparison": ("core.cli.guidance_comparison",
                            "classifier-free, classifier and CLIP guidance: plot and table"),
    "classifiers": ("core.cli.classifiers", "train the attribute classifiers (as `train classifiers`)"),
    "data": ("core.cli.data", "build the emoji data set cache and print its counts"),
}
DESCRIPTION = "The diffusion demo hub without a UI."


def _light_parser() -> argparse.ArgumentParser:
    """Every command with its help; only the light ones with their options (no torch import)."""
    parser = OneLineParser(prog="python -m core", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    light = importlib.import_module(LIGHT)
    for name, (module, text) in COMMANDS.items():
        if module != LIGHT:
            sub.add_parser(name, help=text, add_help=False)
    light.add_parsers(sub, model_options())
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, for `command`, of its module's commands and the light ones."""
    parser = OneLineParser(prog="python -m core", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    if command in COMMANDS:
        modules = dict.fromkeys((COMMANDS[command][0], LIGHT))
    else:
        modules = dict.fromkeys(module for module, _ in COMMANDS.values())   # in order, once each
    models = model_options()
    for module in modules:   # by name: a command imports no module but its own (torch, diffusers, ...)
        importlib.import_module(module).add_parsers(sub, models)
    return parser


def check_out(args: argparse.Namespace) -> None:
    """The output path of any command that has one, before any work (core.cli.check_output).
    Each command says whether --out is a file or a folder (`out_kind`)."""
    if getattr(args, "out", None) is not None:
        check_output(args.out, {"folder": True, "file": False}.get(getattr(args, "out_kind", None)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    if command in COMMANDS and COMMANDS[command][0] != LIGHT:
        args = build_parser(command).parse_args(argv)
    else:   # --help, no command, an unknown one or a light one: no torch
        args = _light_parser().parse_args(argv)
    try:
        check_out(args)
        args.handler(args)
    except (ValueError, CheckpointError, OSError) as e:  # ImageError is a ValueError; OSError: e.g. a full disk
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C: nothing was written (outputs are written whole, at the end)
        print("stopped", file=sys.stderr)
        return 130
    return 0
