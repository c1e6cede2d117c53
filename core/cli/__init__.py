"""The command line, `python -m core COMMAND ...`: one module per group of commands (`main` lists
them and runs one). What they share is here: argument types (bad numbers become argparse errors
naming the value), the options of every command that loads models (`model_options`, a parent
parser) and the check of an output path before any work."""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

MAX_SEED = 2**32 - 1   # seeds from 0 to 2^32 - 1, the same range as the app's


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line ("error: ...", exit status 2) instead of the
    usage block before it; `--help` still prints the usage. Subparsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value
    return parse


seed = whole_number(0, MAX_SEED)   # a seed: the same range as the app's


def finite(text: str) -> float:
    """A float that is neither inf nor NaN."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def number_list(kind: Callable[[str], object]) -> Callable[[str], list]:
    """A comma-separated, non-empty list of numbers of `kind` (int, float or `finite`)."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
        if not values:
            raise argparse.ArgumentTypeError("the list is empty")
        return values
    return parse


def text_list(text: str) -> list[str]:
    """A comma-separated list of names (blanks dropped)."""
    return [v.strip() for v in text.split(",") if v.strip()]


def spec_options(parser, params: Sequence) -> None:
    """An option for each parameter of a capability spec (`core.capabilities.Param`) that has one
    (`Param.option`): its type and range checked by `Param.parse`, its choices, its help; the value
    stored under the parameter's name, None when not given (the spec's default then applies,
    `core.capabilities.Capability.check`). A bool parameter that defaults to True is a --no-... switch."""
    for param in params:
        if param.option is None:
            continue
        if param.type is bool:
            parser.add_argument(param.option, dest=param.name, action="store_const", const=not param.default,
                                default=None, help=("turn off: " if param.default else "turn on: ") + param.help)
            continue
        shown = "" if param.default in (None, "") else f" (default {param.default})"
        parser.add_argument(param.option, dest=param.name, type=_spec_type(param), choices=param.choices,
                            default=None, help=param.help + shown)


def _spec_type(param) -> Callable[[str], object]:
    def parse(text: str):
        try:
            return param.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = param.type.__name__   # argparse names the type in its "invalid ..." message
    return parse


def spec_values(args: argparse.Namespace, params: Sequence) -> dict:
    """The values the command line gave for these parameters (those not given are left out)."""
    return {p.name: getattr(args, p.name) for p in params if getattr(args, p.name, None) is not None}


def model_options() -> argparse.ArgumentParser:
    """A parent parser with the options of every command that loads models: --checkpoints, --device."""
    p = OneLineParser(add_help=False)
    p.add_argument("--checkpoints", default=None, help="checkpoints folder or Hub repo id (default: ./checkpoints)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return p


def format_table(rows: Sequence[dict]) -> str:
    """Rows of equal keys as a markdown table."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def load_models(args: argparse.Namespace):
    """The ModelSet of --checkpoints and --device, sampling on the CPU threads that are free."""
    from core.models.modelset import ModelSet, set_cpu_threads  # deferred: torch (`--help`, `classes` need none)
    set_cpu_threads()
    return ModelSet(args.checkpoints, args.device)


def check_output(path: str | os.PathLike, folder: bool | None) -> Path:
    """Check before any work that an output can be written at `path`: `folder` True for an output
    folder, False for an output file, None when either may be meant. The nearest existing folder
    on the way must accept a new file (tried with a temporary file, removed at once), so a
    read-only place, a file in the way or a pseudo-filesystem such as /proc fails here, with one
    line naming the path, instead of after the work. Raises ValueError."""
    out = Path(path)
    if folder is False and out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a PNG file name")
    if folder is True and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if folder is False and out.exists() and not os.access(out, os.W_OK):
        raise ValueError(f"--out {out} exists and cannot be overwritten")
    start = out if (folder is not False and out.is_dir()) else out.parent
    existing = next(p for p in [start, *start.parents] if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out} cannot be written: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"--out {out} cannot be written: no file can be created in {existing} "
                         f"({e.strerror or e})") from None
    return out
