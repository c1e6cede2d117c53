"""Score any generator with the judge (:mod:`core.evaluation.judge`): recognisability, retrieval and
FD(judge), each beside the same figures for real images; and labelled grids of fixed prompts.

A generator is a sampling callable ``sample(asked, seeds) -> Tensor[B, 3, 32, 32]`` in
[-1, 1], one image per (prompt or label, seed); the harness never asks which model or base
drew them. :func:`base_sampler` makes one for the committed pixel bases,
:func:`cascade_sampler` for anything :func:`core.cascade.generate` can draw.

``scorecard(sample, "text", judge, data)`` samples, for each split (seeded draws of ``n``
records):

- ``seen, People & Body`` / ``seen, other``: names of training-split emoji, in and outside
  People & Body;
- ``held-out``: names of held-out emoji;

and ``scorecard(sample, "label", judge, data, classes=...)`` samples labels (subgroups) in
two splits, People & Body subgroups and the others, cycling through each split's subgroups in
a seeded order. The prompt of an emoji is its lowercased name, with ", " for ": " ("woman
dancing, dark skin tone"). Every split is scored on three sets of images: the samples, the
real 32 px renders of the asked emoji (for a label: one real emoji of that subgroup, drawn
with the seed), and the same real images blurred by a round trip through 16x16. Per set:

- **accepted**: share the judge accepts as an emoji;
- **subgroup as asked**: share whose top-1 subgroup is the asked one (the record's, or the label);
- **recognisable**: both at once (:func:`core.evaluation.judge.recognisability`);
- **retrieval@k** (text only): the asked design is among the designs of the k real emoji
  nearest in the judge's features (:func:`core.evaluation.judge.retrieval`); real renders find themselves,
  so the blurred row is the informative reference;
- **FD(judge)**: Frechet distance in the judge's features to all real emoji of the split's
  population (e.g. every training emoji outside People & Body); the real row is what a
  perfect generator scores at this N (FD is biased upward at small N: compare at equal N).

With ``classifiers`` (the skin-tone and gender classifiers of :mod:`core.evaluation.classifiers`, trained
on real training emoji), a text scorecard also measures **attribute retention**: of the samples
whose prompt asks for a skin tone ("woman dancing, dark skin tone") or a gender (man / woman /
person), the share the classifier rates as asked, beside the same share for the real renders of
those emoji (what the classifier itself gets right) and their ratio, per split and pooled over
the splits (:func:`attribute_retention`). Labels (subgroups) never ask for either.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from core.cascade import generate
from core.data.emoji import load_dataset
from core.evaluation.held_out import mean_of, names_gender, names_skin_tone
from core.evaluation.judge import RESOLUTION, Judge, feature_fd, is_people, recognisability, retrieval, round_trip
from core.models.prior import sample_codes
from core.pipeline import generate_class, generate_text, model_defaults
from core.reading import readable_prompt
from core.semantic import PRIOR_DEFAULTS, decoder_sampling, render

Sampler = Callable[[list, list], torch.Tensor]
Kind = Literal["text", "label"]
TEXT_SPLITS = ("seen, People & Body", "seen, other", "held-out")
LABEL_SPLITS = ("People & Body subgroups", "other subgroups")
ROWS = ("samples", "real", "real_16px")
ROW_NAMES = {"samples": "samples", "real": "real renders (32 px)", "real_16px": "real, blurred to 16 px and back"}
GRID_PROMPTS = ("heart", "red apple", "rocket", "cat face", "grinning face", "thumbs up", "pizza", "fire", "sun",
                "car", "dog face", "star")
# the emoji each fixed prompt names (for the judge's verdict under each cell)
GRID_EMOJI = {"heart": "red heart", "car": "automobile"}
GRID_CLASSES = ("cat-face", "food-prepared", "hand-fingers-open", "clothing", "animal-bird", "tool", "sport",
                "face-smiling", "animal-mammal", "plant-flower", "transport-ground", "person-activity")


def prompt_of(record) -> str:
    """The prompt for an emoji: its lowercased name, "base, qualifier" for "base: qualifier"."""
    return record.name.lower().replace(": ", ", ")


def _seeded_prefix(items: Sequence, n: int, seed: int) -> list:
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [items[i] for i in perm[:n]]


def text_splits(data, n: int, seed: int = 0) -> dict[str, list[int]]:
    """{split: record indices}: n seeded draws (fewer if the split is smaller) per text split."""
    train = data.indices("train").tolist()
    pools = {TEXT_SPLITS[0]: [i for i in train if is_people(data.records[i])],
             TEXT_SPLITS[1]: [i for i in train if not is_people(data.records[i])],
             TEXT_SPLITS[2]: data.indices("heldout").tolist()}
    return {name: _seeded_prefix(pool, n, seed + j) for j, (name, pool) in enumerate(pools.items())}


def label_splits(data, classes: Sequence[str], n: int, seed: int = 0) -> dict[str, list[str]]:
    """{split: n labels}: each split's subgroups (People & Body or not) in a seeded order, repeated to n."""
    people = {r.subgroup for r in data.records if is_people(r)}
    out = {}
    for j, (name, pool) in enumerate(((LABEL_SPLITS[0], [c for c in classes if c in people]),
                                      (LABEL_SPLITS[1], [c for c in classes if c not in people]))):
        if pool:
            order = _seeded_prefix(pool, len(pool), seed + j)
            out[name] = [order[i % len(order)] for i in range(n)]
    return out


