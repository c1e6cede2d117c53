"""FD_CLIP against sampling steps, per sampler and per cascade stage: how few network
evaluations (NFE) each stage needs before its samples get measurably worse.

    python scripts/sweep_steps.py [--stages base,sr64,sr128] [--samplers ddim,dpmpp-2m:trailing]
                                  [--steps 5,8,10] [--n 32] [--seed-sets 3] [--json OUT]

A sampler is named with an optional spacing (`dpmpp-2m:trailing`; default "leading", as the
pipeline's default).

Each stage is measured on the first N held-out emoji (`core.evaluation.held_out.heldout_order`, seed 0):
- base: the text base at guidance 3 on their captions, FD_CLIP of the 32 px samples to the real
  held-out images (`core.metrics.frechet_distance` on CLIP image embeddings, as the evaluation);
- class: the class base at guidance 3 on their subgroups (those it knows), the same FD_CLIP;
- sr64 / sr128: the SR stage on the real images area-downsampled to its input size, FD_CLIP
  and PSNR / SSIM of its outputs against the real images at its size.
Every configuration runs on seed set 0 (image i: seed i); the reference (`--reference`: the
defaults before this measurement, 25 leading DDIM steps for the bases, 20 for SR) and the
configurations named by `--repeat` (sampler:steps:stage) also run on
seed sets 1, 2, ... (seed 1000 k + i), whose spread is the noise a difference must beat. FD_CLIP
at N = 32 is biased upward (192-d embeddings); compare it only at equal N.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cascade import ModelSet  # noqa: E402
from core.cli import number_list  # noqa: E402
from core.data.emoji import load_dataset  # noqa: E402
from core.diffusion.samplers import SAMPLERS, SPACINGS  # noqa: E402
from core.evaluation.held_out import caption_of, heldout_order  # noqa: E402
from core.metrics import frechet_distance, psnr, ssim  # noqa: E402
from core.models.clip_model import ClipEmbedder  # noqa: E402
from core.pipeline import BASE_DEFAULTS, SR_DEFAULTS, generate_class, generate_text, upscale  # noqa: E402

STAGES = {"base": ("text_base", 32), "class": ("class_base", 32), "sr64": ("sr64", 64), "sr128": ("sr128", 128)}


def stage_images(ms: ModelSet, stage: str, data, idx: list[int], sampler: str, steps: int, seed_set: int,
                 batch: int) -> torch.Tensor:
    """The stage's outputs in [-1, 1] for the held-out emoji `idx` under one seed set; `sampler`
    may name a spacing ("dpmpp-2m:trailing")."""
    sampler, _, spacing = sampler.partition(":")
    spacing = spacing or None
    seeds = [1000 * seed_set + i for i in range(len(idx))]
    chunks = [slice(s, s + batch) for s in range(0, len(idx), batch)]
    if stage == "class":
        names = [data.records[i].subgroup for i in idx]
        settings = replace(BASE_DEFAULTS, sampler=sampler, steps=steps, spacing=spacing)
        return torch.cat([generate_class(ms.get("class_base"), names[c], seeds[c], settings) for c in chunks])
    if stage == "base":
        model, encoder = ms.get("text_base"), ms.text_encoder()
        prompts = [caption_of(data.records[i]) for i in idx]
        settings = replace(BASE_DEFAULTS, sampler=sampler, steps=steps, spacing=spacing)
        return torch.cat([generate_text(model, encoder, prompts[c], "", seeds[c], settings) for c in chunks])
    model = ms.get(STAGES[stage][0])
    low = data.images_at(int(model.config.low_resolution), idx)
    settings = replace(SR_DEFAULTS, sampler=sampler, steps=steps, spacing=spacing)
    return torch.cat([upscale(model, low[c], seeds[c], settings) for c in chunks])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stages", default="base,sr64,sr128")
    p.add_argument("--samplers", default="ddim,dpmpp-2m")
    p.add_argument("--steps", type=number_list(int), default=[2, 3, 5, 8, 10, 12, 15, 20, 25])
    p.add_argument("--reference", type=number_list(int), default=None,
                   help="steps of the reference DDIM run per stage, in --stages order (default 25 base, 20 SR; "
                        "0: none)")
    p.add_argument("--reference-sampler", default="ddim:leading",
                   help="the sampler of the reference runs (the defaults before this measurement)")
    p.add_argument("--repeat", default="", help="also run these on every seed set: sampler:steps:stage,...")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--seed-sets", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--checkpoints", default=None)
    p.add_argument("--json", default=None, help="append one JSON line per configuration here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    stages = [s for s in a.stages.split(",") if s]
    samplers = [s for s in a.samplers.split(",") if s]
    for s in stages:
        if s not in STAGES:
            raise SystemExit(f"unknown stage {s!r}; choose from {', '.join(STAGES)}")
    for s in samplers:
        name, _, spacing = s.partition(":")
        if name not in SAMPLERS or (spacing and spacing not in SPACINGS):
            raise SystemExit(f"unknown sampler {s!r}; choose from {', '.join(SAMPLERS)}, "
                             f"each optionally with :{'|:'.join(SPACINGS)}")
    reference = a.reference or [25 if s in ("base", "class") else 20 for s in stages]
    repeat = {tuple(r.rsplit(":", 2)) for r in a.repeat.split(",") if r}   # (sampler[:spacing], steps, stage)

    ms = ModelSet(a.checkpoints, "cpu")
    data = load_dataset()
    embedder = ClipEmbedder.from_folder(Path(ms.root) / "clip")
    order = heldout_order(data, 0)
    rows = []
    for stage, ref_steps in zip(stages, reference):
        size = STAGES[stage][1]
        if stage == "class":  # the held-out emoji of the subgroups the class base knows (the evaluation's)
            known = set(ms.get("class_base").config.classes or [])
            idx = [i for i in order if data.records[i].subgroup in known][: a.n]
        else:
            idx = order[: a.n]
        real = data.images_at(size, idx)
        real_emb = embedder.image_embeddings(real).numpy()
        configs = [(a.reference_sampler, ref_steps, k) for k in range(a.seed_sets) if ref_steps > 0]
        for sampler in samplers:
            for steps in a.steps:
                sets = range(a.seed_sets) if (sampler, str(steps), stage) in repeat else [0]
                configs += [(sampler, steps, k) for k in sets if (sampler, steps, k) not in configs]
        for sampler, steps, k in configs:
            t0 = time.perf_counter()
            images = stage_images(ms, stage, data, idx, sampler, steps, k, a.batch)
            row = {"stage": stage, "sampler": sampler, "steps": steps, "seed_set": k, "n": len(idx),
                   "seconds": round(time.perf_counter() - t0, 1),
                   "fd_clip": round(frechet_distance(embedder.image_embeddings(images).numpy(), real_emb), 4)}
            if stage.startswith("sr"):
                x, y = (images + 1) / 2, (real + 1) / 2
                row["psnr"] = round(float(psnr(x, y).mean()), 3)
                row["ssim"] = round(float(ssim(x, y).mean()), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(row) + "\n")

    print("\n| stage | sampler | steps | FD_CLIP (seed sets) | mean | PSNR | SSIM |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["stage"], r["sampler"], r["steps"]), []).append(r)
    for (stage, sampler, steps), rs in groups.items():
        fds = [r["fd_clip"] for r in rs]
        extra = [f"{statistics.mean(r[k] for r in rs):.3f}" if k in rs[0] else "-" for k in ("psnr", "ssim")]
        print(f"| {stage} | {sampler} | {steps} | {' / '.join(f'{v:.4f}' for v in fds)} | "
              f"{statistics.mean(fds):.4f} | {' | '.join(extra)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
