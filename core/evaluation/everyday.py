"""Everyday prompts: how often a prompt as people type it ("a cat", "a blue car", "bananas", "a
dragon breathing fire") draws an emoji a person would accept for it.

The prompts and, for each, the emoji a person would accept (by character; several where several
are fine) are in ``everyday_prompts.json`` beside this module. They are kept out of every training
caption: they only measure.

Score (:func:`score_everyday`): each prompt is drawn with a few seeds; a sample is a **hit** when
one of the prompt's acceptable emoji is among the 5 real emoji nearest to it in the judge's
features (:func:`core.evaluation.judge.retrieval` with a set of asked emoji, counted by design:
an emoji up to skin tone and gender, as the prior's card counts seen-name retrieval). Reported
beside it: the share the judge accepts as an emoji at all, and the hit rate of the prompts with at
least one acceptable emoji in the training split (the others can only be drawn from what the
models never saw).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from core.evaluation.held_out import mean_of
from core.evaluation.judge import Judge, retrieval
from core.evaluation.scorecard import Sampler, labelled_grid

PROMPTS_FILE = Path(__file__).with_name("everyday_prompts.json")


@dataclass(frozen=True)
class EverydayPrompt:
    prompt: str
    emoji: tuple[str, ...]   # the emoji a person would accept, as characters


def _graphemes(text: str) -> list[str]:
    import regex  # one user-perceived character each (ZWJ sequences, skin tones, flags stay whole)
    return regex.findall(r"\X", text)


def load_everyday(path: str | Path | None = None) -> list[EverydayPrompt]:
    """The everyday prompts of ``path`` (default: the committed ``everyday_prompts.json``)."""
    path = Path(path) if path is not None else PROMPTS_FILE
    rows = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    out = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(x, str) for x in row) and row[1]):
            raise ValueError(f"{path}: each prompt is [prompt, acceptable emoji], got {row!r}")
        out.append(EverydayPrompt(row[0], tuple(_graphemes(row[1]))))
    return out


def _key(emoji: str) -> str:
    return emoji.replace("\ufe0f", "")


def acceptable_indices(data, item: EverydayPrompt) -> list[int]:
    """Data set indices of the emoji acceptable for ``item`` (U+FE0F ignored); a KeyError names
    an emoji the data set does not have."""
    by_emoji = getattr(data, "_everyday_index", None)
    if by_emoji is None:
        by_emoji = {}
        for i, r in enumerate(data.records):
            by_emoji.setdefault(_key(r.emoji), i)
        data._everyday_index = by_emoji
    missing = [e for e in item.emoji if _key(e) not in by_emoji]
    if missing:
        raise KeyError(f"everyday prompt {item.prompt!r}: the data set has no emoji {' '.join(missing)}")
    return [by_emoji[_key(e)] for e in item.emoji]


def score_everyday(sample: Sampler, judge: Judge, data, prompts: Sequence[EverydayPrompt] | None = None,
                   seeds: Sequence[int] = (0, 1), k: int = 5) -> dict:
    """Draw every prompt with every seed (``sample(prompts, seeds) -> [B, 3, H, W]`` in [-1, 1])
    and score it. Returns ``hit_rate`` (an acceptable emoji among the k nearest real emoji),
    ``accepted`` (the judge accepts the sample as an emoji), ``hit_rate_seen`` over the prompts
    with an acceptable training emoji (``n_seen`` samples), ``per_prompt`` rows and ``images``."""
    prompts = list(prompts if prompts is not None else load_everyday())
    asked = [p for p in prompts for _ in seeds]
    seed_list = [int(s) for _ in prompts for s in seeds]
    wanted = [acceptable_indices(data, p) for p in asked]
    images = sample([p.prompt for p in asked], seed_list).detach().float().cpu().clamp(-1, 1)
    if images.shape[0] != len(asked):
        raise ValueError(f"the sampler returned {images.shape[0]} images for {len(asked)} prompts")
    hits = retrieval(judge, images, wanted, k)
    accepted = judge.scores(images)["accepted"]
    seen = torch.tensor([any(not data.records[i].heldout for i in w) for w in wanted])
    per_prompt = []
    for j, p in enumerate(prompts):
        rows = slice(j * len(seeds), (j + 1) * len(seeds))
        per_prompt.append({"prompt": p.prompt, "emoji": "".join(p.emoji), "hits": hits[rows].tolist(),
                           "accepted": accepted[rows].tolist(), "seen": bool(seen[rows][0])})
    return {"n_prompts": len(prompts), "n": len(asked), "k": k, "seeds": [int(s) for s in seeds],
            "resolution": int(images.shape[-1]), "hit_rate": mean_of(hits), "accepted": mean_of(accepted),
            "n_seen": int(seen.sum()), "hit_rate_seen": mean_of(hits[seen]) if seen.any() else float("nan"),
            "per_prompt": per_prompt, "images": images}


def everyday_grid(result: dict, path: str | Path, columns: int = 8) -> Path:
    """A labelled PNG of the scored samples: prompt above each picture, then "hit" / "miss"."""
    labels = [f"{r['prompt']}\n{'hit' if h else 'miss'}" for r in result["per_prompt"] for h in r["hits"]]
    return labelled_grid(result["images"], labels, path, columns=columns, scale=1 if result["resolution"] > 32 else 3,
                         above=True)


def format_everyday(result: dict) -> list[str]:
    """Markdown lines: the figures, then the prompts that missed."""
    k = result["k"]
    lines = [f"everyday prompts: {result['n_prompts']} prompts x {len(result['seeds'])} seeds at "
             f"{result['resolution']} px",
             f"- acceptable emoji among the {k} nearest real emoji: **{result['hit_rate']:.3f}** "
             f"({result['n']} samples)",
             f"- the same, prompts with an acceptable training emoji: {result['hit_rate_seen']:.3f} "
             f"({result['n_seen']} samples)",
             f"- accepted as an emoji by the judge: {result['accepted']:.3f}"]
    misses = [f"{r['prompt']} ({sum(r['hits'])}/{len(r['hits'])})" for r in result["per_prompt"]
              if not all(r["hits"])]
    if misses:
        lines.append("- missed (hits / seeds): " + ", ".join(misses))
    return lines