def _population(data, kind: Kind, split: str, asked: Sequence) -> list[int]:
    """The real emoji a split's FD is measured against."""
    if kind == "text":
        if split == TEXT_SPLITS[2]:
            return data.indices("heldout").tolist()
        want = split == TEXT_SPLITS[0]
        return [i for i in data.indices("train").tolist() if is_people(data.records[i]) == want]
    subs = set(asked)
    return [i for i, r in enumerate(data.records) if r.subgroup in subs]


def _real_for_labels(data, labels: Sequence[str], seeds: Sequence[int]) -> list[int]:
    by_sub: dict[str, list[int]] = {}
    for i, r in enumerate(data.records):
        by_sub.setdefault(r.subgroup, []).append(i)
    return [by_sub[s][int(torch.randint(len(by_sub[s]), (1,), generator=torch.Generator().manual_seed(seed)))]
            for s, seed in zip(labels, seeds)]


ATTRIBUTE_TASKS = ("skin_tone", "gender")


def asked_attributes(record) -> dict[str, str]:
    """The skin tone and gender a prompt of this emoji asks for ({} when none): the tone its
    name gives, and man / woman, or person when the name says person, people, child, ...
    (``core.evaluation.held_out.names_skin_tone`` / ``names_gender``)."""
    out = {"skin_tone": names_skin_tone(record), "gender": names_gender(record)}
    return {k: v for k, v in out.items() if v is not None}


def attribute_matches(classifiers: dict, records: Sequence, images: torch.Tensor) -> dict[str, dict]:
    """Per attribute task with a classifier: ``rows`` (positions of the images whose record asks
    for that attribute), ``asked`` (the value asked) and ``match`` [len(rows)] bool (the
    classifier's top-1 is the asked value)."""
    if len(records) != len(images):
        raise ValueError(f"got {len(records)} records for {len(images)} images")
    out = {}
    for task in ATTRIBUTE_TASKS:
        clf = classifiers.get(task)
        if clf is None:
            continue
        rows = [(j, a[task]) for j, a in enumerate(asked_attributes(r) for r in records) if task in a]
        js = [j for j, _ in rows]
        want = torch.tensor([clf.index(v) for _, v in rows], dtype=torch.long)
        pred = clf.predict(images[js]) if js else torch.zeros(0, dtype=torch.long)
        out[task] = {"rows": js, "asked": [v for _, v in rows], "match": pred.cpu() == want}
    return out


