"""Classifier-free, classifier and CLIP guidance of the semantic prior, measured with the judge: writes
docs/guidance_prior.md (tables), docs/guidance_prior.png (recognisability against diversity),
docs/guidance_prior_grid.png (the samples, a labelled row per setting) and the 128 px grids of the
model cards (checkpoints/code_classifier/guided.png, checkpoints/code_matcher/guided.png).

    python scripts/guidance_prior.py [--checkpoints checkpoints] [--docs docs] [--n 32]

1. The comparison (`core.evaluation.guidance_comparison.compare_guidance`): 8 labels x 4 seeds per setting.
2. `generate --label L --classifier-scale S` at the default scale, against classifier-free guidance at its
   default and the unguided prior: the same 8 labels x 4 seeds through `core.cascade.generate` at 32 px.
3. CLIP guidance from `generate --prompt P --clip-scale S` on names of emoji, scored like the prior's card
   (`core.evaluation.scorecard`, text splits, `--n` prompts per split), against the unguided prior and
   classifier-free guidance at its default.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cascade import generate  # noqa: E402
from core.cli import format_table  # noqa: E402
from core.evaluation import guidance_comparison as gc  # noqa: E402
from core.evaluation.judge import recognisability  # noqa: E402
from core.evaluation.scorecard import GRID_PROMPTS, cascade_sampler, labelled_grid, scorecard  # noqa: E402
from core.images import save_png  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.pipeline import StageSettings  # noqa: E402
from core.semantic import CLIP_SCALE, CODE_CLASSIFIER_SCALE, PRIOR_DEFAULTS  # noqa: E402

UNGUIDED = StageSettings(sampler=PRIOR_DEFAULTS.sampler, steps=PRIOR_DEFAULTS.steps, guidance=0.0)
CARD_LABELS = ("cat-face", "face-smiling", "animal-mammal", "hand-fingers-open", "food-fruit", "transport-ground")


def by_generate(models, judge, labels, seeds, **kwargs) -> float:
    """Recognisability of `generate(label=L, num=len(seeds), size=32, **kwargs)` over the labels."""
    hits = total = 0
    for label in labels:
        x = generate(models, label=label, num=len(seeds), seed=seeds[0], size=32, **kwargs).final
        hits += int(recognisability(judge, x, [label] * len(x)).sum())
        total += len(x)
    return hits / total


def text_card(models, judge, n, **kwargs) -> dict:
    card = scorecard(cascade_sampler(models, "text", **kwargs), "text", judge, n=n)
    return {name: split["rows"]["samples"]["recognisable"] / max(split["rows"]["real"]["recognisable"], 1e-9)
            for name, split in card.results["splits"].items()} | {
        f"{name} (samples)": split["rows"]["samples"]["recognisable"] for name, split in card.results["splits"].items()}


def card_grids(models, judge, out_classifier: Path, out_matcher: Path) -> None:
    seeds = [0, 1]
    images, names = [], []
    for label in CARD_LABELS:
        x = generate(models, label=label, num=2, seed=0, size=128, classifier_scale=CODE_CLASSIFIER_SCALE).final
        ok = recognisability(judge, x, [label] * len(x))
        images.append(x)
        names += [f"{label}\nseed {s}: {'recognised' if o else 'not recognised'}" for s, o in zip(seeds, ok.tolist())]
    labelled_grid(torch.cat(images), names, out_classifier, columns=4, scale=1)
    images, names = [], []
    data = gc.load_dataset()
    subgroup = {r.name.lower(): r.subgroup for r in data.records}
    for prompt in GRID_PROMPTS[:6]:
        x = generate(models, prompt=prompt, num=2, seed=0, size=128, clip_scale=CLIP_SCALE).final
        want = subgroup.get(prompt) or subgroup.get({"heart": "red heart", "car": "automobile"}.get(prompt, ""))
        ok = recognisability(judge, x, [want] * len(x)) if want else [False] * len(x)
        images.append(x)
        names += [f"{prompt!r}\nseed {s}: {'recognised' if o else 'not recognised'}"
                  for s, o in zip(seeds, [bool(o) for o in ok])]
    labelled_grid(torch.cat(images), names, out_matcher, columns=4, scale=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--docs", default="docs")
    p.add_argument("--n", type=int, default=32, help="prompts per text split for CLIP guidance")
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    models = ModelSet(a.checkpoints, "cpu")
    judge = gc.load_judge(models)
    docs = Path(a.docs)
    labels, seeds = list(gc.LABELS), list(gc.SEEDS)

    result = gc.compare_guidance(models, labels, cfg_scales=[1, 3], classifier_scales=[3, 10, 30],
                                 clip_scales=[3, 10, 30], seeds=seeds,
                                 progress=lambda s: print(s, file=sys.stderr, flush=True))
    stored = {**result.parameters, "rows": result.rows}
    save_png(gc.tradeoff_plot(result.rows), docs / "guidance_prior.png", stored)
    save_png(gc.labelled_grid(result), docs / "guidance_prior_grid.png", stored)

    print("generate: classifier guidance, classifier-free guidance, unguided", file=sys.stderr, flush=True)
    gen = {"classifier guidance, default scale": by_generate(models, judge, labels, seeds,
                                                             classifier_scale=CODE_CLASSIFIER_SCALE),
           "classifier-free guidance, default scale": by_generate(models, judge, labels, seeds),
           "unguided prior": by_generate(models, judge, labels, seeds, base=UNGUIDED)}

    print("CLIP guidance on names (scorecard)", file=sys.stderr, flush=True)
    clip_rows = {"CLIP guidance, default scale": text_card(models, judge, a.n, clip_scale=CLIP_SCALE),
                 "unguided prior": text_card(models, judge, a.n, base=UNGUIDED),
                 "classifier-free guidance, default scale": text_card(models, judge, a.n)}
    card_grids(models, judge, Path(a.checkpoints) / "code_classifier" / "guided.png",
               Path(a.checkpoints) / "code_matcher" / "guided.png")

    splits = [k for k in next(iter(clip_rows.values())) if not k.endswith("(samples)")]
    clip_table = ["| setting | " + " | ".join(f"{s}: recognisable (vs real)" for s in splits) + " |",
                  "| --- |" + " --- |" * len(splits)]
    for name, row in clip_rows.items():
        clip_table.append(f"| {name} | " + " | ".join(f"{row[s + ' (samples)']:.3f} ({row[s]:.2f})" for s in splits)
                          + " |")
    cfg_gen = gen["classifier-free guidance, default scale"]
    text = f"""# Classifier, CLIP and classifier-free guidance of the semantic prior

