"""How long one 128 px emoji takes, start to finish, with both 32 px bases side by side:

- **whole process**: `python -m core generate --prompt P --num 1 --size 128 --seed K --out DIR
  --base B`, timed from outside (subprocess), median of --runs (seeds K = --seed, --seed + 1, ...);
  the same for `python -m core classes` and `python -m core --help`. Runs of all settings (and of
  --before) are interleaved, so a change in the machine's load falls on all of them alike;
- **imports**: what the generate process spends importing (the level-0 entries of
  `python -X importtime`, summed; torch's own share beside it);
- **model load**: the models one image needs, loaded into a fresh `core.cascade.ModelSet`;
- **stages**: each stage's seconds and network evaluations (NFE: calls of the model, a CFG step
  being one call on the doubled batch) inside `core.cascade.generate`, median over --reps runs
  after one warm-up run. A stage's seconds run from the end of the stage before (the call's start
  for the first) to the end of its last network call, so the text encoding and the noise
  augmentation of an SR input count with their stage; "network" is the time inside the calls;
- **in-process**: seconds per image of the whole cascade with the models loaded, after warm-up;
- **diffusers**: the text base's 32 px sampling at its default settings, driven by diffusers'
  own scheduler loop (DPMSolverMultistepScheduler or DDIMScheduler, CFG on the doubled batch,
  the same thresholding) around diffusers' UNet2DConditionModel loaded from the same weights,
  against `core.pipeline.sample_stage` with the project's UNet: same NFE, same initial noise,
  runs alternating.

`--app` also starts `python app.py` on the same checkpoints and times, through gradio_client, how
long the page takes to answer, the text-to-image tab's first and second result at its defaults
(2 images, 128 px), the class tab at its defaults (8 samples, 32 px) and a 4x upscale.

`--before PATH` adds another checkout's whole-process, import and listing times (its own
`python -m core`, its own checkpoints unless --checkpoints is given), e.g. the code before the
start-up work. Threads: as the command line sets them (`core.cascade.set_cpu_threads`: the idle
cores, or OMP_NUM_THREADS when set). Times are wall-clock: measure on an idle machine.

    python scripts/bench_generate.py [--prompt "red apple"] [--seed 0] [--runs 3] [--reps 3]
                                     [--bases pixel,semantic] [--before /path/to/checkout]
                                     [--checkpoints DIR] [--app] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASES = ("pixel", "semantic")
SIZE = 128
# the networks of each base's cascade, in the order generate calls them (the text encoder first)
STAGES = {"pixel": ("text encoder", "text_base", "sr64", "sr128"),
          "semantic": ("text encoder", "prior", "diffae", "sr64", "sr128")}
STAGE_NAMES = {"text encoder": "text encoder", "text_base": "text base 32 px", "prior": "prior (z_sem)",
               "diffae": "DiffAE decoder 32 px", "sr64": "SR 64 px", "sr128": "SR 128 px"}
_IMPORT_LINE = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)\s*$")


# ---- whole processes --------------------------------------------------------------------------------
def _env(checkout: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(checkout)}


def has_base_option(checkout: Path) -> bool:
    """Whether the checkout's command line knows --base (the code before the semantic base did not)."""
    sources = [checkout / "core" / "__main__.py", *sorted((checkout / "core" / "cli").glob("*.py")),
               checkout / "core" / "capabilities.py"]   # the options built from capability specs
    return any('"--base"' in f.read_text() for f in sources if f.is_file())


def generate_command(checkout: Path, args, base: str | None, seed: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "core", "generate", "--prompt", args.prompt, "--num", "1", "--size", str(SIZE),
           "--seed", str(seed), "--out", str(out)]
    if base is not None and has_base_option(checkout):
        cmd += ["--base", base]
    if args.checkpoints:
        cmd += ["--checkpoints", str(args.checkpoints)]
    return cmd


