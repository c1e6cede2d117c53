"""GPU check of DeepFloyd IF through our core (not a test): loads T5 + stage I + stage II, then
for one prompt times the T5 encoding, stage I and stage II (after a CUDA synchronize) and prints
each phase's peak GPU memory (torch.cuda.max_memory_allocated). `--repeat 2` runs the prompt
twice, so the second line shows the time without torch.compile's first-call compilation.

    HF_TOKEN=hf_... python scripts/gpu_check_deepfloyd.py [--dtype float16] [--offload] [--t5-8bit]
        [--compile] [--steps 100] [--sr-steps 50] [--sampler ddpm] [--repeat 1] [--out DIR]

Needs a CUDA GPU and the weights (the gated Hub repos DeepFloyd/IF-I-XL-v1.0 and
DeepFloyd/IF-II-L-v1.0, or local copies via --stage-1 / --stage-2). `--device cpu` runs the same
on the CPU, for trying the script with small local folders.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.deepfloyd import DTYPES, IF_I_DEFAULTS, IF_II_DEFAULTS, IF_STAGE_I, IF_STAGE_II, DeepFloydIF  # noqa: E402
from core.diffusion.rng import BatchGenerator  # noqa: E402
from core.models.checkpoints import CheckpointError  # noqa: E402

PEAKS: list[float] = []  # GiB, one per phase


def phase(name: str, device: torch.device, fn):
    """Run fn, print its wall time and (on CUDA) its peak memory; return its result and the time."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = ""
    if device.type == "cuda":
        PEAKS.append(torch.cuda.max_memory_allocated() / 2**30)
        peak = f", peak {PEAKS[-1]:.2f} GiB allocated"
    print(f"  {name:<10} {seconds:8.2f} s{peak}", flush=True)
    return out, seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage-1", default=IF_STAGE_I)
    p.add_argument("--stage-2", default=IF_STAGE_II)
    p.add_argument("--prompt", default="a photo of a corgi wearing a red scarf, sitting in the snow")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--dtype", choices=list(DTYPES), help="default: float16 on the GPU")
    p.add_argument("--offload", action="store_true")
    p.add_argument("--t5-8bit", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--sampler", default="ddpm")
    p.add_argument("--steps", type=int, default=IF_I_DEFAULTS.steps)
    p.add_argument("--sr-steps", type=int, default=IF_II_DEFAULTS.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", help="folder for the stage I and stage II images")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here (--device cpu runs the check on the CPU)", file=sys.stderr)
        return 2
    try:
        model, load_s = phase("load", device, lambda: DeepFloydIF.from_pretrained(
            args.stage_1, args.stage_2, device=args.device, dtype=args.dtype, offload=args.offload,
            t5_8bit=args.t5_8bit, compile=args.compile))
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s1 = replace(IF_I_DEFAULTS, sampler=args.sampler, steps=args.steps)
    s2 = replace(IF_II_DEFAULTS, sampler=args.sampler, steps=args.sr_steps)
    dtype = model.stage_1.dtype
    print(f"DeepFloyd IF on {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}: {dtype}, "
          f"offload={model.offload}, t5_8bit={args.t5_8bit}, compile={args.compile}, {args.sampler} "
          f"{args.steps} + {args.sr_steps} steps")
    for run in range(args.repeat):
        print(f"run {run + 1}:")
        states, t_enc = phase("T5", device, lambda: model.encode([args.prompt, ""]))
        gen = BatchGenerator([args.seed])
        # partial binds this run's states, gen and low (phase calls it at once)
        low, t1 = phase("stage I", device, partial(model.sample_stage_1, states[:1], states[1:], gen, s1))
        high, t2 = phase("stage II", device, partial(model.sample_stage_2, low, states[:1], states[1:], gen, s2))
        print(f"  total      {t_enc + t1 + t2:8.2f} s (load {load_s:.1f} s)")
    if PEAKS:
        print(f"peak GPU memory: {max(PEAKS):.2f} GiB allocated (torch.cuda.max_memory_allocated, "
              f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB on the device)")
    if args.out:
        from core.images import save_png, tensor_to_pil
        for name, x in (("stage1", low), ("stage2", high)):
            path = save_png(tensor_to_pil(x)[0], Path(args.out) / f"{name}.png", {"prompt": args.prompt})
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
