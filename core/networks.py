"""Denoising networks: diffusers UNets built from small explicit configs, wrapped so every
model answers one question, `eps(x_t, t, cond)`, whatever it predicts and however it is
conditioned.

Kinds and their conditioning (`cond` is a dict of tensors, batch first):
- ``text_base``  UNet2DConditionModel; ``tokens`` [B,L,D] and ``mask`` [B,L] from a text
  encoder, cross-attention; the unconditional input is the empty prompt's encoding.
- ``class_base`` UNet2DModel with a label embedding; ``labels`` [B] long, the last index
  (``num_classes``) is the null label used for guidance.
- ``sr``         UNet2DModel with 6 input channels (SR3): ``low_res`` [B,3,H,W], the low-res
  image upsampled to the output size and noise-augmented, concatenated to x_t; ``aug_t`` [B]
  the augmentation level, fed through the class-embedding slot as a timestep (CDM / IF).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

from core.schedules import NoiseSchedule, make_schedule

ModelKind = Literal["text_base", "class_base", "sr"]
MODEL_KINDS: tuple[str, ...] = ("text_base", "class_base", "sr")
Prediction = Literal["eps", "x0", "v"]


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


@dataclass
class ModelConfig:
    """Everything needed to rebuild a diffusion model; stored as config.json."""
    kind: str
    resolution: int
    unet: dict
    prediction: str = "v"
    schedule: dict = field(default_factory=lambda: {"name": "cosine", "T": 1000})
    classes: list[str] | None = None          # class_base: label names, null label = len(classes)
    low_resolution: int | None = None          # sr: size of the input image
    text_encoder: str | None = None            # text_base: folder name of its text encoder

    def to_dict(self) -> dict:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        if d.get("kind") not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {d.get('kind')!r}; expected one of {MODEL_KINDS}")
        if d.get("prediction") not in ("eps", "x0", "v"):
            raise ValueError(f"unknown prediction {d.get('prediction')!r}; expected eps, x0 or v")
        return cls(**d)


class DiffusionModel(nn.Module):
    """A UNet plus its schedule and parameterisation; `eps(x_t, t, cond)` is the
    ConditionalModel the samplers and guidance wrappers use."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.schedule: NoiseSchedule = make_schedule(config.schedule["name"], config.schedule["T"])
        if config.kind == "text_base":
            self.net = UNet2DConditionModel(**config.unet)
        else:
            self.net = UNet2DModel(**config.unet)

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
        """The raw UNet output (eps, x0 or v, per `config.prediction`)."""
        t = t.to(x_t.device).expand(x_t.shape[0])
        if self.kind == "text_base":
            return self.net(x_t, t, encoder_hidden_states=cond["tokens"],
                            encoder_attention_mask=cond["mask"]).sample
        if self.kind == "class_base":
            return self.net(x_t, t, class_labels=cond["labels"]).sample
        # sr: SR3 concatenation of the upsampled low-res image; augmentation level as a label.
        x_in = torch.cat([x_t, cond["low_res"].to(x_t.dtype)], dim=1)
        return self.net(x_in, t, class_labels=cond["aug_t"]).sample

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        out = self(x_t, t, cond)
        return self.schedule.eps_from_prediction(out, x_t, t, self.config.prediction)

    def null_cond(self, batch: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The unconditional input of a class model (the null label)."""
        if self.kind != "class_base":
            raise ValueError(f"null_cond is defined by the text encoder for kind {self.kind!r}")
        return {"labels": torch.full((batch,), self.num_classes, dtype=torch.long, device=device)}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
