"""The semantic base's sampling settings against the judge: how few steps the prior (over DiffAE's
z_sem) and the DiffAE decoder need before the samples get measurably worse.

    python scripts/sweep_semantic.py [--configs ddim:25/ddim:25,dpmpp-2m:10/ddim:10] [--n 64]
                                     [--seed-sets 0,1,2] [--repeat CONFIG,...] [--grid-dir DIR] [--json OUT]

A configuration is PRIOR/DECODER, each SAMPLER:STEPS[:SPACING] (spacing default: the prior
samples on "leading", as `core.prior.sample_codes` always did; the decoder on the sampler's grid
in `core.diffusion.samplers.STAGE_SPACING`). Each configuration is scored by the judge
(`core.evaluation.scorecard.scorecard`, the evaluation's "semantic" section) on text (names of seen People &
Body / seen other / held-out emoji) and labels (People & Body subgroups / others), n per split,
on seed set 0; the first configuration (the reference) and those named by --repeat also on the
other seed sets, whose spread is the noise a difference must beat. Per configuration and split:
recognisable (accepted as an emoji and the asked subgroup), retrieval@5 (text) and FD(judge);
with --grid-dir, the labelled grids of the fixed prompts and classes (seeds 0 and 1) to look at.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data.emoji import load_dataset  # noqa: E402
from core.diffusion.rng import BatchGenerator  # noqa: E402
from core.diffusion.samplers import SAMPLERS, SPACINGS, STAGE_SPACING, sample  # noqa: E402
from core.evaluation.judge import Judge  # noqa: E402
from core.evaluation.scorecard import GRID_CLASSES, GRID_PROMPTS, fixed_grid, scorecard  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.models.prior import sample_codes  # noqa: E402


def parse_part(text: str, default_spacing) -> tuple[str, int, str]:
    sampler, steps, *rest = text.split(":")
    spacing = rest[0] if rest else default_spacing(sampler)
    if sampler not in SAMPLERS or spacing not in SPACINGS or not steps.isdigit() or int(steps) < 1 or len(rest) > 1:
        raise SystemExit(f"bad sampler setting {text!r}: SAMPLER:STEPS[:SPACING] with a sampler of "
                         f"{', '.join(SAMPLERS)} and a spacing of {', '.join(SPACINGS)}")
    return sampler, int(steps), spacing


def parse_config(text: str) -> dict:
    prior, _, decoder = text.partition("/")
    if not decoder:
        raise SystemExit(f"bad configuration {text!r}: PRIOR/DECODER, e.g. ddim:25/ddim:25")
    return {"name": text, "prior": parse_part(prior, lambda s: "leading"),
            "decoder": parse_part(decoder, lambda s: STAGE_SPACING.get(s, "leading"))}


def semantic_sampler(models, kind: str, config: dict, guidance: float, batch: int):
    """`core.evaluation.scorecard.semantic_sampler` with the prior's and the decoder's sampler, steps and
    spacing of `config` (the decoder's x_T from the seed, as `core.semantic.render`)."""
    prior, decoder = models.get("prior"), models.get("diffae")
    encoder = models.get(prior.config.text_encoder) if kind == "text" else None
    (p_sampler, p_steps, p_spacing), (d_sampler, d_steps, d_spacing) = config["prior"], config["decoder"]

    def draw(asked: list, seeds: list) -> torch.Tensor:
        out = []
        for s in range(0, len(asked), batch):
            a, sd = list(asked[s:s + batch]), [int(x) for x in seeds[s:s + batch]]
            cond = prior.text_cond(encoder.encode(a).pooled) if kind == "text" else prior.label_cond(a)
            z = sample_codes(prior, cond, prior.null_cond(len(a)), sd, guidance, p_steps, p_sampler,
                             spacing=p_spacing)
            r = decoder.resolution
            x_T = BatchGenerator(sd, "cpu").randn((len(sd), 3, r, r))
            with torch.inference_mode():
                # the denoiser runs within this batch: z (this batch's codes) is bound to say so
                x = sample(d_sampler, lambda x_t, t, z=z: decoder.eps(x_t, t, {"z_sem": z}), x_T, decoder.schedule,
                           d_steps, spacing=d_spacing)
            out.append(x.clamp(-1, 1))
        return torch.cat(out)
    return draw


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="ddim:25/ddim:25,dpmpp-2m:10/ddim:25,ddim:25/ddim:10,"
                                        "ddim:25/dpmpp-2m:10")
    p.add_argument("--repeat", default="", help="configurations also run on every seed set (comma-separated)")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed-sets", default="0,1,2", help="scorecard seeds (each draws its own emoji and noise)")
    p.add_argument("--kinds", default="text,label")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--checkpoints", default=None)
    p.add_argument("--judge", default=None, help="judge folder (default <checkpoints>/judge)")
    p.add_argument("--grid-dir", default=None)
    p.add_argument("--json", default=None, help="append one JSON line per configuration and seed set here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    configs = [parse_config(c) for c in a.configs.split(",") if c]
    repeat = {configs[0]["name"]} | {c for c in a.repeat.split(",") if c}
    seed_sets = [int(s) for s in a.seed_sets.split(",") if s]
    kinds = [k for k in a.kinds.split(",") if k]
    models = ModelSet(a.checkpoints, "cpu")
    data = load_dataset()
    judge = Judge.load(a.judge or Path(models.root) / "judge").set_reference(data)
    rows = []
    for config in configs:
        for seed in (seed_sets if config["name"] in repeat else seed_sets[:1]):
            for kind in kinds:
                draw = semantic_sampler(models, kind, config, a.guidance, a.batch)
                t0 = time.perf_counter()
                card = scorecard(draw, kind, judge, data, n=a.n, seed=seed,
                                 classes=models.get("prior").config.classes if kind == "label" else None)
                for split, res in card.results["splits"].items():
                    s = res["rows"]["samples"]
                    row = {"config": config["name"], "seed": seed, "kind": kind, "split": split, "n": res["n"],
                           "recognisable": round(s["recognisable"], 4), "fd_judge": round(s["fd_judge"], 3),
                           "seconds": round(res["sample_seconds"], 1)}
                    if "retrieval" in s:
                        row["retrieval"] = round(s["retrieval"], 4)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if a.json:
                        with open(a.json, "a") as f:
                            f.write(json.dumps(row) + "\n")
                print(f"# {config['name']} seed {seed} {kind}: {time.perf_counter() - t0:.0f} s", flush=True)
        if a.grid_dir:
            for kind in kinds:
                items = GRID_PROMPTS if kind == "text" else [c for c in GRID_CLASSES
                                                            if c in models.get("prior").config.classes]
                path = Path(a.grid_dir) / config["name"].replace("/", "_").replace(":", "-") / f"{kind}.png"
                g = fixed_grid(semantic_sampler(models, kind, config, a.guidance, a.batch), kind, judge, path, data,
                               items=items)
                print(f"# wrote {path}: recognised {g.get('recognised', float('nan')):.2f}", flush=True)

    print("\n| configuration | split | recognisable (seed sets) | retrieval@5 | FD(judge) |")
    print("| --- | --- | --- | --- | --- |")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["config"], r["split"]), []).append(r)
    for (config, split), rs in groups.items():
        rec = " / ".join(f"{r['recognisable']:.3f}" for r in rs)
        ret = " / ".join(f"{r['retrieval']:.3f}" for r in rs) if "retrieval" in rs[0] else "-"
        fd = " / ".join(f"{r['fd_judge']:.1f}" for r in rs)
        print(f"| {config} | {split} | {rec} | {ret} | {fd} |")
    means: dict = {}
    for r in rows:
        means.setdefault((r["config"], r["seed"]), []).append(r)
    print("\n| configuration | seed set | mean recognisable | mean FD(judge) |")
    print("| --- | --- | --- | --- |")
    for (config, seed), rs in means.items():
        print(f"| {config} | {seed} | {statistics.mean(r['recognisable'] for r in rs):.3f} | "
              f"{statistics.mean(r['fd_judge'] for r in rs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
