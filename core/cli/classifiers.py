"""`classifiers`: the registered training task `train classifiers` under its older name: train the
attribute classifiers of `core.evaluation.classifiers` that are missing from their folder (all of
them with --force) and print their held-out accuracies."""
from __future__ import annotations

import argparse

import torch

from core.evaluation.classifiers import TASKS, ClassifierSettings, default_folder
from core.training.loop import train_fit
from core.training.registry import fit_settings


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("classifiers", help="train the attribute classifiers (as `train classifiers`)",
                       description="Small CNN classifiers of the emoji data set, used to evaluate generated images; "
                                   "the same as `python -m core train classifiers`.")
    p.add_argument("--folder", help=f"their folder (default {default_folder()})")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: " + ", ".join(TASKS))
    p.add_argument("--steps", type=int, help=f"training steps (default {ClassifierSettings.steps})")
    p.add_argument("--force", action="store_true", help="retrain even if a matching one exists")
    p.add_argument("--run", help="run folder whose state files let an interrupted run continue (default: none)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    train_fit("classifiers", fit_settings("classifiers", steps=args.steps), args.run, args.folder,
              log=lambda s: print(s, flush=True), tasks=tasks, force=args.force)