def timed_process(cmd: list[str], checkout: Path) -> float:
    """Wall-clock seconds of one process, start to exit."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, env=_env(checkout), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {checkout}) failed with exit code {proc.returncode}:\n"
                           f"{proc.stderr.strip()[-2000:]}")
    return seconds


def import_seconds(cmd: list[str], checkout: Path) -> dict:
    """{total, torch}: the seconds the process spends importing, from `python -X importtime`
    (the cumulative time of each level-0 import, summed; torch's cumulative time, wherever it is
    first imported)."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=checkout, env=_env(checkout),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} with -X importtime failed:\n{proc.stderr.strip()[-2000:]}")
    total = torch_us = 0
    for line in proc.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m and len(m.group(3)) == 1:   # level 0: one space before the name, two more per level
            total += int(m.group(2))
        if m and m.group(4) == "torch":   # at whatever level it is first imported
            torch_us = int(m.group(2))
    return {"total": total / 1e6, "torch": torch_us / 1e6}


def process_figures(settings: list[tuple[Path, str | None]], args, tmp: Path) -> list[dict]:
    """Whole-process seconds (each run and the median) and import seconds of each (checkout, base);
    run k of every setting before run k + 1 of any, so that a change in the machine's load falls
    on all of them alike."""
    runs: list[list[float]] = [[] for _ in settings]
    for k in range(args.runs):
        for i, (checkout, base) in enumerate(settings):
            out = tmp / f"{i}-{k}"
            runs[i].append(timed_process(generate_command(checkout, args, base, args.seed + k, out), checkout))
    return [{"whole_process": statistics.median(r), "whole_process_runs": r,
             "imports": import_seconds(generate_command(checkout, args, base, args.seed, tmp / f"{i}-imports"),
                                       checkout)}
            for i, ((checkout, base), r) in enumerate(zip(settings, runs))]


def listing_figures(checkouts: list[Path], args) -> list[dict]:
    """Median whole-process seconds of `python -m core classes` and `python -m core --help` per
    checkout (interleaved, as `process_figures`)."""
    commands = {"classes": ["classes"] + (["--checkpoints", str(args.checkpoints)] if args.checkpoints else []),
                "help": ["--help"]}
    times = [{name: [] for name in commands} for _ in checkouts]
    for _ in range(args.runs):
        for i, checkout in enumerate(checkouts):
            for name, argv in commands.items():
                times[i][name].append(timed_process([sys.executable, "-m", "core", *argv], checkout))
    return [{name: statistics.median(t) for name, t in per.items()} for per in times]


# ---- in this process ----------------------------------------------------------------------------
class StageClock:
    """Times every network call of the models of one cascade: wraps each model's `eps` (and the
    text encoder's `encode`) on the instance, recording (name, start, end) per call."""

    def __init__(self):
        self.calls: list[tuple[str, float, float]] = []

    def watch(self, name: str, model, method: str = "eps") -> None:
        inner = getattr(model, method)

        def timed(*a, **kw):
            start = time.perf_counter()
            out = inner(*a, **kw)
            self.calls.append((name, start, time.perf_counter()))
            return out
        setattr(model, method, timed)   # an instance attribute: shadows the method for this object only

    def stages(self, order: tuple[str, ...], start: float, end: float) -> dict[str, dict]:
        """{stage: {seconds, network, nfe}} of one run between start and end."""
        out, previous = {}, start
        for i, name in enumerate(order):
            calls = [(s, e) for n, s, e in self.calls if n == name and s >= start]
            if not calls:
                continue
            stage_end = end if i == len(order) - 1 else max(e for _, e in calls)
            out[name] = {"seconds": stage_end - previous, "network": sum(e - s for s, e in calls), "nfe": len(calls)}
            previous = stage_end
        return out


