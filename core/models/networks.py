"""Denoising networks: diffusers UNets built from small explicit configs, wrapped so every
model answers one question, `eps(x_t, t, cond)`, whatever it predicts and however it is
conditioned. The UNet is diffusers' own class (`network="diffusers"`, for training) or the
same network from `core.models.unet` (`network="core"`: same weights and outputs, no diffusers import,
what `core.models.checkpoints.load_model` uses for inference).

Kinds and their conditioning (`cond` is a dict of tensors, batch first):
- ``text_base``  conditioned on a text encoder's output (`TextEmbeddings.as_cond`: ``tokens``
  [B,L,D], ``mask`` [B,L], ``pooled`` [B,P]); the unconditional input is the empty prompt's
  encoding. ``text_conditioning`` says how:
  "tokens" (default): a UNet2DConditionModel, cross-attention over ``tokens``;
  "pooled": the DiffAE decoder's UNet2DModel, whose time embedding receives z_proj(code) with
  code = code_mean + code_std * text_mlp(pooled), a semantic code predicted from the text (see
  `core.training.bases`: it starts as the committed DiffAE decoder and a regression text ->
  z_sem, then is fine-tuned end to end with the diffusion loss).
- ``class_base`` conditioned on ``labels`` [B] long, the last index (``num_classes``) is the null
  label used for guidance. ``label_conditioning`` says how:
  "embedding" (default): a UNet2DModel with a label embedding, trained from scratch;
  "code": the DiffAE decoder's UNet2DModel fed z_proj(code) as the pooled text base is, with
  code = code_mean + code_std * label_code(label, noise): a one-step generator of semantic codes
  (`LabelCodeNet`, a regression or a mixture of centres, ``code_modes``) distilled from the
  semantic prior's sampler (see `core.training.bases`). One
  label stands for many emoji, so the code is drawn: ``code_noise`` [B, semantic_dim] is its
  N(0, I) input, one draw per seed (`core.pipeline.class_conds`).
- ``sr``         UNet2DModel with 6 input channels (SR3): ``low_res`` [B,3,H,W], the low-res
  image upsampled to the output size and noise-augmented, concatenated to x_t; ``aug_t`` [B]
  the augmentation level, fed through the class-embedding slot as a timestep (CDM / IF).
  With ``residual_scale`` set, the diffused x0 is the scaled residual over the clean upsampled
  low-res image instead of the image itself (see `core.pipeline.upscale`).
- ``palette``    UNet2DModel with 7 input channels (Palette): ``source`` [B,3,H,W] (the
  grayscale or masked image) and ``mask`` [B,1,H,W] (1 = to fill) concatenated to x_t; ``task``
  [B] long picks the task (see `PALETTE_TASKS`) through the label embedding. With
  ``residual_scale`` set, the diffused x0 is the scaled residual over the task's baseline (the
  grayscale image; the mean-colour fill of the mask) (see `core.translate.palette_baseline`).
- ``diffae``     a semantic encoder (image -> z_sem [B, semantic_dim], `SemanticEncoder`) and a
  UNet2DModel decoder conditioned on z_sem (DiffAE): z_sem is projected to the time-embedding
  width and added to the time embedding, which drives every ResNet block's adaptive group
  normalisation (``resnet_time_scale_shift="scale_shift"``). cond: ``z_sem`` [B, semantic_dim].
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from core import cancel
from core.diffusion.schedules import NoiseSchedule, make_schedule
from core.models.unet import UNet

ModelKind = Literal["text_base", "class_base", "sr", "palette", "diffae"]
MODEL_KINDS: tuple[str, ...] = ("text_base", "class_base", "sr", "palette", "diffae")
PALETTE_TASKS: tuple[str, ...] = ("colorize", "inpaint")
Prediction = Literal["eps", "x0", "v"]
Network = Literal["diffusers", "core"]
NETWORKS: tuple[str, ...] = ("diffusers", "core")


TEXT_CONDITIONINGS: tuple[str, ...] = ("tokens", "pooled")
LABEL_CONDITIONINGS: tuple[str, ...] = ("embedding", "code")


def cross_attends(kind: str | None, text_conditioning: str | None = None) -> bool:
    """Whether a model of `kind` is a UNet2DConditionModel (cross-attention over text tokens)."""
    return kind == "text_base" and (text_conditioning or "tokens") == "tokens"


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
    # sr, palette: x0 is residual_scale * (image - baseline); None: x0 is the image
    residual_scale: float | None = None
    text_encoder: str | None = None            # text_base: folder name of its text encoder
    text_conditioning: str | None = None       # text_base: "tokens" (None) or "pooled" (see above)
    pooled_dim: int | None = None              # text_base, pooled: width of the text encoder's pooled output
    text_hidden: int | None = None             # text_base, pooled: hidden width of text_mlp
    label_conditioning: str | None = None      # class_base: "embedding" (None) or "code" (see above)
    code_hidden: int | None = None             # class_base, code: hidden width of label_code
    code_modes: int | None = None              # class_base, code: centres of label_code's mixture (None: regression)
    semantic_dim: int | None = None            # diffae, pooled text_base, code class_base: width of z_sem
    guidance: float | None = None              # a base's default guidance, measured (None: the pipeline's)
    encoder_channels: tuple[int, ...] | None = None  # diffae: channels of the semantic encoder

    def to_dict(self) -> dict:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        if d.get("kind") not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {d.get('kind')!r}; expected one of {MODEL_KINDS}")
        if d.get("prediction") not in ("eps", "x0", "v"):
            raise ValueError(f"unknown prediction {d.get('prediction')!r}; expected eps, x0 or v")
        if d.get("text_conditioning") not in (None, *TEXT_CONDITIONINGS):
            raise ValueError(f"unknown text_conditioning {d.get('text_conditioning')!r}; "
                             f"expected one of {TEXT_CONDITIONINGS}")
        if d.get("label_conditioning") not in (None, *LABEL_CONDITIONINGS):
            raise ValueError(f"unknown label_conditioning {d.get('label_conditioning')!r}; "
                             f"expected one of {LABEL_CONDITIONINGS}")
        return cls(**d)

    @property
    def pooled_text(self) -> bool:
        return self.kind == "text_base" and self.text_conditioning == "pooled"

    @property
    def sampled_code(self) -> bool:
        """A class base whose label draws a semantic code for the DiffAE decoder (``code``)."""
        return self.kind == "class_base" and self.label_conditioning == "code"

    @property
    def code_conditioned(self) -> bool:
        """Whether the UNet is a DiffAE decoder's, fed z_proj(a semantic code)."""
        return self.kind == "diffae" or self.pooled_text or self.sampled_code


