"""Evaluation of the trained models on the held-out split of the emoji data set.

    python -m core.evaluate [--checkpoints DIR] [--models text_base,class_base,sr64,sr128]
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
  the classifiers of :mod:`core.classifiers` rate as asked, beside their accuracy on the real
  held-out images of those prompts.
- **class base** (32x32), one sample per held-out emoji whose subgroup the model knows: the
  subgroup classifier's top-1 / top-5 accuracy on the samples (the label asked for) vs on the
  real held-out images, and FD_CLIP. This is the classification accuracy of samples as the
  brief for this script defines it ("CAS" in the output); the Classification Accuracy Score of
  Ravuri & Vinyals (2019), used by CDM, instead trains a classifier on generated images and
  tests it on real ones, which needs far more samples than a CPU run can make.
- a guidance sweep (default 1, 3, 5) for both bases;
- **the judge** (``checkpoints/judge``, :mod:`core.judge`), an evaluation a coloured blob
  cannot pass: each base, at its default sampling settings, through
  :func:`core.scorecard.scorecard` (text: names of training emoji in and outside People &
  Body, and held-out names; labels: People & Body subgroups and the others; ``--judge-n`` per
  split): recognisability (accepted as an emoji AND of the subgroup asked), retrieval@5 (the
  asked emoji's design among the 5 real emoji nearest in the judge's features) and FD(judge),
  beside real renders and real images blurred to 16 px; the old CLIP score and CAS of the
  same images beside them (and, with ``--old-judge DIR``, that judge's verdicts). For the text
  bases also the attribute retention: of the samples whose prompt asks for a skin tone or a
  gender, the share the skin-tone / gender classifiers rate as asked, over the same share of
  the real renders (:func:`core.scorecard.attribute_retention`). ``--grid-dir`` also writes
  labelled grids of fixed prompts and classes, the judge's verdict under each cell;
- **SR stages** (sr64: 32->64, sr128: 64->128) on the first ``--n-sr`` (default 16) of the
  N held-out emoji (PSNR and SSIM are per-image averages, so few images suffice, and sr128 is
  slow on a CPU), from the real held-out low-res image
  (area-downsampled): PSNR and SSIM against the real high-res image, beside bicubic
  upsampling of the same input;
- **timing**: seconds for one 128x128 text-to-image cascade with default settings (after a
  one-step warm-up), per stage and in total.

FD_CLIP from N samples in a D-dimensional space is biased upward when N is small (the
covariance has rank <= N-1, often < D): compare FD numbers only at equal N.

SSIM is the standard one (Wang et al. 2004): an 11x11 Gaussian window with sigma 1.5, K1=0.01,
K2=0.03, computed on each RGB channel in [0, 1] and averaged over channels and over the valid
region (no padding); this equals ``skimage.metrics.structural_similarity(x, y,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``.
PSNR is per image on [0, 1] (data range 1), then averaged over images.

Missing models are skipped with a line saying so. The report is markdown on stdout (progress
on stderr); ``--json`` also writes every number as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.cli import finite, number_list
from core.evaluation.metrics import _pair, psnr

MODELS = ("text_base", "class_base", "sr64", "sr128", "prior")   # prior: the semantic base (judge only)
DEFAULT_N = 64
DEFAULT_N_SR = 16  # PSNR / SSIM are per-image averages: few images suffice, and sr128 is slow on CPU
DEFAULT_GUIDANCE = (1.0, 3.0, 5.0)
TIMING_PROMPT = "woman dancing, dark skin tone"
_TONES = ("light", "medium-light", "medium", "medium-dark", "dark")
_PERSON_WORDS = frozenset({"person", "people", "adult", "child", "baby", "mx"})


# --------------------------------------------------------------------------- metrics


def frechet_distance(x, y, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two sets of vectors [N, D] and [M, D]:
    ||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)), with ``scipy.linalg.sqrtm``.

    As in pytorch-fid, when the matrix square root is not finite (singular covariances) both
    covariances get ``eps`` added to their diagonal; the imaginary part sqrtm may leave from
    rounding is dropped, and a tiny negative result from rounding is returned as 0.
    """
    from scipy import linalg

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two [N, D] arrays with the same D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the Frechet distance needs at least 2 vectors per set")
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s_x @ s_y)
        if not np.isfinite(covmean).all():
            offset = np.eye(s_x.shape[0]) * eps
            covmean = linalg.sqrtm((s_x + offset) @ (s_y + offset))
    covmean = np.real(covmean)
    diff = mu_x - mu_y
    fd = float(diff @ diff + np.trace(s_x) + np.trace(s_y) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian of SSIM (float64)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """[B] SSIM (Wang et al. 2004) of images [B, C, H, W] (or [C, H, W]) in [0, data_range].

    Gaussian-weighted local statistics (``window`` x ``window``, ``sigma``), the SSIM map on
    each channel over the valid region (windows fully inside the image), averaged over the
    map and the channels. Computed in float64.
    """
    x, y = _pair(x, y)
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM with a {window}x{window} window needs images at least that big, "
                         f"got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    g = gaussian_window(window, sigma).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def filt(z):
        return F.conv2d(z, kernel, groups=c)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = filt(x), filt(y)
    s_xx = filt(x * x) - mu_x ** 2
    s_yy = filt(y * y) - mu_y ** 2
    s_xy = filt(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * s_xy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (s_xx + s_yy + c2)
    return (num / den).flatten(1).mean(1)


def _unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return ((images.float().clamp(-1, 1) + 1) / 2).cpu()


# --------------------------------------------------------------------------- helpers


def _mean(values) -> float:
    t = torch.as_tensor(values, dtype=torch.float64)
    return float(t.mean()) if t.numel() else float("nan")


def names_gender(record) -> str | None:
    """The gender a caption names: man / woman (from the name's words, as core.data.emoji labels
    them), person when the name says person / people / adult / child / baby / mx; else None."""
    if record.gender in ("man", "woman"):
        return record.gender
    if record.gender == "person" and set(re.findall(r"[a-z]+", record.name.lower())) & _PERSON_WORDS:
        return "person"
    return None


def names_skin_tone(record) -> str | None:
    """The single skin tone a caption names (light ... dark), else None."""
    return record.skin_tone if record.skin_tone in _TONES else None


def caption_of(record) -> str:
    """The caption used for a held-out emoji: the first of ``captions_for`` (fixed)."""
    from core.data.emoji import captions_for
    return captions_for(record)[0]


def heldout_order(data, seed: int) -> list[int]:
    """All held-out indices in a seeded order (selections take prefixes of it)."""
    idx = data.indices("heldout")
    perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))
    return idx[perm].tolist()


