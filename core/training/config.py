"""A training run's settings: `TrainConfig`, and `default_config`, which starts from a kind's
recipe (its task's `defaults`), applies the smoke-test sizes and the caller's overrides, and refuses
an option the kind's task does not read (`TASK_OPTIONS`, declared per task in `Task.options`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace

from core.models.checkpoints import DEFAULT_CHECKPOINTS
from core.models.networks import LABEL_CONDITIONINGS, TEXT_CONDITIONINGS
from core.training.registry import TASKS, TRAIN_KINDS, accepting
from core.training.task import T_SAMPLINGS

# The settings that only some kinds read; each task lists those it reads in `Task.options`.
TASK_OPTIONS = ("channels", "min_snr_gamma", "snr_floor", "cond_dropout", "sr_aug_max", "residual_scale", "crop",
                "resolution", "width", "depth", "balance", "t_sampling", "text_conditioning",
                "label_conditioning", "freeze_encoder")


@dataclass
class TrainConfig:
    kind: str
    run: str
    steps: int = 10_000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    min_snr_gamma: float = 5.0
    snr_floor: float = 0.0         # x0-space loss weight clamp(SNR, snr_floor, min_snr_gamma); 0: plain min-SNR
    cond_dropout: float = 0.1
    sr_aug_max: int = 250          # SR: training noise-augmentation levels t_aug ~ U{0..sr_aug_max}
    residual_scale: float | None = None  # SR, palette: diffuse this * (image - baseline); None/0: the image itself
    crop: int | None = None        # SR, palette: train on random crops of this size (the UNet is convolutional)
    resolution: int | None = None  # diffae: its image size (default 64)
    channels: tuple[int, ...] = (32, 64, 128)
    width: int | None = None       # prior: width of its MLP (default 384)
    depth: int | None = None       # prior: number of its residual blocks (default 4)
    seed: int = 0
    save_every: int = 500
    sample_every: int = 1000
    budget_minutes: float | None = None
    checkpoints: str = str(DEFAULT_CHECKPOINTS)   # where a text_base finds its CLIP
    threads: int | None = None
    smoke: bool = False
    precision: str = "auto"        # auto: bf16 autocast on CUDA, fp32 on CPU (this CPU: AVX2, no bf16); bf16; fp32
    compile: bool = False          # torch.compile the training network (Module.compile: weights keep their names)
    channels_last: bool = False    # NHWC memory format for the convolutions
    init_from: str | None = None   # a checkpoint folder of this kind: start from its weights (model and EMA)
    balance: float = 0.0           # text_base, class_base: draw emoji with weight (design size) ** -balance
    t_sampling: str = "uniform"    # diffusion kinds: training timesteps uniform, or EDM's log-normal
    text_conditioning: str = "tokens"  # text_base: cross-attention from scratch, or "pooled" (from the DiffAE)
    label_conditioning: str = "embedding"  # class_base: a label embedding from scratch, or "code" (from the DiffAE)
    freeze_encoder: bool = False   # diffae: train the decoder only, so z_sem (and all fitted on it) stays valid


def _names(kinds: list[str]) -> str:
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"


def default_config(kind: str, run: str, smoke: bool = False, **overrides) -> TrainConfig:
    """The recipe of `kind` (its task's `defaults`), with tiny sizes for a smoke test, then
    `overrides`. ValueError for an unknown kind, an option the kind does not read, or a bad value."""
    if kind not in TRAIN_KINDS:
        raise ValueError(f"kind must be one of {TRAIN_KINDS}, got {kind!r}")
    task = TASKS[kind]
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, value in overrides.items():
        if name in TASK_OPTIONS and name not in task.options and value != fields[name]:
            raise ValueError(f"--{name.replace('_', '-')} applies to {_names(accepting(name))} only, not {kind}")
    cfg = TrainConfig(kind=kind, run=run, **task.defaults)
    if smoke:
        cfg = replace(cfg, steps=4, batch=4, channels=(16, 32), save_every=2, sample_every=4,
                      warmup=2, smoke=True)
    cfg = replace(cfg, **overrides)
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    if cfg.residual_scale is not None and not 0 <= cfg.residual_scale < math.inf:   # also NaN
        raise ValueError(f"--residual-scale must be a finite number >= 0, got {cfg.residual_scale!r}")
    if not 0 <= cfg.snr_floor <= cfg.min_snr_gamma:   # also NaN
        raise ValueError(f"--snr-floor must be between 0 and min_snr_gamma ({cfg.min_snr_gamma}), "
                         f"got {cfg.snr_floor!r}")
    if cfg.t_sampling not in T_SAMPLINGS:
        raise ValueError(f"--t-sampling must be one of {', '.join(T_SAMPLINGS)}, got {cfg.t_sampling!r}")
    if cfg.text_conditioning not in TEXT_CONDITIONINGS:
        raise ValueError(f"--text-conditioning must be one of {', '.join(TEXT_CONDITIONINGS)}, "
                         f"got {cfg.text_conditioning!r}")
    if cfg.label_conditioning not in LABEL_CONDITIONINGS:
        raise ValueError(f"--label-conditioning must be one of {', '.join(LABEL_CONDITIONINGS)}, "
                         f"got {cfg.label_conditioning!r}")
    if not 0 <= cfg.balance <= 1:   # also NaN
        raise ValueError("--balance must be between 0 (uniform over emoji) and 1 (uniform over designs), "
                         f"got {cfg.balance!r}")
    return cfg


def task_overrides(kind: str, options: dict) -> dict:
    """`options` without the task settings that `kind` does not read (for `train all`, whose
    options apply to each kind that reads them)."""
    return {k: v for k, v in options.items() if k not in TASK_OPTIONS or k in TASKS[kind].options}
