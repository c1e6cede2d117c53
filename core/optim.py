"""The inner optimisation loop of the small networks fitted here besides the diffusion models (the
judge, the attribute classifiers, the bases' warm starts), in one place: AdamW with a linear
warm-up then a cosine decay to 0, a step function that returns the loss, and running means of the
named terms reported now and then. (The diffusion models' own loop, with EMA, resumable state and
accelerate, is `core.training.loop`.)"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

# step -> (the loss to minimise, {name: term} to report); a loss alone reports itself as "loss"
StepLoss = Callable[[int], "torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]"]
Report = Callable[[int, dict[str, float]], None]


def warmup_cosine(step: int, warmup: int, steps: int) -> float:
    """The learning-rate factor at `step`: (step + 1) / warmup during the warm-up, then
    (1 + cos(pi * progress)) / 2 over the remaining steps (SGDR's cosine, Loshchilov & Hutter 2017)."""
    if step < warmup:
        return (step + 1) / warmup
    rest = max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / rest)))


def fit(params: Iterable[torch.nn.Parameter], step_loss: StepLoss, steps: int, lr: float, *,
        weight_decay: float = 0.0, warmup: int = 0, report: Report | None = None, reports: int = 10,
        smoothing: float = 0.98) -> dict[str, float]:
    """Minimise step_loss(step) for `steps` AdamW steps on the warm-up + cosine schedule. Every
    steps // reports steps, report(step + 1, running means) (exponential, `smoothing`). Returns the
    last step's terms."""
    params = list(params)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, steps))
    running: dict[str, float] = {}
    last: dict[str, float] = {}
    for step in range(steps):
        out = step_loss(step)
        loss, terms = out if isinstance(out, tuple) else (out, {"loss": out})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        last = {k: v.item() for k, v in terms.items()}
        for k, v in last.items():
            running[k] = v if k not in running else smoothing * running[k] + (1 - smoothing) * v
        if report is not None and (step + 1) % max(1, steps // reports) == 0:
            report(step + 1, dict(running))
    return last
