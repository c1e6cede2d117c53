"""Denoising networks: a `DiffusionModel` is a backbone (a UNet: diffusers' own class,
`network="diffusers"`, for training, or the same network from `core.models.unet`, `network="core"`:
same weights and outputs, no diffusers import, what `core.models.loading.load_model` uses for
inference) + a conditioner (how `cond` reaches the backbone: `core.models.conditioners`) + a
parameterisation (what the backbone predicts, eps / x0 / v, of what x0, on which noise
schedule). Every model answers one question, `eps(x_t, t, cond)`, whatever it predicts and however
it is conditioned.

Its config (`ModelConfig`, stored as config.json) says so in parts:
``{version, kind, resolution, backbone: {type, config}, conditioner: {type, ...}, prediction,
residual_scale, schedule, sampling}``. ``kind`` is what the model is for (text_base,
class_base, sr, palette, diffae: which pipeline uses it); ``residual_scale`` set means the
diffused x0 is the scaled residual over a baseline (SR: the upsampled input; Palette: the
task's baseline), see `core.pipeline.upscale` and `core.translate.palette_baseline`;
``sampling`` holds the sampling defaults measured for this checkpoint (``guidance``, ...).
Configs written before the parts existed (no ``version``) are read through `upgrade_config`, and
their weights' names through `DiffusionModel.upgrade_state_dict`: the same tensors, renamed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from core import cancel
from core.diffusion.schedules import NoiseSchedule, make_schedule
from core.models.conditioners import CONDITIONERS
from core.models.unet import UNet

ModelKind = Literal["text_base", "class_base", "sr", "palette", "diffae"]
MODEL_KINDS: tuple[str, ...] = ("text_base", "class_base", "sr", "palette", "diffae")
PALETTE_TASKS: tuple[str, ...] = ("colorize", "inpaint")
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v")
Network = Literal["diffusers", "core"]
NETWORKS: tuple[str, ...] = ("diffusers", "core")
BACKBONES: tuple[str, ...] = ("unet", "cross_attention_unet")   # UNet2DModel, UNet2DConditionModel
CONFIG_VERSION = 2

TEXT_CONDITIONINGS: tuple[str, ...] = ("tokens", "pooled")      # the training options that pick
LABEL_CONDITIONINGS: tuple[str, ...] = ("embedding", "code")    # a base's conditioner


def build_unet(unet: dict, conditional: bool, network: Network = "diffusers") -> nn.Module:
    """A UNet2DConditionModel if `conditional` (cross-attention), else a UNet2DModel: diffusers'
    class or `core.models.unet`'s (same state-dict keys; ValueError if it lacks a block)."""
    if network == "core":
        return UNet(unet, conditional=conditional)
    if network != "diffusers":
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}; got {network!r}")
    from diffusers import UNet2DConditionModel, UNet2DModel
    return (UNet2DConditionModel if conditional else UNet2DModel)(**unet)


def text_unet_config(resolution: int, channels: tuple[int, ...], cross_attention_dim: int,
                     attention_levels: int = 1, layers_per_block: int = 1, head_dim: int = 32) -> dict:
    """A UNet2DConditionModel config with cross-attention only at the lowest `attention_levels`."""
    n = len(channels)
    down = ["DownBlock2D"] * (n - attention_levels) + ["CrossAttnDownBlock2D"] * attention_levels
    up = ["CrossAttnUpBlock2D"] * attention_levels + ["UpBlock2D"] * (n - attention_levels)
    return dict(
        sample_size=resolution, in_channels=3, out_channels=3,
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=list(channels), layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim, attention_head_dim=head_dim,
        norm_num_groups=min(32, channels[0]),
    )


def image_unet_config(resolution: int, channels: tuple[int, ...], in_channels: int = 3,
                      attention_levels: int = 1, layers_per_block: int = 1,
                      num_class_embeds: int | None = None, class_embed_type: str | None = None,
                      head_dim: int = 32) -> dict:
    """A UNet2DModel config with self-attention only at the lowest `attention_levels`."""
    n = len(channels)
    down = ["DownBlock2D"] * (n - attention_levels) + ["AttnDownBlock2D"] * attention_levels
    up = ["AttnUpBlock2D"] * attention_levels + ["UpBlock2D"] * (n - attention_levels)
    return dict(
        sample_size=resolution, in_channels=in_channels, out_channels=3,
        down_block_types=down, up_block_types=up, block_out_channels=list(channels),
        layers_per_block=layers_per_block, attention_head_dim=head_dim,
        norm_num_groups=min(32, channels[0]), add_attention=attention_levels > 0,
        num_class_embeds=num_class_embeds, class_embed_type=class_embed_type,
    )


