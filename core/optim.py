"""The optimisation loop of the small networks fitted here besides the diffusion models (the judge,
the attribute classifiers, the bases' warm starts), and the learning-rate schedule every training
loop shares (`lr_factor`; the diffusion models' loop, `core.training.loop`, reads it too).

`fit`: AdamW on a linear warm-up then a cosine decay to 0 (or a constant rate), an optional EMA
of the weights, optional gradient clipping, a stop test between steps (a time budget, a signal)
and a resumable state file (network, EMA, optimiser, generators, global RNG, step, running means):
a run stopped and started again with the same state file ends with the weights of a run that was
never stopped.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

# step -> (the loss to minimise, {name: term} to report); a loss alone reports itself as "loss"
StepLoss = Callable[[int], "torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]"]
Report = Callable[[int, dict[str, float]], None]
DECAYS = ("cosine", "constant")


def lr_factor(step: int, warmup: int, steps: int, decay: str = "cosine") -> float:
    """The learning-rate factor at `step` (0-based): (step + 1) / warmup during the warm-up, then
    cosine: (1 + cos(pi * progress)) / 2 over the remaining steps (SGDR's cosine, Loshchilov &
    Hutter 2017), or constant: 1."""
    if step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    if decay != "cosine":
        raise ValueError(f"decay must be one of {', '.join(DECAYS)}, got {decay!r}")
    rest = max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / rest)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float, step: int, warmup: int, steps: int,
           decay: str = "cosine") -> None:
    """Every parameter group's rate for `step`: lr * lr_factor(step, ...)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * lr_factor(step, warmup, steps, decay)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a killed save never leaves half a state."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(model: torch.nn.Module | Iterable[torch.nn.Parameter], step_loss: StepLoss, steps: int, lr: float, *,
        weight_decay: float = 0.0, warmup: int = 0, decay: str = "cosine", grad_clip: float | None = None,
        ema=None, state_path: str | os.PathLike | None = None, generators: dict[str, torch.Generator] | None = None,
        save_every: int = 0, stop: Callable[[int], bool] | None = None, report: Report | None = None,
        reports: int = 10, smoothing: float = 0.98, log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Minimise step_loss(step) for `steps` AdamW steps on the warm-up + `decay` schedule.

    `model`: a module (needed for `state_path`: its state dict, buffers included, is saved) or the
    parameters alone. `ema`: an object with update(module, step), state_dict() and
    load_state_dict() (`core.models.ema.EMA`), updated after each step. `grad_clip`: the largest
    gradient norm (None: no clipping). `state_path`: resume from this file when it exists and write
    it every `save_every` steps (0: only at the end) and when the loop ends; `generators` the
    torch.Generators that step_loss draws from, saved with it (the global RNG is saved too, for
    dropout). `stop(step)`, asked before each step: True ends the loop early (the state is saved).
    Every steps // reports steps, report(step + 1, running means) (exponential, `smoothing`).
    Returns the last step's terms ({} when no step ran)."""
    module = model if isinstance(model, torch.nn.Module) else None
    params = list(module.parameters() if module is not None else model)
    if state_path is not None and module is None:
        raise ValueError("fit: a state file needs the module, not its parameters alone")
    generators = generators or {}
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    running: dict[str, float] = {}
    last: dict[str, float] = {}
    start = 0
    path = Path(state_path) if state_path is not None else None
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        for name, gen in generators.items():
            gen.set_state(state["generators"][name])
        torch.set_rng_state(state["rng"])
        start, running, last = state["step"], state["running"], state["last"]
        if log:
            log(f"resumed from {path} at step {start}")

    def save(step: int) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"model": module.state_dict(), "optimizer": optimizer.state_dict(),
                     "ema": ema.state_dict() if ema is not None else None,
                     "generators": {k: g.get_state() for k, g in generators.items()},
                     "rng": torch.get_rng_state(), "step": step, "running": running, "last": last}, path)

    step = start
    for step in range(start, steps):
        if stop is not None and stop(step):
            break
        set_lr(optimizer, lr, step, warmup, steps, decay)
        out = step_loss(step)
        loss, terms = out if isinstance(out, tuple) else (out, {"loss": out})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(module, step)
        last = {k: v.item() for k, v in terms.items()}
        for k, v in last.items():
            running[k] = v if k not in running else smoothing * running[k] + (1 - smoothing) * v
        if report is not None and (step + 1) % max(1, steps // reports) == 0:
            report(step + 1, dict(running))
        if save_every and (step + 1) % save_every == 0:
            save(step + 1)
    else:
        step = steps
    save(step)
    return last
