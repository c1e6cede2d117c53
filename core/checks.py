"""The checks of user arguments that several parts of core share, each rule in one place: a bad
value raises ValueError with a message that names the argument and what it must be."""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np
from torch import Tensor


def _number(name: str, value) -> float:
    """A real number (a Python or numpy number, or a 1-element tensor) as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number, Tensor)) or (
            isinstance(value, Tensor) and value.numel() != 1):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def check_finite(name: str, value, minimum: float | None = None) -> float:
    """A finite real number (a Python or numpy number, or a 1-element tensor) as a float, or a
    ValueError that names the argument."""
    v = _number(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return v


def check_range(name: str, value, low: float, high: float) -> float:
    """A finite number from `low` to `high` (a strength, a scale) as a float."""
    v = _number(name, value)
    if not (math.isfinite(v) and low <= v <= high):
        raise ValueError(f"{name} must be a finite number between {low:g} and {high:g}, got {value!r}")
    return v


def _integer(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)   # int, numpy integers, 0-d integer tensors; not floats
    except TypeError:
        return None


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """An integer from `low` to `high` (or at least `low`) as an int."""
    v = _integer(value)
    if v is None or v < low or (high is not None and v > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return v


def check_seeds(seeds: Sequence[int], minimum: int = 1, maximum: int | None = None) -> list[int]:
    """The seeds as a list of non-negative ints, from `minimum` to `maximum` of them."""
    seeds = list(seeds)
    if len(seeds) < minimum or (maximum is not None and len(seeds) > maximum):
        if maximum is None:
            raise ValueError(f"seeds must name at least {minimum} seed{'s' if minimum > 1 else ''}, got {len(seeds)}")
        raise ValueError(f"give from {minimum} to {maximum} seeds, got {len(seeds)}")
    values = [_integer(s) for s in seeds]
    for s, v in zip(seeds, values):
        if v is None or v < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
    return values


def as_batch(value: Tensor, n: int, name: str) -> Tensor:
    """A tensor [B, ...] for a batch of n: as it is when B = n, a batch-1 one expanded to n."""
    if not isinstance(value, Tensor) or value.ndim < 1:
        raise ValueError(f"{name} must be a tensor of shape [B, ...]")
    if value.shape[0] == n:
        return value
    if value.shape[0] == 1:
        return value.expand(n, *value.shape[1:])
    raise ValueError(f"{name} has batch {value.shape[0]}, expected {n} or 1")


def seed_streams(seeds: Sequence[int], stream: int = 0) -> list[int]:
    """The seeds of one random stream of each seed: seed * 1009 + stream. Every stage of a run
    draws its noise from a stream of its own (`core.pipeline.sample_stage`: the stage's number;
    its SR noise augmentation 500 + that; ILVR's reference 700; the semantic prior 7), so one
    seed is one image whatever the batch, and stages never share noise."""
    return [s * 1009 + stream for s in seeds]
