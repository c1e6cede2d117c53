"""`judge train` / `judge score`: train the judge (`core.training.judge`) and write its checkpoint
folder, or score images with it (`core.evaluation.judge`): emoji or not, subgroup, nearest real
emoji."""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from core.cli import seed
from core.evaluation.judge import DEFAULT_FOLDER, RESOLUTION, Judge, JudgeError
from core.images import open_image, pil_to_tensor
from core.training.judge import JudgeSettings
from core.training.loop import train_fit
from core.training.registry import fit_settings

DESCRIPTION = "The judge: a small CNN that tells an emoji from what is not one, and says which it is."


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("judge", help="score images with the judge, or train it", description=DESCRIPTION)
    p.set_defaults(handler=run)
    sub = p.add_subparsers(dest="action", metavar="{train,score}", required=True)
    t = sub.add_parser("train", help="train the judge (and measure it) and write its checkpoint folder; the same "
                       "as `python -m core train judge`")
    t.set_defaults(out_kind="folder")
    t.add_argument("--out", default=str(DEFAULT_FOLDER))
    t.add_argument("--steps", type=int, help=f"training steps (default {JudgeSettings.steps})")
    t.add_argument("--poor", type=int,
                   help=f"poor text-base samples among the negatives (default {JudgeSettings.poor}; 0: none)")
    t.add_argument("--early", help="checkpoints root of an early-training text base (and its clip): its 25-step "
                   "samples join the negatives, e.g. the project's first text base (git show d29b43f:checkpoints/...)")
    t.add_argument("--early-n", type=int, help="how many early samples (default 384 with --early)")
    t.add_argument("--seed", type=seed)
    t.add_argument("--twin", action="store_true", help="also train a twin on the training split and report "
                   "its figures on the held-out split in the card")
    t.add_argument("--exclude-heldout", action="store_true", help="only train (and write) the twin")
    t.add_argument("--checkpoints", help="checkpoints root with text_base and clip (for the poor samples)")
    t.add_argument("--run", help="run folder whose state file lets an interrupted run continue (default: none)")
    t.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("score", help="judge images: emoji or not, subgroup, nearest real emoji")
    s.add_argument("images", nargs="+")
    s.add_argument("--judge", help=f"judge folder (default {DEFAULT_FOLDER})")
    s.add_argument("--threads", type=int)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    (train if args.action == "train" else score)(args)


def train(args: argparse.Namespace) -> None:
    """`judge train`: the registered training task `train judge` under its older name."""
    early_n = args.early_n if args.early_n is not None else (384 if args.early else 0)
    if early_n and not args.early:
        raise JudgeError("--early-n needs --early: the checkpoints root of an early-training text base")
    settings = fit_settings("judge", steps=args.steps, poor=args.poor, seed=args.seed, early=early_n)
    options = {k: v for k, v in (("checkpoints", args.checkpoints), ("early", args.early), ("twin", args.twin),
                                 ("exclude_heldout", args.exclude_heldout)) if v}
    train_fit("judge", settings, args.run, args.out, log=lambda s: print(s, flush=True), **options)


def score(args: argparse.Namespace) -> None:
    judge = Judge.load(args.judge)
    images = torch.cat([pil_to_tensor(open_image(p), size=RESOLUTION) for p in args.images])
    near = None
    try:
        out = judge.scores(images)
        data, ref, _ = judge.reference()
        near = (F.normalize(out["features"], dim=1) @ ref.T).topk(min(3, ref.shape[0]), dim=1).indices.tolist()
    except (OSError, ValueError) as e:  # no data set here: the realism head alone, no nearest emoji
        print(f"(no real emoji to compare with: {e}; the realism head alone decides)", file=sys.stderr)
        out = judge.outputs(images)
        out["accepted"] = out["realism"] > judge.threshold
    for j, path in enumerate(args.images):
        top = out["subgroup"][j].softmax(0).topk(3)
        subs = ", ".join(f"{judge.subgroups[i]} {v:.2f}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
        line = (f"{path}: {'emoji' if out['accepted'][j] else 'NOT an emoji'} (realism {float(out['realism'][j]):.3f}"
                + (f", nearest-emoji similarity {float(out['nearest'][j]):.3f}" if "nearest" in out else "")
                + f"); subgroup {subs}")
        if near is not None:
            line += "; nearest real emoji: " + ", ".join(data.records[i].name for i in near[j])
        print(line)
