"""The README's picture: real outputs of the committed checkpoints at 128 px, each cell labelled.

    python scripts/readme_grid.py [--checkpoints checkpoints] [--out docs/readme_grid.png] [--seed 0]

Row 1: text prompts through the default cascade (semantic base, SR 64, SR 128), one image each.
Row 2: class labels (emoji subgroups) through the same cascade.
Row 3: super-resolution of two held-out emoji (never seen in training): the 32 px input (shown
enlarged), bicubic to 128 and the diffusion SR chain 32 -> 64 -> 128.
Every cell uses the same seed (--seed, default 0): nothing is picked by hand after sampling.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cascade import generate, super_resolve  # noqa: E402
from core.data.emoji import load_dataset  # noqa: E402
from core.evaluation.scorecard import labelled_grid  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.pipeline import SR_DEFAULTS  # noqa: E402

PROMPTS = ["woman dancing, dark skin tone", "red apple", "thumbs up", "grinning face with big eyes",
           "cat face", "red heart"]
LABELS = ["cat-face", "face-smiling", "food-fruit", "hand-fingers-open", "animal-bird", "heart"]
SR_GROUPS = ["Smileys & Emotion", "Animals & Nature"]   # one held-out emoji of each: input, bicubic, SR
LINE = 22   # characters that fit under a 128 px cell


def heldout_examples(data, groups) -> list[int]:
    """The first held-out emoji of each group, in the data set's order."""
    heldout = data.indices("heldout").tolist()
    return [next(i for i in heldout if data.records[i].group == group) for group in groups]


def wrap(text: str, width: int = LINE) -> str:
    """`text` over lines of at most `width` characters, broken at spaces."""
    lines = [""]
    for word in text.split():
        lines[-1:] = [f"{lines[-1]} {word}".strip()] if len(lines[-1]) + len(word) < width else [lines[-1], word]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--out", default="docs/readme_grid.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    models = ModelSet(a.checkpoints, a.device)
    images, labels = [], []
    for prompt in PROMPTS:
        images.append(generate(models, prompt=prompt, seed=a.seed, size=128).stages[128][0].cpu())
        labels.append(wrap(f'text: "{prompt}"'))
    for label in LABELS:
        images.append(generate(models, label=label, seed=a.seed, size=128).stages[128][0].cpu())
        labels.append(f"class: {label}")
    data = load_dataset()
    idx = heldout_examples(data, SR_GROUPS)
    low = data.images_at(32, idx)
    bicubic = F.interpolate(low, size=128, mode="bicubic", align_corners=False).clamp(-1, 1)
    # SR_DEFAULTS in both stages, as when the committed picture was drawn (the tab and `upscale` now run
    # each stage with its own config's settings: 4 steps at 128 px)
    sr = super_resolve(models, low.to(models.device), 4, [a.seed] * len(idx), SR_DEFAULTS).cpu()
    for i, k in enumerate(idx):
        name = data.records[k].name
        images += [F.interpolate(low[i:i + 1], size=128, mode="nearest")[0], bicubic[i], sr[i]]
        labels += [wrap(f"32 px input: {name}"), "bicubic to 128", "diffusion SR\n32 -> 64 -> 128"]
    out = labelled_grid(torch.stack(images), labels, a.out, columns=6, scale=1)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
