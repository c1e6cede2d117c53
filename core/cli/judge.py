"""`judge train` / `judge score`: train the judge (`core.training.judge`) and write its checkpoint
folder, or score images with it (`core.evaluation.judge`): emoji or not, subgroup, nearest real
emoji."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import torch
import torch.nn.functional as F

from core.cli import seed
from core.data.emoji import load_dataset
from core.evaluation.judge import DEFAULT_FOLDER, RESOLUTION, Judge, JudgeError
from core.images import open_image, pil_to_tensor
from core.models.modelset import ModelSet
from core.training.judge import DataSubset, JudgeSettings, measure, model_card, poor_samples, train_judge

DESCRIPTION = "The judge: a small CNN that tells an emoji from what is not one, and says which it is."


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("judge", help="score images with the judge, or train it", description=DESCRIPTION)
    p.set_defaults(handler=run)
    sub = p.add_subparsers(dest="action", metavar="{train,score}", required=True)
    t = sub.add_parser("train", help="train the judge (and measure it) and write its checkpoint folder")
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
    data = load_dataset()
    log = lambda s: print(s, flush=True)  # noqa: E731
    early_n = args.early_n if args.early_n is not None else (384 if args.early else 0)
    if early_n and not args.early:
        raise JudgeError("--early-n needs --early: the checkpoints root of an early-training text base")
    settings = JudgeSettings(**{k: v for k, v in (("steps", args.steps), ("poor", args.poor), ("seed", args.seed),
                                                  ("early", early_n)) if v is not None})
    heldout = data.indices("heldout").tolist()
    train_records = [data.records[i] for i in data.indices("train").tolist()]
    bank = eval_poor = early_bank = early_eval = None
    if settings.poor:
        # captions of the training split for the banks (the twin never sees a held-out caption), of the
        # held-out split (other seeds) for measuring
        models = ModelSet(args.checkpoints, "cpu")
        log(f"poor samples: {settings.poor} for training, 256 for measuring (text base, 2-3 DDIM steps)")
        bank = poor_samples(models, train_records, settings.poor, settings.seed)
        eval_poor = poor_samples(models, [data.records[i] for i in heldout], 256, settings.seed + 1)
    if settings.early:
        early = ModelSet(args.early, "cpu")
        log(f"early samples: {settings.early} for training, 64 for measuring (text base of {args.early}, 25 steps)")
        early_bank = poor_samples(early, train_records, settings.early, settings.seed + 2, steps=(25,), log=log)
        early_eval = poor_samples(early, [data.records[i] for i in heldout], 64, settings.seed + 3, steps=(25,))
    twin = None
    if args.exclude_heldout or args.twin:
        log("twin (training split only), to measure on the held-out split:")
        t = train_judge(data, replace(settings, include_heldout=False), bank, early_bank, log)
        t.set_reference(DataSubset(data, data.indices("train")))
        twin = measure(t, data, heldout, eval_poor, early=early_eval)
        log(f"twin on the held-out split: {json.dumps(twin)}")
        if args.exclude_heldout:
            t.info["measured"] = {"heldout_twin": twin}
            t.save(args.out, model_card(t, twin, twin))
            log(f"wrote {args.out}")
            return
    log("judge (all emoji):")
    judge = train_judge(data, settings, bank, early_bank, log)
    own = measure(judge, data, range(len(data)), eval_poor, early=early_eval)
    log(f"judge on all emoji: {json.dumps(own)}")
    judge.info["measured"] = {"all": own, **({"heldout_twin": twin} if twin else {})}
    judge.save(args.out, model_card(judge, twin, own))
    log(f"wrote {args.out}")


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
