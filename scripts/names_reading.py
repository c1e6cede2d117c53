"""Exact emoji names drawn with each prompt reading (`core.reading`): the text scorecard of the
semantic base (`core.evaluation.scorecard`: 64 names per split, names of training emoji in People &
Body and the rest, held-out names; the judge's acceptance, recognisability and retrieval@5, each
against the real renders), once with the prompt as typed and once read as the nearest known emoji.
The same splits and sampling as `python -m core evaluate --models prior` (its text rows).

    python scripts/names_reading.py [--checkpoints checkpoints] [--n 64] [--readings as-typed,nearest]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.emoji import load_dataset  # noqa: E402
from core.evaluation.judge import Judge  # noqa: E402
from core.evaluation.scorecard import TEXT_SPLITS, scorecard, semantic_sampler  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.reading import PROMPT_READINGS, nearest_prompt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--readings", default=",".join(PROMPT_READINGS))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    models = ModelSet(a.checkpoints, "cpu")
    judge = Judge.load(Path(a.checkpoints) / "judge")
    data = load_dataset()
    judge.set_reference(data)
    encoder, draw = models.get("clip"), semantic_sampler(models, "text")
    print("| reading | split | accepted: samples / real | recognisable: samples / real | retrieval@5 | "
          "read as another emoji |")
    print("| --- | --- | --- | --- | --- | --- |")
    for reading in a.readings.split(","):
        changed = []

        def sample(asked, seeds, reading=reading, changed=changed):
            if reading == "as-typed":
                return draw(asked, seeds)
            drawn = [nearest_prompt(encoder, prompt, data)[0] for prompt in asked]
            changed.append(sum(d != prompt for d, prompt in zip(drawn, asked)) / len(asked))
            return draw(drawn, seeds)

        card = scorecard(sample, "text", judge, data, n=a.n)
        for j, split in enumerate(TEXT_SPLITS):
            rows = card.results["splits"][split]["rows"]
            s, r = rows["samples"], rows["real"]
            print(f"| {reading} | {split} | {s['accepted']:.3f} / {r['accepted']:.3f} | "
                  f"{s['recognisable']:.3f} / {r['recognisable']:.3f} | {s.get('retrieval', float('nan')):.3f} | "
                  f"{f'{changed[j]:.3f}' if changed else '-'} |", flush=True)


if __name__ == "__main__":
    main()
