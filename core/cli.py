"""Argument types shared by the command lines (`python -m core ...`, `core.diffae`,
`core.evaluate`, `core.mechanics`): bad numbers become argparse errors naming the value."""
from __future__ import annotations

import argparse
import math
from typing import Callable


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