def _retention(samples: torch.Tensor, real: torch.Tensor) -> dict:
    s, r = mean_of(samples), mean_of(real)
    return {"n": int(samples.numel()), "samples": s, "real": r, "vs_real": s / r if r else float("nan")}


def attribute_retention(classifiers: dict, records: Sequence, samples: torch.Tensor,
                        real: torch.Tensor) -> dict[str, dict]:
    """Per attribute task (skin tone, gender): ``n`` samples whose prompt asks for it, ``samples``
    the share the classifier rates as asked, ``real`` the same share on the real renders of the
    asked emoji (the classifier's own accuracy on them), ``vs_real`` their ratio."""
    s, r = attribute_matches(classifiers, records, samples), attribute_matches(classifiers, records, real)
    return {task: _retention(s[task]["match"], r[task]["match"]) for task in s}


def _check_images(images, n: int) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != n or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"the sampler must return a [{n}, 3, H, W] tensor in [-1, 1], got {shape}")
    return images.detach().float().cpu().clamp(-1, 1)


@dataclass
class Scorecard:
    """``results`` (JSON-ready figures), and per split the ``asked`` prompts or labels, the
    ``records`` (data set indices) of the real images, the ``subgroups`` they ask for, the
    ``images`` [n,3,32,32] of every row (samples, real, real_16px) and the per-sample ``flags``
    (accepted, subgroup_as_asked, recognisable, retrieval) of every row."""
    results: dict
    asked: dict[str, list[str]] = field(default_factory=dict)
    records: dict[str, list[int]] = field(default_factory=dict)
    subgroups: dict[str, list[str]] = field(default_factory=dict)
    images: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    flags: dict[str, dict[str, dict[str, torch.Tensor]]] = field(default_factory=dict)


def score_images(judge: Judge, images: torch.Tensor, subgroups: Sequence[str],
                 asked_records: Sequence[int] | None = None, k: int = 5) -> dict[str, torch.Tensor]:
    """Per-sample flags of one image set: accepted, subgroup_as_asked, recognisable and (given the
    asked records) retrieval."""
    out = judge.scores(images)
    want = torch.tensor([judge.subgroup_index(s) for s in subgroups], dtype=torch.long)
    flags = {"accepted": out["accepted"], "subgroup_as_asked": out["subgroup"].argmax(1) == want}
    flags["recognisable"] = recognisability(judge, images, subgroups)
    if asked_records is not None:
        flags["retrieval"] = retrieval(judge, images, asked_records, k)
    return flags


