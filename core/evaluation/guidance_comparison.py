"""Classifier guidance against classifier-free guidance on the class base: recognisability
against diversity as the scale grows (the lesson of Dhariwal & Nichol 2021, fig. 4, and Ho &
Salimans 2021, fig. 1: both trade diversity for fidelity).

- classifier-free guidance (CFG): the class base with its label against the null label,
  eps_u + s (eps_c - eps_u); s = 1 is the plain conditional model, s = 0 the unconditional one;
- classifier guidance: the class base run unconditionally (the null label), steered by the
  noise-aware classifier (checkpoints/noisy_classifier): eps - s sqrt(1 - ab) grad log p(y | x_t);
  s = 0 is the unconditional model.

The same labels and seeds at every setting. `score_samples` is the one place that says how
samples are measured: recognisability is the fraction of samples that the judge of the quality
evaluation (`core.evaluation.judge`, checkpoints/judge; trained on real emoji, independent of
the guiding classifier) accepts as an emoji AND names with the subgroup asked for
(`core.evaluation.judge.recognisability`, the "recognisable" of `core.evaluation.scorecard`); diversity is
the mean pairwise distance between the samples of one label, averaged over the labels: between
their features in the subgroup classifier of `core.evaluation.classifiers` (its pooled last
layer, L2-normalised: what it sees, so two samples of the same thing in other colours are close),
and, as a second column, between their pixels (RMS on the [0, 1] scale, which rises when high
scales saturate colours).

Command line (`core.cli.guidance_comparison`): `python -m core guidance-comparison [--labels a,b]
[--cfg-scales 0,1,3] [--classifier-scales 0,5,10] [--seeds 0,1,2,3] --out plot.png [--grid grid.png]`
prints the table and draws the plot.
"""
from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from core.checks import check_finite, check_seeds
from core.evaluation.classifiers import load_or_train
from core.evaluation.judge import Judge, recognisability
from core.mechanics import MAX_SEEDS, Comparison
from core.metrics import mean_pairwise_distance
from core.models.small_cnn import to_resolution
from core.pipeline import BASE_DEFAULTS, StageSettings, check_classifier_scale, generate_class

CFG_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0)
CLASSIFIER_SCALES = (0.0, 3.0, 10.0, 30.0, 100.0)
# frequent subgroups of the held-out split (those the quality evaluation weighs most), people and not
LABELS = ("person-role", "family", "country-flag", "person-activity", "person-gesture", "animal-mammal",
          "hand-fingers-open", "transport-ground")
SEEDS = (0, 1, 2, 3)
# DDIM steps of the comparison: at 10 leading DDIM steps the class base's samples are blurrier and both
# guidances look worse than they are (judge recognisability at classifier scale 10: 0.22, against 0.44
# at 25 steps; unconditional diversity 0.70 against 0.88)
STEPS = 25
METHODS = ("classifier-free", "classifier")
MAX_SAMPLES = 512
Scorer = Callable[[dict], dict]


# ---- how samples are measured ---------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _judge(folder: str):
    """The judge in `folder` (core.evaluation.judge), loaded once per folder; JudgeError (a
    ValueError) names what is missing."""
    return Judge.load(folder)


def load_judge(models):
    """The judge of the checkpoints root of `models` (<root>/judge)."""
    return _judge(str(Path(models.root) / "judge"))


@functools.lru_cache(maxsize=1)
def _classifier():
    """The subgroup classifier of core.evaluation.classifiers, whose features diversity is measured
    in (cached; trained once, ~3 CPU minutes)."""
    return load_or_train("subgroup", log=lambda s: print(s, file=sys.stderr, flush=True))