def _stage_settings(base, steps: int | None, guidance: float | None = None):
    changes = {}
    if steps is not None:
        changes["steps"] = int(steps)
    if guidance is not None:
        changes["guidance"] = float(guidance)
    return replace(base, **changes) if changes else base


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- sections


def _clip_section(embedder, data, order, n, seed) -> dict:
    idx = order[:n]
    records = [data.records[i] for i in idx]
    captions = [caption_of(r) for r in records]
    res = embedder.image_size if embedder.image_size in (32, 64, 128) else 128
    real = data.images_at(res, idx)  # the CLIP's own input size: this measures the CLIP itself
    img = embedder.image_embeddings(real).cpu()
    txt = embedder.text_embeddings(captions).cpu()
    sim = img @ txt.T
    target = torch.arange(len(idx))
    # the captions of one held-out set can repeat (rare); a match on an identical caption counts
    same = torch.tensor([[a == b for b in captions] for a in captions])
    i2t = same[target, sim.argmax(1)].float().mean()
    t2i = same[sim.argmax(0), target].float().mean()
    return {"n": len(idx), "resolution": res, "image_to_text_top1": float(i2t),
            "text_to_image_top1": float(t2i), "chance": 1.0 / len(idx)}


def _fd_real_train(embedder, data, resolution: int, real_emb: torch.Tensor, seed: int) -> float:
    """FD_CLIP between as many real training images (a seeded draw) and the real held-out set:
    what a perfect generator would score at this N."""
    train = data.indices("train")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 2))
    train_real = data.images_at(resolution, train[pick[: len(real_emb)]])
    return frechet_distance(embedder.image_embeddings(train_real).cpu().numpy(), real_emb.numpy())


