"""The pixel bases measured on held-out emoji with the older instruments (CLIP retrieval, CLIP
score, FD_CLIP, the attribute and subgroup classifiers; a guidance sweep), and every base, the
semantic one included, scored by the judge (`core.evaluation.scorecard`) with the old measures
beside. Sections of `core.evaluation.evaluate`."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from core.evaluation.held_out import caption_of, chunks, mean_of, names_gender, names_skin_tone
from core.evaluation.scorecard import (
    GRID_CLASSES,
    GRID_PROMPTS,
    base_sampler,
    fixed_grid,
    score_images,
    scorecard,
    semantic_sampler,
)
from core.metrics import frechet_distance
from core.pipeline import BASE_DEFAULTS, generate_class, generate_text, model_defaults, with_overrides
from core.semantic import DECODER_SAMPLER, DECODER_STEPS, PRIOR_DEFAULTS


def clip_section(embedder, data, order, n, seed) -> dict:
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


def _guidance_sweep(n: int, args: dict, sample):
    """For each guidance scale of the sweep, the n images `sample(batch slice, settings)` makes
    in batches at the base's default settings (`--steps` applies) and the row that describes them."""
    for g in args["guidance"]:
        settings = with_overrides(BASE_DEFAULTS, g, args["steps"])
        t0 = time.perf_counter()
        images = torch.cat([sample(s, settings).cpu() for s in chunks(n, args["batch"])])
        yield images, {"guidance": g, "steps": settings.steps, "sampler": settings.sampler,
                       "seconds": round(time.perf_counter() - t0, 2)}


def text_section(models, embedder, classifiers, data, order, args, log) -> dict:
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
        reference["clip_score"] = mean_of(embedder.clip_score(real, prompts).cpu())
        if len(idx) >= 2:
            perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(args["seed"] + 1))
            shuffled = [None] * len(idx)
            for k in range(len(idx)):  # a derangement: every image gets another emoji's caption
                shuffled[int(perm[k])] = prompts[int(perm[(k + 1) % len(idx)])]
            reference["clip_score_shuffled"] = mean_of(embedder.clip_score(real, shuffled).cpu())
            reference["fd_clip_real_train"] = _fd_real_train(embedder, data, model.resolution, real_emb, args["seed"])
    out["reference"] = reference

    sweep = []
    for images, row in _guidance_sweep(len(idx), args, lambda s, settings: generate_text(
            model, encoder, prompts[s], "", seeds[s], settings)):
        g = row["guidance"]
        row |= {"skin_tone_match": attribute_match(images, "skin_tone", tone_rows),
                "gender_match": attribute_match(images, "gender", gender_rows)}
        if embedder is not None:
            row["clip_score"] = mean_of(embedder.clip_score(images, prompts).cpu())
            if len(idx) >= 2:
                row["fd_clip"] = frechet_distance(embedder.image_embeddings(images).cpu().numpy(), real_emb.numpy())
        log(f"  text_base guidance {g}: {row}")
        sweep.append(row)
    out["sweep"] = sweep
    return out


def class_section(models, embedder, classifiers, data, order, args, log) -> dict:
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
    for images, row in _guidance_sweep(len(idx), args, lambda s, settings: generate_class(
            model, names[s], seeds[s], settings)):
        g = row["guidance"]
        if clf is not None:
            row["accuracy_top1"] = clf.accuracy(images, labels, 1)
            row["accuracy_top5"] = clf.accuracy(images, labels, 5)
        if embedder is not None and len(idx) >= 2:
            row["fd_clip"] = frechet_distance(embedder.image_embeddings(images).cpu().numpy(), real_emb.numpy())
        log(f"  class_base guidance {g}: {row}")
        sweep.append(row)
    out["sweep"] = sweep
    return out


def _old_figures(card, kind, embedder, classifiers, old_judge=None) -> dict:
    """The old measures on the scorecard's own images: CLIP score (text), the clean-emoji
    subgroup classifier's accuracy against the asked subgroup (CAS) and, given ``old_judge``
    (another judge, e.g. the one a model card was first scored with), that judge's accepted /
    recognisable / retrieval@k, per split and image set."""
    clf = classifiers.get("subgroup") if classifiers else None
    old: dict = {}
    k = card.results.get("k", 5)
    for split, sets in card.images.items():
        for row, images in sets.items():
            if embedder is not None and kind == "text":
                old.setdefault("CLIP score", {}).setdefault(split, {})[row] = mean_of(
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
                        old.setdefault(f"{name}, old judge", {}).setdefault(split, {})[row] = mean_of(f[key])
    return old


def judge_section(models, judge, embedder, classifiers, data, args, names, log, old_judge=None) -> dict:
    """Each selected base scored by the judge (:mod:`core.evaluation.scorecard`) at its default sampling
    settings (a pixel base's guidance is its own, ``core.pipeline.model_defaults``; ``--steps``
    applies), the old measures (and ``old_judge``'s) on the same images beside, attribute retention
    of the text bases, and the fixed grids."""
    settings = with_overrides(BASE_DEFAULTS, steps=args["steps"])
    prior_settings = with_overrides(PRIOR_DEFAULTS, steps=args["steps"])
    out: dict = {"n": args["judge_n"], "guidance": settings.guidance, "steps": settings.steps,
                 "sampler": settings.sampler, "prior_steps": prior_settings.steps,
                 "prior_sampler": prior_settings.sampler, "decoder_steps": DECODER_STEPS,
                 "decoder_sampler": DECODER_SAMPLER}
    for name in names:
        kind = "text" if name in ("text_base", "semantic_text") else "label"
        if name.startswith("semantic_"):   # the prior over DiffAE's code, then the DiffAE decoder
            sample = semantic_sampler(models, kind, prior_settings, DECODER_STEPS, batch=args["batch"])
        else:   # a pixel base at its own default guidance (core.pipeline.model_defaults)
            own = with_overrides(model_defaults(models.get(name)), steps=args["steps"])
            sample = base_sampler(models, kind, own, batch=args["batch"])
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
        res["guidance"] = prior_settings.guidance if name.startswith("semantic_") else own.guidance
        res["old"] = _old_figures(card, kind, embedder, classifiers, old_judge)
        if args.get("grid_dir"):
            items = GRID_PROMPTS if kind == "text" else [c for c in GRID_CLASSES if c in models.classes()]
            res["grid"] = fixed_grid(sample, kind, judge, Path(args["grid_dir"]) / name / "grid.png", data,
                                     items=items)
            log(f"  wrote {res['grid']['path']}")
        out[name] = res
    return out
