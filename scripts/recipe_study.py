"""A recipe study for the pixel text base: from one start and the same number of training steps,
which recipe learns fastest per CPU-minute?

    python scripts/recipe_study.py train    --out runs/study [--start checkpoints/text_base] [--steps 640 --every 160]
    python scripts/recipe_study.py evaluate --out runs/study [--judge checkpoints/judge --n 64 --focus-n 256]
    python scripts/recipe_study.py report   --out runs/study [--plot docs/recipe_study.png] [--cost NAME=SECONDS]

`train` runs each candidate of CANDIDATES with `python -m core train text_base --init-from START`
(a candidate of FRESH from its own initialisation instead, exported at step 0 too) and exports its
EMA weights every `--every` steps (OUT/CANDIDATE/step_K); a stopped study resumes where it was.
`evaluate` scores every export there is, and the start itself, with the judge's scorecard (the
same prompts and seeds for all: recognisable and FD in the judge's features per split), and
again on `--focus-n` names of training emoji outside People & Body (the split the pixel base
fails most; 64 prompts give a standard error of about 0.05 there, 256 about 0.02), and writes
OUT/scores.json. `report` prints the table (steps, measured training minutes, figures) and
draws the learning curves as a PNG against CPU-minutes: steps times the seconds of one step
(`--seconds-per-step`, and `--cost` for a candidate whose network costs another amount per step).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.evaluation.scorecard import TEXT_SPLITS  # noqa: E402

# name -> the `python -m core train text_base` options that differ from the committed recipe
CANDIDATES = {
    "baseline": [],                              # lr 5e-4, min-SNR-5, uniform t, balance 0.5
    "balance-1": ["--balance", "1.0"],           # every design (an emoji up to tone and gender) alike
    "lr-1e-3": ["--lr", "1e-3"],
    "lognormal-t": ["--t-sampling", "lognormal"],  # EDM's noise levels, same min-SNR weight
    # transfer: the DiffAE decoder fed a code predicted from pooled text (core.training.bases)
    "decoder-init": ["--text-conditioning", "pooled", "--lr", "2e-4"],
}
FRESH = {"decoder-init", "decoder-init-3k"}   # candidates that start from their own initialisation, not START
# candidates scored and reported but not trained by this script: the code that trained them has changed
RECORDED = {"decoder-init-3k": "decoder-init at commit 6ad2928: 3,000 regression steps at a constant learning rate"}
SCORED = [*CANDIDATES, *RECORDED]
SPLITS = TEXT_SPLITS
METRICS = ("recognisable", "fd_judge")


def _milestones(steps: int, every: int, fresh: bool = False) -> list[int]:
    return ([0] if fresh else []) + list(range(every, steps + 1, every))


def train(a) -> None:
    out = Path(a.out)
    for name, options in CANDIDATES.items():
        for step in _milestones(a.steps, a.every, name in FRESH):
            export = out / name / f"step_{step:05d}"
            if (export / "config.json").exists():
                continue
            start = [] if name in FRESH else ["--init-from", a.start]
            cmd = [sys.executable, "-m", "core", "train", "text_base", "--run", str(out / "runs" / name),
                   *start, "--steps", str(step), "--save-every", str(a.every),
                   "--sample-every", str(10 ** 9), "--threads", str(a.threads), "--checkpoints", a.checkpoints,
                   "--export", str(export), *options]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            state = __import__("torch").load(out / "runs" / name / "state.pt", map_location="cpu", weights_only=True)
            (export / "trained.json").write_text(json.dumps({"step": state["step"], "seconds": state["seconds"]}))


def _root_with(text_base: Path, checkpoints: Path, scratch: Path) -> Path:
    """A checkpoints root holding this text base and the committed CLIP it reads."""
    root = scratch / text_base.parent.name / text_base.name
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (("text_base", text_base), ("clip", checkpoints / "clip")):
        link = root / name
        if not link.exists():
            os.symlink(target.resolve(), link)
    return root


def evaluate(a) -> None:
    import torch

    from core.evaluation.judge import Judge
    from core.evaluation.scorecard import base_sampler, prompt_of, score_images, scorecard, text_splits
    from core.models.modelset import ModelSet

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    scores_path = out / "scores.json"
    scores = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    judge = Judge.load(a.judge)
    folders = [("start", 0, Path(a.start))]
    for name in SCORED:   # every export there is, whatever milestones it was trained to
        for folder in sorted((out / name).glob("step_*")):
            if (folder / "config.json").exists():
                folders.append((name, int(folder.name.removeprefix("step_")), folder))
    data = judge.reference()[0]
    focus = text_splits(data, a.focus_n, 0)[TEXT_SPLITS[1]]
    focus_prompts = [prompt_of(data.records[i]) for i in focus]
    focus_subgroups = [data.records[i].subgroup for i in focus]
    if "real_focus" not in scores:   # the real renders of the same names, for reference
        flags = score_images(judge, data.images_at(32, torch.as_tensor(focus)), focus_subgroups, focus)
        scores["real_focus"] = {"n": len(focus), **{k: float(v.float().mean()) for k, v in flags.items()}}
    for name, step, folder in folders:
        key = f"{name}/{step}"
        if "focus" in scores.get(key, {}):
            continue
        models = ModelSet(_root_with(folder, Path(a.checkpoints), out / "roots"), "cpu")
        if key not in scores:
            card = scorecard(base_sampler(models, "text"), "text", judge, n=a.n)
            trained = folder / "trained.json"
            scores[key] = {"candidate": name, "step": step,
                           "seconds": json.loads(trained.read_text())["seconds"] if trained.exists() else 0.0,
                           "splits": {split: {m: sp["rows"]["samples"][m] for m in METRICS}
                                      for split, sp in card.results["splits"].items()},
                           "real": {split: {m: sp["rows"]["real"][m] for m in METRICS}
                                    for split, sp in card.results["splits"].items()}}
        # the split the issue is about, with more prompts: names of training emoji outside People & Body
        images = base_sampler(models, "text")(focus_prompts, list(range(len(focus))))
        flags = score_images(judge, images, focus_subgroups, focus)
        scores[key]["focus"] = {"n": len(focus), **{k: float(v.float().mean()) for k, v in flags.items()}}
        print(key, json.dumps(scores[key]["splits"]), json.dumps(scores[key]["focus"]), flush=True)
        scores_path.write_text(json.dumps(scores, indent=1))


def _curves(scores: dict) -> dict[str, list[dict]]:
    start = [v for v in scores.values() if v["candidate"] == "start"]
    curves = {}
    for name in SCORED:
        points = sorted((v for v in scores.values() if v["candidate"] == name), key=lambda v: v["step"])
        if points:
            curves[name] = points if name in FRESH else start + points
    return curves


def plot(curves: dict[str, list[dict]], path: Path, minutes_per_step: dict[str, float], real: dict) -> None:
    """Recognisable (seen other, the larger sample, with +-1 standard error) and FD(judge) (seen
    other) against CPU minutes, one line per candidate, each beside the real renders' figure
    (dashed), drawn with PIL. The recognisable axis starts at 0, so a move within the noise looks
    like one."""
    from PIL import Image, ImageDraw

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (23, 190, 207)]
    n = next(iter(curves.values()))[0]["focus"]["n"]
    panels = [(f"recognisable, names outside People & Body (n = {n})", lambda p: p["focus"]["recognisable"],
               real["focus"]["recognisable"], True),
              ("FD(judge), seen other (n = 64; lower is better)", lambda p: p["splits"]["seen, other"]["fd_judge"],
               real["seen, other"]["fd_judge"], False)]
    w, h, margin = 440, 320, 50
    img = Image.new("RGB", (w * len(panels), h + 60), "white")
    d = ImageDraw.Draw(img)
    xmax = max(p["step"] * minutes_per_step[name] for name, c in curves.items() for p in c) or 1
    for k, (title, value, reference, from_zero) in enumerate(panels):
        x0 = k * w + margin
        values = [value(p) for c in curves.values() for p in c] + [reference]
        lo, hi = (0.0 if from_zero else min(values)), max(values)
        lo, hi = lo - (0 if from_zero else 0.05 * (hi - lo or 1)), hi + 0.05 * (hi - lo or 1)
        d.rectangle([x0, 20, x0 + w - margin - 20, h - 30], outline="black")
        d.text((x0, 4), title, fill="black")
        d.text((x0, h - 25), "0", fill="black")
        d.text((x0 + w - margin - 70, h - 25), f"{xmax:.0f} CPU-min", fill="black")
        d.text((x0 - 45, 20), f"{hi:.2f}", fill="black")
        d.text((x0 - 45, h - 40), f"{lo:.2f}", fill="black")

        def y_of(v, lo=lo, hi=hi):
            return (h - 30) - (h - 50) * (v - lo) / (hi - lo)

        def at(p, per_step, x0=x0, value=value, y_of=y_of):
            return x0 + (w - margin - 20) * p["step"] * per_step / xmax, y_of(value(p))
        y = y_of(reference)
        for x in range(x0, x0 + w - margin - 20, 8):   # the real renders, dashed
            d.line([(x, y), (x + 4, y)], fill="black")
        d.text((x0 + 4, y - 12), "real renders", fill="black")
        for i, (name, c) in enumerate(curves.items()):
            colour = colours[i % len(colours)]
            pts = [at(p, minutes_per_step[name]) for p in c]
            d.line(pts, fill=colour, width=2)
            for p, (x, y) in zip(c, pts):
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
                if from_zero:   # +-1 standard error of a proportion
                    r = value(p)
                    se = (r * (1 - r) / p["focus"]["n"]) ** 0.5
                    d.line([(x, y_of(r - se)), (x, y_of(r + se))], fill=colour)
    for i, name in enumerate(curves):
        d.text((margin + i * 130, h + 30), f"- {name}", fill=colours[i % len(colours)])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def report(a) -> None:
    scores = json.loads((Path(a.out) / "scores.json").read_text())
    real_focus = scores.pop("real_focus", None)
    curves = _curves(scores)
    timed = [p for c in curves.values() for p in c if p["step"]]
    measured = sum(p["seconds"] for p in timed) / sum(p["step"] for p in timed)
    print(f"measured training time: {measured:.2f} s per step (mean over the candidates, on the shared core)")
    seconds = {name: a.seconds_per_step or measured for name in curves}
    for item in a.cost or []:
        name, _, value = item.partition("=")
        seconds[name] = float(value)
    minutes_per_step = {name: v / 60 for name, v in seconds.items()}
    print("CPU minutes in the plot: " + ", ".join(f"{n} {v:.2f} s per step" for n, v in seconds.items()) + "\n")
    focus_n = next(iter(scores.values()))["focus"]["n"]
    header = (["candidate", "step", "train min", f"recognisable (seen, other; n = {focus_n})", "retrieval@5 (same)"]
              + [f"{m} ({s})" for s in SPLITS for m in METRICS])
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for name, c in curves.items():
        for p in c:
            cells = [name, str(p["step"]), f"{p['seconds'] / 60:.1f}", f"{p['focus']['recognisable']:.3f}",
                     f"{p['focus']['retrieval']:.3f}"]
            cells += [f"{p['splits'][s][m]:.3f}" if m == "recognisable" else f"{p['splits'][s][m]:.2f}"
                      for s in SPLITS for m in METRICS]
            print("| " + " | ".join(cells) + " |")
    real = next(iter(scores.values()))["real"]
    focus_cells = (f"{real_focus['recognisable']:.3f} | {real_focus['retrieval']:.3f}" if real_focus else " | ")
    print(f"| real renders | | | {focus_cells} | " + " | ".join(
        f"{real[s][m]:.3f}" if m == "recognisable" else f"{real[s][m]:.2f}" for s in SPLITS for m in METRICS) + " |")
    if a.plot:
        plot(curves, Path(a.plot), minutes_per_step, {**real, "focus": real_focus or real["seen, other"]})
        print(f"\nplot: {a.plot}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("train", "evaluate", "report"))
    p.add_argument("--out", default="runs/study")
    p.add_argument("--start", default="checkpoints/text_base")
    p.add_argument("--checkpoints", default="checkpoints", help="the root with the clip and the judge")
    p.add_argument("--judge", default="checkpoints/judge")
    p.add_argument("--steps", type=int, default=640)
    p.add_argument("--every", type=int, default=160)
    p.add_argument("--n", type=int, default=64, help="prompts per split of the scorecard")
    p.add_argument("--focus-n", type=int, default=256,
                   help="prompts of the split outside People & Body scored again, for a tighter figure")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plot", help="write the learning curves here (PNG)")
    p.add_argument("--cost", action="append", metavar="CANDIDATE=SECONDS",
                   help="report: a candidate whose step costs another number of CPU seconds (its network differs; "
                        "scripts/bench_training.py measures the ratio)")
    p.add_argument("--seconds-per-step", type=float,
                   help="report: CPU seconds of one step for the plot's axis (default: the mean measured, which "
                        "includes whatever else shared the core)")
    a = p.parse_args(argv)
    {"train": train, "evaluate": evaluate, "report": report}[a.command](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