def _text_section(models, embedder, classifiers, data, order, args, log) -> dict:
    from core.pipeline import BASE_DEFAULTS, generate_text

    model = models.get("text_base")
    encoder = models.text_encoder()
    idx = order[: args["n"]]
    records = [data.records[i] for i in idx]
    prompts = [caption_of(r) for r in records]
    seeds = [args["seed"] + i for i in range(len(idx))]
    real = data.images_at(model.resolution, idx)
    out: dict = {"n": len(idx), "resolution": model.resolution, "examples": prompts[:4]}

    tone_rows = [(j, names_skin_tone(r)) for j, r in enumerate(records) if names_skin_tone(r)]
    gender_rows = [(j, names_gender(r)) for j, r in enumerate(records) if names_gender(r)]
    out["skin_tone_prompts"], out["gender_prompts"] = len(tone_rows), len(gender_rows)

    def attribute_match(images, task, rows):
        clf = classifiers.get(task) if classifiers else None
        if clf is None or not rows:
            return None
        js = [j for j, _ in rows]
        want = torch.tensor([clf.index(a) for _, a in rows])
        return float((clf.predict(images[js]) == want).float().mean())

    reference = {"skin_tone_match": attribute_match(real, "skin_tone", tone_rows),
                 "gender_match": attribute_match(real, "gender", gender_rows)}
    if embedder is not None:
        real_emb = embedder.image_embeddings(real).cpu()
        reference["clip_score"] = _mean(embedder.clip_score(real, prompts).cpu())
        if len(idx) >= 2:
            perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(args["seed"] + 1))
            shuffled = [None] * len(idx)
            for k in range(len(idx)):  # a derangement: every image gets another emoji's caption
                shuffled[int(perm[k])] = prompts[int(perm[(k + 1) % len(idx)])]
            reference["clip_score_shuffled"] = _mean(embedder.clip_score(real, shuffled).cpu())
            reference["fd_clip_real_train"] = _fd_real_train(embedder, data, model.resolution, real_emb, args["seed"])
    out["reference"] = reference

    sweep = []
    for g in args["guidance"]:
        settings = _stage_settings(BASE_DEFAULTS, args["steps"], g)
        t0 = time.perf_counter()
        images = torch.cat([generate_text(model, encoder, prompts[s], "", seeds[s], settings).cpu()
                            for s in _chunks(len(idx), args["batch"])])
        row = {"guidance": g, "steps": settings.steps, "sampler": settings.sampler,
               "seconds": round(time.perf_counter() - t0, 2),
               "skin_tone_match": attribute_match(images, "skin_tone", tone_rows),
               "gender_match": attribute_match(images, "gender", gender_rows)}
        if embedder is not None:
            row["clip_score"] = _mean(embedder.clip_score(images, prompts).cpu())
            if len(idx) >= 2:
                row["fd_clip"] = frechet_distance(embedder.image_embeddings(images).cpu().numpy(), real_emb.numpy())
        log(f"  text_base guidance {g}: {row}")
        sweep.append(row)
    out["sweep"] = sweep
    return out


def _class_section(models, embedder, classifiers, data, order, args, log) -> dict:
    from core.pipeline import BASE_DEFAULTS, generate_class

    model = models.get("class_base")
    known = set(model.config.classes or [])
    idx = [i for i in order if data.records[i].subgroup in known][: args["n"]]
    if not idx:
        return {"skipped": "no held-out emoji belongs to a class the model knows"}
    names = [data.records[i].subgroup for i in idx]
    seeds = [args["seed"] + i for i in range(len(idx))]
    real = data.images_at(model.resolution, idx)
    clf = classifiers.get("subgroup") if classifiers else None
    labels = torch.tensor([clf.index(s) for s in names]) if clf else None
    out: dict = {"n": len(idx), "classes": len(set(names)), "resolution": model.resolution}
    reference: dict = {}
    if clf is not None:
        reference["accuracy_top1"] = clf.accuracy(real, labels, 1)
        reference["accuracy_top5"] = clf.accuracy(real, labels, 5)
    if embedder is not None:
        real_emb = embedder.image_embeddings(real).cpu()
        if len(idx) >= 2:
            reference["fd_clip_real_train"] = _fd_real_train(embedder, data, model.resolution, real_emb, args["seed"])
    out["reference"] = reference
    sweep = []
    for g in args["guidance"]:
        settings = _stage_settings(BASE_DEFAULTS, args["steps"], g)
        t0 = time.perf_counter()
        images = torch.cat([generate_class(model, names[s], seeds[s], settings).cpu()
                            for s in _chunks(len(idx), args["batch"])])
        row = {"guidance": g, "steps": settings.steps, "sampler": settings.sampler,
               "seconds": round(time.perf_counter() - t0, 2)}
        if clf is not None:
            row["accuracy_top1"] = clf.accuracy(images, labels, 1)
            row["accuracy_top5"] = clf.accuracy(images, labels, 5)
        if embedder is not None and len(idx) >= 2:
            row["fd_clip"] = frechet_distance(embedder.image_embeddings(images).cpu().numpy(), real_emb.numpy())
        log(f"  class_base guidance {g}: {row}")
        sweep.append(row)
    out["sweep"] = sweep
    return out


