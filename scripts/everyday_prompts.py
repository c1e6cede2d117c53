"""Everyday prompts ("a cat", "a blue car", "bananas", ...) scored with the judge: the share of
samples with an acceptable emoji among the 5 real emoji nearest to them
(`core.evaluation.everyday`), at the app's defaults for the semantic base.

    python scripts/everyday_prompts.py [--checkpoints checkpoints] [--size 32|128] [--seeds 0,1]
                                       [--prompt-reading nearest|as-typed] [--prompts FILE] [--base semantic|pixel]
                                       [--grid out.png] [--json out.json]

--size 32 scores the semantic base's own image (the prior's code drawn by the DiffAE decoder):
the judge looks at 32 px, so this is what it measures and it is quick. --size 128 runs the whole
cascade (SR 64, SR 128) as the app does and the judge reads the 128 px image area-downsampled to
32 px: what a person sees. --prompt-reading: what the base is conditioned on (`core.reading`:
"nearest", the default, the name of the known emoji a prompt is read as when it has a word to go
by; "as-typed" the prompt itself). --base pixel: the pixel text base instead, through the cascade
(`core.cascade.generate`) at --size.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.emoji import load_dataset  # noqa: E402
from core.evaluation.everyday import everyday_grid, format_everyday, load_everyday, score_everyday  # noqa: E402
from core.evaluation.judge import Judge  # noqa: E402
from core.evaluation.scorecard import cascade_sampler, semantic_sampler  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.reading import DEFAULT_PROMPT_READING, PROMPT_READINGS, nearest_prompt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--size", type=int, choices=(32, 128), default=32,
                   help="32: the semantic base's image (default); 128: the whole cascade, as the app")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds per prompt (default 0,1)")
    p.add_argument("--prompts", default=None, help="a prompts JSON file (default: the committed everyday prompts)")
    p.add_argument("--grid", default=None, help="write a labelled grid of the samples here (PNG)")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--prompt-reading", choices=PROMPT_READINGS, default=DEFAULT_PROMPT_READING,
                   help="nearest: the prior drawn from the name of the known emoji a prompt is read as, when it is "
                        f"read confidently; as-typed: from the prompt (default {DEFAULT_PROMPT_READING})")
    p.add_argument("--base", choices=("semantic", "pixel"), default="semantic",
                   help="the 32 px base: semantic (default, the app's) or the pixel text base")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    models = ModelSet(a.checkpoints, "cpu")
    judge = Judge.load(Path(a.checkpoints) / "judge")
    data = load_dataset()
    judge.set_reference(data)
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.base == "pixel":   # the pixel text base through the cascade, reading the prompt as asked
        sample = cascade_sampler(models, "text", size=a.size, base_model="pixel", prompt_reading=a.prompt_reading)
    elif a.size == 32:
        sample = semantic_sampler(models, "text")
        if a.prompt_reading == "nearest":   # as core.cascade.generate conditions the prior
            encoder, draw = models.get("clip"), sample

            def sample(asked, seeds):
                return draw([nearest_prompt(encoder, p, data)[0] for p in asked], seeds)
    else:
        sample = cascade_sampler(models, "text", size=128, base_model="semantic", prompt_reading=a.prompt_reading)

    result = score_everyday(sample, judge, data, load_everyday(a.prompts), seeds)
    print("\n".join(format_everyday(result)))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if a.grid:
        print(f"wrote {everyday_grid(result, a.grid)}")
    if a.json:
        Path(a.json).write_text(json.dumps({k: v for k, v in result.items() if k != "images"}, indent=1,
                                           ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
