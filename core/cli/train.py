"""`train KIND` / `train all`: the training of `core.training` from the command line."""
from __future__ import annotations

import argparse

import torch

from core.cli import seed
from core.evaluation.classifiers import TASKS as CLASSIFIERS
from core.models.checkpoints import DEFAULT_CHECKPOINTS
from core.training.loop import train, train_all, train_fit
from core.training.registry import FIT_SETTINGS, FIT_TASKS, TRAIN_KINDS, default_config, fit_settings


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", help="train (or resume) a model, or all of them in order",
                       description="Train (or resume) one kind of model, or every kind in dependency order (all).")
    p.add_argument("kind", choices=TRAIN_KINDS + tuple(FIT_TASKS) + ("all",))
    p.add_argument("--run", help="run folder (state, samples); default runs/KIND")
    p.add_argument("--export", help="write the EMA weights as a checkpoint folder here (for all: the checkpoints "
                                    "root; judge: default checkpoints/judge; classifiers: default their cache; "
                                    "tone_painter: default checkpoints/tone_painter)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--channels", type=lambda s: tuple(int(c) for c in s.split(",")))
    p.add_argument("--crop", type=int, help="SR, palette: train on random crops of this size")
    p.add_argument("--resolution", type=int, help="diffae: image size (default 64)")
    p.add_argument("--residual-scale", type=float,
                   help="sr64/sr128/palette: diffuse this scale times the residual over the upsampled input "
                        "(SR, default 4) or the task's baseline (palette, default 2); 0: the image")
    p.add_argument("--snr-floor", type=float,
                   help="loss weight of the x0 error clamp(SNR, floor, 5) (default 1 for diffae, 0 otherwise)")
    p.add_argument("--cond-dropout", type=float,
                   help="share of training steps with the condition replaced by the null one, for classifier-free "
                        "guidance (default 0.1; diffae: 0, its null code is zeros)")
    p.add_argument("--freeze-encoder", action="store_true", default=None,
                   help="diffae: train the decoder only (the semantic codes, and all fitted on them, stay valid)")
    p.add_argument("--width", type=int, help="prior: width of its MLP (default 384)")
    p.add_argument("--depth", type=int, help="prior: residual blocks (default 4)")
    p.add_argument("--captions", choices=("names", "everyday"),
                   help="prior: the captions it learns from: names (the Unicode name phrased a few ways and the "
                        "CLDR keywords; default) or everyday (also as people type them: core.data.captions)")
    p.add_argument("--init-from", help="checkpoint folder of this kind: start from its weights with a fresh optimiser "
                                       "(ignored when the run folder already has a state to resume)")
    p.add_argument("--balance", type=float,
                   help="text_base, class_base: draw emoji with weight (design size) ** -B; 0 uniform over emoji, "
                        "1 uniform over designs (default 0.5)")
    p.add_argument("--t-sampling", choices=("uniform", "lognormal"),
                   help="diffusion kinds: training timesteps uniform over 0..T-1 (default) or EDM's log-normal "
                        "noise levels (ln sigma ~ N(-1.2, 1.2^2))")
    p.add_argument("--text-conditioning", choices=("tokens", "pooled"),
                   help="text_base: tokens = cross-attention over CLIP's token states, trained from scratch; "
                        "pooled = start from the committed DiffAE decoder, conditioned on a semantic code "
                        "predicted from CLIP's pooled embedding")
    p.add_argument("--label-conditioning", choices=("embedding", "code"),
                   help="class_base: embedding = a label embedding, trained from scratch; code = start from "
                        "the committed DiffAE decoder, conditioned on a semantic code drawn for the label by a "
                        "one-step generator distilled from the committed semantic prior")
    p.add_argument("--budget-minutes", type=float)
    p.add_argument("--save-every", type=int)
    p.add_argument("--sample-every", type=int)
    p.add_argument("--checkpoints", help="checkpoints root a text base reads its CLIP from (tone_painter: the "
                                         "DiffAE decoder that draws its pairs)")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=seed)
    p.add_argument("--poor", type=int, help="judge: poor text-base samples among the negatives (default 256; 0: none)")
    p.add_argument("--early", help="judge: checkpoints root of an early-training text base (and its clip): its "
                   "25-step samples join the negatives, e.g. the project's first text base (git show d29b43f:...)")
    p.add_argument("--early-n", type=int, help="judge: how many early samples (default 384 with --early)")
    p.add_argument("--twin", action="store_true", default=None, help="judge: also train a twin on the training "
                   "split and report its figures on the held-out split in the card")
    p.add_argument("--exclude-heldout", action="store_true", default=None, help="judge: only train (and write) "
                   "the twin")
    p.add_argument("--tasks", type=lambda s: tuple(t.strip() for t in s.split(",") if t.strip()),
                   help="classifiers: comma-separated, of " + ", ".join(CLASSIFIERS) + " (default all)")
    p.add_argument("--force", action="store_true", default=None,
                   help="classifiers: retrain those already trained with these settings")
    p.add_argument("--profile", choices=("cpu", "gpu"), default="cpu",
                   help="all: gpu = bigger batches and a minutes budget per model (about 9 minutes in all)")
    p.add_argument("--smoke", action="store_true", help="tiny models, a few steps: checks every stage runs")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="auto (default): bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format")
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> None:
    given = dict(steps=a.steps, batch=a.batch, lr=a.lr, channels=a.channels, crop=a.crop, resolution=a.resolution,
                 width=a.width, depth=a.depth, residual_scale=a.residual_scale, snr_floor=a.snr_floor,
                 cond_dropout=a.cond_dropout, freeze_encoder=a.freeze_encoder,
                 save_every=a.save_every, sample_every=a.sample_every, threads=a.threads, seed=a.seed,
                 precision=a.precision, compile=a.compile, channels_last=a.channels_last, init_from=a.init_from,
                 balance=a.balance, t_sampling=a.t_sampling,
                 text_conditioning=a.text_conditioning, label_conditioning=a.label_conditioning, captions=a.captions)
    overrides = {k: v for k, v in given.items() if v is not None}
    small = dict(poor=a.poor, early=a.early, early_n=a.early_n, twin=a.twin, exclude_heldout=a.exclude_heldout,
                 tasks=a.tasks, force=a.force)
    if a.kind in FIT_TASKS:
        run_fit(a, overrides, {k: v for k, v in small.items() if v is not None})
        return
    if any(v is not None for v in small.values()):
        flag = next(k for k, v in small.items() if v is not None)
        owner = "classifiers" if flag in ("tasks", "force") else "judge"
        raise ValueError(f"--{flag.replace('_', '-')} applies to {owner} only, not {a.kind}")
    if a.kind == "all":
        train_all(a.export or str(DEFAULT_CHECKPOINTS), a.run or "runs", smoke=a.smoke,
                  budget_minutes=a.budget_minutes, profile=a.profile, **overrides)
        return
    if a.checkpoints:
        overrides["checkpoints"] = a.checkpoints
    cfg = default_config(a.kind, a.run or f"runs/{a.kind}", smoke=a.smoke, budget_minutes=a.budget_minutes,
                         **overrides)
    train(cfg, export=a.export)


def run_fit(a: argparse.Namespace, overrides: dict, options: dict) -> None:
    """`train judge` / `train classifiers`: a task of `FIT_TASKS`, with its settings dataclass."""
    if a.threads:
        torch.set_num_threads(a.threads)
    settings = {k: overrides.pop(k) for k in FIT_SETTINGS if k in overrides}
    overrides.pop("threads", None)
    if overrides:
        flag = next(iter(overrides))
        raise ValueError(f"--{flag.replace('_', '-')} does not apply to {a.kind}")
    if a.kind == "judge":
        early_n = options.pop("early_n", 384 if options.get("early") else 0)
        if early_n and not options.get("early"):
            raise ValueError("--early-n needs --early: the checkpoints root of an early-training text base")
        settings.update(early=early_n, **({"poor": options.pop("poor")} if "poor" in options else {}))
    if a.checkpoints:
        options["checkpoints"] = a.checkpoints
    train_fit(a.kind, fit_settings(a.kind, smoke=a.smoke, **settings), a.run or f"runs/{a.kind}", a.export,
              a.budget_minutes, log=lambda s: print(s, flush=True), **options)