def in_process_figures(args, base: str) -> dict:
    """Load time, per-stage seconds / NFE and per-image seconds of one base in this process."""
    from core.cascade import ModelSet, generate

    models = ModelSet(args.checkpoints, "cpu")
    start = time.perf_counter()
    first = models.get(STAGES[base][1])   # the text base or the prior: it names its text encoder
    encoder = models.get(first.config.text_encoder or "clip")
    for name in STAGES[base][2:]:
        models.get(name)
    load = time.perf_counter() - start

    clock = StageClock()
    clock.watch("text encoder", encoder, "encode")
    for name in STAGES[base][1:]:
        clock.watch(name, models.get(name))

    def one(seed: int):
        t0 = time.perf_counter()
        generate(models, prompt=args.prompt, num=1, seed=seed, size=SIZE, base_model=base)
        t1 = time.perf_counter()
        return t1 - t0, clock.stages(STAGES[base], t0, t1)

    one(args.seed)   # warm-up: first calls set up oneDNN's kernels
    runs = [one(args.seed + k) for k in range(args.reps)]
    stages = {name: {key: statistics.median(r[1][name][key] for r in runs) for key in ("seconds", "network", "nfe")}
              for name in runs[0][1]}
    return {"load": load, "per_image": statistics.median(r[0] for r in runs),
            "per_image_runs": [r[0] for r in runs], "stages": stages}


def diffusers_scheduler(model, settings):
    """diffusers' scheduler for a stage's settings on the model's own betas and prediction."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    from core.pipeline import stage_spacing
    prediction = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[model.config.prediction]
    common = dict(num_train_timesteps=model.schedule.T, trained_betas=model.schedule.betas.float().numpy(),
                  prediction_type=prediction, timestep_spacing=stage_spacing(settings),
                  thresholding=settings.threshold is not None,
                  dynamic_thresholding_ratio=settings.threshold or 0.995, sample_max_value=settings.threshold_max)
    if settings.sampler == "dpmpp-2m":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **common)
    if settings.sampler == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=True, **common)
    raise ValueError(f"no diffusers loop here for sampler {settings.sampler!r} (dpmpp-2m or ddim)")


def diffusers_figures(args) -> dict:
    """The text base's 32 px sampling at the pipeline's defaults (guidance 3, so both run the
    conditional and unconditional halves): ours (`sample_stage`, core.unet) against diffusers'
    scheduler loop around diffusers' UNet with the same weights."""
    import torch

    from core.diffusion.rng import BatchGenerator
    from core.models.loading import load_model
    from core.models.modelset import ModelSet
    from core.pipeline import BASE_DEFAULTS, sample_stage

    models = ModelSet(args.checkpoints, "cpu")
    ours, encoder = models.get("text_base"), models.text_encoder()
    theirs = load_model(Path(models.root) / "text_base", "cpu", network="diffusers")
    settings = BASE_DEFAULTS
    emb, neg = encoder.encode([args.prompt]), encoder.encode([""])
    cond, uncond = emb.as_cond(), neg.as_cond()
    seeds = [args.seed]

    def run_ours():
        return sample_stage(ours, cond, uncond, seeds, settings)

    both_cond = {k: torch.cat([uncond[k], cond[k]]) for k in cond}   # whatever the base's conditioning reads
    calls = [0]

    def run_diffusers():
        scheduler = diffusers_scheduler(theirs, settings)
        scheduler.set_timesteps(settings.steps)
        r = ours.resolution
        x = BatchGenerator([s * 1009 for s in seeds], "cpu").randn((1, 3, r, r)) * scheduler.init_noise_sigma
        with torch.inference_mode():
            for t in scheduler.timesteps:
                both = scheduler.scale_model_input(torch.cat([x, x]), t)
                out = theirs(both, t, both_cond)   # diffusers' UNet inside the same DiffusionModel
                calls[0] += 1
                u, c = out.chunk(2)
                x = scheduler.step(u + settings.guidance * (c - u), t, x).prev_sample
        return x.clamp(-1, 1)

    clock = StageClock()
    clock.watch("ours", ours)
    run_ours(), run_diffusers()   # warm-up
    times: dict = {"ours": [], "diffusers": []}
    for _ in range(args.reps):   # alternating, so that a change in the machine's load falls on both
        for name, fn in (("ours", run_ours), ("diffusers", run_diffusers)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    ours_s, diffusers_s = statistics.median(times["ours"]), statistics.median(times["diffusers"])
    nfe_ours, nfe_diffusers = len(clock.calls) // (args.reps + 1), calls[0] // (args.reps + 1)
    gap = float((run_ours() - run_diffusers()).abs().max())
    return {"sampler": settings.sampler, "steps": settings.steps, "guidance": settings.guidance,
            "nfe_ours": nfe_ours, "nfe_diffusers": nfe_diffusers, "ours": ours_s, "diffusers": diffusers_s,
            "ratio": ours_s / diffusers_s, "max_abs_difference": gap}


# ---- the app ------------------------------------------------------------------------------------
def app_figures(args) -> dict:
    """Seconds until `python app.py` answers, and of the text-to-image tab's first and second result
    at its defaults (the prompt aside), called through gradio_client."""
    import socket
    import urllib.error
    import urllib.request

    from gradio_client import Client
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)]
    if args.checkpoints:
        cmd += ["--checkpoints", str(args.checkpoints)]
    env = {**_env(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    with tempfile.TemporaryDirectory() as tmp:
        log = open(Path(tmp) / "app.log", "w")
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}:\n{(Path(tmp) / 'app.log').read_text()}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.perf_counter() - start > 600:
                    raise RuntimeError("app.py did not answer within 600 s")
                time.sleep(0.1)
            answered = time.perf_counter() - start
            from gradio_client import handle_file
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=tmp)
            results = []
            for k in range(2):
                t = time.perf_counter()
                first = client.predict(prompt=args.prompt, seed=args.seed + k, api_name="/text_to_image")
                results.append(time.perf_counter() - t)
            t = time.perf_counter()   # the class tab at its defaults: 8 samples at 32 px
            client.predict(label=args.label, api_name="/class_conditional")
            results.append(time.perf_counter() - t)
            t = time.perf_counter()   # a 4x upscale (32 -> 64 -> 128) of the 32 px stage just drawn
            client.predict(image=handle_file(first[0]), factor=4, api_name="/upscale")
            results.append(time.perf_counter() - t)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    return {"page_answers": answered, "first_result": results[0], "second_result": results[1],
            "class_grid": results[2], "upscale_4x": results[3]}


