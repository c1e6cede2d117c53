"""The time of one 128 px text-to-image cascade at the default settings, per stage (a section of
`core.evaluation.evaluate`)."""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from core.cascade import generate
from core.pipeline import BASE_DEFAULTS, SR_STAGE_DEFAULTS

TIMING_PROMPT = "woman dancing, dark skin tone"


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timing_section(models) -> dict:
    warm_base = replace(BASE_DEFAULTS, steps=1)
    warm_sr = [replace(s, steps=1) for s in SR_STAGE_DEFAULTS]
    # the pixel text base's cascade, whatever the default base (its card reports this time)
    generate(models, prompt=TIMING_PROMPT, size=128, base=warm_base, sr=warm_sr, base_model="pixel")  # warm-up
    marks: dict[int, float] = {}

    def callback(info):
        _sync(models.device)
        marks[info["stage"]] = time.perf_counter()

    _sync(models.device)
    t0 = time.perf_counter()
    generate(models, prompt=TIMING_PROMPT, size=128, callback=callback, base_model="pixel")
    _sync(models.device)
    total = time.perf_counter() - t0
    stages, prev = {}, t0
    for res in sorted(marks):
        stages[res] = round(marks[res] - prev, 3)
        prev = marks[res]
    return {"prompt": TIMING_PROMPT, "seconds": round(total, 3), "stages": stages,
            "steps": [BASE_DEFAULTS.steps, *(s.steps for s in SR_STAGE_DEFAULTS)],
            "device": str(models.device), "threads": torch.get_num_threads()}
