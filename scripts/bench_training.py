"""Training throughput per model and option, measured side by side in one run (issue 10).

For each kind: the training step of `python -m core train` (loss, backward, clip, AdamW) in
fp32 eager, with channels-last, with bf16 autocast and with torch.compile; prints seconds per
step and the ratio to fp32 eager. CPU time of this process (one thread) is the figure on a CPU,
so other processes on the machine change it little; on CUDA it is wall time.

    python scripts/bench_training.py [--kinds class_base,sr64] [--steps 5] [--batch 16] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.training.registry import (
    default_config,  # noqa: E402
    make_task,  # noqa: E402
)

VARIANTS = {"fp32 eager": {}, "channels-last": {"channels_last": True}, "bf16 autocast": {"precision": "bf16"},
            "torch.compile": {"compile": True},
            # not a speed option: the text base started from the DiffAE decoder, whose step costs otherwise
            "pooled text": {"text_conditioning": "pooled"}}
ONLY_FOR = {"pooled text": "text_base"}


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def seconds_per_step(kind: str, options: dict, steps: int, batch: int, warmup: int,
                     device: torch.device) -> tuple[float, float]:
    """(seconds per step, seconds of the warm-up steps, which include compilation)."""
    with tempfile.TemporaryDirectory() as run:
        cfg = default_config(kind, run, batch=batch, **options)
        torch.manual_seed(0)
        task = make_task(cfg)
        model = task.build().to(device)
        if cfg.run.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg.run.compile:
            model.compile()
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
        gen = torch.Generator().manual_seed(0)

        def one_step():
            loss = task.loss(model, gen, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()

        t0 = clock(device)
        for _ in range(warmup):
            one_step()
        t1 = clock(device)
        for _ in range(steps):
            one_step()
        return (clock(device) - t1) / steps, t1 - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default="class_base,text_base,sr64,palette,diffae")
    p.add_argument("--variants", default=",".join(v for v in VARIANTS if v not in ONLY_FOR))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    variants = [v.strip() for v in a.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    what = "CPU time of this process" if device.type == "cpu" else "wall time"
    print(f"batch {a.batch}, {a.steps} timed steps after {a.warmup} warm-up steps, {device}, "
          f"{a.threads} thread(s), {what}, torch {torch.__version__}")
    print(f"{'kind':<11} {'variant':<14} {'s/step':>8} {'vs fp32':>8} {'warm-up s':>10}")
    for kind in a.kinds.split(","):
        base = None
        for name in variants:
            if ONLY_FOR.get(name, kind) != kind:
                continue
            try:
                per_step, warm = seconds_per_step(kind, VARIANTS[name], a.steps, a.batch, a.warmup, device)
            except Exception as e:  # a variant that does not run here (e.g. no compiler) is reported, not fatal
                print(f"{kind:<11} {name:<14} failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
                continue
            base = per_step if name == "fp32 eager" else base
            ratio = f"{per_step / base:.2f}" if base else "-"
            print(f"{kind:<11} {name:<14} {per_step:8.3f} {ratio:>8} {warm:10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
