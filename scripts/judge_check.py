"""Check a judge against what a person sees: accept rates and labelled grids of real held-out
emoji, DiffAE decodes, semantic-base samples and pixel-base samples, and a blind sample of
pixel-base images for a person to label.

    python scripts/judge_check.py [--judge DIR] [--checkpoints DIR] [--n 48] [--out DIR] [--threads 1]
    python scripts/judge_check.py --out DIR --eye LABELS      # agreement with a person's labels

Image sets (32 px; asked emoji: a seeded draw of ``n`` emoji of the whole data set, the same for
every generated set):

- ``real_heldout``: every held-out emoji's 32 px render (the judge's accept rate on real
  emoji it may not have been trained on, when it is the held-out twin);
- ``real_heldout_16px``: the same, blurred through 16 px;
- ``decodes``: DiffAE decodes of ``n`` held-out emoji: their semantic code, fresh noise,
  50 DDIM steps, ``core.diffae.decode``'s default (what the semantic base draws when its prior
  picks an emoji's own code);
- ``semantic``: the semantic base (prior, then the DiffAE decoder, at their defaults) on the asked
  emoji's names;
- ``text_10`` / ``text_25``: the pixel text base on the same names, 10 DPM-Solver++ steps
  (today's default) and 25 DDIM steps (the default before);
- ``class_10`` / ``class_25``: the pixel class base on the asked emoji's subgroups, likewise.

Each set gets a grid ``<out>/<set>.png`` with the asked name and the judge's verdict under each
cell ("ACC" or "rej", the realism probability r and the nearest-real-emoji similarity n), and
``<out>/check.json`` holds the accept rates and every verdict.

The blind sample: ``<out>/blind.png`` shows ``--blind`` (24) pixel-base images (a quarter of them
from each pixel set, seeded), numbered and without verdicts. A person looks at it and writes one letter per image,
``y`` (a recognisable emoji, whatever it is) or ``n`` (a blob, smear or scribble); ``--eye
yynn...`` then prints the agreement of those labels with the judge's verdicts (stored in
check.json) and writes it there.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.evaluation.judge import Judge, round_trip  # noqa: E402
from core.evaluation.scorecard import labelled_grid, prompt_of  # noqa: E402

PIXEL_SETS = ("text_10", "text_25", "class_10", "class_25")


def _cells(out: dict, asked: list[str]) -> list[str]:
    return [f"{a[:17]}\n{'ACC' if acc else 'rej'} r{r:.2f} n{n:.2f}"
            for a, acc, r, n in zip(asked, out["accepted"].tolist(), out["realism"].tolist(), out["nearest"].tolist())]


def make_sets(models, data, n: int, seed: int, log) -> dict[str, tuple[torch.Tensor, list[str]]]:
    from core import diffae
    from core.evaluation.scorecard import semantic_sampler
    from core.pipeline import BASE_DEFAULTS, generate_class, generate_text
    from core.semantic import DECODER_STEPS, PRIOR_DEFAULTS

    gen = torch.Generator().manual_seed(seed)
    heldout = data.indices("heldout")
    sets: dict[str, tuple[torch.Tensor, list[str]]] = {}
    real = data.images_at(32, heldout)
    names = [data.records[i].name for i in heldout.tolist()]
    sets["real_heldout"] = (real, names)
    sets["real_heldout_16px"] = (round_trip(real, 16), names)

    pick = heldout[torch.randperm(len(heldout), generator=gen)[:n]].tolist()
    decoder = models.get("diffae")
    z = diffae.semantic_code(decoder, data.images_at(32, pick))
    seeds = [seed + j for j in range(len(pick))]
    log("decodes")
    sets["decodes"] = (diffae.decode(decoder, z, diffae.fresh_noise(decoder, seeds)).cpu(),
                       [data.records[i].name for i in pick])

    known = set(models.classes())
    asked = [int(i) for i in torch.randperm(len(data), generator=gen).tolist() if data.records[i].subgroup in known][:n]
    prompts = [prompt_of(data.records[i]) for i in asked]
    labels = [data.records[i].subgroup for i in asked]
    seeds = [seed + j for j in range(len(asked))]
    log("semantic")
    sets["semantic"] = (semantic_sampler(models, "text", PRIOR_DEFAULTS, DECODER_STEPS)(prompts, seeds), prompts)
    text, enc, cls = models.get("text_base"), models.text_encoder(), models.get("class_base")
    for steps, settings in ((10, BASE_DEFAULTS), (25, replace(BASE_DEFAULTS, sampler="ddim", steps=25))):
        log(f"pixel bases, {steps} steps ({settings.sampler})")
        sets[f"text_{steps}"] = (generate_text(text, enc, prompts, "", seeds, settings).cpu(), prompts)
        sets[f"class_{steps}"] = (generate_class(cls, labels, seeds, settings).cpu(), labels)
    return sets


def check(judge_dir, checkpoints, n: int, out: Path, seed: int, blind_n: int = 24, log=print) -> dict:
    from core.data.emoji import load_dataset
    from core.models.modelset import ModelSet

    data = load_dataset()
    judge = Judge.load(judge_dir).set_reference(data)
    models = ModelSet(checkpoints, "cpu")
    sets = make_sets(models, data, n, seed, log)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"judge": str(judge_dir or "checkpoints/judge"), "manifold": judge.manifold, "n": n, "seed": seed,
                    "rates": {}, "verdicts": {}}
    for name, (images, asked) in sets.items():
        s = judge.scores(images)
        if "nearest" not in s:   # a judge without a manifold test: show the similarity all the same
            s["nearest"] = judge.nearest(s["features"])
        result["rates"][name] = {"n": len(images), "accepted": float(s["accepted"].float().mean()),
                                 "accepted_head": float((s["realism"] > judge.threshold).float().mean())}
        result["verdicts"][name] = [[a, bool(acc), round(float(r), 3), round(float(nn), 3)] for a, acc, r, nn in
                                    zip(asked, s["accepted"].tolist(), s["realism"].tolist(), s["nearest"].tolist())]
        show = slice(0, 48)
        labelled_grid(images[show], _cells(s, asked)[show], out / f"{name}.png", columns=8)
        log(f"{name}: accepted {result['rates'][name]['accepted']:.3f} "
            f"(head alone {result['rates'][name]['accepted_head']:.3f}) of {len(images)}")
    # the blind sample: 6 images of each pixel set, seeded, numbered, without verdicts
    gen = torch.Generator().manual_seed(seed + 99)
    blind, images = [], []
    for name in PIXEL_SETS:
        for j in torch.randperm(len(sets[name][0]), generator=gen)[: blind_n // len(PIXEL_SETS)].tolist():
            blind.append([name, j, result["verdicts"][name][j][1]])
            images.append(sets[name][0][j])
    order = torch.randperm(len(blind), generator=gen).tolist()
    blind = [blind[i] for i in order]
    labelled_grid(torch.stack([images[i] for i in order]), [str(i) for i in range(len(blind))], out / "blind.png",
                  columns=8, scale=4)
    result["blind"] = blind
    (out / "check.json").write_text(json.dumps(result, indent=1))
    return result


def agreement(out: Path, eye: str) -> dict:
    result = json.loads((out / "check.json").read_text())
    blind = result["blind"]
    eye = eye.strip().lower()
    if len(eye) != len(blind) or set(eye) - {"y", "n"}:
        raise SystemExit(f"--eye needs {len(blind)} letters y / n (one per numbered image of blind.png), got {eye!r}")
    agree = [(e == "y") == judged for e, (_, _, judged) in zip(eye, blind)]
    res = {"labels": eye, "agreement": sum(agree) / len(agree), "n": len(agree),
           "eye_yes": eye.count("y"), "judge_yes": sum(b[2] for b in blind),
           "disagree": [[i, *blind[i], eye[i]] for i, a in enumerate(agree) if not a]}
    result["eye"] = res
    (out / "check.json").write_text(json.dumps(result, indent=1))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--judge", help="judge folder (default checkpoints/judge)")
    p.add_argument("--checkpoints", help="checkpoints root with text_base, class_base, clip, prior, diffae")
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--blind", type=int, default=24, help="images in the blind sample (default 24)")
    p.add_argument("--eye", help="a person's labels of blind.png, one y / n per image")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.eye:
        print(json.dumps(agreement(Path(args.out), args.eye), indent=1))
        return 0
    check(args.judge, args.checkpoints, args.n, Path(args.out), args.seed, args.blind)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