def _sr_section(models, name, data, order, args, log) -> dict:
    from core.pipeline import SR_STAGE_DEFAULTS, upscale

    model = models.get(name)
    low_res, res = int(model.config.low_resolution), int(model.resolution)
    idx = order[: args["n_sr"]]
    seeds = [args["seed"] + i for i in range(len(idx))]
    low = data.images_at(low_res, idx)
    high = data.images_at(res, idx)
    settings = _stage_settings(SR_STAGE_DEFAULTS[0 if name == "sr64" else 1], args["steps"])
    t0 = time.perf_counter()
    sr = torch.cat([upscale(model, low[s], seeds[s], settings).cpu() for s in _chunks(len(idx), args["batch"])])
    seconds = time.perf_counter() - t0
    bicubic = F.interpolate(low, size=res, mode="bicubic", align_corners=False).clamp(-1, 1)
    target = _unit(high)
    out = {"n": len(idx), "low_resolution": low_res, "resolution": res, "steps": settings.steps,
           "sampler": settings.sampler, "aug_level": settings.aug_level, "seconds": round(seconds, 2),
           "model": {"psnr": _mean(psnr(_unit(sr), target)), "ssim": _mean(ssim(_unit(sr), target))},
           "bicubic": {"psnr": _mean(psnr(_unit(bicubic), target)), "ssim": _mean(ssim(_unit(bicubic), target))}}
    log(f"  {name}: {out}")
    return out


def _timing_section(models) -> dict:
    from core.cascade import generate
    from core.pipeline import BASE_DEFAULTS, SR_STAGE_DEFAULTS

    warm_base = replace(BASE_DEFAULTS, steps=1)
    warm_sr = [replace(s, steps=1) for s in SR_STAGE_DEFAULTS]
    # the pixel text base's cascade, whatever the default base (its card reports this time)
    generate(models, prompt=TIMING_PROMPT, size=128, base=warm_base, sr=warm_sr, base_model="pixel")  # warm-up
    marks: dict[int, float] = {}

    def callback(info):
        _sync(models.device)
        marks[info["stage"]] = time.perf_counter()

    _sync(models.device)
    t0 = time.perf_counter()
    generate(models, prompt=TIMING_PROMPT, size=128, callback=callback, base_model="pixel")
    _sync(models.device)
    total = time.perf_counter() - t0
    stages, prev = {}, t0
    for res in sorted(marks):
        stages[res] = round(marks[res] - prev, 3)
        prev = marks[res]
    return {"prompt": TIMING_PROMPT, "seconds": round(total, 3), "stages": stages,
            "steps": [BASE_DEFAULTS.steps, *(s.steps for s in SR_STAGE_DEFAULTS)],
            "device": str(models.device), "threads": torch.get_num_threads()}


def _old_figures(card, kind, embedder, classifiers, old_judge=None) -> dict:
    """The old measures on the scorecard's own images: CLIP score (text), the clean-emoji
    subgroup classifier's accuracy against the asked subgroup (CAS) and, given ``old_judge``
    (another judge, e.g. the one a model card was first scored with), that judge's accepted /
    recognisable / retrieval@k, per split and image set."""
    from core.scorecard import score_images

    clf = classifiers.get("subgroup") if classifiers else None
    old: dict = {}
    k = card.results.get("k", 5)
    for split, sets in card.images.items():
        for row, images in sets.items():
            if embedder is not None and kind == "text":
                old.setdefault("CLIP score", {}).setdefault(split, {})[row] = _mean(
                    embedder.clip_score(images, card.asked[split]).cpu())
            if clf is not None:
                want = torch.tensor([clf.index(s) for s in card.subgroups[split]])
                old.setdefault("CAS", {}).setdefault(split, {})[row] = clf.accuracy(images, want)
            if old_judge is not None:
                f = score_images(old_judge, images, card.subgroups[split],
                                 card.records[split] if kind == "text" else None, k)
                for key, name in (("accepted", "accepted"), ("recognisable", "recognisable"),
                                  ("retrieval", f"retrieval@{k}")):
                    if key in f:
                        old.setdefault(f"{name}, old judge", {}).setdefault(split, {})[row] = _mean(f[key])
    return old


