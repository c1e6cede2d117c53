"""Three guidances of one model, the semantic prior (`core.models.prior`), compared:
recognisability against diversity as the scale grows (Dhariwal & Nichol 2021, fig. 4; Ho &
Salimans 2021, fig. 1; GLIDE, Nichol et al. 2022, sec. 5: classifier-free guidance against CLIP
guidance). Every row runs the prior's sampler (DDIM, `STEPS` steps) on the same seeds, and the DiffAE
decoder draws the codes (its default steps and guidance):

- unguided: the unconditional prior (the null text and label);
- classifier-free (label): the prior given the label against the unconditional prior,
  eps_u + s (eps_c - eps_u); s = 1 is the plain conditional prior;
- classifier: the unconditional prior steered by the noise-aware classifier of its codes
  (`checkpoints/code_classifier`), eps - s sqrt(1 - ab) grad log p(label | z_t);
- classifier-free (text): the prior given a text against the unconditional prior;
- CLIP: the unconditional prior steered by the noise-aware code-text matcher
  (`checkpoints/code_matcher`): the same formula with its similarity to the text.

The texts are names of training-split emoji of each label (`label_prompts`: sample j of a label asks
its j-th name in a seeded order), so every row asks for the same subgroup and is measured the same
way. `score_samples` is the one place that says how: recognisability is the share of samples that the
judge of the quality evaluation (`core.evaluation.judge`, checkpoints/judge; trained on real emoji,
independent of both guiding models) accepts as an emoji AND names with the subgroup asked for (the
"recognisable" of `core.evaluation.scorecard`); diversity is the mean pairwise distance between the
samples of one label in the judge's L2-normalised features (what it sees: two samples of the same
emoji in other colours are close), averaged over the labels, and, as a second column, between their
pixels (RMS on the [0, 1] scale).

Command line (`core.cli.guidance_comparison`): `python -m core guidance-comparison [--labels a,b]
[--cfg-scales 1,3] [--classifier-scales 3,10] [--clip-scales 3,10] [--seeds 0,1,2,3] --out plot.png
[--grid grid.png]` prints the table and draws the plot; `scripts/guidance_prior.py` writes
docs/guidance_prior.md from it.
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from core.checks import check_finite, check_seeds
from core.data.emoji import load_dataset
from core.evaluation.judge import Judge, recognisability
from core.evaluation.scorecard import prompt_of
from core.images import tensor_to_pil
from core.mechanics import MAX_SEEDS, Comparison
from core.metrics import mean_pairwise_distance
from core.models.prior import check_guidance, sample_codes
from core.semantic import CLIP_SCALE, CODE_CLASSIFIER_SCALE, check_code_guide_scale, code_guide, render

CFG_SCALES = (1.0, 3.0)
CLASSIFIER_SCALES = (3.0, CODE_CLASSIFIER_SCALE)
CLIP_SCALES = (3.0, CLIP_SCALE)
# frequent subgroups of the held-out split (those the quality evaluation weighs most), people and not
LABELS = ("person-role", "family", "country-flag", "person-activity", "person-gesture", "animal-mammal",
          "hand-fingers-open", "transport-ground")
SEEDS = (0, 1, 2, 3)
STEPS = 25          # the prior's DDIM steps (core.semantic.PRIOR_DEFAULTS)
UNGUIDED = "unguided"
METHODS = ("classifier-free (label)", "classifier", "classifier-free (text)", "CLIP")
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


def score_samples(samples: dict[str, Tensor], judge) -> dict[str, float]:
    """Recognisability and diversity of samples {label: images [n, 3, r, r] in [-1, 1]}:
    `recognisability` = the fraction of all samples the judge accepts as an emoji and assigns to
    their label (`core.evaluation.judge.recognisability`); `diversity` = the mean pairwise distance
    of the samples' L2-normalised judge features within each label, averaged over the labels (labels
    with one sample are left out); `diversity_pixels` the same for the RMS pixel distance (on [0, 1]);
    `recognised` the judge's verdict on each sample, label after label."""
    for label in samples:
        judge.subgroup_index(label)   # ValueError naming a label the judge does not know
    hits, total, spreads, pixel_spreads, flags = 0, 0, [], [], []
    for label, images in samples.items():
        images = images.cpu()
        recognised = recognisability(judge, images, [label] * len(images))
        flags += [bool(f) for f in recognised.tolist()]
        hits += int(recognised.sum())
        total += len(images)
        if len(images) > 1:
            spreads.append(mean_pairwise_distance(torch.nn.functional.normalize(judge.features(images), dim=1)))
            pixel_spreads.append(mean_pairwise_distance(images) / 2 / math.sqrt(images[0].numel()))

    def mean(values):
        return sum(values) / len(values) if values else math.nan

    return {"recognisability": hits / max(total, 1), "diversity": mean(spreads),
            "diversity_pixels": mean(pixel_spreads), "recognised": flags}


