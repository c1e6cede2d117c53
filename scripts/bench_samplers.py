"""Sampler overhead: each sampler at 25 steps on a small seeded diffusers UNet2DModel on CPU, as
time over the time of the same number of bare UNet forwards (NFE: 25, or 49 for Heun, whose
25 steps make 2 calls each but the last). Beside it, the same ratio for the matching diffusers
scheduler loop (scale_model_input, UNet, step) with the same NFE. Each time is the minimum over
--reps interleaved repeats, single-threaded, under inference_mode. Time is the process CPU time
(time.process_time): with one thread it equals wall time on an idle machine, and it leaves out the
time spent waiting while other processes hold the cores (--wall to measure wall time instead).

Ratios on a shared machine still carry a few percent of noise, so the loop overhead is also
measured on its own: the same loops with a stub network that returns a fixed tensor (min of 20
runs), in milliseconds per model call and as the ratio it implies, 1 + overhead / forward.

    python scripts/bench_samplers.py [--batch 4] [--steps 25] [--reps 3] [--wall]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UNet2DModel,
)

from core.diffusion import samplers  # noqa: E402
from core.diffusion.schedules import make_schedule  # noqa: E402

# sampler -> (matching diffusers scheduler, its step kwargs)
REFERENCE = {
    "ddpm": (lambda: DDPMScheduler(clip_sample=False), {}),
    "ddim": (lambda: DDIMScheduler(clip_sample=False), {}),
    "euler": (EulerDiscreteScheduler, {}),
    "heun": (lambda: HeunDiscreteScheduler(beta_start=1e-4, beta_end=0.02), {}),
    "euler-maruyama": (None, {}),
    "dpmpp-2m": (DPMSolverMultistepScheduler, {}),
}


def small_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8).eval()


CLOCK = time.process_time


def timed(fn) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of process CPU time")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.process_time
    torch.set_num_threads(1)
    unet, schedule = small_unet(), make_schedule("linear")
    x = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t_batch = torch.full((args.batch,), 500.0)

    def denoiser(x_t, t):
        return unet(x_t, t).sample

    def nfe_of(name: str) -> int:
        calls = [0]

        def counting(x_t, t):
            calls[0] += 1
            return x_t
        samplers.sample(name, counting, x, schedule, args.steps, generator=torch.Generator().manual_seed(1))
        return calls[0]

    def bare(n: int) -> None:
        for _ in range(n):
            unet(x, t_batch)  # only the forward pass is timed; its output is dropped

    fixed = unet(x, t_batch).sample.detach()

    def stub(x_t, t):
        return fixed

    def ours(name: str, model=denoiser) -> None:
        samplers.sample(name, model, x, schedule, args.steps, generator=torch.Generator().manual_seed(1))

    def reference(name: str, model=denoiser) -> None:
        make, step_kwargs = REFERENCE[name]
        scheduler = make()
        scheduler.set_timesteps(args.steps)
        gen = torch.Generator().manual_seed(1)
        sample = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(sample, t), t)
            kwargs = {"generator": gen} if isinstance(scheduler, (DDPMScheduler, DDIMScheduler)) else {}
            sample = scheduler.step(eps, t, sample, **kwargs, **step_kwargs).prev_sample

    names = list(samplers.SAMPLERS)
    nfe = {name: nfe_of(name) for name in names}
    best: dict[tuple[str, str], float] = {}
    with torch.inference_mode():
        bare(3)  # warm up
        for _ in range(args.reps):
            for name in names:
                # the closures run in this iteration (timed below); name is bound to make that explicit
                runs = {"bare": lambda name=name: bare(nfe[name]), "ours": lambda name=name: ours(name)}
                if REFERENCE[name][0] is not None:
                    runs["diffusers"] = lambda name=name: reference(name)
                for kind, fn in runs.items():
                    t = timed(fn)
                    best[name, kind] = min(best.get((name, kind), float("inf")), t)
        for name in names:
            for _ in range(20):
                t = timed(lambda name=name: ours(name, stub))
                best[name, "ours-loop"] = min(best.get((name, "ours-loop"), float("inf")), t)
                if REFERENCE[name][0] is not None:
                    t = timed(lambda name=name: reference(name, stub))
                    best[name, "diffusers-loop"] = min(best.get((name, "diffusers-loop"), float("inf")), t)

    print(f"UNet2DModel 32x32, channels (32, 64), batch {args.batch}, {args.steps} steps, CPU, 1 thread, "
          f"min of {args.reps} runs of {'wall' if args.wall else 'process CPU'} time; "
          "ratio = time / time of NFE bare UNet forwards")
    header = (f"{'sampler':<15} {'NFE':>4} {'bare s':>7} {'ours s':>7} {'ours/bare':>9} {'diffusers s':>11} "
              f"{'diff/bare':>9} | {'loop ms/call ours':>17} {'diffusers':>9} | {'implied ours':>12} {'diffusers':>9}")
    print(header)
    print("-" * len(header))
    for name in names:
        n, b, o = nfe[name], best[name, "bare"], best[name, "ours"]
        forward, lo = b / n, best[name, "ours-loop"] / n
        d, ld = best.get((name, "diffusers")), best.get((name, "diffusers-loop"))
        ref = f"{d:>11.3f} {d / b:>9.3f}" if d is not None else f"{'-':>11} {'-':>9}"
        ref_loop = f"{ld / n * 1e3:>9.3f}" if ld is not None else f"{'-':>9}"
        ref_implied = f"{1 + ld / n / forward:>9.4f}" if ld is not None else f"{'-':>9}"
        print(f"{name:<15} {n:>4} {b:>7.3f} {o:>7.3f} {o / b:>9.3f} {ref} | {lo * 1e3:>17.3f} {ref_loop} | "
              f"{1 + lo / forward:>12.4f} {ref_implied}")


if __name__ == "__main__":
    main()