def score_samples(samples: dict[str, Tensor], judge) -> dict[str, float]:
    """Recognisability and diversity of samples {label: images [n, 3, r, r] in [-1, 1]}:
    `recognisability` = the fraction of all samples the judge accepts as an emoji and assigns to
    their label (`core.evaluation.judge.recognisability`); `diversity` = the mean pairwise distance
    of the samples' L2-normalised features in the subgroup classifier (core.evaluation.classifiers),
    within each label, averaged over the labels (labels with one sample are left out);
    `diversity_pixels` the same for the RMS pixel distance (on [0, 1])."""
    for label in samples:
        judge.subgroup_index(label)   # ValueError naming a label the judge does not know
    classifier = _classifier()
    hits, total, spreads, pixel_spreads = 0, 0, [], []
    for label, images in samples.items():
        images = images.cpu()
        hits += int(recognisability(judge, images, [label] * len(images)).sum())
        total += len(images)
        if len(images) > 1:
            spreads.append(mean_pairwise_distance(classifier_features(classifier, images)))
            pixel_spreads.append(mean_pairwise_distance(images) / 2 / math.sqrt(images[0].numel()))

    def mean(values):
        return sum(values) / len(values) if values else math.nan

    return {"recognisability": hits / max(total, 1), "diversity": mean(spreads),
            "diversity_pixels": mean(pixel_spreads)}


@torch.no_grad()
def classifier_features(classifier, images: Tensor) -> Tensor:
    """The subgroup classifier's pooled last-layer features of images, L2-normalised: [n, d]."""
    net = classifier.model.eval()
    x = to_resolution(images).to(classifier.device)
    features = net.head[:2](net.features(x)).float().cpu()   # pooling and flattening, before dropout and the head
    return torch.nn.functional.normalize(features, dim=1)


# ---- the comparison ------------------------------------------------------------------------------
def check_scales(scales: Sequence[float], what: str, check=lambda s: check_finite("scale", s)) -> list[float]:
    scales = [check(s) for s in scales]
    if not 1 <= len(scales) <= 12:
        raise ValueError(f"give from 1 to 12 {what} scales, got {len(scales)}")
    return scales


def _check_cfg(scale) -> float:
    scale = check_finite("guidance scale", scale)
    if not 0 <= scale <= 30:
        raise ValueError(f"guidance scale must be between 0 and 30, got {scale!r}")
    return scale


def compare_guidance(models, labels: Sequence[str] = LABELS, cfg_scales: Sequence[float] = CFG_SCALES,
                     classifier_scales: Sequence[float] = CLASSIFIER_SCALES, seeds: Sequence[int] = SEEDS,
                     sampler: str = "ddim", steps: int = STEPS, thresholding: bool = True,
                     progress: Callable[[str], None] | None = None, score: Scorer | None = None) -> Comparison:
    """The class base at each CFG scale and each classifier-guidance scale, on the same labels and
    seeds; a row per setting {guidance, scale, recognisability, diversity, seconds_per_image}.
    The images of a row are the samples of every label, label after label. `score` measures the
    samples of one setting; by default `score_samples` with the judge of the models' checkpoints."""
    labels = list(labels)
    if not labels:
        raise ValueError("choose at least one class label")
    seeds = check_seeds(seeds, 2, MAX_SEEDS)
    cfg_scales = check_scales(cfg_scales, "classifier-free guidance", _check_cfg)
    classifier_scales = check_scales(classifier_scales, "classifier guidance", check_classifier_scale)
    if len(labels) * len(seeds) * (len(cfg_scales) + len(classifier_scales)) > MAX_SAMPLES:
        raise ValueError(f"{len(labels)} labels x {len(seeds)} seeds x {len(cfg_scales) + len(classifier_scales)} "
                         f"settings is more than {MAX_SAMPLES} samples")
    model = models.get("class_base")
    unknown = [label for label in labels if label not in (model.config.classes or [])]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}; `python -m core classes` lists them")
    classifier = models.get("noisy_classifier")
    if score is None:   # the judge first: a missing one is named before minutes of sampling
        judge = load_judge(models)
        for label in labels:
            judge.subgroup_index(label)
        score = functools.partial(score_samples, judge=judge)
    settings = StageSettings(sampler=sampler, steps=int(steps),
                             threshold=BASE_DEFAULTS.threshold if thresholding else None)
    rows, images = [], []
    for method, scales in zip(METHODS, (cfg_scales, classifier_scales)):
        for scale in scales:
            if progress:
                progress(f"{method} guidance, scale {scale:g}")
            start = time.perf_counter()
            samples = {}
            for label in labels:
                if method == "classifier-free":
                    x = generate_class(model, [label], seeds, settings, guidance=scale)
                else:
                    x = generate_class(model, [label], seeds, settings, classifier=classifier, classifier_scale=scale)
                samples[label] = x.cpu()
            seconds = (time.perf_counter() - start) / (len(labels) * len(seeds))
            scores = score(samples)
            rows.append({"guidance": method, "scale": scale, "recognisability": round(scores["recognisability"], 4),
                         "diversity": round(scores["diversity"], 4),
                         "diversity_pixels": round(scores.get("diversity_pixels", math.nan), 4),
                         "seconds_per_image": round(seconds, 3)})
            images.append(torch.cat(list(samples.values())))
    parameters = {"panel": "guidance comparison", "labels": labels, "seeds": seeds, "cfg_scales": cfg_scales,
                  "classifier_scales": classifier_scales, "sampler": sampler, "steps": int(steps),
                  "thresholding": thresholding,
                  "measures": "recognisability: the share of samples the judge (core.evaluation.judge) accepts as an "
                              "emoji and assigns to the label; diversity: mean pairwise distance within a label of the "
                              "L2-normalised features of the subgroup classifier of core.evaluation.classifiers "
                              "(diversity_pixels: of the pixels, RMS on [0, 1])"}
    return Comparison(rows, images, parameters)


