"""Skin tone asked on designs never drawn with one: does the semantic base draw the asked tone?

Two sets of prompts, one sample each (seed = the prompt's index), the semantic base at its defaults,
scored at --size px (32: the base's drafts; 128: through the SR stages, what the app shows); the
skin-tone classifier of `core.evaluation.classifiers` (trained on real emoji) reads the tone of every
sample:

- untoned: every People & Body design the data never draws with a tone (genie, troll, skier, ...;
  body parts, silhouettes and families left out), asked in each of the five tones as Unicode writes
  it ("troll: dark skin tone");
- held-out: `--heldout N` held-out emoji with one tone (a seeded draw), asked by their own names.

Rows (`--methods`, default all): the whole prompt; the whole prompt, then the code moved by the
tone's offset; the prompt without its tone words (the design alone), then 0.5 / 1 / 1.5 offsets;
the design alone, then its skin repainted by the tone painter (`core.models.tone_painter`; --painter
FOLDER, default the checkpoints'), also after one offset; and what the app does
(`core.cascade.generate`'s 32 px draft: `core.tone_words` and the painter).
Columns: "exact", the tone read is the one asked; "within one", at most one
step away on the light-to-dark scale; "design kept", the asked design is among the 5 real emoji
nearest to the sample in the judge's features (untoned prompts, whose design is one emoji); and
"accepted", the judge takes the sample for an emoji. `--grid PATH`: a few untoned designs in every
tone at 128 px, the whole prompt above the app's. `--sets untoned` (or held-out) scores one set only.

    python scripts/tone_study.py [--sets untoned,held-out] [--heldout 40] [--checkpoints checkpoints]
                                 [--methods "name + 1 offset,name + painter,the app"] [--size 32|128]
                                 [--painter FOLDER] [--grid docs/tone_words.png]
"""
from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cascade import generate, sr_models, upscale_chain  # noqa: E402
from core.data.emoji import TONES, design_of, load_dataset  # noqa: E402
from core.evaluation.judge import Judge, retrieval  # noqa: E402
from core.images import labelled_rows  # noqa: E402
from core.models.checkpoints import load_configured  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.models.tone_painter import TonePainter, TonePainterConfig, load_tone_painter  # noqa: E402
from core.semantic import render, sample_semantic_codes  # noqa: E402
from core.tone_words import fit_tone_offsets, load_tone_offsets  # noqa: E402
from core.training.classifiers import load_or_train  # noqa: E402

METHODS = ("prompt alone", "prompt + offset", "name alone", "name + 0.5 offset", "name + 1 offset",
           "name + 1.5 offsets", "name + painter", "name + offset + painter", "the app")
GRID_DESIGNS = ("troll", "man genie", "skier", "woman zombie", "person fencing")


def untoned_prompts(data) -> list[tuple[str, str]]:
    toned = {design_of(r) for r in data.records if r.skin_tone != "none"}
    names = sorted({r.name for r in data.records if r.group == "People & Body" and r.skin_tone == "none"
                    and design_of(r) not in toned and r.subgroup not in ("body-parts", "person-symbol", "family")})
    return [(name, tone) for name in names for tone in TONES]


def heldout_prompts(data, n: int) -> list[tuple[str, str]]:
    records = [data.records[i] for i in data.indices("heldout").tolist() if data.records[i].skin_tone in TONES]
    random.Random(0).shuffle(records)
    return [(r.name.split(":")[0], r.skin_tone) for r in records[:n]]


def method_codes(prior, encoder, offsets, name: str, tone: str, seeds: list[int]) -> dict[str, torch.Tensor]:
    """Per method, the code its image is drawn from (the painter's rows: the code the painter's input is drawn from)."""
    prompt = f"{name}: {tone} skin tone"
    full = sample_semantic_codes(prior, encoder, prompt=prompt, seeds=seeds)
    bare = sample_semantic_codes(prior, encoder, prompt=name, seeds=seeds)
    offset = offsets.shift(tone)
    return {"prompt alone": full, "prompt + offset": full + offset, "name alone": bare,
            "name + 0.5 offset": bare + 0.5 * offset, "name + 1 offset": bare + offset,
            "name + 1.5 offsets": bare + 1.5 * offset, "name + painter": bare, "name + offset + painter": bare + offset}


