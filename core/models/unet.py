"""The project's UNets for inference, without diffusers: the same state-dict keys and the same
arithmetic as diffusers' `UNet2DModel` and `UNet2DConditionModel` (DDPM / ADM UNets, Ho et al.
2020; Dhariwal & Nichol 2021; cross-attention as in latent diffusion, Rombach et al. 2022) for
the block types this project's configs use, so a checkpoint trained with diffusers loads here
unchanged and gives the same output (tests/test_unet.py checks it against diffusers on tiny
seeded configs and on the committed checkpoints).

Why: importing diffusers' UNets costs several seconds on a CPU (its package pulls in
torch._dynamo, every transformer model class and the transformers library), more than a whole
128 px cascade; this module needs only torch. Training, parity tests and DeepFloyd IF keep
using diffusers (`core.models.networks.DiffusionModel(config)`); `core.models.loading.load_model` builds
these networks when `supports(kind, config)` says a config is covered, and diffusers' otherwise.

Covered: down blocks DownBlock2D / AttnDownBlock2D / CrossAttnDownBlock2D, the matching up
blocks, mid blocks UNetMidBlock2D / UNetMidBlock2DCrossAttn (or none), positional time
embedding, class embeddings (label table, "timestep", "identity"), "default" and
"scale_shift" (AdaGN) time conditioning, conv or linear projections in the transformer.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Each diffusers class's constructor defaults for every key our networks may be given; a config
# key outside this table, or a value outside SUPPORTED, is not covered (`supports` says which).
IMAGE_DEFAULTS: dict = dict(
    sample_size=None, in_channels=3, out_channels=3, center_input_sample=False, time_embedding_type="positional",
    time_embedding_dim=None, freq_shift=0, flip_sin_to_cos=True,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    mid_block_type="UNetMidBlock2D",
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(224, 448, 672, 896), layers_per_block=2, mid_block_scale_factor=1, downsample_padding=1,
    downsample_type="conv", upsample_type="conv", dropout=0.0, act_fn="silu", attention_head_dim=8,
    norm_num_groups=32, attn_norm_num_groups=None, norm_eps=1e-5, resnet_time_scale_shift="default",
    add_attention=True, class_embed_type=None, num_class_embeds=None, num_train_timesteps=None,
)
TEXT_DEFAULTS: dict = dict(
    sample_size=None, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
    mid_block_scale_factor=1, dropout=0.0, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
    cross_attention_dim=1280, transformer_layers_per_block=1, reverse_transformer_layers_per_block=None,
    encoder_hid_dim=None, encoder_hid_dim_type=None, attention_head_dim=8, num_attention_heads=None,
    dual_cross_attention=False, use_linear_projection=False, class_embed_type=None, addition_embed_type=None,
    addition_time_embed_dim=None, num_class_embeds=None, upcast_attention=False, resnet_time_scale_shift="default",
    resnet_skip_time_act=False, resnet_out_scale_factor=1.0, time_embedding_type="positional",
    time_embedding_dim=None, time_embedding_act_fn=None, timestep_post_act=None, time_cond_proj_dim=None,
    conv_in_kernel=3, conv_out_kernel=3, projection_class_embeddings_input_dim=None, attention_type="default",
    class_embeddings_concat=False, mid_block_only_cross_attention=None, cross_attention_norm=None,
    addition_embed_type_num_heads=64,
)
# Values other than the default that this module implements (anything else: not covered).
SUPPORTED: dict[str, tuple] = {
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D"),
    "mid_block_type": ("UNetMidBlock2D", "UNetMidBlock2DCrossAttn", None),
    "class_embed_type": (None, "timestep", "identity"),
    "resnet_time_scale_shift": ("default", "scale_shift"),
    "act_fn": ("silu", "swish"),
    "time_embedding_type": ("positional",),
    "downsample_type": ("conv",),
    "upsample_type": ("conv",),
    "downsample_padding": (1,),
    "mid_block_scale_factor": (1, 1.0),
    "resnet_out_scale_factor": (1.0,),
}
# Keys whose value only matters for training (dropout) or for another dtype (fp16 upcasting), or
# that are checked for their shape rather than listed (sizes, counts).
FREE_KEYS = frozenset({
    "sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block", "dropout",
    "attention_head_dim", "norm_num_groups", "norm_eps", "add_attention", "num_class_embeds", "freq_shift",
    "flip_sin_to_cos", "cross_attention_dim", "use_linear_projection", "upcast_attention",
    "transformer_layers_per_block", "attn_norm_num_groups", "time_embedding_dim",
})


class UNetOutput(NamedTuple):
    """The output as diffusers returns it (`.sample`)."""
    sample: Tensor


def unsupported(conditional: bool, config: dict) -> str | None:
    """Why this module cannot build `config` (a UNet2DConditionModel config if `conditional`, a
    UNet2DModel config otherwise), or None if it can."""
    defaults = TEXT_DEFAULTS if conditional else IMAGE_DEFAULTS
    for key, value in config.items():
        if key not in defaults:
            return f"config key {key!r}"
        default = defaults[key]
        if key in FREE_KEYS or value == default or (isinstance(value, list) and tuple(value) == default):
            continue
        allowed = SUPPORTED.get(key)
        values = value if key in ("down_block_types", "up_block_types") else [value]
        if allowed is None or any(v not in allowed for v in values):
            return f"{key}={value!r}"
    merged = {**defaults, **config}
    for key in ("attention_head_dim", "cross_attention_dim", "transformer_layers_per_block", "layers_per_block"):
        if key in merged and not isinstance(merged[key], int):
            return f"{key} per block ({merged[key]!r})"
    if conditional and merged["class_embed_type"] == "identity":
        return "class_embed_type='identity' in a UNet2DConditionModel"
    if conditional and merged["mid_block_type"] not in ("UNetMidBlock2DCrossAttn", None):
        return f"mid_block_type={merged['mid_block_type']!r} in a UNet2DConditionModel"
    wrong = "AttnDownBlock2D", "AttnUpBlock2D"
    if not conditional:
        wrong = "CrossAttnDownBlock2D", "CrossAttnUpBlock2D"
    for name in (*merged["down_block_types"], *merged["up_block_types"]):
        if name in wrong:
            return f"{name} in a {'UNet2DConditionModel' if conditional else 'UNet2DModel'}"
    if len(merged["down_block_types"]) != len(merged["up_block_types"]) or \
            len(merged["down_block_types"]) != len(merged["block_out_channels"]):
        return "block lists of different lengths"
    return None


def supports(conditional: bool, config: dict) -> bool:
    """Whether the UNet config `config` is covered (a UNet2DConditionModel's if `conditional`)."""
    return unsupported(conditional, config) is None


# ---- layers --------------------------------------------------------------------------------------
def timestep_embedding(t: Tensor, dim: int, flip_sin_to_cos: bool, shift: float, max_period: float = 10000) -> Tensor:
    """Sinusoidal embedding of t (Vaswani et al. 2017; DDPM's time embedding), diffusers'
    `get_timestep_embedding`: frequencies exp(-log(max_period) i / (dim/2 - shift))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - shift))
    emb = t[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2 (the MLP on the sinusoidal embedding)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added between (or, "scale_shift", applied as
    AdaGN: norm(h) (1 + scale) + shift, Dhariwal & Nichol 2021, sec. 3), and a 1x1 shortcut when
    the width changes."""

    def __init__(self, c_in: int, c_out: int, temb: int, groups: int, eps: float, scale_shift: bool):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, 2 * c_out if scale_shift else c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        temb = self.time_emb_proj(F.silu(temb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = torch.chunk(temb, 2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + temb)
        h = self.conv2(F.silu(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """Multi-head attention as diffusers' `Attention` with its SDPA processor: over the pixels of
    [B, C, H, W] (optionally group-normed first, with a residual connection: the UNet2DModel
    self-attention block) or over tokens [B, N, C] (the transformer's), keys and values from
    `context` when given (cross-attention); `bias` [B, 1, L] is added to the scores."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, bias: bool = False,
                 groups: int | None = None, eps: float = 1e-5, residual: bool = False):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.residual = heads, residual
        self.group_norm = nn.GroupNorm(groups, dim, eps=eps) if groups else None
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])

    def forward(self, x: Tensor, context: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        residual = x
        image = x.ndim == 4
        if image:
            b, c, hgt, wid = x.shape
            x = x.view(b, c, hgt * wid).transpose(1, 2)
        b = x.shape[0]
        if self.group_norm is not None:
            x = self.group_norm(x.transpose(1, 2)).transpose(1, 2)
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        d = k.shape[-1] // self.heads
        q, k, v = (y.view(b, -1, self.heads, d).transpose(1, 2) for y in (q, k, v))
        if bias is not None:  # [B, 1, L] -> [B, heads, 1, L]
            bias = bias.repeat_interleave(self.heads, dim=0).view(b, self.heads, -1, bias.shape[-1])
        # softmax(q k^T / sqrt(d) + bias) v (Vaswani et al. 2017, eq. 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=0.0, is_causal=False)
        out = self.to_out[0](out.transpose(1, 2).reshape(b, -1, self.heads * d).to(q.dtype))
        if image:
            out = out.transpose(-1, -2).reshape(b, c, hgt, wid)
        return out + residual if self.residual else out


class GEGLU(nn.Module):
    """proj, then a * GELU(gate) (Shazeer 2020)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: Tensor) -> Tensor:
        return self.net[2](self.net[0](x))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the text tokens, GEGLU feed-forward, each with
    a residual (diffusers' BasicTransformerBlock, norm_type "layer_norm")."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: Tensor, context: Tensor, bias: Tensor | None) -> Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context, bias) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    """GroupNorm, 1x1 conv (or linear) in, transformer blocks over the pixels, out, plus the input
    (diffusers' Transformer2DModel on continuous input)."""

    def __init__(self, channels: int, heads: int, context_dim: int, groups: int, layers: int, linear: bool):
        super().__init__()
        head_dim = channels // heads
        inner = heads * head_dim
        self.linear = linear
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(inner, heads, head_dim, context_dim) for _ in range(layers)])
        self.proj_out = nn.Linear(inner, channels) if linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: Tensor, context: Tensor, bias: Tensor | None) -> Tensor:
        b, _, hgt, wid = x.shape
        residual = x
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        inner = h.shape[1]
        h = h.permute(0, 2, 3, 1).reshape(b, hgt * wid, inner)
        if self.linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, context, bias)
        if self.linear:
            h = self.proj_out(h)
        h = h.reshape(b, hgt, wid, inner).permute(0, 3, 1, 2).contiguous()
        if not self.linear:
            h = self.proj_out(h)
        return h + residual


class Resample(nn.Module):
    """A 3x3 conv after nearest 2x upsampling (`up`) or with stride 2."""

    def __init__(self, channels: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(channels, channels, 3, stride=1 if up else 2, padding=1)

    def forward(self, x: Tensor, size=None) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest") if size is None else \
                F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class Block(nn.Module):
    """A down or up level: resnets, each followed by an attention when the level has them, then a
    resampler. Up levels concatenate a skip connection before each resnet."""

    def __init__(self, kind: str, resnets: list[nn.Module], attentions: list[nn.Module] | None,
                 resample: nn.Module | None, up: bool):
        super().__init__()
        self.kind, self.up = kind, up
        self.attentions = nn.ModuleList(attentions) if attentions else None  # diffusers' key order
        self.resnets = nn.ModuleList(resnets)
        self.has_resample = resample is not None
        if resample is not None:  # diffusers' key names: downsamplers.0 / upsamplers.0
            setattr(self, "upsamplers" if up else "downsamplers", nn.ModuleList([resample]))

    def forward(self, x: Tensor, temb: Tensor, context: Tensor | None, bias: Tensor | None,
                skips: list[Tensor] | None = None, size=None):
        outputs = []
        for i, resnet in enumerate(self.resnets):
            if skips is not None:
                x = torch.cat([x, skips.pop()], dim=1)
            x = resnet(x, temb)
            if self.attentions is not None:
                attn = self.attentions[i]
                x = attn(x, context, bias) if self.kind == "cross" else attn(x)
            outputs.append(x)
        if self.has_resample:
            x = self.upsamplers[0](x, size) if self.up else self.downsamplers[0](x)
            outputs.append(x)
        return x, outputs


class MidBlock(nn.Module):
    """resnet, then (attention, resnet) pairs."""

    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module], cross: bool):
        super().__init__()
        self.cross = cross
        self.attentions = nn.ModuleList(attentions)
        self.resnets = nn.ModuleList(resnets)

    def forward(self, x: Tensor, temb: Tensor, context: Tensor | None, bias: Tensor | None) -> Tensor:
        x = self.resnets[0](x, temb)
        for i, resnet in enumerate(self.resnets[1:]):
            if len(self.attentions):
                x = self.attentions[i](x, context, bias) if self.cross else self.attentions[i](x)
            x = resnet(x, temb)
        return x


# ---- the network ---------------------------------------------------------------------------------
class UNet(nn.Module):
    """A UNet2DModel (`conditional=False`) or UNet2DConditionModel (`conditional=True`) built from
    its diffusers config dict; call it as diffusers': net(x, t, encoder_hidden_states=...,
    encoder_attention_mask=..., class_labels=...).sample."""

    def __init__(self, config: dict, conditional: bool):
        super().__init__()
        reason = unsupported(conditional, config)
        if reason is not None:
            raise ValueError(f"core.models.unet does not implement {reason}; use diffusers' class")
        c = {**(TEXT_DEFAULTS if conditional else IMAGE_DEFAULTS), **config}
        self.conditional = conditional
        channels = list(c["block_out_channels"])
        groups, eps, layers = c["norm_num_groups"], c["norm_eps"], c["layers_per_block"]
        scale_shift = c["resnet_time_scale_shift"] == "scale_shift"
        temb = c["time_embedding_dim"] or channels[0] * 4
        self.flip_sin_to_cos, self.freq_shift, self.time_dim = c["flip_sin_to_cos"], c["freq_shift"], channels[0]
        self.class_embed_type = c["class_embed_type"]
        context_dim = c.get("cross_attention_dim")
        linear = bool(c.get("use_linear_projection", False))
        t_layers = c.get("transformer_layers_per_block", 1)
        head_dim = c["attention_head_dim"]

        def heads_of(width: int) -> tuple[int, int]:
            # UNet2DConditionModel reads attention_head_dim as the number of heads (diffusers #2011)
            return (head_dim, width // head_dim) if conditional else (width // head_dim, head_dim)

        def resnet(c_in: int, c_out: int) -> ResnetBlock:
            return ResnetBlock(c_in, c_out, temb, groups, eps, scale_shift)

        def attention(width: int, kind: str, attn_groups: int | None = groups) -> nn.Module:
            if kind == "cross":
                return Transformer2D(width, heads_of(width)[0], context_dim, groups, t_layers, linear)
            h, d = heads_of(width)
            return Attention(width, h, d, bias=True, groups=attn_groups, eps=eps, residual=True)

        self.conv_in = nn.Conv2d(c["in_channels"], channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        if self.class_embed_type is None and c["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(c["num_class_embeds"], temb)
        elif self.class_embed_type == "timestep":
            self.class_embedding = TimestepEmbedding(channels[0], temb)
        elif self.class_embed_type == "identity":
            self.class_embedding = nn.Identity()
        else:
            self.class_embedding = None

        kinds = {"DownBlock2D": None, "AttnDownBlock2D": "self", "CrossAttnDownBlock2D": "cross",
                 "UpBlock2D": None, "AttnUpBlock2D": "self", "CrossAttnUpBlock2D": "cross"}
        self.down_blocks = nn.ModuleList()
        c_out = channels[0]
        for i, name in enumerate(c["down_block_types"]):
            c_in, c_out = c_out, channels[i]
            kind = kinds[name]
            last = i == len(channels) - 1
            self.down_blocks.append(Block(
                kind, [resnet(c_in if j == 0 else c_out, c_out) for j in range(layers)],
                [attention(c_out, kind) for _ in range(layers)] if kind else None,
                None if last else Resample(c_out, up=False), up=False))

        self.up_blocks = nn.ModuleList()  # registered before the mid block, as in diffusers
        mid = c["mid_block_type"]
        self.mid_block = None
        if mid is not None and conditional:
            self.mid_block = MidBlock([resnet(channels[-1], channels[-1]) for _ in range(2)],
                                      [attention(channels[-1], "cross")], cross=True)
        elif mid is not None:  # UNet2DModel builds a UNetMidBlock2D whatever the name
            attn_groups = c["attn_norm_num_groups"] or (groups if not scale_shift else None)
            self.mid_block = MidBlock(
                [resnet(channels[-1], channels[-1]) for _ in range(2)],
                [attention(channels[-1], "self", attn_groups)] if c["add_attention"] else [], cross=False)

        rev = channels[::-1]
        c_out = rev[0]
        for i, name in enumerate(c["up_block_types"]):
            prev, c_out = c_out, rev[i]
            c_skip_in = rev[min(i + 1, len(channels) - 1)]
            kind = kinds[name]
            last = i == len(channels) - 1
            n = layers + 1
            self.up_blocks.append(Block(
                kind, [resnet((prev if j == 0 else c_out) + (c_skip_in if j == n - 1 else c_out), c_out)
                       for j in range(n)],
                [attention(c_out, kind) for _ in range(n)] if kind else None,
                None if last else Resample(c_out, up=True), up=True))

        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=eps)
        self.conv_out = nn.Conv2d(channels[0], c["out_channels"], 3, padding=1)
        self.num_upsamplers = len(channels) - 1

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, sample: Tensor, timestep: Tensor, encoder_hidden_states: Tensor | None = None,
                class_labels: Tensor | None = None, encoder_attention_mask: Tensor | None = None) -> UNetOutput:
        if timestep.ndim == 0:
            timestep = timestep[None].to(sample.device)
        timestep = timestep.expand(sample.shape[0])
        temb = timestep_embedding(timestep, self.time_dim, self.flip_sin_to_cos, self.freq_shift)
        emb = self.time_embedding(temb.to(sample.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("class_labels should be provided when doing class conditioning")
            if self.class_embed_type == "timestep":
                class_labels = timestep_embedding(class_labels, self.time_dim, self.flip_sin_to_cos,
                                                  self.freq_shift).to(sample.dtype)
            emb = emb + self.class_embedding(class_labels).to(sample.dtype)
        bias = None
        if encoder_attention_mask is not None:  # 1 = keep, 0 = drop, as an additive score bias
            bias = ((1 - encoder_attention_mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
        context = encoder_hidden_states

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, outputs = block(x, emb, context, bias)
            skips += outputs
        if self.mid_block is not None:
            x = self.mid_block(x, emb, context, bias)
        factor = 2 ** self.num_upsamplers
        odd = any(s % factor for s in sample.shape[-2:])
        for i, block in enumerate(self.up_blocks):
            mine = skips[len(skips) - len(block.resnets):]
            del skips[len(skips) - len(block.resnets):]
            size = skips[-1].shape[2:] if odd and i < len(self.up_blocks) - 1 else None
            x, _ = block(x, emb, context, bias, skips=mine, size=size)
        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        return UNetOutput(x)
