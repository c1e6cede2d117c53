"""The training loop for every kind (`python -m core train KIND`), built on `accelerate`; one GPU,
many GPUs or many machines with `accelerate launch -m core train KIND ...`.

A run folder holds `state.pt` (model, EMA, optimiser, step, RNG; loaded with weights_only=True),
`config.json` and `samples/step_*.png`; running the same command again resumes where it stopped.
`export` writes the EMA weights as a checkpoint folder (config.json + fp16 safetensors + model card).

Recipe (diffusion kinds): cosine schedule, v-prediction, min-SNR-gamma loss weighting
(Hang et al. 2023, gamma=5: w = min(SNR, 5) / (SNR + 1) for v), which down-weights the
many easy low-noise steps and converges several times faster than the uniform loss (DiffAE
floors it at 1, `snr_floor`, so the noisiest steps, where z_sem matters, still count); AdamW
with linear warm-up; gradient clipping at 1; EMA 0.999; condition dropout 10% (the empty
prompt or the null label) so one network gives the conditional and unconditional halves of
classifier-free guidance; bf16 autocast on GPU. What each kind trains is its task
(`core.training.registry.TASKS`).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm

from core.models.checkpoints import CheckpointError, load_state_checked, read_folder
from core.models.ema import EMA
from core.models.networks import count_parameters
from core.optim import atomic_save, set_lr
from core.training.config import TrainConfig, task_fields
from core.training.registry import (
    FIT_TASKS,
    TASKS,
    TRAIN_KINDS,
    default_config,
    make_task,
    task_overrides,
)
from core.training.task import Budget, Task

# Settings of a run rather than of the model: left out of the model card's recipe.
RUN_SETTINGS = {"run", "checkpoints", "threads", "budget_minutes", "save_every", "sample_every"}


def model_card(task: Task, cfg: TrainConfig, model, step: int, seconds: float, device: str,
               final_loss: float | None, quality: str = "") -> str:
    """The model card: how it was trained, and the recipe: every setting of the model that this
    kind reads (the task settings of other kinds, and unset ones, are left out)."""
    reads = task_fields(task.settings)
    recipe = {k: v for k, v in cfg.flat().items() if k not in RUN_SETTINGS and not (k in reads and v is None)}
    return (f"# {task.name}\n\n"
            f"Trained by `python -m core train {cfg.kind}` on the Noto Color Emoji data set "
            f"(train split; see core/data/emoji.py).\n\n"
            f"- parameters: {count_parameters(model) / 1e6:.2f} M (weights stored in fp16)\n"
            f"- steps: {step}, wall time: {seconds / 60:.1f} min on {device}\n"
            "- final training loss (EMA of the batch loss): "
            f"{final_loss if final_loss is None else round(final_loss, 4)}\n\n"
            f"## Recipe\n\n```json\n{json.dumps(recipe, indent=2)}\n```\n\n"
            "## Measured quality\n\n"
            f"{quality or 'See the evaluation script `python -m core evaluate` and the closing notes.'}\n")


def init_from_checkpoint(model: torch.nn.Module, ema: EMA, cfg: TrainConfig) -> None:
    """Copy a checkpoint folder's weights into the network and its EMA, so a sitting continues
    from a committed model even when its run folder is gone. The folder must hold this kind with
    this architecture (its config names the kind; the tensors must match one by one)."""
    folder = Path(cfg.run.init_from)
    config, state = read_folder(folder)
    kind, resolution = {"sr64": ("sr", 64), "sr128": ("sr", 128)}.get(cfg.kind, (cfg.kind, None))
    found = config.get("kind"), (config.get("resolution") if resolution else None)
    if found != (kind, resolution):
        raise CheckpointError(f"--init-from {folder} holds a {found[0]!r} model"
                              f"{f' at {found[1]} px' if resolution else ''}, not {cfg.kind}")
    load_state_checked(model, state, folder)
    ema.model.load_state_dict(model.state_dict())


def train(cfg: TrainConfig, export: str | os.PathLike | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Train (or resume) `cfg.kind` until `cfg.optim.steps` or the time budget; returns a summary."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    accelerator = Accelerator(mixed_precision="no")  # autocast is applied explicitly in the losses
    device = accelerator.device
    run = Path(cfg.run.folder)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg.flat(), indent=2) + "\n")   # flat names, as before the split

    torch.manual_seed(cfg.run.seed)  # network initialisation
    task = make_task(cfg)
    model = task.build().to(device)
    if cfg.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema.decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    gen = torch.Generator().manual_seed(cfg.run.seed * 1000 + accelerator.process_index)
    step, seconds, loss_avg = 0, 0.0, None

    state_path = run / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, seconds, loss_avg = state["step"], state["seconds"], state.get("loss_avg")
        log(f"resumed {cfg.kind} from {state_path} at step {step}")
    elif cfg.run.init_from:
        init_from_checkpoint(model, ema, cfg)
        log(f"{cfg.kind}: starting from the weights of {cfg.run.init_from} "
            f"(fresh optimiser, {cfg.optim.warmup} warm-up steps)")
    else:
        task.warm_start(model, log)
        ema.model.load_state_dict(model.state_dict())
    ema.model.to(device)
    if cfg.run.compile:
        model.compile()  # in place: the state dict keeps its keys, so states resume either way
    model, optimizer = accelerator.prepare(model, optimizer)
    log(f"{cfg.kind}: {count_parameters(model) / 1e6:.2f} M parameters on {device}")

    def save_state():
        if accelerator.is_main_process:
            atomic_save({"model": accelerator.unwrap_model(model).state_dict(), "ema": ema.state_dict(),
                                "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                                "step": step, "seconds": seconds, "loss_avg": loss_avg}, state_path)

    stop_requested = []  # SIGTERM / SIGINT: finish the step, save, export, exit cleanly
    for sig in (signal.SIGTERM, signal.SIGINT):
        if threading.current_thread() is threading.main_thread():
            signal.signal(sig, lambda *_: stop_requested.append(True))
    start, sitting_start = time.time(), time.time()
    bar = tqdm(total=cfg.optim.steps, initial=step, desc=cfg.kind, disable=not accelerator.is_main_process,
               dynamic_ncols=True, mininterval=5)
    model.train()
    stopped_by_budget = False
    while step < cfg.optim.steps and not stop_requested:
        if cfg.run.budget_minutes is not None and time.time() - sitting_start > 60 * cfg.run.budget_minutes:
            stopped_by_budget = True
            break
        # linear warm-up, then constant
        set_lr(optimizer, cfg.optim.lr, step, cfg.optim.warmup, cfg.optim.steps, decay="constant")
        loss = task.loss(model, gen, device)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        ema.update(accelerator.unwrap_model(model), step)
        step += 1
        now = time.time()
        seconds += now - start
        start = now
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}", refresh=False)
        if step % cfg.run.save_every == 0 or step == cfg.optim.steps:
            save_state()
        if accelerator.is_main_process and (step % cfg.run.sample_every == 0 or step == cfg.optim.steps):
            task.sample_grid(ema.model, run / "samples" / f"step_{step:06d}.png", device)
            start = time.time()  # sampling time is not training time
    bar.close()
    save_state()
    summary = {"kind": cfg.kind, "step": step, "seconds": round(seconds, 1), "loss_avg": loss_avg,
               "stopped_by_budget": stopped_by_budget, "stopped_by_signal": bool(stop_requested)}
    if export and accelerator.is_main_process:
        card = model_card(task, cfg, ema.model, step, seconds, str(device), loss_avg, task.quality(ema.model))
        task.export(ema.model, Path(export), card)
        summary["export"] = str(export)
    log(json.dumps(summary))
    return summary


# `train all --profile gpu`: one GPU (planned for an H200), about 9 minutes for everything: each
# task's `gpu_profile`, a time budget per model and batches 8-16x the CPU ones with the learning
# rate scaled up (minutes: 0.75 + 2.25 + 1.25 + 1 + 1 + 0.75 + 1.25 + 0.5 + 0.5, plus start-up); bf16
# autocast is on whenever the device is CUDA. The network sizes stay those of the CPU recipe so
# checkpoints stay a few MB. Not yet run on a GPU: a plan; `--smoke` checks the code path.
def train_all(out: str, runs: str, smoke: bool = False, budget_minutes: float | None = None,
              kinds: tuple[str, ...] = TRAIN_KINDS, profile: str = "cpu", **overrides) -> list[dict]:
    """Every model, in dependency order (CLIP before the text base that reads it)."""
    if profile not in ("cpu", "gpu"):
        raise ValueError(f"profile must be cpu or gpu, got {profile!r}")
    summaries = []
    for kind in kinds:
        per_kind = dict(TASKS[kind].gpu_profile) if profile == "gpu" else {}
        if profile == "gpu" and not smoke:
            per_kind["steps"] = 10**7  # the time budget ends each model
        if budget_minutes is not None:
            per_kind["budget_minutes"] = budget_minutes
        if smoke:  # a smoke run keeps its tiny batches; the rest of the profile applies
            per_kind = {k: v for k, v in per_kind.items() if k not in ("batch", "crop")}
        options = task_overrides(kind, {**per_kind, **overrides})   # what this kind reads
        cfg = default_config(kind, str(Path(runs) / kind), smoke=smoke, checkpoints=out, **options)
        summaries.append(train(cfg, export=Path(out) / kind))
    return summaries


def train_fit(kind: str, settings, run: str | os.PathLike | None = None, export: str | os.PathLike | None = None,
              budget_minutes: float | None = None, log: Callable[[str], None] = print, **options) -> dict:
    """Train (or resume, from the run folder) the small-network task `kind` of `FIT_TASKS` with its
    settings dataclass (`registry.fit_settings`) and its own `options`; writes its checkpoint
    folder(s) to `export` (default: where the evaluations load it from). Returns a summary."""
    task = FIT_TASKS[kind]()
    unknown = sorted(set(options) - task.options)
    if unknown:
        raise ValueError(f"--{unknown[0].replace('_', '-')} does not apply to {kind}")
    budget = Budget(budget_minutes)
    summary = {"kind": kind, **task.run(settings, Path(run) if run else None, Path(export) if export else None,
                                         options, budget, log)}
    if summary.get("stopped_by_budget"):
        log(f"{kind}: stopped at the time budget; "
            + (f"the same command continues from {run}" if run else "without --run its state is not kept"))
    log(json.dumps({k: v for k, v in summary.items() if k in ("kind", "export", "stopped_by_budget", "tasks")}))
    return summary
