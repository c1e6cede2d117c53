"""The diffusion autoencoder measured on held-out emoji (`python -m core evaluate-diffae`):
reconstruction PSNR (z_sem + x_T, and z_sem with fresh noise), whether z_sem holds each attribute
(its classifier on held-out codes), and edit success at +-strength class gaps: darker or lighter
skin under the skin-tone classifier, men turned into women and back under the gender one, the
subgroup kept, and how much of the change falls on the skin (`skin_masks`)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from core.cascade import sr_models, stage_settings, upscale_chain
from core.data.emoji import SKIN_TONE_BY_CODEPOINT, TONES, load_dataset
from core.diffae import (
    DEFAULT_STEPS,
    Directions,
    attribute_labels,
    decode,
    encode,
    fresh_noise,
    load_directions,
    semantic_code,
    sweep,
)
from core.evaluation import classifiers
from core.images import save_grid
from core.metrics import psnr


def skin_masks(data, idx: Sequence[int], resolution: int, threshold: float = 0.1) -> torch.Tensor:
    """[N, 1, r, r] masks of where the skin is in each emoji: the pixels that change between its
    skin-tone variants (the same codepoints with another or no tone modifier). An emoji without
    such a sibling gets an all-zero mask."""
    def base(record):
        return tuple(c for c in record.codepoints if c not in SKIN_TONE_BY_CODEPOINT)

    by_base: dict[tuple, list[int]] = {}
    for j, record in enumerate(data.records):
        by_base.setdefault(base(record), []).append(j)
    masks = []
    for i in idx:
        siblings = [j for j in by_base[base(data.records[i])] if j != i]
        if not siblings:
            masks.append(torch.zeros(1, 1, resolution, resolution))
            continue
        own = data.images_at(resolution, torch.tensor([i]))
        others = data.images_at(resolution, torch.tensor(siblings))
        change = (others - own).abs().amax(dim=1, keepdim=True).amax(dim=0, keepdim=True)
        masks.append((change > threshold).float())
    return torch.cat(masks)


def change_on_mask(before: torch.Tensor, after: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """(share of the total absolute pixel change that falls inside the masks, share of the image
    area the masks cover), over the images whose mask is not empty: a change spread evenly would
    give equal shares."""
    keep = masks.flatten(1).sum(1) > 0
    change = (after - before).abs().sum(1, keepdim=True)[keep]
    m = masks[keep]
    return float((change * m).sum() / change.sum().clamp_min(1e-12)), float(m.mean())


def sweep_grid(model, directions: Directions, images: torch.Tensor, attributes: Sequence[str],
               strengths: Sequence[float], steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """Rows: each image under each attribute; columns: the original, then one edit per strength
    (the image's own x_T). Returns [rows * (1 + len(strengths)), 3, r, r] for save_grid."""
    rows = []
    for attribute in attributes:
        edits = sweep(model, directions, images, attribute, strengths, steps).cpu()   # [S, B, 3, r, r]
        for k in range(len(images)):
            rows.append(torch.cat([images[k:k + 1].cpu(), edits[:, k]]))
    return torch.cat(rows)


def evaluate(models, n: int = 32, strength: float | None = None, steps: int = DEFAULT_STEPS, batch: int = 16,
             classifier_folder=None, grid: str | Path | None = None, train_missing: Callable | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Reconstruction PSNR on held-out emoji, and edit success on held-out people emoji at
    +-`strength` class gaps (None: 1, one class gap); `grid`: also write a strength-sweep image
    there (rows: people with skin tones under dark-skin, then men and women under woman)."""
    model = models.get("diffae")
    directions = load_directions(models)
    data = load_dataset()
    held = data.indices("heldout")[:n]
    x = data.images_at(model.resolution, held)
    recs, fresh = [], []
    t0 = time.time()
    for s in range(0, len(x), batch):
        z, x_T = encode(model, x[s:s + batch], steps)
        recs.append(decode(model, z, x_T, steps).cpu())
        fresh.append(decode(model, z, fresh_noise(model, range(s, s + len(z))), steps).cpu())
    rec, fr = torch.cat(recs), torch.cat(fresh)
    result = {"n": len(held), "steps": steps, "psnr_reconstruction": float(psnr(rec, x, 2.0).mean()),
              "psnr_z_sem_only": float(psnr(fr, x, 2.0).mean()), "seconds_reconstruction": round(time.time() - t0, 1)}
    log(f"reconstruction PSNR on {len(held)} held-out emoji at {model.resolution}x{model.resolution}, "
        f"{steps} steps: {result['psnr_reconstruction']:.2f} dB (z_sem + x_T), "
        f"{result['psnr_z_sem_only']:.2f} dB (z_sem + fresh noise)")
    up = 2 * model.resolution   # the Reconstruct tab at its next size: the reconstruction through the SR stage
    if f"sr{up}" in models.available():
        stages = sr_models(models, up, model.resolution)
        rec_up = upscale_chain(stages, rec, list(range(len(rec))), stage_settings(stages, faithful=True))[up]
        result[f"psnr_reconstruction_{up}"] = float(psnr(rec_up, data.images_at(up, held), 2.0).mean())
        log(f"  through SR {up}: {result[f'psnr_reconstruction_{up}']:.2f} dB at {up}x{up} against the real emoji")
    # Does z_sem hold each attribute at all? The attribute's logistic classifier on held-out codes
    all_held = data.indices("heldout").tolist()
    labels = attribute_labels([data.records[i] for i in all_held])
    result["direction_accuracy_heldout"] = {}
    for name, (pos, y) in labels.items():
        if name in directions.names:
            z = semantic_code(model, data.images_at(model.resolution, torch.as_tensor(all_held)[pos]))
            result["direction_accuracy_heldout"][name] = {
                "n": len(y), "accuracy": float(((directions.score(z, name) > 0).long().cpu() == y).float().mean())}
    log(f"attribute classifiers on held-out z_sem: {json.dumps(result['direction_accuracy_heldout'])}")
    missing = None if train_missing is None else (lambda task: train_missing(task, classifier_folder, data))
    clfs = {t: classifiers.load_classifier(t, classifier_folder, data, missing=missing)
            for t in ("skin_tone", "gender", "subgroup")}
    tones = list(TONES)
    tone_idx = torch.tensor([clfs["skin_tone"].index(t) for t in tones])

    def tone_level(images):   # expected tone index 0..4 under the classifier, among the 5 tones
        p = clfs["skin_tone"].logits(images)[:, tone_idx].softmax(1)
        return p @ torch.arange(5.0)

    def codes(idx):   # (z_sem, x_T) per batch, encoded once for all strengths
        xs = data.images_at(model.resolution, idx)
        return [encode(model, xs[b:b + batch], steps) for b in range(0, len(xs), batch)]

    def edited(cs, attribute, s):   # = `edit`, sharing the encoding; s = 0 is the reconstruction
        return torch.cat([decode(model, directions.shift(z, attribute, s), x_T, steps).cpu() for z, x_T in cs])

    def sub_kept(base, other):
        return float((clfs["subgroup"].predict(base) == clfs["subgroup"].predict(other)).float().mean())

    people = [i for i in all_held if data.records[i].group == "People & Body"
              and data.records[i].skin_tone in tones][:n]

    def strength_of(attribute):
        return 1.0 if strength is None else strength

    if "dark-skin" in directions.names and people:
        s = strength_of("dark-skin")
        cs = codes(torch.tensor(people))
        base = edited(cs, "dark-skin", 0.0)
        up, down = edited(cs, "dark-skin", s), edited(cs, "dark-skin", -s)
        lb, lu, ld = tone_level(base), tone_level(up), tone_level(down)
        result["dark_skin"] = {"n": len(people), "strength": s, "darker_after_plus": float((lu > lb).float().mean()),
                               "lighter_after_minus": float((ld < lb).float().mean()),
                               "mean_tone_change_plus": float((lu - lb).mean()),
                               "mean_tone_change_minus": float((ld - lb).mean()),
                               "subgroup_kept": (sub_kept(base, up) + sub_kept(base, down)) / 2}
        masks = skin_masks(data, people, model.resolution)
        on_skin, area = change_on_mask(base, up, masks)
        result["dark_skin"].update({"change_on_skin_plus": on_skin, "skin_area": area,
                                    "change_on_skin_minus": change_on_mask(base, down, masks)[0]})
        log(f"dark-skin ±{s:.2f}: {json.dumps(result['dark_skin'])}")
    men = [i for i in all_held if data.records[i].gender == "man"][:n]
    women = [i for i in all_held if data.records[i].gender == "woman"][:n]
    if "woman" in directions.names:
        g, s = clfs["gender"], strength_of("woman")
        res = {"n_men": len(men), "n_women": len(women), "strength": s}
        if men:
            cs = codes(torch.tensor(men))
            base, up = edited(cs, "woman", 0.0), edited(cs, "woman", s)
            res["man_to_woman"] = g.predict_names(up).count("woman") / len(men)
            res["man_rated_woman_before"] = g.predict_names(base).count("woman") / len(men)
            res["subgroup_kept_plus"] = sub_kept(base, up)
        if women:
            cs = codes(torch.tensor(women))
            base, dn = edited(cs, "woman", 0.0), edited(cs, "woman", -s)
            res["woman_to_man"] = g.predict_names(dn).count("man") / len(women)
            res["woman_rated_man_before"] = g.predict_names(base).count("man") / len(women)
            res["subgroup_kept_minus"] = sub_kept(base, dn)
        result["woman"] = res
        log(f"woman ±{s:.2f}: {json.dumps(res)}")
    # the grid: 4 toned people under dark-skin, then 2 men and 2 women under woman
    rows_of = {"dark-skin": people[:4], "woman": men[:2] + women[:2]}
    attributes = [a for a in ("dark-skin", "woman") if a in directions.names and rows_of[a]]
    if grid is not None and attributes:
        tiles, result["grid"] = [], {"path": str(grid), "strengths": {}, "rows": []}
        for a in attributes:
            s = strength_of(a)
            strengths = [-s, -s / 2, 0.0, s / 2, s]
            picks = torch.tensor(rows_of[a])
            tiles.append(sweep_grid(model, directions, data.images_at(model.resolution, picks), [a], strengths, steps))
            result["grid"]["strengths"][a] = [round(v, 2) for v in strengths]
            result["grid"]["rows"] += [f"{a}: {data.records[i].name}" for i in picks.tolist()]
        save_grid(torch.cat(tiles), Path(grid), columns=1 + len(strengths))
        log(f"wrote the strength sweep {grid}: rows {result['grid']['rows']}; columns the original, then "
            f"the strengths {result['grid']['strengths']}")
    return result
