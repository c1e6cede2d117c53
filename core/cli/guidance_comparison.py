"""`guidance-comparison`: classifier guidance against classifier-free guidance on the class base
(`core.evaluation.guidance_comparison`): prints the table of recognisability and diversity per
setting and draws the trade-off plot (and, with --grid, the samples)."""
from __future__ import annotations

import argparse
import sys

from core.cli import format_table, number_list, seed, text_list
from core.evaluation.guidance_comparison import (
    CFG_SCALES,
    CLASSIFIER_SCALES,
    LABELS,
    SEEDS,
    STEPS,
    compare_guidance,
    tradeoff_plot,
)
from core.images import save_png
from core.models.modelset import ModelSet

DESCRIPTION = """Classifier guidance against classifier-free guidance on the class base: recognisability
against diversity as the scale grows (the lesson of Dhariwal & Nichol 2021, fig. 4, and Ho &
Salimans 2021, fig. 1: both trade diversity for fidelity)."""


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("guidance-comparison", help="classifier against classifier-free guidance: plot and table",
                       description=DESCRIPTION, parents=[models])
    p.add_argument("--labels", type=text_list, default=list(LABELS))
    p.add_argument("--cfg-scales", type=number_list(float), default=list(CFG_SCALES))
    p.add_argument("--classifier-scales", type=number_list(float), default=list(CLASSIFIER_SCALES))
    p.add_argument("--seeds", type=number_list(seed), default=list(SEEDS))
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--no-threshold", action="store_true")
    p.add_argument("--out", required=True, help="the plot (PNG)")
    p.add_argument("--grid", help="also the samples: a row per setting (PNG)")
    p.set_defaults(handler=run, out_kind="file")


def run(a: argparse.Namespace) -> None:
    result = compare_guidance(ModelSet(a.checkpoints, a.device), a.labels, a.cfg_scales, a.classifier_scales,
                              a.seeds, a.sampler, a.steps, not a.no_threshold,
                              progress=lambda s: print(s, file=sys.stderr, flush=True))
    save_png(tradeoff_plot(result.rows), a.out, {**result.parameters, "rows": result.rows})
    if a.grid:
        save_png(result.grid(), a.grid, {**result.parameters, "rows": result.rows})
    print(format_table(result.rows))
    print(f"wrote {a.out}" + (f" and {a.grid}" if a.grid else ""))