def score(models, data, offsets, painter, tone_clf, judge, prompts, methods, size) -> dict[str, Counter]:
    """Per method: the tone read is the one asked (exact) or a step away (near); the design is among
    the 5 real emoji nearest to the sample in the judge's features (design; untoned prompts only, whose
    design is one emoji); the judge accepts the sample as an emoji (emoji). Images at `size` px (the
    SR stages take the 32 px drafts up); the classifier and the judge read them at 32 px."""
    prior, decoder = models.get("prior"), models.get("diffae")
    encoder = models.get(prior.config.text_encoder)
    stages = sr_models(models, size)
    index = {r.name: i for i, r in enumerate(data.records)}
    counts = {what: Counter() for what in ("exact", "near", "design", "emoji")}
    for k, (name, tone) in enumerate(prompts):
        seeds = [k]
        codes = method_codes(prior, encoder, offsets, name, tone, seeds)
        drafts = {}
        for method in methods:
            if method == "the app":   # what `python -m core generate` draws (core.cascade.generate's base)
                drafts[method] = app_draft(models, f"{name}: {tone} skin tone", seeds)
                continue
            drafts[method] = render(decoder, codes[method], seeds)
            if method.endswith("painter"):
                drafts[method] = painter.paint(drafts[method], tone)
        images = torch.cat([drafts[m] for m in methods])
        if size > 32:
            images = upscale_chain(stages, images, seeds * len(images))[size]
        read = tone_clf.predict_names(images)
        accepted = judge.accept(images)
        design = (retrieval(judge, images, [index[name]] * len(images)) if name in index
                  else torch.zeros(len(images)))
        for m, method in enumerate(methods):
            counts["exact"][method] += read[m] == tone
            counts["near"][method] += read[m] in TONES and abs(TONES.index(read[m]) - TONES.index(tone)) <= 1
            counts["design"][method] += float(design[m])
            counts["emoji"][method] += float(accepted[m])
        print(f"  {k}: {name}: {tone} -> {dict(zip(methods, read))}", flush=True)
    return counts


def app_draft(models, prompt: str, seeds: list[int]) -> torch.Tensor:
    """The 32 px draft `core.cascade.generate` draws for `prompt` at its defaults (the prompt read as the app does)."""
    return generate(models, prompt=prompt, seed=seeds[0], size=32).stages[32]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--heldout", type=int, default=40)
    parser.add_argument("--sets", default="untoned,held-out", help="which prompt sets to score")
    parser.add_argument("--grid", help="write a 128 px grid of untoned designs in every tone here")
    parser.add_argument("--methods", default=",".join(METHODS), help="which rows to draw, comma-separated")
    parser.add_argument("--size", type=int, default=32, choices=(32, 64, 128), help="score the images at this size")
    parser.add_argument("--painter", help="a tone painter folder (default: the checkpoints' tone_painter)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset()
    models = ModelSet(args.checkpoints, "cpu")
    offsets = load_tone_offsets(Path(models.root) / "diffae") or fit_tone_offsets(models.get("diffae"), data)
    methods = [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    painter = (load_configured(args.painter, TonePainterConfig, TonePainter) if args.painter
               else load_tone_painter(models.root))
    if painter is None and any(m.endswith("painter") for m in methods):
        parser.error("the painter's rows need a tone painter: give --painter or train one")
    tone_clf = load_or_train("skin_tone", data=data)
    judge = Judge.load().set_reference(data)
    table = []
    sets = {"untoned designs": untoned_prompts(data), "held-out toned names": heldout_prompts(data, args.heldout)}
    for split, prompts in sets.items():
        if split.split()[0] not in args.sets:
            continue
        print(f"{split}: {len(prompts)} prompts", flush=True)
        counts = score(models, data, offsets, painter, tone_clf, judge, prompts, methods, args.size)
        table.append((split, len(prompts), counts))
    for split, n, counts in table:
        print(f"\n{split} ({n} prompts) | tone asked: exact | within one | the design kept (retrieval@5) | "
              "accepted as an emoji |")
        print("| --- | --- | --- | --- | --- |")
        for method in methods:
            print(f"| {method} | " + " | ".join(f"{counts[w][method] / n:.2f}" for w in ("exact", "near", "design",
                                                                                       "emoji")) + " |")
    if args.grid:
        prior, decoder = models.get("prior"), models.get("diffae")
        encoder = models.get(prior.config.text_encoder)
        stages = sr_models(models, 128)
        rows, labels = [], []
        for design in GRID_DESIGNS:
            prompts = [f"{design}: {tone} skin tone" for tone in TONES]
            whole = torch.cat([sample_semantic_codes(prior, encoder, prompt=p, seeds=[0]) for p in prompts])
            rows.append(upscale_chain(stages, render(decoder, whole, [0] * len(TONES)), [0] * len(TONES))[128])
            labels.append(f"{design}, whole prompt (before)")
            rows.append(torch.cat([generate(models, prompt=p, seed=0, size=128).final for p in prompts]))
            labels.append(f"{design}, the app")
        labelled_rows(rows, labels, column_labels=TONES, scale=1).save(args.grid)
        print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
