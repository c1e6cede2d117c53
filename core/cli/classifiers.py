"""`classifiers`: train (or load from their cache) the attribute classifiers of
`core.evaluation.classifiers` and print their held-out accuracies."""
from __future__ import annotations

import argparse

import torch

from core.evaluation.classifiers import TASKS, ClassifierSettings, default_folder, load_all


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("classifiers", help="train (or load) the attribute classifiers, print their accuracies",
                       description="Small CNN classifiers of the emoji data set, used to evaluate generated images.")
    p.add_argument("--folder", help=f"cache folder (default {default_folder()})")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: " + ", ".join(TASKS))
    p.add_argument("--steps", type=int, help=f"training steps (default {ClassifierSettings.steps})")
    p.add_argument("--force", action="store_true", help="retrain even if a matching cache exists")
    p.add_argument("--threads", type=int, help="torch threads")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown task {bad[0]!r}; choose from {', '.join(TASKS)}")
    settings = ClassifierSettings(**({"steps": args.steps} if args.steps is not None else {}))
    clfs = load_all(args.folder, settings=settings, tasks=tasks, force=args.force,
                    log=lambda s: print(s, flush=True))
    print("| classifier | classes | train images | held-out images | held-out accuracy | majority class "
          "| train s (wall) | train s (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for t, c in clfs.items():
        i = c.info
        print(f"| {t} | {len(c.classes)} | {i['train_images']} | {i['heldout_images']} | "
              f"{i['heldout_accuracy']:.3f} | {i['chance_accuracy']:.3f} | {i['train_seconds']} | "
              f"{i.get('train_cpu_seconds', '-')} |")