def scorecard(sample: Sampler, kind: Kind, judge: Judge, data=None, *, n: int = 64, seed: int = 0,
              classes: Sequence[str] | None = None, k: int = 5, classifiers: dict | None = None,
              log: Callable[[str], None] | None = None) -> Scorecard:
    """Score a generator: ``sample(asked, seeds)`` is called once per split with n prompts
    (``kind`` "text") or labels (``kind`` "label"; ``classes`` the labels it knows, default all
    subgroups) and seeds ``seed .. seed + n - 1``. The judge's retrieval reference must be the
    same data set (it is, by default). ``classifiers`` ({task: Classifier} with "skin_tone" and
    "gender"): a text scorecard also measures attribute retention (``results["attributes"]``,
    pooled over the splits, and each split's ``"attributes"``)."""
    if kind not in ("text", "label"):
        raise ValueError(f"kind must be 'text' or 'label', got {kind!r}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (FD needs two images), got {n!r}")
    log = log or (lambda s: None)
    data = data if data is not None else load_dataset()
    t0 = time.perf_counter()
    if kind == "text":
        ref_data = judge.reference()[0]
        if ref_data is not data and [r.name for r in ref_data.records] != [r.name for r in data.records]:
            raise ValueError("the judge retrieves from another data set; call judge.set_reference(data) first")
        records = text_splits(data, n, seed)
        splits = {name: [prompt_of(data.records[i]) for i in idx] for name, idx in records.items()}
    else:
        known = [c for c in (classes if classes is not None else data.classes) if c in set(data.classes)]
        splits = label_splits(data, known, n, seed)
        records = {}
    card = Scorecard(results={"kind": kind, "n": n, "k": k, "seed": seed, "splits": {}})
    pooled: dict[str, dict[str, list]] = {}
    for name, asked in splits.items():
        m = len(asked)
        seeds = [seed + j for j in range(m)]
        t = time.perf_counter()
        samples = _check_images(sample(list(asked), seeds), m)
        seconds = time.perf_counter() - t
        if kind == "text":
            real_idx = records[name]
            subgroups = [data.records[i].subgroup for i in real_idx]
        else:
            real_idx = _real_for_labels(data, asked, seeds)
            subgroups = list(asked)
        real = data.images_at(RESOLUTION, real_idx)
        sets = {"samples": samples, "real": real, "real_16px": round_trip(real, 16)}
        pool = data.images_at(RESOLUTION, _population(data, kind, name, asked))
        rows, flags = {}, {}
        for row, x in sets.items():
            f = score_images(judge, x, subgroups, real_idx if kind == "text" else None, k)
            flags[row] = f
            rows[row] = {key: mean_of(v) for key, v in f.items()}
            rows[row]["fd_judge"] = feature_fd(judge, x, pool)
        card.results["splits"][name] = {"n": m, "examples": list(asked[:4]), "population": len(pool),
                                        "sample_seconds": round(seconds, 2), "rows": rows}
        if classifiers and kind == "text":
            recs = [data.records[i] for i in real_idx]
            ms, mr = attribute_matches(classifiers, recs, samples), attribute_matches(classifiers, recs, real)
            card.results["splits"][name]["attributes"] = {t: _retention(ms[t]["match"], mr[t]["match"]) for t in ms}
            for t in ms:
                pooled.setdefault(t, {"samples": [], "real": []})
                pooled[t]["samples"].append(ms[t]["match"])
                pooled[t]["real"].append(mr[t]["match"])
        card.asked[name], card.subgroups[name], card.records[name] = list(asked), subgroups, list(real_idx)
        card.images[name], card.flags[name] = sets, flags
        log(f"  {kind} / {name}: " + "; ".join(f"{r} recognisable {rows[r]['recognisable']:.3f}" for r in rows)
            + f" ({seconds:.0f} s sampling)")
    if pooled:
        card.results["attributes"] = {t: _retention(torch.cat(v["samples"]), torch.cat(v["real"]))
                                      for t, v in pooled.items()}
    card.results["seconds"] = round(time.perf_counter() - t0, 1)
    return card


# --------------------------------------------------------------------------- samplers


def base_sampler(models, kind: Kind, settings=None, batch: int = 32) -> Sampler:
    """The committed pixel base of ``kind`` (text_base or class_base) at 32 px in batches: the
    same images as ``core.cascade.generate(models, prompt=p or label=l, seed=s, size=32)``,
    sample by sample (one noise stream per seed), at ``settings`` (default: the model's own,
    ``core.pipeline.model_defaults``)."""

    def sample(asked: list, seeds: list) -> torch.Tensor:
        out = []
        for s in range(0, len(asked), batch):
            a, sd = list(asked[s:s + batch]), list(seeds[s:s + batch])
            if kind == "text":
                out.append(generate_text(models.get("text_base"), models.text_encoder(), a, "", sd, settings).cpu())
            else:
                out.append(generate_class(models.get("class_base"), a, sd, settings).cpu())
        return torch.cat(out)
    return sample