Made by `python scripts/guidance_prior.py` ({(time.perf_counter() - t0) / 60:.0f} minutes on one CPU thread).
The prior (`checkpoints/prior`) draws a semantic code, the DiffAE decoder draws it at 32 px. Classifier
guidance steers the unconditional prior with the noise-aware classifier of its codes
(`checkpoints/code_classifier`), CLIP guidance with the noise-aware code-text matcher
(`checkpoints/code_matcher`); classifier-free guidance mixes the conditional and unconditional prior.
Recognisable: the judge (`checkpoints/judge`) accepts the sample as an emoji and names the asked subgroup.

## The comparison: {len(labels)} labels x {len(seeds)} seeds per row

Texts: names of training emoji of each label (sample j asks the label's j-th name). Diversity: mean pairwise
distance of the judge's normalised features within a label (pixels: RMS on [0, 1]). seconds_per_image: wall
time of the prior and the decoder on a shared CPU, which varies with its load.

{format_table(result.rows)}

{gc.summary(result.rows)}

![recognisability against diversity](guidance_prior.png)

![the samples, a row per setting](guidance_prior_grid.png)

## `generate --label L --classifier-scale {CODE_CLASSIFIER_SCALE:g}` (the default scale)

The same {len(labels)} labels x {len(seeds)} seeds through `core.cascade.generate` at 32 px:

| setting | recognisable |
| --- | --- |
""" + "\n".join(f"| {k} | {v:.3f} |" for k, v in gen.items()) + f"""

Classifier guidance at its default scale reaches
{gen['classifier guidance, default scale'] / cfg_gen:.2f} of classifier-free guidance at its default.

## `generate --prompt P --clip-scale {CLIP_SCALE:g}` on names of emoji

Scored like the prior's card (`core.evaluation.scorecard`, {a.n} prompts per split, seeds 0..{a.n - 1}):
recognisable samples, and in brackets that share over the real renders' own.

""" + "\n".join(clip_table) + "\n"
    (docs / "guidance_prior.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