def unet_backbone(unet: dict, cross_attention: bool = False) -> dict:
    """A config's ``backbone`` entry for the UNet config `unet` (diffusers' keyword arguments)."""
    return {"type": "cross_attention_unet" if cross_attention else "unet", "config": copy.deepcopy(unet)}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a diffusion model; stored as config.json (the parts are in
    the module's docstring)."""
    kind: str
    resolution: int
    backbone: dict
    conditioner: dict
    prediction: str = "v"
    residual_scale: float | None = None
    schedule: dict = field(default_factory=lambda: {"name": "cosine", "T": 1000})
    sampling: dict = field(default_factory=dict)
    version: int = CONFIG_VERSION

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {MODEL_KINDS}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; expected eps, x0 or v")
        if not isinstance(self.backbone, dict) or self.backbone.get("type") not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected a type among {BACKBONES}")
        if not isinstance(self.conditioner, dict) or self.conditioner.get("type") not in CONDITIONERS:
            found = self.conditioner.get("type") if isinstance(self.conditioner, dict) else self.conditioner
            raise ValueError(f"unknown conditioner type {found!r}; expected one of {tuple(CONDITIONERS)}")
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config version {self.version!r}; this code reads version {CONFIG_VERSION}")

    def to_dict(self) -> dict:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = upgrade_config(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)

    # views of the parts that the pipelines read
    @property
    def unet(self) -> dict:
        return self.backbone["config"]

    @property
    def classes(self) -> list[str] | None:
        """A class model's label names; the null label is len(classes)."""
        return self.conditioner.get("classes")

    @property
    def semantic_dim(self) -> int | None:
        return self.conditioner.get("semantic_dim")

    @property
    def text_encoder(self) -> str | None:
        """A text model's text encoder (its folder name)."""
        return self.conditioner.get("text_encoder")

    @property
    def low_resolution(self) -> int | None:
        """An SR model's input size."""
        return self.conditioner.get("low_resolution")

    @property
    def guidance(self) -> float | None:
        """The measured default guidance (None: the pipeline's)."""
        return self.sampling.get("guidance")

    @property
    def pooled_text(self) -> bool:
        return self.conditioner["type"] == "pooled_text_code"

    @property
    def sampled_code(self) -> bool:
        """A class base whose label draws a semantic code for the DiffAE decoder."""
        return self.conditioner["type"] == "label_code"


def upgrade_config(d: dict) -> dict:
    """A config dict in the current layout: one written before version 2 (a flat record of every
    kind's fields) is rewritten into backbone + conditioner + sampling; a current one is returned
    as is. ValueError names what cannot be read."""
    if not isinstance(d, dict):
        raise ValueError(f"a model config is a JSON object, got {type(d).__name__}")
    if "version" in d:
        return d
    old = dict(d)
    kind = old.pop("kind", None)
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    text_conditioning = old.pop("text_conditioning", None) or "tokens"
    label_conditioning = old.pop("label_conditioning", None) or "embedding"
    if text_conditioning not in TEXT_CONDITIONINGS:
        raise ValueError(f"unknown text_conditioning {text_conditioning!r}; expected one of {TEXT_CONDITIONINGS}")
    if label_conditioning not in LABEL_CONDITIONINGS:
        raise ValueError(f"unknown label_conditioning {label_conditioning!r}; expected one of {LABEL_CONDITIONINGS}")
    f = {k: old.pop(k, None) for k in ("classes", "low_resolution", "text_encoder", "pooled_dim", "text_hidden",
                                       "code_hidden", "code_modes", "semantic_dim", "encoder_channels")}
    guidance = old.pop("guidance", None)
    if kind == "text_base" and text_conditioning == "pooled":
        conditioner = {"type": "pooled_text_code", "text_encoder": f["text_encoder"] or "clip",
                       **{k: f[k] for k in ("pooled_dim", "text_hidden", "semantic_dim")}}
    elif kind == "text_base":
        conditioner = {"type": "text_tokens", "text_encoder": f["text_encoder"] or "clip"}
    elif kind == "class_base" and label_conditioning == "code":
        conditioner = {"type": "label_code", "classes": f["classes"], "semantic_dim": f["semantic_dim"],
                       "code_hidden": f["code_hidden"], "code_modes": f["code_modes"]}
    elif kind == "class_base":
        conditioner = {"type": "label_embedding", "classes": f["classes"]}
    elif kind == "sr":
        conditioner = {"type": "low_res_concat", "low_resolution": f["low_resolution"]}
    elif kind == "palette":
        conditioner = {"type": "source_mask_concat", "tasks": list(PALETTE_TASKS)}
    else:
        conditioner = {"type": "semantic_code", "semantic_dim": f["semantic_dim"],
                       "encoder_channels": f["encoder_channels"]}
    unet = old.pop("unet", None)
    if not isinstance(unet, dict):
        raise ValueError("a model config needs its unet")
    upgraded = {"kind": kind, "resolution": old.pop("resolution", None),
                "backbone": unet_backbone(unet, conditioner["type"] == "text_tokens"),
                "conditioner": conditioner, "sampling": {} if guidance is None else {"guidance": guidance},
                "version": CONFIG_VERSION}
    for key in ("prediction", "residual_scale", "schedule"):
        if key in old:
            upgraded[key] = old.pop(key)
    if old:
        raise ValueError(f"unknown config keys: {sorted(old)}")
    return upgraded


class DiffusionModel(nn.Module):
    """A backbone UNet (``net``) + its conditioner (``conditioner``) + schedule and
    parameterisation; `eps(x_t, t, cond)` is the ConditionalModel the samplers and guidance
    wrappers use."""

    def __init__(self, config: ModelConfig, network: Network = "diffusers"):
        super().__init__()
        self.config = config
        self.schedule: NoiseSchedule = make_schedule(config.schedule["name"], config.schedule["T"])
        conditioner = CONDITIONERS[config.conditioner["type"]]
        cross_attention = config.backbone["type"] == "cross_attention_unet"
        if conditioner.cross_attention != cross_attention:
            raise ValueError(f"a {conditioner.type} conditioner needs a "
                             f"{'cross_attention_unet' if conditioner.cross_attention else 'unet'} backbone")
        if config.unet.get("in_channels", 3) != conditioner.in_channels:
            raise ValueError(f"a {conditioner.type} conditioner feeds {conditioner.in_channels} input channels; "
                             f"the backbone takes {config.unet.get('in_channels', 3)}")
        self.net = build_unet(config.unet, cross_attention, network)
        self.conditioner = conditioner(config.conditioner, self.net.time_embedding.linear_2.out_features)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_classes(self) -> int:
        return len(self.config.classes or [])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """The raw backbone output (eps, x0 or v, per `config.prediction`)."""
        return self.conditioner(self.net, x_t, t.to(x_t.device).expand(x_t.shape[0]), cond)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        cancel.check()  # a cancelled job stops here, between network evaluations (core.cancel)
        out = self(x_t, t, cond)
        return self.schedule.eps_from_prediction(out, x_t, t, self.config.prediction)

    def null_cond(self, batch: int, device: torch.device | str | None = None,
                  code_noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The unconditional input of a class model (the null label). A code class base also
        takes the noise of its codes (`code_noise`, [batch, semantic_dim]; None: zeros)."""
        return self.conditioner.null_cond(batch, device, code_noise)

    @staticmethod
    def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights named before the conditioner was a part (``z_proj.weight``, ``encoder.*``,
        ``code_mean`` ...) under their current names (``conditioner.z_proj.weight`` ...)."""
        return {k if k.startswith(("net.", "conditioner.")) else f"conditioner.{k}": v for k, v in state.items()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(self.upgrade_state_dict(state_dict), strict=strict, assign=assign)


def diffae_unet_config(resolution: int, channels: tuple[int, ...], attention_levels: int = 1,
                       layers_per_block: int = 1, head_dim: int = 32) -> dict:
    """The DiffAE decoder: a UNet2DModel whose class-embedding slot takes the projected z_sem
    as is ("identity"), with scale-shift (AdaGN) time conditioning in every ResNet block."""
    config = image_unet_config(resolution, channels, attention_levels=attention_levels,
                               layers_per_block=layers_per_block, class_embed_type="identity", head_dim=head_dim)
    config["resnet_time_scale_shift"] = "scale_shift"
    return config


def palette_unet_config(resolution: int, channels: tuple[int, ...], attention_levels: int = 1,
                        layers_per_block: int = 1, head_dim: int = 32) -> dict:
    """Palette: x_t + source image (3) + mask (1) in, one label per task."""
    return image_unet_config(resolution, channels, in_channels=7, attention_levels=attention_levels,
                             layers_per_block=layers_per_block, num_class_embeds=len(PALETTE_TASKS),
                             head_dim=head_dim)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
