"""A training run's settings: `TrainConfig`, and the names of the settings only some kinds read
(`TASK_OPTIONS`, declared per task in `Task.options`). `core.training.registry.default_config`
builds one from a kind's recipe."""
from __future__ import annotations

from dataclasses import dataclass

from core.models.checkpoints import DEFAULT_CHECKPOINTS

T_SAMPLINGS = ("uniform", "lognormal")   # how training draws its timesteps (`core.training.task.draw_timesteps`)

# The settings that only some kinds read; each task lists those it reads in `Task.options`.
TASK_OPTIONS = ("channels", "min_snr_gamma", "snr_floor", "cond_dropout", "sr_aug_max", "residual_scale", "crop",
                "resolution", "width", "depth", "balance", "t_sampling", "text_conditioning",
                "label_conditioning", "freeze_encoder", "captions")


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
    captions: str = "names"        # prior: "names" (captions_for) or "everyday" (also core.data.captions)
    freeze_encoder: bool = False   # diffae: train the decoder only, so z_sem (and all fitted on it) stays valid
