"""Two versions of the SR stages side by side on held-out emoji: the chain 32 -> 64 -> 128 as
the cascade runs it (`core.cascade.upscale_chain` at SR_STAGE_DEFAULTS), from the real 32 px image,
with the same seeds for both.

    python scripts/compare_sr.py OLD_ROOT NEW_ROOT [--n 32] [--grid FILE --columns 8]

OLD_ROOT and NEW_ROOT are checkpoints roots, each with sr64 and sr128. Prints PSNR / SSIM against
the real 128 px image for bicubic 32 -> 128 and for each version; with --grid, writes a PNG whose
rows are bicubic, the old chain, the new chain and the real image, for the first --columns emoji
(faces and objects alike: the held-out order of the evaluation).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cascade import upscale_chain  # noqa: E402
from core.data.emoji import load_dataset  # noqa: E402
from core.evaluation.held_out import heldout_order  # noqa: E402
from core.images import save_grid  # noqa: E402
from core.metrics import psnr, ssim, to_unit  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.pipeline import SR_STAGE_DEFAULTS  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="checkpoints root of the version before")
    p.add_argument("new", help="checkpoints root of the version after")
    p.add_argument("--n", type=int, default=32, help="held-out emoji")
    p.add_argument("--grid", help="write the comparison grid (PNG) here")
    p.add_argument("--columns", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_dataset()
    idx = heldout_order(data, 0)[: a.n]
    low, high = data.images_at(32, idx), data.images_at(128, idx)
    bicubic = F.interpolate(low, size=128, mode="bicubic", align_corners=False).clamp(-1, 1)
    rows = {"bicubic": bicubic}
    for name, root in (("old", a.old), ("new", a.new)):
        models = ModelSet(root, "cpu")
        rows[name] = upscale_chain([models.get("sr64"), models.get("sr128")], low, list(range(a.n)),
                                   list(SR_STAGE_DEFAULTS))[128].cpu()
    target = to_unit(high)
    print(f"32 -> 128 on {a.n} held-out emoji (cascade settings: "
          f"{' / '.join(str(s.steps) for s in SR_STAGE_DEFAULTS)} {SR_STAGE_DEFAULTS[0].sampler} steps, "
          f"aug {SR_STAGE_DEFAULTS[0].aug_level})")
    print("| images | PSNR | SSIM |\n| --- | --- | --- |")
    for name, images in rows.items():
        print(f"| {name} | {psnr(to_unit(images), target).mean():.2f} | {ssim(to_unit(images), target).mean():.3f} |")
    if a.grid:
        c = min(a.columns, a.n)
        save_grid(torch.cat([rows["bicubic"][:c], rows["old"][:c], rows["new"][:c], high[:c]]), a.grid, columns=c)
        print(f"grid: {a.grid} (rows: bicubic, old chain, new chain, real)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
