"""Evaluation of the trained models on the held-out split of the emoji data set.

    python -m core evaluate [--checkpoints DIR] [--models text_base,class_base,sr64,sr128]
                           [--n N] [--n-sr M] [--steps S] [--guidance 1,3,5] [--device auto|cpu|cuda]
                           [--json OUT] [--classifiers DIR] [--classifier-steps K] [--seed N]
                           [--judge DIR] [--judge-n N] [--grid-dir DIR] [--old-judge DIR]

What it measures (every sample seeded: image i of a selection uses seed ``seed + i``, the same
seeds at every guidance scale, so a sweep compares like with like):

- **CLIP** (``checkpoints/clip``): image->text and text->image top-1 retrieval among the N
  held-out images and their captions. It is the same CLIP whose text tower conditions the text
  base, so CLIP scores of text-base samples are optimistic (the generator was trained towards
  this very embedding); read them against the ceiling / floor rows, not against published numbers.
- **text base** (32x32), one caption per held-out emoji (the first of ``captions_for``):
  CLIP score of the samples beside the real held-out images with the same captions (ceiling)
  and with shuffled captions (floor); FD_CLIP, the Frechet distance between samples and the
  real held-out images in CLIP image-embedding space (``scipy.linalg.sqrtm``), beside the same
  distance between N real training images and the real held-out images (its value for real
  data at this N); and, for prompts that name a skin tone or gender, the fraction of samples
  the attribute classifiers rate as asked, beside their accuracy on the real
  held-out images of those prompts.
- **class base** (32x32), one sample per held-out emoji whose subgroup the model knows: the
  subgroup classifier's top-1 / top-5 accuracy on the samples (the label asked for) vs on the
  real held-out images, and FD_CLIP. This evaluation calls it the classification accuracy of
  samples ("CAS" in the output); the Classification Accuracy Score of
  Ravuri & Vinyals (2019), used by CDM, instead trains a classifier on generated images and
  tests it on real ones, which needs far more samples than a CPU run can make.
- a guidance sweep (default 1, 3, 5) for both bases;
- **the judge** (``checkpoints/judge``), an evaluation a coloured blob
  cannot pass: each base, at its default sampling settings, through
  :func:`core.evaluation.scorecard.scorecard` (text: names of training emoji in and outside People &
  Body, and held-out names; labels: People & Body subgroups and the others; ``--judge-n`` per
  split): recognisability (accepted as an emoji AND of the subgroup asked), retrieval@5 (the
  asked emoji's design among the 5 real emoji nearest in the judge's features) and FD(judge),
  beside real renders and real images blurred to 16 px; the old CLIP score and CAS of the
  same images beside them (and, with ``--old-judge DIR``, that judge's verdicts). For the text
  bases also the attribute retention: of the samples whose prompt asks for a skin tone or a
  gender, the share the skin-tone / gender classifiers rate as asked, over the same share of
  the real renders (:func:`core.evaluation.scorecard.attribute_retention`). ``--grid-dir`` also writes
  labelled grids of fixed prompts and classes, the judge's verdict under each cell;
- **SR stages** (sr64: 32->64, sr128: 64->128) on the first ``--n-sr`` (default 16) of the
  N held-out emoji (PSNR and SSIM are per-image averages, so few images suffice, and sr128 is
  slow on a CPU), from the real held-out low-res image
  (area-downsampled): PSNR and SSIM against the real high-res image, beside bicubic
  upsampling of the same input; and, when both are selected, **the chain** 32 -> 64 -> 128 as the
  cascade runs it (its default steps), from the real 32 px image, against the real 128 px image
  beside bicubic 32 -> 128;
- **timing**: seconds for one 128x128 text-to-image cascade with default settings (after a
  one-step warm-up), per stage and in total.

FD, SSIM and PSNR are those of :mod:`core.metrics` (FD numbers compare only at equal N);
PSNR and SSIM are averaged over images. The sections live in :mod:`core.evaluation.bases`,
:mod:`core.evaluation.super_resolution` and :mod:`core.evaluation.timing`; the report in
:mod:`core.evaluation.report`.

Missing models are skipped with a line saying so. The report is markdown on stdout (progress
on stderr); ``--json`` also writes every number as JSON.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from core.data.emoji import load_dataset
from core.evaluation.bases import class_section, clip_section, judge_section, text_section
from core.evaluation.classifiers import load_all
from core.evaluation.held_out import heldout_order
from core.evaluation.judge import Judge, JudgeError
from core.evaluation.super_resolution import sr_chain_section, sr_stage_section
from core.evaluation.timing import timing_section
from core.models.clip_model import ClipEmbedder
from core.models.modelset import ModelSet

MODELS = ("text_base", "class_base", "sr64", "sr128", "prior")   # prior: the semantic base (judge only)
DEFAULT_N = 64
DEFAULT_N_SR = 16  # PSNR / SSIM are per-image averages: few images suffice, and sr128 is slow on CPU
DEFAULT_GUIDANCE = (1.0, 3.0, 5.0)


def evaluate(checkpoints: str | os.PathLike | None = None, models: Sequence[str] = MODELS, n: int = DEFAULT_N,
             steps: int | None = None, guidance: Sequence[float] = DEFAULT_GUIDANCE, device: str = "auto",
             n_sr: int | None = DEFAULT_N_SR,
             seed: int = 0, classifiers: str | os.PathLike | None = None, classifier_settings=None,
             clip: str | os.PathLike | None = None, timing: bool = True, batch: int = 32, data=None,
             judge: str | os.PathLike | None = None, judge_n: int | None = None,
             grid_dir: str | os.PathLike | None = None, old_judge: str | os.PathLike | None = None,
             train_missing: Callable | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Run every section; returns a JSON-ready dict (see :func:`core.evaluation.report.format_report`).

    ``judge`` is the judge folder (default ``<checkpoints>/judge``), which
    scores the bases with :func:`core.evaluation.scorecard.scorecard` on ``judge_n`` samples per split
    (default ``n``); ``grid_dir``: also write the labelled grids of the fixed prompts and classes
    to ``grid_dir/<model>/grid.png``; ``old_judge``: another judge folder whose accepted /
    recognisable / retrieval of the same images are reported beside the judge's.

    ``classifiers`` is the classifier cache folder (default ``~/.cache/diffusion-hub/classifiers``),
    ``classifier_settings`` a :class:`ClassifierSettings` of the attribute classifiers (tiny ones for tests);
    a classifier missing there is ClassifierMissing (naming the command that trains it) unless
    ``train_missing(task, folder, data, settings)`` is given (the command line's: the registered
    training task, ``core.training.classifiers.load_or_train``), which trains it there;
    ``clip`` the CLIP folder used for the CLIP metrics (default ``<checkpoints>/clip``);
    ``n_sr`` the images per SR stage and for the chain (at most ``n``; None: ``n``).
    """
    log = log or (lambda s: None)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if old_judge is not None and not (Path(old_judge) / "config.json").is_file():
        raise ValueError(f"old judge {old_judge}: no judge there (config.json is missing)")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    guidance = [float(g) for g in guidance]
    t_start = time.perf_counter()
    ms = ModelSet(checkpoints, device)
    root = Path(ms.root)
    data = data if data is not None else load_dataset()
    order = heldout_order(data, seed)
    n = min(n, len(order))
    if n_sr is not None and (not isinstance(n_sr, int) or n_sr < 1):
        raise ValueError(f"n_sr must be a positive integer, got {n_sr!r}")
    n_sr = n if n_sr is None else min(n_sr, n)
    if judge_n is not None and (not isinstance(judge_n, int) or judge_n < 2):
        raise ValueError(f"judge_n must be an integer >= 2, got {judge_n!r}")
    args = {"n": n, "n_sr": n_sr, "steps": steps, "guidance": guidance, "seed": seed,
            "batch": max(1, int(batch)), "judge_n": judge_n or max(n, 2), "grid_dir": grid_dir}
    results: dict = {
        "settings": {"checkpoints": str(root), "models": list(models), "n": n, "n_sr": n_sr, "steps": steps,
                     "guidance": guidance, "seed": seed, "device": str(ms.device),
                     "threads": torch.get_num_threads(), "heldout_size": len(order),
                     "torch": torch.__version__},
        "skipped": {},
    }

    def present(name: str) -> bool:
        return (root / name / "config.json").is_file()

    # CLIP, for CLIP score / FD_CLIP / retrieval
    clip_folder = Path(clip) if clip else root / "clip"
    embedder = None
    try:
        embedder = ClipEmbedder.from_folder(clip_folder, ms.device)
        results["clip"] = {"folder": str(clip_folder), **clip_section(embedder, data, order, n, seed)}
    except (OSError, ValueError) as e:
        results["skipped"]["clip"] = f"CLIP metrics skipped: {e}"
        log(results["skipped"]["clip"])

    # classifiers, for the attribute matches and the class-base accuracy
    clfs = None
    if any(m in models and present(m) for m in ("text_base", "class_base", "prior")):
        log("classifiers:")
        missing = None if train_missing is None else (
            lambda task: train_missing(task, classifiers, data, classifier_settings))
        clfs = load_all(classifiers, data, classifier_settings, device=ms.device, missing=missing)
        results["classifiers"] = {
            t: {k: c.info.get(k) for k in ("heldout_accuracy", "chance_accuracy", "train_images",
                                            "heldout_images", "train_seconds", "parameters")}
            | {"classes": len(c.classes)} for t, c in clfs.items()}

    sections = {
        "text_base": lambda: text_section(ms, embedder, clfs, data, order, args, log),
        "class_base": lambda: class_section(ms, embedder, clfs, data, order, args, log),
        "sr64": lambda: sr_stage_section(ms, "sr64", data, order, args, log),
        "sr128": lambda: sr_stage_section(ms, "sr128", data, order, args, log),
    }
    for name in MODELS:
        if name not in models or name not in sections:   # the prior is scored by the judge only (below)
            continue
        if not present(name):
            results["skipped"][name] = f"{name}: skipped (no checkpoint at {root / name})"
            log(results["skipped"][name])
            continue
        log(f"{name}:")
        try:
            results[name] = sections[name]()
        except Exception as e:  # a broken checkpoint must not hide the other sections
            if isinstance(e, (KeyboardInterrupt, MemoryError)):
                raise
            results["skipped"][name] = f"{name}: failed ({type(e).__name__}: {e})"
            log(results["skipped"][name])
    if "sr64" in results and "sr128" in results:   # both stages in turn, as the cascade runs them
        log("sr chain:")
        try:
            results["sr_chain"] = sr_chain_section(ms, data, order, args, log)
        except Exception as e:
            if isinstance(e, (KeyboardInterrupt, MemoryError)):
                raise
            results["skipped"]["sr_chain"] = f"sr chain: failed ({type(e).__name__}: {e})"

    bases = [m for m in ("text_base", "class_base") if m in models and present(m) and m in results]
    if "prior" in models and present("prior") and present("diffae"):   # the semantic base, text and labels
        bases += ["semantic_text", "semantic_label"]
    elif "prior" in models:
        missing = [m for m in ("prior", "diffae") if not present(m)]
        results["skipped"]["prior"] = (f"prior: skipped (the semantic base needs prior and diffae; no checkpoint at "
                                       f"{', '.join(str(root / m) for m in missing)})")
        log(results["skipped"]["prior"])
    if bases:
        judge_folder = Path(judge) if judge else root / "judge"
        try:
            the_judge = Judge.load(judge_folder, ms.device).set_reference(data)
        except (JudgeError, OSError) as e:
            results["skipped"]["judge"] = f"judge: skipped ({e})"
            log(results["skipped"]["judge"])
        else:
            log("judge:")
            before = Judge.load(old_judge, ms.device).set_reference(data) if old_judge else None
            results["judge"] = {"folder": str(judge_folder), **({"old_judge": str(old_judge)} if old_judge else {}),
                                **judge_section(ms, the_judge, embedder, clfs, data, args, bases, log, before)}

    if timing:
        need = ("text_base", "sr64", "sr128")
        missing = [m for m in need if m not in models or not present(m)]
        if missing:
            results["skipped"]["timing"] = (f"timing: skipped (needs text_base, sr64 and sr128; "
                                            f"missing or not selected: {', '.join(missing)})")
        else:
            log("timing:")
            try:
                results["timing"] = timing_section(ms)
            except Exception as e:
                results["skipped"]["timing"] = f"timing: failed ({type(e).__name__}: {e})"
    results["settings"]["seconds"] = round(time.perf_counter() - t_start, 1)
    return results