# ---- the comparison ------------------------------------------------------------------------------
def check_scales(scales: Sequence[float], what: str, check=lambda s: check_finite("scale", s)) -> list[float]:
    scales = [check(s) for s in scales]
    if not 1 <= len(scales) <= 12:
        raise ValueError(f"give from 1 to 12 {what} scales, got {len(scales)}")
    return scales


def _check_cfg(scale) -> float:
    return check_guidance(check_finite("guidance scale", scale))


@functools.lru_cache(maxsize=1)
def _names_by_subgroup() -> dict[str, list[str]]:
    data = load_dataset()
    names: dict[str, list[str]] = {}
    for i in data.indices("train").tolist():
        names.setdefault(data.records[i].subgroup, []).append(prompt_of(data.records[i]))
    return names


def label_prompts(label: str, n: int, seed: int = 0) -> list[str]:
    """n names of training-split emoji of the subgroup `label`, in a seeded order (repeated when
    the subgroup has fewer)."""
    names = _names_by_subgroup().get(label)
    if not names:
        raise ValueError(f"no training emoji of the subgroup {label!r}")
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    return [names[order[j % len(names)]] for j in range(n)]


def compare_guidance(models, labels: Sequence[str] = LABELS, cfg_scales: Sequence[float] = CFG_SCALES,
                     classifier_scales: Sequence[float] = CLASSIFIER_SCALES,
                     clip_scales: Sequence[float] = CLIP_SCALES, seeds: Sequence[int] = SEEDS,
                     steps: int = STEPS, progress: Callable[[str], None] | None = None,
                     score: Scorer | None = None) -> Comparison:
    """The prior unguided, then under each guidance at each of its scales (classifier-free guidance at
    `cfg_scales` on the label and on the text), on the same labels and seeds; a row per setting
    {guidance, scale, recognisability, diversity, diversity_pixels, seconds_per_image}. The images of a
    row are the samples of every label, label after label. `score` measures the samples of one setting;
    by default `score_samples` with the judge of the models' checkpoints."""
    labels = list(labels)
    if not labels:
        raise ValueError("choose at least one class label")
    seeds = check_seeds(seeds, 2, MAX_SEEDS)
    cfg_scales = check_scales(cfg_scales, "classifier-free guidance", _check_cfg)
    classifier_scales = check_scales(classifier_scales, "classifier guidance", check_code_guide_scale)
    clip_scales = check_scales(clip_scales, "CLIP guidance", lambda s: check_code_guide_scale(s, "CLIP scale"))
    settings = 1 + 2 * len(cfg_scales) + len(classifier_scales) + len(clip_scales)
    if len(labels) * len(seeds) * settings > MAX_SAMPLES:
        raise ValueError(f"{len(labels)} labels x {len(seeds)} seeds x {settings} settings is more than "
                         f"{MAX_SAMPLES} samples")
    prior, decoder = models.get("prior"), models.get("diffae")
    unknown = [label for label in labels if label not in prior.config.classes]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}; `python -m core classes` lists them")
    classifier, matcher = models.get("code_classifier"), models.get("code_matcher")
    if score is None:   # the judge first: a missing one is named before any sampling
        judge = load_judge(models)
        for label in labels:
            judge.subgroup_index(label)
        score = functools.partial(score_samples, judge=judge)
    n = len(seeds)
    batch_labels = [label for label in labels for _ in seeds]
    batch_seeds = [s for _ in labels for s in seeds]
    prompts = [p for label in labels for p in label_prompts(label, n)]
    encoder = models.get(prior.config.text_encoder)
    pooled = encoder.encode(prompts).pooled.to(prior.code_mean.device)
    label_cond, text_cond = prior.label_cond(batch_labels), prior.text_cond(pooled)
    uncond = prior.null_cond(len(batch_labels))
    plan = [(UNGUIDED, 0.0, label_cond, 0.0, None)]
    plan += [(METHODS[0], s, label_cond, s, None) for s in cfg_scales]
    plan += [(METHODS[1], s, label_cond, 0.0, code_guide(prior, classifier=classifier, label=batch_labels,
                                                         classifier_scale=s, batch=len(batch_labels)))
             for s in classifier_scales]
    plan += [(METHODS[2], s, text_cond, s, None) for s in cfg_scales]
    plan += [(METHODS[3], s, text_cond, 0.0, code_guide(prior, matcher=matcher, pooled=pooled, clip_scale=s,
                                                        batch=len(batch_labels)))
             for s in clip_scales]
    rows, images, verdicts = [], [], []
    for method, scale, cond, guidance, guide in plan:
        if progress:
            progress(f"{method} guidance, scale {scale:g}")
        start = time.perf_counter()
        z = sample_codes(prior, cond, uncond, batch_seeds, guidance, int(steps), "ddim", guide=guide)
        x = render(decoder, z, batch_seeds).cpu()
        seconds = (time.perf_counter() - start) / len(batch_seeds)
        samples = {label: x[i * n:(i + 1) * n] for i, label in enumerate(labels)}
        scores = score(samples)
        rows.append({"guidance": method, "scale": scale, "recognisability": round(scores["recognisability"], 4),
                     "diversity": round(scores["diversity"], 4),
                     "diversity_pixels": round(scores.get("diversity_pixels", math.nan), 4),
                     "seconds_per_image": round(seconds, 3)})
        images.append(x)
        verdicts.append(scores.get("recognised"))
    parameters = {"panel": "guidance comparison", "model": "the semantic prior, drawn by the DiffAE decoder",
                  "labels": labels, "prompts": prompts, "seeds": seeds, "cfg_scales": cfg_scales,
                  "classifier_scales": classifier_scales, "clip_scales": clip_scales, "sampler": "ddim",
                  "steps": int(steps), "recognised": verdicts,
                  "measures": "recognisability: the share of samples the judge (core.evaluation.judge) accepts as an "
                              "emoji and assigns to the label; diversity: mean pairwise distance within a label of the "
                              "judge's L2-normalised features (diversity_pixels: of the pixels, RMS on [0, 1])"}
    return Comparison(rows, images, parameters)


