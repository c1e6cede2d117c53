"""Which held-out emoji an evaluation draws and what their captions name, and the small helpers
every section of `core.evaluation.evaluate` shares (seeded selections, batches, settings)."""
from __future__ import annotations

import re

import torch

from core.data.emoji import TONES, captions_for

_PERSON_WORDS = frozenset({"person", "people", "adult", "child", "baby", "mx"})


def mean_of(values) -> float:
    t = torch.as_tensor(values, dtype=torch.float64)
    return float(t.mean()) if t.numel() else float("nan")


def names_gender(record) -> str | None:
    """The gender a caption names: man / woman (from the name's words, as core.data.emoji labels
    them), person when the name says person / people / adult / child / baby / mx; else None."""
    if record.gender in ("man", "woman"):
        return record.gender
    if record.gender == "person" and set(re.findall(r"[a-z]+", record.name.lower())) & _PERSON_WORDS:
        return "person"
    return None


def names_skin_tone(record) -> str | None:
    """The single skin tone a caption names (light ... dark), else None."""
    return record.skin_tone if record.skin_tone in TONES else None


def caption_of(record) -> str:
    """The caption used for a held-out emoji: the first of ``captions_for`` (fixed)."""
    return captions_for(record)[0]


def heldout_order(data, seed: int) -> list[int]:
    """All held-out indices in a seeded order (selections take prefixes of it)."""
    idx = data.indices("heldout")
    perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))
    return idx[perm].tolist()


def chunks(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))
