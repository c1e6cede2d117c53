"""Two versions of the pixel bases side by side under one judge: the same prompts, labels and
seeds for both, at the default sampling, 32 px.

    python scripts/compare_bases.py JUDGE N OLD_ROOT NEW_ROOT [--grids DIR] [--json FILE]

OLD_ROOT and NEW_ROOT are checkpoints roots (each with text_base, class_base and the clip the
text base reads). Prints, per split, accepted / subgroup as asked / recognisable / retrieval@5 /
FD(judge) of the samples of each version and of the real renders; with --grids, writes the
labelled grids of the fixed prompts and classes (seeds 0-2, the judge's verdict under each)
as old_text.png, new_text.png, old_class.png, new_class.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.evaluation.judge import Judge  # noqa: E402
from core.evaluation.scorecard import base_sampler, fixed_grid, scorecard  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402

METRICS = ("accepted", "subgroup_as_asked", "recognisable", "retrieval", "fd_judge")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("judge", help="judge folder")
    p.add_argument("n", type=int, help="samples per split")
    p.add_argument("old", help="checkpoints root of the version before")
    p.add_argument("new", help="checkpoints root of the version after")
    p.add_argument("--grids", help="folder for the labelled grids")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kinds", default="text,label", help="text, label or both (the bases that changed)")
    a = p.parse_args(argv)
    kinds = [k for k in a.kinds.split(",") if k]
    if not kinds or set(kinds) - {"text", "label"}:
        p.error(f"--kinds must name text and/or label, got {a.kinds!r}")
    torch.set_num_threads(a.threads)
    judge = Judge.load(a.judge)
    out = {}
    for name, root in (("old", a.old), ("new", a.new)):
        models = ModelSet(root, "cpu")
        for kind in kinds:
            card = scorecard(base_sampler(models, kind), kind, judge, n=a.n)
            out[f"{name}_{kind}"] = {split: sp["rows"] for split, sp in card.results["splits"].items()}
            if a.grids:
                Path(a.grids).mkdir(parents=True, exist_ok=True)
                grid = fixed_grid(base_sampler(models, kind), "text" if kind == "text" else "label", judge,
                                  Path(a.grids) / f"{name}_{'text' if kind == 'text' else 'class'}.png",
                                  seeds=(0, 1, 2))
                print(f"{name} {kind} grid: recognised {grid['recognised']:.3f} -> {grid['path']}")
    print("| kind | split | images | " + " | ".join(METRICS) + " |")
    for kind in kinds:
        for split in out[f"old_{kind}"]:
            for label, key, row in (("real", "old", "real"), ("old", "old", "samples"), ("new", "new", "samples")):
                v = out[f"{key}_{kind}"][split][row]
                cells = ["-" if v.get(m) is None else f"{v[m]:.3f}" for m in METRICS]
                print(f"| {kind} | {split} | {label} | " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
