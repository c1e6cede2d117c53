"""`deepfloyd`: text-to-image with DeepFloyd IF's stage I and II (`core.deepfloyd`) through this hub's
samplers and guidance."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from core.cli import seed
from core.deepfloyd import DTYPES, IF_I_DEFAULTS, IF_II_DEFAULTS, IF_STAGE_I, IF_STAGE_II, DeepFloydIF
from core.images import save_png, tensor_to_pil


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("deepfloyd", help="text-to-image with DeepFloyd IF (stage I 64x64, stage II 256x256)",
                       parents=[models])
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--stage-1", default=IF_STAGE_I, help=f"folder or Hub repo id (default {IF_STAGE_I})")
    p.add_argument("--stage-2", default=IF_STAGE_II, help=f"folder or Hub repo id, or 'none' (default {IF_STAGE_II})")
    p.add_argument("--size", type=int, help="stop at this stage's size (64 or 256 for IF; default: the last)")
    p.add_argument("--sampler", default=IF_I_DEFAULTS.sampler, help="every stage (default ddpm)")
    p.add_argument("--steps", type=int, default=IF_I_DEFAULTS.steps)
    p.add_argument("--guidance", type=float, default=IF_I_DEFAULTS.guidance)
    p.add_argument("--sr-steps", type=int, default=IF_II_DEFAULTS.steps)
    p.add_argument("--sr-guidance", type=float, default=IF_II_DEFAULTS.guidance)
    p.add_argument("--sr-noise", type=int, default=IF_II_DEFAULTS.aug_level, help="stage II noise level (0-999)")
    p.add_argument("--no-threshold", action="store_true", help="turn dynamic thresholding off")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--num", type=int, default=1)
    p.add_argument("--dtype", choices=list(DTYPES), help="default: float16 on a GPU, float32 on the CPU")
    p.add_argument("--offload", action="store_true", help="move each model to the GPU only while it runs")
    p.add_argument("--t5-8bit", action="store_true", help="T5 in 8-bit (bitsandbytes, GPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNets")
    p.add_argument("--out", required=True, help="folder; writes 000.png, 001.png, ...")
    p.set_defaults(handler=run, out_kind="folder")


def run(args: argparse.Namespace) -> None:
    """IF runs on --device (auto: a CUDA GPU); --checkpoints is not used (IF's weights are --stage-1 / --stage-2)."""
    out = Path(args.out)
    threshold = None if args.no_threshold else IF_I_DEFAULTS.threshold
    s1 = replace(IF_I_DEFAULTS, sampler=args.sampler, steps=args.steps, guidance=args.guidance, threshold=threshold)
    s2 = replace(IF_II_DEFAULTS, sampler=args.sampler, steps=args.sr_steps, guidance=args.sr_guidance,
                 threshold=threshold, aug_level=args.sr_noise)
    stage_2 = None if args.stage_2.lower() == "none" else args.stage_2
    model = DeepFloydIF.from_pretrained(args.stage_1, stage_2, device=args.device, dtype=args.dtype,
                                        offload=args.offload, t5_8bit=args.t5_8bit, compile=args.compile)
    result = model.generate(args.prompt, args.negative_prompt, num=args.num, seed=args.seed, size=args.size,
                            stage_1=s1, stage_2=s2)
    for i, image in enumerate(tensor_to_pil(result.final)):
        save_png(image, out / f"{i:03d}.png", {**result.parameters, "seed": args.seed + i, "command": "deepfloyd"})
    print(f"wrote {len(result.final)} image(s) to {out}")