# ---- report -------------------------------------------------------------------------------------
def _s(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(results: dict) -> list[str]:
    cols = list(results["columns"])
    width = max(22, *(len(c) + 2 for c in cols))
    lines = [f"bench_generate: prompt {results['prompt']!r}, {SIZE} px, 1 image, torch threads "
             f"{results['threads']}, load average {results['load_average']:.2f} at the start, "
             f"{results['runs']} process runs, {results['reps']} in-process runs after one warm-up",
             f"{'':<44}" + "".join(f"{c:>{width}}" for c in cols)]

    def row(label: str, values) -> None:
        lines.append(f"{label:<44}" + "".join(f"{v:>{width}}" for v in values))

    col = results["columns"]
    row("whole process, median (s)", [_s(col[c].get("whole_process")) for c in cols])
    row("  runs (s)", [" ".join(_s(v, 1) for v in col[c].get("whole_process_runs", [])) or "-" for c in cols])
    row("imports in that process (s)", [_s(col[c].get("imports", {}).get("total")) for c in cols])
    row("  of which torch (s)", [_s(col[c].get("imports", {}).get("torch")) for c in cols])
    row("model load, in-process (s)", [_s(col[c].get("load")) for c in cols])
    stages = [s for s in STAGE_NAMES if any(s in col[c].get("stages", {}) for c in cols)]
    for stage in stages:
        row(f"{STAGE_NAMES[stage]}: s (network s) / NFE",
            [(lambda f: f"{f['seconds']:.3f} ({f['network']:.3f}) / {f['nfe']:g}" if f else "-")(
                col[c].get("stages", {}).get(stage)) for c in cols])
    row("per image in-process after warm-up (s)", [_s(col[c].get("per_image"), 3) for c in cols])
    row("python -m core classes (s)", [_s(col[c].get("listing", {}).get("classes")) for c in cols])
    row("python -m core --help (s)", [_s(col[c].get("listing", {}).get("help")) for c in cols])
    a = results.get("app")
    if a:
        lines += ["", "python app.py (s):",
                  f"  page answers after                                {a['page_answers']:.1f}",
                  f"  text-to-image at its defaults (2 x 128 px): first {a['first_result']:.1f}, second "
                  f"{a['second_result']:.1f}",
                  f"  class tab at its defaults (8 x 32 px, {results['label']})  {a['class_grid']:.1f}",
                  f"  4x upscale of a 32 px image                       {a['upscale_4x']:.1f}"]
    d = results.get("diffusers")
    if d:
        lines += ["", f"text base, 32 px, {d['sampler']} {d['steps']} steps, guidance {d['guidance']:g} (median s):",
                  f"  ours (core.pipeline.sample_stage, core.unet)      {d['ours']:.3f}  NFE {d['nfe_ours']}",
                  f"  diffusers scheduler loop + UNet2DConditionModel   {d['diffusers']:.3f}  NFE {d['nfe_diffusers']}",
                  f"  ratio ours / diffusers                            {d['ratio']:.2f}",
                  f"  max |ours - diffusers| of the 32 px image         {d['max_abs_difference']:.2g}"]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompt", default="red apple")
    p.add_argument("--label", default="cat-face", help="the class of the app's class tab (--app)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=3, help="whole-process runs per setting (median)")
    p.add_argument("--reps", type=int, default=3, help="in-process runs after one warm-up (median)")
    p.add_argument("--bases", default=",".join(BASES), help="comma-separated: pixel, semantic")
    p.add_argument("--checkpoints", default=None, help="checkpoints folder (default: each checkout's ./checkpoints)")
    p.add_argument("--before", type=Path, help="another checkout to time from outside (whole process, imports)")
    p.add_argument("--no-diffusers", action="store_true", help="leave out the diffusers loop")
    p.add_argument("--app", action="store_true", help="also time python app.py and its text-to-image tab")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    bad = [b for b in bases if b not in BASES]
    if bad or not bases:
        p.error(f"--bases takes {', '.join(BASES)}; got {args.bases!r}")
    if args.runs < 1 or args.reps < 1:
        p.error("--runs and --reps must be at least 1")
    if args.before is not None and not (args.before / "core" / "__main__.py").is_file():
        p.error(f"--before {args.before}: no core/__main__.py there")
    if args.checkpoints:
        args.checkpoints = str(Path(args.checkpoints).resolve())

    import torch

    from core.models.modelset import set_cpu_threads
    results = {"prompt": args.prompt, "label": args.label, "runs": args.runs, "reps": args.reps,
               "load_average": os.getloadavg()[0],
               "threads": set_cpu_threads(), "columns": {}}
    settings = [(REPO, base) for base in bases]
    checkouts = [REPO]
    if args.before is not None:
        before = args.before.resolve()
        settings.append((before, "pixel" if has_base_option(before) else None))
        checkouts.append(before)
    names = [*bases, f"before ({settings[-1][1] or 'its default'})"][:len(settings)]
    with tempfile.TemporaryDirectory() as tmp:
        processes = process_figures(settings, args, Path(tmp))
    listings = listing_figures(checkouts, args)
    for i, (name, col) in enumerate(zip(names, processes)):
        col["listing"] = listings[min(i, len(checkouts) - 1) if i >= len(bases) else 0]
        if i < len(bases):   # this checkout's bases: also timed in this process
            col.update(in_process_figures(args, name))
        results["columns"][name] = col
    if not args.no_diffusers:
        results["diffusers"] = diffusers_figures(args)
    if args.app:
        results["app"] = app_figures(args)
    results["torch"] = torch.__version__
    print("\n".join(report(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