class DiffusionModel(nn.Module):
    """A UNet plus its schedule and parameterisation; `eps(x_t, t, cond)` is the
    ConditionalModel the samplers and guidance wrappers use."""

    def __init__(self, config: ModelConfig, network: Network = "diffusers"):
        super().__init__()
        self.config = config
        self.schedule: NoiseSchedule = make_schedule(config.schedule["name"], config.schedule["T"])
        self.net = build_unet(config.unet, cross_attends(config.kind, config.text_conditioning), network)
        if config.kind == "diffae":
            if not config.semantic_dim or not config.encoder_channels:
                raise ValueError("a diffae config needs semantic_dim and encoder_channels")
            self.encoder = SemanticEncoder(tuple(config.encoder_channels), config.semantic_dim)
        if config.pooled_text:
            if not config.semantic_dim or not config.pooled_dim or not config.text_hidden:
                raise ValueError("a pooled text_base config needs semantic_dim, pooled_dim and text_hidden")
            self.text_mlp = text_code_mlp(config.pooled_dim, config.text_hidden, config.semantic_dim)
        if config.sampled_code:
            if not config.semantic_dim or not config.code_hidden or not config.classes:
                raise ValueError("a code class_base config needs semantic_dim, code_hidden and classes")
            self.label_code = LabelCodeNet(len(config.classes) + 1, config.semantic_dim, config.code_hidden,
                                          config.code_modes or 0)
        if config.pooled_text or config.sampled_code:
            self.register_buffer("code_mean", torch.zeros(config.semantic_dim))
            self.register_buffer("code_std", torch.ones(config.semantic_dim))
        if config.code_conditioned:
            time_dim = self.net.time_embedding.linear_2.out_features
            self.z_proj = nn.Linear(config.semantic_dim, time_dim)

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
        if self.config.pooled_text:   # the predicted code enters where DiffAE's z_sem does
            return self.net(x_t, t, class_labels=self.z_proj(self.text_code(cond["pooled"].to(x_t.dtype)))).sample
        if self.kind == "text_base":
            return self.net(x_t, t, encoder_hidden_states=cond["tokens"],
                            encoder_attention_mask=cond["mask"]).sample
        if self.config.sampled_code:   # the drawn code enters where DiffAE's z_sem does
            code = self.class_code(cond["labels"], cond["code_noise"].to(x_t.dtype))
            return self.net(x_t, t, class_labels=self.z_proj(code)).sample
        if self.kind == "class_base":
            return self.net(x_t, t, class_labels=cond["labels"]).sample
        if self.kind == "palette":  # Palette: the condition image and mask concatenated to x_t
            x_in = torch.cat([x_t, cond["source"].to(x_t.dtype), cond["mask"].to(x_t.dtype)], dim=1)
            return self.net(x_in, t, class_labels=cond["task"]).sample
        if self.kind == "diffae":   # z_sem enters through the time embedding ("identity" class embedding)
            return self.net(x_t, t, class_labels=self.z_proj(cond["z_sem"].to(x_t.dtype))).sample
        # sr: SR3 concatenation of the upsampled low-res image; augmentation level as a label.
        x_in = torch.cat([x_t, cond["low_res"].to(x_t.dtype)], dim=1)
        return self.net(x_in, t, class_labels=cond["aug_t"]).sample

    def text_code(self, pooled: torch.Tensor) -> torch.Tensor:
        """A pooled text_base: the semantic code [B, semantic_dim] it predicts from pooled text."""
        return self.code_mean.to(pooled) + self.code_std.to(pooled) * self.text_mlp(pooled)

    def class_code(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A code class_base: the semantic code [B, semantic_dim] it draws for `labels` from `noise`."""
        return self.code_mean.to(noise) + self.code_std.to(noise) * self.label_code(labels, noise)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        cancel.check()  # a cancelled job stops here, between network evaluations (core.cancel)
        out = self(x_t, t, cond)
        return self.schedule.eps_from_prediction(out, x_t, t, self.config.prediction)

    def null_cond(self, batch: int, device: torch.device | str | None = None,
                  code_noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The unconditional input of a class model (the null label). A code class base also
        takes the noise of its codes (`code_noise`, [batch, semantic_dim]; None: zeros, the
        centre of the code generator's input)."""
        if self.kind != "class_base":
            raise ValueError(f"null_cond is defined by the text encoder for kind {self.kind!r}")
        cond = {"labels": torch.full((batch,), self.num_classes, dtype=torch.long, device=device)}
        if self.config.sampled_code:
            cond["code_noise"] = self._code_noise(code_noise, batch, device)
        return cond

    def _code_noise(self, noise: torch.Tensor | None, batch: int, device=None) -> torch.Tensor:
        """`noise` as a code class base's ``code_noise`` of `batch` rows (None: zeros)."""
        dim = self.config.semantic_dim
        if noise is None:
            return torch.zeros(batch, dim, device=device)
        if noise.shape != (batch, dim):
            raise ValueError(f"code_noise must be [{batch}, {dim}], got {tuple(noise.shape)}")
        return noise.to(device)


class SemanticEncoder(nn.Module):
    """DiffAE's semantic encoder: a small strided conv net, image [-1, 1] -> z_sem."""

    def __init__(self, channels: tuple[int, ...], semantic_dim: int, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, padding=1)]
        for c_in, c_out in zip(channels, channels[1:] + channels[-1:]):
            layers += [nn.GroupNorm(min(32, c_in), c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)]
        layers += [nn.GroupNorm(min(32, channels[-1]), channels[-1]), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                   nn.Flatten(), nn.Linear(channels[-1], semantic_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def text_code_mlp(pooled_dim: int, hidden: int, semantic_dim: int) -> nn.Sequential:
    """Pooled text -> a normalised semantic code: two hidden SiLU layers."""
    return nn.Sequential(nn.Linear(pooled_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, semantic_dim))


class LabelCodeNet(nn.Module):
    """(label, noise) -> a normalised semantic code: a one-step generator of the codes of a label.
    The label's embedding is added to the projected N(0, I) noise, then three SiLU layers; the null
    label (the last) draws codes of any emoji. It learns the map the semantic prior's
    deterministic sampler computes from the same noise (`core.training.bases`), one network
    evaluation instead of the prior's 25 steps (distillation, Luhman & Luhman 2021).

    With ``modes`` = 0 the last layer is the code (a regression). A label's codes are not one blob
    but clusters, one per emoji; a regression across the jump from one cluster to the next
    averages them, and the decoder draws a blend. With ``modes`` > 0 the code is a mixture: the
    network scores ``modes`` fixed centres (`mode_codes`, each owned by a label in `mode_labels`;
    the null label may pick any) against learned keys, takes the best-scoring centre of its label
    and adds a residual: code = mode_codes[argmax_k <query, key_k>] + residual. The choice is a
    classification, so the network can draw a sharp line between two emoji (mixture density
    networks, Bishop 1994; the choice as in multiple-choice learning, Guzman-Rivera et al. 2012)."""

    def __init__(self, num_labels: int, dim: int, hidden: int, modes: int = 0):
        super().__init__()
        self.dim, self.modes, self.null = dim, modes, num_labels - 1
        self.label_emb = nn.Embedding(num_labels, hidden)
        self.noise_in = nn.Linear(dim, hidden)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, 2 * dim if modes else dim))
        if modes:
            self.mode_keys = nn.Parameter(torch.randn(modes, dim) / dim ** 0.5)
            self.register_buffer("mode_codes", torch.zeros(modes, dim))
            self.register_buffer("mode_labels", torch.zeros(modes, dtype=torch.long))

    def forward(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if not self.modes:
            return self.net(self.noise_in(noise) + self.label_emb(labels).to(noise.dtype))
        residual, logits = self.mixture(labels, noise)
        return self.mode_codes[logits.argmax(1)].to(residual) + residual

    def mixture(self, labels: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual [B, dim], logits [B, modes]) with the modes of other labels at -inf."""
        out = self.net(self.noise_in(noise) + self.label_emb(labels).to(noise.dtype))
        residual, query = out[:, :self.dim], out[:, self.dim:]
        logits = query @ self.mode_keys.to(query).T
        own = (self.mode_labels[None] == labels[:, None]) | (labels[:, None] == self.null)
        return residual, logits.masked_fill(~own, float("-inf"))


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
