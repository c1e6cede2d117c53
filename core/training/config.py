"""A training run's settings, in parts: `TrainConfig` = the kind, `RunSettings` (where and how a
sitting runs), `OptimiserSettings` (AdamW's steps, batches, rate and warm-up), `EMASettings` and
the task's own dataclass (`DiffusionSettings` and one subclass per kind that reads more, e.g.
`SRSettings`): a field that matters to one kind lives in that kind's dataclass only.

The command line and the run folder's config.json keep the flat names of before (`--lr`,
`--crop`, `"ema_decay"`); `TrainConfig.flat` and `TrainConfig.build` translate.
`core.training.registry.default_config` builds one from a kind's recipe."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from core.models.checkpoints import DEFAULT_CHECKPOINTS

T_SAMPLINGS = ("uniform", "lognormal")   # how training draws its timesteps (`core.training.task.draw_timesteps`)


@dataclass
class RunSettings:
    """Where and how one sitting runs (flat name of `folder`: "run")."""
    folder: str = "runs"
    seed: int = 0
    save_every: int = 500
    sample_every: int = 1000
    budget_minutes: float | None = None
    checkpoints: str = str(DEFAULT_CHECKPOINTS)   # where a task finds the models it reads (CLIP, DiffAE, ...)
    threads: int | None = None
    smoke: bool = False
    precision: str = "auto"        # auto: bf16 autocast on CUDA, fp32 on CPU (this CPU: AVX2, no bf16); bf16; fp32
    compile: bool = False          # torch.compile the training network (Module.compile: weights keep their names)
    channels_last: bool = False    # NHWC memory format for the convolutions
    init_from: str | None = None   # a checkpoint folder of this kind: start from its weights (model and EMA)


@dataclass
class OptimiserSettings:
    """AdamW for `steps` steps of `batch` examples, the rate on a linear warm-up then constant
    (`core.optim.lr_factor`), gradients clipped at `grad_clip`."""
    steps: int = 10_000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0


@dataclass
class EMASettings:
    """The EMA of the weights that checkpoints ship (`core.models.ema.EMA`; flat name "ema_decay")."""
    decay: float = 0.999


@dataclass
class TaskSettings:
    """The settings of a kind that reads none beyond the shared parts (CLIP)."""


@dataclass
class NetworkSettings(TaskSettings):
    """A convolutional network's widths per level (the noise-aware classifier)."""
    channels: tuple[int, ...] = (32, 64, 128)


@dataclass
class DiffusionSettings(NetworkSettings):
    """Every diffusion kind: its UNet's widths and the loss (`core.training.task.DiffusionTask`)."""
    min_snr_gamma: float = 5.0
    snr_floor: float = 0.0         # x0-space loss weight clamp(SNR, snr_floor, min_snr_gamma); 0: plain min-SNR
    cond_dropout: float = 0.1
    t_sampling: str = "uniform"    # training timesteps uniform, or EDM's log-normal


@dataclass
class PixelBaseSettings(DiffusionSettings):
    balance: float = 0.0           # draw emoji with weight (design size) ** -balance


@dataclass
class TextBaseSettings(PixelBaseSettings):
    text_conditioning: str = "tokens"  # cross-attention from scratch, or "pooled" (from the DiffAE)


@dataclass
class ClassBaseSettings(PixelBaseSettings):
    label_conditioning: str = "embedding"  # a label embedding from scratch, or "code" (from the DiffAE)


@dataclass
class PaletteSettings(DiffusionSettings):
    residual_scale: float | None = None  # diffuse this * (image - baseline); None/0: the image itself
    crop: int | None = None        # train on random crops of this size (the UNet is convolutional)


@dataclass
class SRSettings(PaletteSettings):
    sr_aug_max: int = 250          # training noise-augmentation levels t_aug ~ U{0..sr_aug_max}


@dataclass
class DiffAESettings(DiffusionSettings):
    resolution: int | None = None  # its image size (default 64)
    freeze_encoder: bool = False   # train the decoder only, so z_sem (and all fitted on it) stays valid


@dataclass
class MLPSettings(TaskSettings):
    width: int | None = None       # width of its MLP (default: the kind's)
    depth: int | None = None       # number of its residual blocks (default: the kind's)


@dataclass
class PriorSettings(MLPSettings):
    captions: str = "names"        # "names" (captions_for) or "everyday" (also core.data.captions)


_PARTS = {"run": RunSettings, "optim": OptimiserSettings, "ema": EMASettings}
_FLAT_NAMES = {("run", "folder"): "run", ("ema", "decay"): "ema_decay"}   # flat name of a part's field


def _flat_name(part: str, name: str) -> str:
    return _FLAT_NAMES.get((part, name), name)


def task_fields(settings: type[TaskSettings]) -> frozenset[str]:
    """The fields of a task's settings dataclass: the options that kind reads."""
    return frozenset(f.name for f in fields(settings))


@dataclass
class TrainConfig:
    kind: str
    run: RunSettings = field(default_factory=RunSettings)
    optim: OptimiserSettings = field(default_factory=OptimiserSettings)
    ema: EMASettings = field(default_factory=EMASettings)
    task: TaskSettings = field(default_factory=TaskSettings)

    @classmethod
    def build(cls, kind: str, settings: type[TaskSettings] = TaskSettings, **flat) -> TrainConfig:
        """From flat names (the command line's, the run folder's config.json): each to its part;
        a name no part has is a TypeError naming it."""
        parts = {part: {} for part in (*_PARTS, "task")}
        owner = {_flat_name(p, f.name): (p, f.name) for p, c in _PARTS.items() for f in fields(c)}
        owner.update({f.name: ("task", f.name) for f in fields(settings)})
        for name, value in flat.items():
            if name not in owner:
                raise TypeError(f"{kind} has no setting {name!r}")
            part, attr = owner[name]
            parts[part][attr] = value
        return cls(kind, **{p: c(**parts[p]) for p, c in _PARTS.items()}, task=settings(**parts["task"]))

    def flat(self) -> dict:
        """Every setting under its flat name (what config.json and the model card's recipe hold)."""
        out = {"kind": self.kind}
        for part in _PARTS:
            out.update({_flat_name(part, k): v for k, v in asdict(getattr(self, part)).items()})
        return out | asdict(self.task)

    def replace(self, **flat) -> TrainConfig:
        """A copy with some settings changed, by flat name."""
        values = {k: v for k, v in self.flat().items() if k != "kind"} | flat
        return TrainConfig.build(self.kind, type(self.task), **values)


__all__ = ["T_SAMPLINGS", "RunSettings", "OptimiserSettings", "EMASettings", "TaskSettings", "NetworkSettings",
           "DiffusionSettings", "PixelBaseSettings", "TextBaseSettings", "ClassBaseSettings", "PaletteSettings",
           "SRSettings", "DiffAESettings", "MLPSettings", "PriorSettings", "TrainConfig", "task_fields"]