def summary(rows: Sequence[dict]) -> str:
    """What the rows show, in words: each guidance's best recognisability (and its diversity) against
    the unguided prior's, and whether classifier-free guidance beats CLIP guidance (GLIDE's finding)."""
    def best(method):
        mine = [r for r in rows if r["guidance"] == method]
        return max(mine, key=lambda r: (r["recognisability"], r["diversity"])) if mine else None

    base = next((r for r in rows if r["guidance"] == UNGUIDED), None)
    parts = []
    if base:
        parts.append(f"Unguided, the prior draws the asked subgroup in {base['recognisability']:.0%} of samples "
                     f"(diversity {base['diversity']:.2f}).")
    for method in METHODS:
        r = best(method)
        if r:
            parts.append(f"Best {method} guidance: {r['recognisability']:.0%} recognised at scale {r['scale']:g} "
                         f"(diversity {r['diversity']:.2f}).")
    cfg, clip = best(METHODS[2]), best(METHODS[3])
    if cfg and clip:
        if cfg["recognisability"] > clip["recognisability"]:
            verdict = "holds here: classifier-free guidance on the text is recognised more often than CLIP guidance"
        elif cfg["recognisability"] == clip["recognisability"]:
            verdict = "is a tie here: classifier-free and CLIP guidance are recognised equally often"
        else:
            verdict = "does not hold here: CLIP guidance is recognised more often than classifier-free guidance"
        parts.append(f"GLIDE's finding (classifier-free better than CLIP guidance) {verdict} "
                     f"({cfg['recognisability']:.0%} against {clip['recognisability']:.0%} at their best scales).")
    clf, cfg_label = best(METHODS[1]), best(METHODS[0])
    if clf and cfg_label and cfg_label["recognisability"] > 0:
        parts.append(f"Classifier guidance reaches {clf['recognisability'] / cfg_label['recognisability']:.2f} of "
                     "classifier-free guidance's recognisability on the label.")
    return " ".join(parts)