def _judge_section(models, judge, embedder, classifiers, data, args, names, log, old_judge=None) -> dict:
    """Each selected base scored by the judge (:mod:`core.scorecard`) at its default sampling
    settings (``--steps`` applies), the old measures (and ``old_judge``'s) on the same images
    beside, attribute retention of the text bases, and the fixed grids."""
    from core.pipeline import BASE_DEFAULTS
    from core.scorecard import base_sampler, fixed_grid, scorecard, semantic_sampler
    from core.semantic import DECODER_SAMPLER, DECODER_STEPS, PRIOR_DEFAULTS

    settings = _stage_settings(BASE_DEFAULTS, args["steps"])
    prior_settings = _stage_settings(PRIOR_DEFAULTS, args["steps"])
    out: dict = {"n": args["judge_n"], "guidance": settings.guidance, "steps": settings.steps,
                 "sampler": settings.sampler, "prior_steps": prior_settings.steps,
                 "prior_sampler": prior_settings.sampler, "decoder_steps": DECODER_STEPS,
                 "decoder_sampler": DECODER_SAMPLER}
    for name in names:
        kind = "text" if name in ("text_base", "semantic_text") else "label"
        if name.startswith("semantic_"):   # the prior over DiffAE's code, then the DiffAE decoder
            sample = semantic_sampler(models, kind, prior_settings, DECODER_STEPS, batch=args["batch"])
        else:
            sample = base_sampler(models, kind, settings, batch=args["batch"])
        log(f"  judge: {name}")
        try:
            card = scorecard(sample, kind, judge, data, n=args["judge_n"], seed=args["seed"],
                             classes=models.classes() if kind == "label" else None, classifiers=classifiers,
                             log=log)
        except Exception as e:  # a broken checkpoint must not hide the other sections
            if isinstance(e, (KeyboardInterrupt, MemoryError)):
                raise
            out[name] = {"skipped": f"{name}: failed ({type(e).__name__}: {e})"}
            continue
        res = dict(card.results)
        res["old"] = _old_figures(card, kind, embedder, classifiers, old_judge)
        if args.get("grid_dir"):
            from core.scorecard import GRID_CLASSES, GRID_PROMPTS
            items = GRID_PROMPTS if kind == "text" else [c for c in GRID_CLASSES if c in models.classes()]
            res["grid"] = fixed_grid(sample, kind, judge, Path(args["grid_dir"]) / name / "grid.png", data,
                                     items=items)
            log(f"  wrote {res['grid']['path']}")
        out[name] = res
    return out


# --------------------------------------------------------------------------- driver


