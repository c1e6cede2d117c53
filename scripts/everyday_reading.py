"""How well prompts are read (`core.reading`): for everyday prompts, the share whose nearest known
emoji (top-1) or one of the 5 nearest (top-5) is acceptable, counted by design as the everyday score
counts (an emoji up to skin tone and gender); for the exact names of the training emoji, the share
whose nearest emoji is their own, and the share drawn from their own name. Prints the nearest
emoji's score of the right and wrong readings of the check set, from which
`core.reading.CONFIDENT_SCORE` is chosen.

    python scripts/everyday_reading.py [--checkpoints checkpoints] [--names] [--threads 1]

Sets: the check set (`core/evaluation/everyday_prompts_check.json`, which chose the reading's
settings) and the measured set (`core/evaluation/everyday_prompts.json`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.emoji import design_of, load_dataset  # noqa: E402
from core.evaluation.everyday import PROMPTS_FILE, acceptable_indices, load_everyday  # noqa: E402
from core.models.text_encoders import ClipTextEncoder  # noqa: E402
from core.reading import CONFIDENT_SCORE, name_text, nearest_prompt, read_prompt  # noqa: E402

CHECK_FILE = PROMPTS_FILE.with_name("everyday_prompts_check.json")


def read_set(encoder, data, prompts) -> dict:
    designs = [design_of(r) for r in data.records]
    rows = []
    for p in prompts:
        ok = {designs[i] for i in acceptable_indices(data, p)}
        reading = read_prompt(encoder, p.prompt, data)
        hits = [designs[n.index] in ok for n in reading.nearest]
        rows.append((p.prompt, reading.nearest[0], hits[0], any(hits), reading.confident))
    n = len(rows)
    return {"n": n, "top1": sum(r[2] for r in rows) / n, "top5": sum(r[3] for r in rows) / n,
            "confident": sum(r[4] for r in rows) / n,
            "top1_confident": sum(r[2] for r in rows if r[4]) / max(1, sum(r[4] for r in rows)), "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--names", action="store_true", help="also read every training emoji's exact name")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = load_dataset()
    encoder = ClipTextEncoder.from_folder(Path(a.checkpoints) / "clip")
    for label, path in (("check set", CHECK_FILE), ("measured set", PROMPTS_FILE)):
        r = read_set(encoder, data, load_everyday(path))
        print(f"{label} ({r['n']} prompts): top-1 acceptable {r['top1']:.3f}, top-5 {r['top5']:.3f}; "
              f"confident (score >= {CONFIDENT_SCORE:g}) {r['confident']:.3f}, "
              f"of those right {r['top1_confident']:.3f}")
        for prompt, near, hit, _, confident in r["rows"]:
            print(f"  {'right' if hit else 'WRONG'} {near.score:.3f} {'conf' if confident else '    '} "
                  f"{prompt!r} -> {near.emoji} {near.name} (via {near.phrase!r})")
    if a.names:
        train = data.indices("train").tolist()
        same = sum(read_prompt(encoder, name_text(data.records[i]), data, k=1).nearest[0].index == i for i in train)
        drawn = sum(nearest_prompt(encoder, name_text(data.records[i]), data)[0] == name_text(data.records[i])
                    for i in train)
        print(f"exact training names: the reading's nearest emoji is the name's own {same / len(train):.4f} "
              f"({same} of {len(train)}); drawn from their own name {drawn / len(train):.4f} ({drawn})")


if __name__ == "__main__":
    main()