# ---- the plot and the grid ------------------------------------------------------------------------
COLOURS = {UNGUIDED: (110, 110, 110), METHODS[0]: (31, 119, 180), METHODS[1]: (255, 127, 14),
           METHODS[2]: (44, 160, 44), METHODS[3]: (214, 39, 40)}


def tradeoff_plot(rows: Sequence[dict], width: int = 720, height: int = 480) -> Image.Image:
    """Recognisability (y, 0 to 1: a share) against diversity (x, the data's range padded): a line per
    guidance, its points in scale order, each marked with its scale; the unguided prior a grey point."""
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
    d.text(((left + right) / 2, height - 8), "diversity: mean pairwise distance of the judge's features within a label",
           fill=(0, 0, 0), font=font, anchor="md")
    d.text((8, top - 14), "recognisability: share the judge accepts as an emoji of the asked subgroup", fill=(0, 0, 0),
           font=font, anchor="lm")
    for k, method in enumerate((UNGUIDED, *METHODS)):
        points = [(at(r["diversity"], r["recognisability"]), r["scale"]) for r in rows
                  if r["guidance"] == method and math.isfinite(r["diversity"])]
        colour = COLOURS[method]
        if len(points) > 1:
            d.line([p for p, _ in points], fill=colour, width=2)
        for i, ((px, py), scale) in enumerate(points):
            d.ellipse((px - 4, py - 4, px + 4, py + 4), fill=colour)
            if method != UNGUIDED:   # scale labels alternate above and below, so near points stay readable
                d.text((px + 6, py - 6 if i % 2 == 0 else py + 6), f"{scale:g}", fill=colour, font=font,
                       anchor="ld" if i % 2 == 0 else "lt")
        name = UNGUIDED if method == UNGUIDED else f"{method} guidance"
        d.line((right - 230, top + 14 + 18 * k, right - 210, top + 14 + 18 * k), fill=colour, width=3)
        d.text((right - 205, top + 14 + 18 * k), name, fill=colour, font=font, anchor="lm")
    return im


def labelled_grid(comparison: Comparison, zoom: int = 3) -> Image.Image:
    """The samples, a row per setting with its guidance and scale written at its left (and its
    recognisability), the columns headed by their label; each 32 px sample enlarged `zoom` times
    (nearest neighbour, so every pixel is the model's), with the judge's verdict on it as a bar under it
    (green: recognised, red: not)."""
    font = ImageFont.load_default(size=14)
    labels, n = comparison.parameters["labels"], len(comparison.parameters["seeds"])
    cell = comparison.images[0].shape[-1] * zoom
    gap, text_w, head, bar = 2, 250, 22, 4
    verdicts = comparison.parameters.get("recognised") or [None] * len(comparison.rows)
    columns = len(labels) * n
    width = text_w + columns * (cell + gap) + (len(labels) - 1) * 6
    height = head + len(comparison.rows) * (cell + bar + gap)
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)

    def x_of(j: int) -> int:
        return text_w + j * (cell + gap) + (j // n) * 6

    for i, label in enumerate(labels):
        d.text((x_of(i * n), head // 2), label, fill=(0, 0, 0), font=font, anchor="lm")
    for r, (row, images, verdict) in enumerate(zip(comparison.rows, comparison.images, verdicts)):
        y = head + r * (cell + bar + gap)
        name = row["guidance"] if row["guidance"] == UNGUIDED else f"{row['guidance']}, scale {row['scale']:g}"
        d.text((6, y + cell // 2 - 9), name, fill=COLOURS.get(row["guidance"], (0, 0, 0)), font=font, anchor="lm")
        d.text((6, y + cell // 2 + 9), f"recognised {row['recognisability']:.0%}", fill=(60, 60, 60), font=font,
               anchor="lm")
        for j, pil in enumerate(tensor_to_pil(images)):
            im.paste(pil.resize((cell, cell), Image.NEAREST), (x_of(j), y))
            if verdict is not None:
                d.rectangle((x_of(j), y + cell, x_of(j) + cell - 1, y + cell + bar - 1),
                            fill=(44, 160, 44) if verdict[j] else (214, 39, 40))
    return im


__all__ = ["compare_guidance", "score_samples", "load_judge", "tradeoff_plot", "labelled_grid", "summary",
           "check_scales", "label_prompts", "CFG_SCALES", "CLASSIFIER_SCALES", "CLIP_SCALES", "LABELS", "SEEDS",
           "STEPS", "METHODS", "UNGUIDED", "MAX_SAMPLES"]