def semantic_sampler(models, kind: Kind, settings=None, decoder_steps: int | None = None, batch: int = 32) -> Sampler:
    """The semantic base (the prior over DiffAE's code, then the DiffAE decoder) at 32 px in
    batches: the same images as ``core.cascade.generate(..., base_model="semantic", size=32,
    prompt_reading="as-typed")``, sample by sample (per-seed noise streams; an exact emoji name is
    read as itself, so the default reading draws names alike), with the prior sampling at ``settings`` (default
    the app's: the prior checkpoint's, ``core.cascade.base_defaults``) and the decoder's steps
    (default its checkpoint's)."""
    prior, decoder = models.get("prior"), models.get("diffae")
    settings = settings or model_defaults(prior, PRIOR_DEFAULTS)
    decoder_steps = decoder_steps or decoder_sampling(decoder, "steps")
    encoder = models.get(prior.config.text_encoder) if kind == "text" else None

    def sample(asked: list, seeds: list) -> torch.Tensor:
        out = []
        for s in range(0, len(asked), batch):
            a, sd = list(asked[s:s + batch]), [int(x) for x in seeds[s:s + batch]]
            if kind == "text":   # as core.cascade.generate reads a prompt (core.reading.readable_prompt)
                cond = prior.text_cond(encoder.encode([readable_prompt(encoder, p)[0] for p in a]).pooled)
            else:
                cond = prior.label_cond(a)
            z = sample_codes(prior, cond, prior.null_cond(len(a)), sd, settings.guidance, settings.steps,
                             settings.sampler)
            out.append(render(decoder, z, sd, decoder_steps).cpu())
        return torch.cat(out)
    return sample


def cascade_sampler(models, kind: Kind, size: int = 32, **generate_kwargs) -> Sampler:
    """Any base :func:`core.cascade.generate` offers, one call per sample, the cascade's final image
    at ``size`` (32: the base alone; 64 and 128 through the SR stages; ``generate_kwargs`` such as
    the base's settings pass through)."""
    key = "prompt" if kind == "text" else "label"

    def sample(asked: list, seeds: list) -> torch.Tensor:
        return torch.cat([generate(models, **{key: a}, num=1, seed=int(s), size=size, **generate_kwargs).final.cpu()
                          for a, s in zip(asked, seeds)])
    return sample