# ---- the plot ------------------------------------------------------------------------------------
COLOURS = {"classifier-free": (31, 119, 180), "classifier": (255, 127, 14)}


def tradeoff_plot(rows: Sequence[dict], width: int = 640, height: int = 440) -> Image.Image:
    """Recognisability (y) against diversity (x): a line per guidance, its points in scale order,
    each marked with its scale."""
    font = ImageFont.load_default(size=13)
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    left, right, top, bottom = 64, width - 20, 40, height - 50
    xs = [r["diversity"] for r in rows if math.isfinite(r["diversity"])] or [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs)
    pad = (x_hi - x_lo) * 0.08 or 0.05
    x_lo, x_hi = max(0.0, x_lo - pad), x_hi + pad

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left), bottom - y * (bottom - top))

    d.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    for i in range(6):
        y = i / 5
        _, py = at(x_lo, y)
        d.line((left - 4, py, left, py), fill=(0, 0, 0))
        d.line((left + 1, py, right - 1, py), fill=(235, 235, 235))
        d.text((left - 8, py), f"{y:.1f}", fill=(0, 0, 0), font=font, anchor="rm")
        x = x_lo + (x_hi - x_lo) * i / 5
        px, _ = at(x, 0)
        d.line((px, bottom, px, bottom + 4), fill=(0, 0, 0))
        d.text((px, bottom + 6), f"{x:.3f}", fill=(0, 0, 0), font=font, anchor="mt")
    d.text(((left + right) / 2, height - 8), "diversity: mean pairwise distance of the classifier's features",
           fill=(0, 0, 0), font=font, anchor="md")
    d.text((8, top - 14), "recognisability: share the judge accepts as an emoji of the label", fill=(0, 0, 0),
           font=font, anchor="lm")
    for k, method in enumerate(METHODS):
        points = [(at(r["diversity"], r["recognisability"]), r["scale"]) for r in rows
                  if r["guidance"] == method and math.isfinite(r["diversity"])]
        colour = COLOURS[method]
        if len(points) > 1:
            d.line([p for p, _ in points], fill=colour, width=2)
        for (px, py), scale in points:
            d.ellipse((px - 4, py - 4, px + 4, py + 4), fill=colour)
            d.text((px + 6, py - 6), f"{scale:g}", fill=colour, font=font, anchor="ld")
        d.line((right - 190, top + 14 + 18 * k, right - 170, top + 14 + 18 * k), fill=colour, width=3)
        d.text((right - 165, top + 14 + 18 * k), f"{method} guidance", fill=colour, font=font, anchor="lm")
    return im


__all__ = ["compare_guidance", "score_samples", "classifier_features", "load_judge", "tradeoff_plot", "check_scales",
           "CFG_SCALES", "CLASSIFIER_SCALES", "LABELS", "SEEDS", "STEPS", "METHODS", "MAX_SAMPLES"]
