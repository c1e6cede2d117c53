"""`guidance-comparison`: classifier-free, classifier and CLIP guidance of the semantic prior
(`core.evaluation.guidance_comparison`): prints the table of recognisability and diversity per
setting and what it shows, and draws the trade-off plot (and, with --grid, the labelled samples)."""
from __future__ import annotations

import argparse
import sys

from core.cli import format_table, number_list, seed, text_list
from core.evaluation.guidance_comparison import (
    CFG_SCALES,
    CLASSIFIER_SCALES,
    CLIP_SCALES,
    LABELS,
    SEEDS,
    STEPS,
    compare_guidance,
    labelled_grid,
    summary,
    tradeoff_plot,
)
from core.images import save_png
from core.models.modelset import ModelSet

DESCRIPTION = """Classifier-free, classifier and CLIP guidance of the semantic prior: recognisability
against diversity as the scale grows (Dhariwal & Nichol 2021, fig. 4; Ho & Salimans 2021, fig. 1;
GLIDE, Nichol et al. 2022: classifier-free against CLIP guidance)."""


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("guidance-comparison", help="classifier-free, classifier and CLIP guidance: plot and table",
                       description=DESCRIPTION, parents=[models])
    p.add_argument("--labels", type=text_list, default=list(LABELS))
    p.add_argument("--cfg-scales", type=number_list(float), default=list(CFG_SCALES),
                   help="classifier-free guidance scales, on the label and on the text")
    p.add_argument("--classifier-scales", type=number_list(float), default=list(CLASSIFIER_SCALES))
    p.add_argument("--clip-scales", type=number_list(float), default=list(CLIP_SCALES))
    p.add_argument("--seeds", type=number_list(seed), default=list(SEEDS))
    p.add_argument("--steps", type=int, default=STEPS, help="the prior's DDIM steps")
    p.add_argument("--out", required=True, help="the plot (PNG)")
    p.add_argument("--grid", help="also the samples: a row per setting, labelled (PNG)")
    p.set_defaults(handler=run, out_kind="file")


def run(a: argparse.Namespace) -> None:
    result = compare_guidance(ModelSet(a.checkpoints, a.device), a.labels, a.cfg_scales, a.classifier_scales,
                              a.clip_scales, a.seeds, a.steps, progress=lambda s: print(s, file=sys.stderr, flush=True))
    save_png(tradeoff_plot(result.rows), a.out, {**result.parameters, "rows": result.rows})
    if a.grid:
        save_png(labelled_grid(result), a.grid, {**result.parameters, "rows": result.rows})
    print(format_table(result.rows))
    print(summary(result.rows))
    print(f"wrote {a.out}" + (f" and {a.grid}" if a.grid else ""))