# --------------------------------------------------------------------------- grids


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def labelled_grid(images: torch.Tensor, labels: Sequence[str], path: str | Path, columns: int = 6,
                  scale: int = 3, above: bool = False) -> Path:
    """A PNG of ``images`` ([-1, 1], [B,3,H,W]) in ``columns`` columns, each cell enlarged
    ``scale`` times (nearest neighbour) with its label (lines split at "\\n") written under it
    (``above``: over it)."""
    from PIL import Image, ImageDraw

    if len(images) != len(labels):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    if len(images) == 0:
        raise ValueError("no images to draw")
    images = images.detach().float().cpu().clamp(-1, 1)
    h, w = images.shape[-2:]
    cw, ch = w * scale, h * scale
    lines = max(len(str(lab).split("\n")) for lab in labels)
    font = _font(11)
    line_h, pad = 13, 4
    cell_w, cell_h = cw + 2 * pad, ch + pad + lines * line_h + pad
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    arr = ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for i, (a, label) in enumerate(zip(arr, labels)):
        r, c = divmod(i, columns)
        x0, y0 = c * cell_w, r * cell_h
        text_y = y0 + pad + (0 if above else ch + 2)
        canvas.paste(Image.fromarray(a).resize((cw, ch), Image.NEAREST),
                     (x0 + pad, y0 + pad + (lines * line_h + 2 if above else 0)))
        for j, text in enumerate(str(label).split("\n")):
            while text and draw.textlength(text, font=font) > cell_w - 2:
                text = text[:-1]
            tw = draw.textlength(text, font=font)
            draw.text((x0 + (cell_w - tw) / 2, text_y + j * line_h), text, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    canvas.save(tmp)
    tmp.replace(path)
    return path


def verdict(accepted: bool, subgroup_ok: bool) -> str:
    return "recognised" if accepted and subgroup_ok else ("wrong subgroup" if accepted else "not an emoji")


def fixed_grid(sample: Sampler, kind: Kind, judge: Judge | None, path: str | Path, data=None,
               seeds: Sequence[int] = (0, 1), items: Sequence[str] | None = None) -> dict:
    """The labelled grid of the fixed prompts (``GRID_PROMPTS``) or classes (``GRID_CLASSES``),
    ``len(seeds)`` samples of each side by side, each cell named, with the judge's verdict
    under the name when a judge is given. Returns {"path", "cells": [[asked, verdict], ...],
    "recognised": share}."""
    items = list(items if items is not None else (GRID_PROMPTS if kind == "text" else GRID_CLASSES))
    asked = [a for a in items for _ in seeds]
    seed_list = [int(s) for _ in items for s in seeds]
    images = _check_images(sample(asked, seed_list), len(asked))
    labels, cells = list(asked), []
    if judge is not None:
        if kind == "text":
            data = data if data is not None else load_dataset()
            subgroups = [data.records[data.index_of(GRID_EMOJI.get(a, a))].subgroup for a in asked]
        else:
            subgroups = asked
        f = score_images(judge, images, subgroups)
        cells = [[a, verdict(bool(acc), bool(ok))] for a, acc, ok in
                 zip(asked, f["accepted"].tolist(), f["subgroup_as_asked"].tolist())]
        labels = [f"{a}\n{v}" for a, v in cells]
    labelled_grid(images, labels, path, columns=2 * len(seeds) if len(seeds) <= 3 else len(seeds))
    out = {"path": str(path), "cells": cells or [[a, None] for a in asked]}
    if cells:
        out["recognised"] = sum(v == "recognised" for _, v in cells) / len(cells)
    return out


# --------------------------------------------------------------------------- report


def _f(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_scorecard(results: dict, old: dict | None = None) -> list[str]:
    """Markdown lines: one table row per split and image set; ``old`` maps a column name to
    {split: {row: value}} (the old figures of the same images, shown beside the new)."""
    old = old or {}
    k = results.get("k", 5)
    head = ["split", "images", "accepted as emoji", "subgroup as asked", "recognisable", "vs real",
            f"retrieval@{k}", "FD(judge)"] + [f"{name} (old)" for name in old]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for split, s in results["splits"].items():
        real_rec = s["rows"]["real"]["recognisable"]
        for row in ROWS:
            r = s["rows"][row]
            rel = r["recognisable"] / real_rec if real_rec else float("nan")
            cells = [f"{split} (N = {s['n']})" if row == "samples" else "", ROW_NAMES[row], _f(r["accepted"]),
                     _f(r["subgroup_as_asked"]), _f(r["recognisable"]), _f(rel, 2), _f(r.get("retrieval")),
                     _f(r["fd_judge"], 1)]
            cells += [_f(old[name].get(split, {}).get(row), 2 if "CLIP" in name else 3) for name in old]
            lines.append("| " + " | ".join(cells) + " |")
    return lines + format_attributes(results)


def format_attributes(results: dict) -> list[str]:
    """Markdown lines of a text scorecard's attribute retention (none without it)."""
    if "attributes" not in results:
        return []
    names = {"skin_tone": "skin tone", "gender": "gender"}
    tasks = list(results["attributes"])
    head = ["split"] + [f"{names.get(t, t)} as asked: samples / real (vs real, N)" for t in tasks]
    lines = ["", "Attribute retention (prompts that ask for a skin tone or a gender; the classifiers trained on "
             "real training emoji rate samples and the real renders of the asked emoji alike):", "",
             "| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    rows = [(f"{split}", s.get("attributes", {})) for split, s in results["splits"].items()]
    rows.append(("**all splits**", results["attributes"]))
    for split, a in rows:
        cells = [split]
        for t in tasks:
            r = a.get(t)
            cells.append("-" if not r or not r["n"] else
                         f"{_f(r['samples'])} / {_f(r['real'])} ({_f(r['vs_real'], 2)}, {r['n']})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


__all__ = ["scorecard", "Scorecard", "score_images", "attribute_retention", "attribute_matches", "asked_attributes",
           "format_attributes", "base_sampler", "cascade_sampler", "labelled_grid",
           "fixed_grid", "format_scorecard", "text_splits", "label_splits", "prompt_of", "GRID_PROMPTS",
           "GRID_CLASSES", "TEXT_SPLITS", "LABEL_SPLITS", "Sampler"]
