"""What the DiffAE decoder's classifier-free guidance costs: seconds per 128 px image of the whole
cascade in-process (`core.cascade.generate`, semantic base, models loaded, after a warm-up), with
the decoder unguided (1) and at the scale its checkpoint names, runs interleaved so a change in
the machine's load falls on both alike; prints the medians and their ratio.

    python scripts/bench_decoder_guidance.py [--checkpoints checkpoints] [--reps 5] [--prompt "red apple"]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cascade import generate  # noqa: E402
from core.diffae import fresh_noise_guidance  # noqa: E402
from core.models.modelset import ModelSet, set_cpu_threads  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--prompt", default="red apple")
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    threads = set_cpu_threads()
    models = ModelSet(a.checkpoints, "auto")
    named = fresh_noise_guidance(models.get("diffae"))
    scales = {"unguided (1)": 1.0, f"checkpoint's ({named:g})": named}
    times: dict[str, list[float]] = {k: [] for k in scales}
    for rep in range(a.reps + 1):   # the first round warms up
        for name, scale in scales.items():
            start = time.perf_counter()
            generate(models, prompt=a.prompt, size=128, seed=rep, base_model="semantic", decoder_guidance=scale)
            if rep:
                times[name].append(time.perf_counter() - start)
    print(f"one 128 px image through the semantic base, in-process, {threads} threads on {models.device}, "
          f"median of {a.reps}")
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, seconds in medians.items():
        print(f"| decoder guidance {name} | {seconds:.3f} s |")
    first, second = medians.values()
    print(f"ratio: {second / first:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
