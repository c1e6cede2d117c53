"""How well could a base that feeds the DiffAE decoder a code ever draw these names? Scores, on the
recipe study's focus split (names of training emoji outside People & Body), the real renders, the
committed DiffAE decoder fed each emoji's own code (z_sem = Enc(real render), fresh noise, the
semantic base's decoder steps) and the semantic base (prior, then decoder), with the judge.

    python scripts/decoder_ceiling.py [--checkpoints checkpoints] [--n 256] [--threads 1]

Prints accepted / subgroup as asked / recognisable / retrieval@5 per row. A code-fed base (the
pooled text base, the code class base) cannot beat the second row by a better code alone.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.emoji import load_dataset  # noqa: E402
from core.diffae import semantic_code  # noqa: E402
from core.evaluation.judge import Judge  # noqa: E402
from core.evaluation.scorecard import TEXT_SPLITS, prompt_of, score_images, semantic_sampler, text_splits  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.semantic import render  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--n", type=int, default=256, help="names in the focus split")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_dataset()
    models = ModelSet(a.checkpoints, "cpu")
    judge = Judge.load(Path(a.checkpoints) / "judge")
    focus = text_splits(data, a.n, 0)[TEXT_SPLITS[1]]
    subgroups = [data.records[i].subgroup for i in focus]
    seeds = list(range(len(focus)))
    real = data.images_at(32, torch.as_tensor(focus))
    decoder = models.get("diffae")
    codes = semantic_code(decoder, real)
    rows = {
        "real renders": lambda: real,
        "DiffAE decoder, each emoji's own code": lambda: torch.cat(
            [render(decoder, codes[s:s + 32], seeds[s:s + 32]) for s in range(0, len(focus), 32)]),
        "semantic base (prior, then decoder)": lambda: semantic_sampler(models, "text")(
            [prompt_of(data.records[i]) for i in focus], seeds),
    }
    print(f"| images (n = {len(focus)}) | accepted | subgroup as asked | recognisable | retrieval@5 |")
    print("| --- | --- | --- | --- | --- |")
    for name, images in rows.items():
        flags = score_images(judge, images(), subgroups, focus)
        cells = [f"{float(flags[k].float().mean()):.3f}" for k in ("accepted", "subgroup_as_asked", "recognisable",
                                                                    "retrieval")]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