def evaluate(checkpoints: str | os.PathLike | None = None, models: Sequence[str] = MODELS, n: int = DEFAULT_N,
             steps: int | None = None, guidance: Sequence[float] = DEFAULT_GUIDANCE, device: str = "auto",
             n_sr: int | None = DEFAULT_N_SR,
             seed: int = 0, classifiers: str | os.PathLike | None = None, classifier_settings=None,
             clip: str | os.PathLike | None = None, timing: bool = True, batch: int = 32, data=None,
             judge: str | os.PathLike | None = None, judge_n: int | None = None,
             grid_dir: str | os.PathLike | None = None, old_judge: str | os.PathLike | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """Run every section; returns a JSON-ready dict (see :func:`format_report`).

    ``judge`` is the judge folder (default ``<checkpoints>/judge``; :mod:`core.judge`), which
    scores the bases with :func:`core.scorecard.scorecard` on ``judge_n`` samples per split
    (default ``n``); ``grid_dir``: also write the labelled grids of the fixed prompts and classes
    to ``grid_dir/<model>/grid.png``; ``old_judge``: another judge folder whose accepted /
    recognisable / retrieval of the same images are reported beside the judge's.

    ``classifiers`` is the classifier cache folder (default ``~/.cache/diffusion-hub/classifiers``),
    ``classifier_settings`` a :class:`core.classifiers.ClassifierSettings` (tiny ones for tests);
    ``clip`` the CLIP folder used for the CLIP metrics (default ``<checkpoints>/clip``);
    ``n_sr`` the images per SR stage (at most ``n``; None: ``n``).
    """
    from core.models.modelset import ModelSet
    from core.evaluation.classifiers import load_all
    from core.models.clip_model import ClipEmbedder
    from core.data.emoji import load_dataset

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
        results["clip"] = {"folder": str(clip_folder), **_clip_section(embedder, data, order, n, seed)}
    except (OSError, ValueError) as e:
        results["skipped"]["clip"] = f"CLIP metrics skipped: {e}"
        log(results["skipped"]["clip"])

    # classifiers, for the attribute matches and the class-base accuracy
    clfs = None
    if any(m in models and present(m) for m in ("text_base", "class_base", "prior")):
        log("classifiers:")
        clfs = load_all(classifiers, data, classifier_settings, device=ms.device, log=log)
        results["classifiers"] = {
            t: {k: c.info.get(k) for k in ("heldout_accuracy", "chance_accuracy", "train_images",
                                            "heldout_images", "train_seconds", "parameters")}
            | {"classes": len(c.classes)} for t, c in clfs.items()}

    sections = {
        "text_base": lambda: _text_section(ms, embedder, clfs, data, order, args, log),
        "class_base": lambda: _class_section(ms, embedder, clfs, data, order, args, log),
        "sr64": lambda: _sr_section(ms, "sr64", data, order, args, log),
        "sr128": lambda: _sr_section(ms, "sr128", data, order, args, log),
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

    bases = [m for m in ("text_base", "class_base") if m in models and present(m) and m in results]
    if "prior" in models and present("prior") and present("diffae"):   # the semantic base, text and labels
        bases += ["semantic_text", "semantic_label"]
    elif "prior" in models:
        missing = [m for m in ("prior", "diffae") if not present(m)]
        results["skipped"]["prior"] = (f"prior: skipped (the semantic base needs prior and diffae; no checkpoint at "
                                       f"{', '.join(str(root / m) for m in missing)})")
        log(results["skipped"]["prior"])
    if bases:
        from core.evaluation.judge import Judge, JudgeError
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
                                **_judge_section(ms, the_judge, embedder, clfs, data, args, bases, log, before)}

    if timing:
        need = ("text_base", "sr64", "sr128")
        missing = [m for m in need if m not in models or not present(m)]
        if missing:
            results["skipped"]["timing"] = (f"timing: skipped (needs text_base, sr64 and sr128; "
                                            f"missing or not selected: {', '.join(missing)})")
        else:
            log("timing:")
            try:
                results["timing"] = _timing_section(ms)
            except Exception as e:
                results["skipped"]["timing"] = f"timing: failed ({type(e).__name__}: {e})"
    results["settings"]["seconds"] = round(time.perf_counter() - t_start, 1)
    return results


# --------------------------------------------------------------------------- report


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def format_report(results: dict) -> str:
    """The markdown report of :func:`evaluate`'s results."""
    s = results["settings"]
    L = ["# Evaluation on the held-out split", "",
         f"checkpoints `{s['checkpoints']}`, device {s['device']} ({s['threads']} threads), "
         f"N = {s['n']} of {s['heldout_size']} held-out emoji, seed {s['seed']}, "
         f"steps {s['steps'] or 'stage defaults'}, guidance sweep {', '.join(_f(g, 1) for g in s['guidance'])}; "
         f"took {s.get('seconds', '?')} s.", ""]
    skipped = results.get("skipped", {})

    L += ["## CLIP", ""]
    if "clip" in results:
        c = results["clip"]
        L += [f"`{c['folder']}` is the same CLIP whose text tower conditions the text base, so CLIP "
              "scores of text-base samples are optimistic: read them against the real-image ceiling "
              "and the shuffled-caption floor below, not against published numbers.", "",
              f"Retrieval among the {c['n']} held-out images ({c['resolution']}x{c['resolution']}) and their "
              f"captions: image->text top-1 "
              f"{_f(c['image_to_text_top1'])}, text->image top-1 {_f(c['text_to_image_top1'])} "
              f"(chance {_f(c['chance'])}).", ""]
    else:
        L += [skipped.get("clip", "CLIP metrics skipped."), ""]

    if "classifiers" in results:
        L += ["## Classifiers (trained on real training images, 32x32)", ""]
        L += _table(["classifier", "classes", "train images", "held-out images", "held-out accuracy",
                     "majority class"],
                    [[t, c["classes"], c["train_images"], c["heldout_images"], _f(c["heldout_accuracy"]),
                      _f(c["chance_accuracy"])] for t, c in results["classifiers"].items()])
        L.append("")

    L += ["## Text base (32x32)", ""]
    if "text_base" in results:
        t = results["text_base"]
        ref = t["reference"]
        L += [f"N = {t['n']} held-out captions (one per emoji, e.g. " + "; ".join(f"\"{p}\"" for p in t["examples"][:2])
              + f"); {t['skin_tone_prompts']} name a skin tone, {t['gender_prompts']} a gender "
              "(man / woman / person). FD_CLIP: Frechet distance to the real held-out images in CLIP "
              "image-embedding space; N is small, so compare FD numbers only at equal N.", ""]
        rows = [["real held-out images, their captions (ceiling)", _f(ref.get("clip_score"), 2), "-",
                 _f(ref.get("skin_tone_match")), _f(ref.get("gender_match")), "-"],
                ["real held-out images, shuffled captions (floor)", _f(ref.get("clip_score_shuffled"), 2), "-",
                 "-", "-", "-"],
                [f"real training images (N = {t['n']}) vs real held-out", "-", _f(ref.get("fd_clip_real_train")),
                 "-", "-", "-"]]
        for r in t["sweep"]:
            rows.append([f"samples, guidance {_f(r['guidance'], 1)} ({r['sampler']}, {r['steps']} steps)",
                         _f(r.get("clip_score"), 2), _f(r.get("fd_clip")), _f(r.get("skin_tone_match")),
                         _f(r.get("gender_match")), _f(r["seconds"], 1)])
        L += _table(["images", "CLIP score", "FD_CLIP", "skin tone as asked", "gender as asked", "s"], rows)
        L += ["", "Skin tone / gender as asked: the fraction of images the classifiers rate as the tone / "
              "gender the caption names (for the real images: the classifiers' accuracy on them).", ""]
    else:
        L += [skipped.get("text_base", "text_base: not selected"), ""]

    L += ["## Class base (32x32)", ""]
    if "class_base" in results and "skipped" not in results["class_base"]:
        c = results["class_base"]
        ref = c["reference"]
        L += [f"N = {c['n']} held-out emoji ({c['classes']} classes), one sample each of its subgroup. "
              "CAS here = the subgroup classifier's accuracy on the samples, judged against the label "
              "asked for (Ravuri & Vinyals' CAS trains a classifier on samples and tests on real "
              "images; that needs far more samples than this run makes).", ""]
        rows = [["real held-out images", _f(ref.get("accuracy_top1")), _f(ref.get("accuracy_top5")), "-", "-"],
                [f"real training images (N = {c['n']}) vs real held-out", "-", "-",
                 _f(ref.get("fd_clip_real_train")), "-"]]
        for r in c["sweep"]:
            rows.append([f"samples, guidance {_f(r['guidance'], 1)} ({r['sampler']}, {r['steps']} steps)",
                         _f(r.get("accuracy_top1")), _f(r.get("accuracy_top5")), _f(r.get("fd_clip")),
                         _f(r["seconds"], 1)])
        L += _table(["images", "CAS top-1", "CAS top-5", "FD_CLIP", "s"], rows)
        L.append("")
    else:
        L += [results.get("class_base", {}).get("skipped")
              or skipped.get("class_base", "class_base: not selected"), ""]

    L += _judge_report(results)

    L += ["## Super-resolution stages", "",
          "From the real held-out low-res image (area-downsampled); PSNR (dB, on [0,1]) and SSIM against "
          "the real high-res image, averaged over images. SSIM: 11x11 Gaussian window (sigma 1.5), "
          "per RGB channel, averaged over channels, valid region.", ""]
    rows = []
    for name in ("sr64", "sr128"):
        if name in results:
            r = results[name]
            what = f"{r['low_resolution']}->{r['resolution']}"
            rows.append([f"{name} ({what}, N = {r['n']}, {r['sampler']} {r['steps']} steps, aug {r['aug_level']})",
                         _f(r["model"]["psnr"], 2), _f(r["model"]["ssim"]),
                         _f(r["bicubic"]["psnr"], 2), _f(r["bicubic"]["ssim"]), _f(r["seconds"], 1)])
    if rows:
        L += _table(["stage", "PSNR", "SSIM", "bicubic PSNR", "bicubic SSIM", "s"], rows)
        L.append("")
    for name in ("sr64", "sr128"):
        if name in skipped:
            L.append(skipped[name])
    if any(name in skipped for name in ("sr64", "sr128")):
        L.append("")

    L += ["## Timing", ""]
    if "timing" in results:
        t = results["timing"]
        st = ", ".join(f"{k}px {_f(v, 2)} s" for k, v in t["stages"].items())
        L += [f"One 128x128 text-to-image cascade, default settings ({' / '.join(map(str, t['steps']))} steps), "
              f"prompt \"{t['prompt']}\", on {t['device']} with {t['threads']} threads: "
              f"**{_f(t['seconds'], 2)} s** (per stage, approximately: {st}); models loaded beforehand.", ""]
    else:
        L += [skipped.get("timing", "timing: not run"), ""]
    return "\n".join(L)


def _judge_report(results: dict) -> list[str]:
    from core.scorecard import format_scorecard

    L = ["## Judge: recognisability, retrieval, FD in the judge's features", ""]
    if "prior" in results.get("skipped", {}):
        L += [results["skipped"]["prior"], ""]
    if "judge" not in results:
        return L + [results.get("skipped", {}).get("judge", "judge: not run (no base selected)"), ""]
    j = results["judge"]
    semantic = (f"; semantic base: prior {j['prior_sampler']} {j['prior_steps']} steps, decoder "
                f"{j['decoder_sampler']} {j['decoder_steps']} steps" if "prior_steps" in j else "")
    L += [f"Judge `{j['folder']}`; samples at the bases' defaults (pixel bases: {j['sampler']}, {j['steps']} steps"
          f"{semantic}; guidance = {_f(j['guidance'], 1)}), N = {j['n']} per split, seeds from the run's seed. "
          "Recognisable = accepted as an emoji and of the subgroup asked; vs real = that share over the real "
          "renders' share; "
          "retrieval@5 = the asked design is among the 5 real emoji nearest in the judge's features (a real "
          "render finds itself: the blurred row is the reference); FD(judge) to all real emoji of the "
          "split's population (compare at equal N). The (old) columns are the old measures on the same "
          "images: CLIP score with the CLIP that conditions the text base, CAS, the subgroup "
          "classifier trained on clean emoji only"
          + (f", and the verdicts of the old judge `{j['old_judge']}`" if j.get("old_judge") else "") + ".", ""]
    for name in ("text_base", "class_base", "semantic_text", "semantic_label"):
        if name not in j:
            continue
        r = j[name]
        L += [f"### {name}", ""]
        if "skipped" in r:
            L += [r["skipped"], ""]
            continue
        L += format_scorecard(r, r.get("old"))
        L.append("")
        if "grid" in r:
            g = r["grid"]
            L += [f"Grid `{g['path']}`: the judge recognises {_f(g.get('recognised'), 2)} of its cells.", ""]
    return L


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    from core.models.checkpoints import CheckpointError
    from core.evaluation.classifiers import ClassifierSettings

    p = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", help="checkpoints root (folder or Hub repo id); default checkpoints/")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"held-out emoji per section (default {DEFAULT_N})")
    p.add_argument("--n-sr", type=int, default=DEFAULT_N_SR,
                   help=f"held-out images per SR stage, at most --n (default {DEFAULT_N_SR})")
    p.add_argument("--steps", type=int, help="sampling steps of every stage (default: each stage's default)")
    p.add_argument("--guidance", type=number_list(finite), default=list(DEFAULT_GUIDANCE), help="guidance sweep, e.g. 1,3,5")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=32, help="images per sampling batch")
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--clip", help="CLIP folder for the CLIP metrics (default <checkpoints>/clip)")
    p.add_argument("--classifiers", help="classifier cache folder (default ~/.cache/diffusion-hub/classifiers)")
    p.add_argument("--classifier-steps", type=int, help="train the classifiers with this many steps instead of "
                   "the default (a quick check; cached beside the default ones, never replacing them)")
    p.add_argument("--no-timing", action="store_true", help="skip the cascade timing")
    p.add_argument("--judge", help="judge folder (default <checkpoints>/judge)")
    p.add_argument("--judge-n", type=int, help="samples per split for the judge's scorecard (default --n)")
    p.add_argument("--grid-dir", help="also write the labelled grids of the fixed prompts and classes to "
                   "GRID_DIR/<model>/grid.png")
    p.add_argument("--old-judge", help="another judge folder (e.g. an earlier one) whose verdicts on the same "
                   "samples are reported beside the judge's")
    p.add_argument("--threads", type=int, help="torch threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    clf_settings = ClassifierSettings(steps=args.classifier_steps) if args.classifier_steps is not None else None
    try:
        results = evaluate(args.checkpoints, models=models, n=args.n, n_sr=args.n_sr, steps=args.steps,
                           guidance=args.guidance, device=args.device, seed=args.seed, classifiers=args.classifiers,
                           classifier_settings=clf_settings, clip=args.clip, timing=not args.no_timing,
                           batch=args.batch, judge=args.judge, judge_n=args.judge_n, grid_dir=args.grid_dir,
                           old_judge=args.old_judge,
                           log=lambda s: print(s, file=sys.stderr, flush=True))
    except (ValueError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(_json_safe(results), indent=1))
        os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["evaluate", "format_report", "main", "frechet_distance", "psnr", "ssim", "gaussian_window",
           "heldout_order", "caption_of", "names_gender", "names_skin_tone", "MODELS"]
