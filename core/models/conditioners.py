"""How a condition reaches the denoising network: one small class per conditioning, registered by
name, each owning its own layers (as EDM's preconditioning and k-diffusion's model wrappers are
small classes around a backbone). A `DiffusionModel` is backbone + conditioner +
parameterisation; its config names the conditioner in ``conditioner: {type, ...its settings}``.

`cond` is a dict of tensors, batch first. The conditionings:
- ``text_tokens``         cross-attention over a text encoder's ``tokens`` [B,L,D] with ``mask``
  [B,L] (Imagen's base); the backbone is a UNet2DConditionModel.
- ``pooled_text_code``    a semantic code predicted from the pooled text ``pooled`` [B,P]:
  code = code_mean + code_std * text_mlp(pooled), fed where DiffAE's z_sem enters (the pixel
  text base, started from the DiffAE decoder; see `core.training.bases`).
- ``label_embedding``     ``labels`` [B] long through the backbone's label embedding; the last
  index (``len(classes)``) is the null label used for guidance.
- ``label_code``          a semantic code drawn for ``labels`` from ``code_noise`` [B, semantic_dim]
  by a one-step generator (`LabelCodeNet`), fed where z_sem enters.
- ``low_res_concat``      SR3: ``low_res`` [B,3,H,W] (the upsampled, noise-augmented input)
  concatenated to x_t; ``aug_t`` [B] the augmentation level through the label slot (CDM / IF).
- ``source_mask_concat``  Palette: ``source`` [B,3,H,W] and ``mask`` [B,1,H,W] concatenated to
  x_t; ``task`` [B] long (an index of ``tasks``) through the label slot.
- ``semantic_code``       DiffAE: a semantic encoder (image -> z_sem) and ``z_sem``
  [B, semantic_dim] projected onto the time embedding, which drives every ResNet block's
  adaptive group normalisation.

Adding a conditioning is one class here with `@register` (and the training task that fills
its `cond`): the model, its checkpoints and the samplers need no change.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

CONDITIONERS: dict[str, type[Conditioner]] = {}


def register(cls: type[Conditioner]) -> type[Conditioner]:
    """Class decorator: make `cls` buildable from a config's ``conditioner.type``."""
    CONDITIONERS[cls.type] = cls
    return cls


class Conditioner(nn.Module):
    """Feeds `cond` to the backbone. Subclasses set `type`, `settings` (the keys of their config
    entry, all required unless in `optional`) and `cross_attention` (the backbone they need)."""
    type: ClassVar[str]
    settings: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    cross_attention: ClassVar[bool] = False
    in_channels: ClassVar[int] = 3   # x_t plus what is concatenated to it

    def __init__(self, spec: dict, time_dim: int):
        super().__init__()
        missing = [k for k in self.settings if k not in self.optional and spec.get(k) in (None, [], ())]
        if missing:
            raise ValueError(f"a {self.type} conditioner needs {', '.join(missing)}")
        self.spec = spec

    def forward(self, net: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def null_cond(self, batch: int, device=None, code_noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise ValueError(f"a {self.type} conditioner has no null condition of its own "
                         "(a text model's is the empty prompt's encoding)")


class _CodeFed(Conditioner):
    """A conditioning that ends in a semantic code fed where DiffAE's z_sem enters: z_proj(code)
    on the time embedding through the backbone's "identity" label slot."""

    def __init__(self, spec: dict, time_dim: int):
        super().__init__(spec, time_dim)
        self.z_proj = nn.Linear(spec["semantic_dim"], time_dim)

    def feed(self, net: nn.Module, x_t: torch.Tensor, t: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return net(x_t, t, class_labels=self.z_proj(code.to(x_t.dtype))).sample


class _Normalised(_CodeFed):
    """A code predicted in normalised units: code = code_mean + code_std * net_output."""

    def __init__(self, spec: dict, time_dim: int):
        super().__init__(spec, time_dim)
        self.register_buffer("code_mean", torch.zeros(spec["semantic_dim"]))
        self.register_buffer("code_std", torch.ones(spec["semantic_dim"]))

    def denormalise(self, out: torch.Tensor) -> torch.Tensor:
        return self.code_mean.to(out) + self.code_std.to(out) * out

    def normalise(self, code: torch.Tensor) -> torch.Tensor:
        return (code - self.code_mean.to(code)) / self.code_std.to(code)


@register
class TextTokens(Conditioner):
    type = "text_tokens"
    settings = ("text_encoder",)
    cross_attention = True

    def forward(self, net, x_t, t, cond):
        return net(x_t, t, encoder_hidden_states=cond["tokens"], encoder_attention_mask=cond["mask"]).sample


@register
class PooledTextCode(_Normalised):
    type = "pooled_text_code"
    settings = ("text_encoder", "pooled_dim", "text_hidden", "semantic_dim")

    def __init__(self, spec: dict, time_dim: int):
        super().__init__(spec, time_dim)
        self.text_mlp = text_code_mlp(spec["pooled_dim"], spec["text_hidden"], spec["semantic_dim"])

    def code(self, pooled: torch.Tensor) -> torch.Tensor:
        """The semantic code [B, semantic_dim] predicted from pooled text."""
        return self.denormalise(self.text_mlp(pooled))

    def forward(self, net, x_t, t, cond):
        return self.feed(net, x_t, t, self.code(cond["pooled"].to(x_t.dtype)))


class _Labelled(Conditioner):
    """Labels with a null label at index len(classes) for classifier-free guidance."""

    def null_cond(self, batch, device=None, code_noise=None):
        return {"labels": torch.full((batch,), len(self.spec["classes"]), dtype=torch.long, device=device)}


@register
class LabelEmbedding(_Labelled):
    type = "label_embedding"
    settings = ("classes",)

    def forward(self, net, x_t, t, cond):
        return net(x_t, t, class_labels=cond["labels"]).sample


@register
class LabelCode(_Labelled, _Normalised):
    type = "label_code"
    settings = ("classes", "semantic_dim", "code_hidden", "code_modes")
    optional = ("code_modes",)

    def __init__(self, spec: dict, time_dim: int):
        super().__init__(spec, time_dim)
        self.label_code = LabelCodeNet(len(spec["classes"]) + 1, spec["semantic_dim"], spec["code_hidden"],
                                       spec.get("code_modes") or 0)

    def code(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The semantic code [B, semantic_dim] drawn for `labels` from `noise`."""
        return self.denormalise(self.label_code(labels, noise))

    def forward(self, net, x_t, t, cond):
        return self.feed(net, x_t, t, self.code(cond["labels"], cond["code_noise"].to(x_t.dtype)))

    def null_cond(self, batch, device=None, code_noise=None):
        """The null label, with the noise of its codes (None: zeros, the centre of the generator's input)."""
        cond = super().null_cond(batch, device)
        dim = self.spec["semantic_dim"]
        if code_noise is None:
            code_noise = torch.zeros(batch, dim, device=device)
        elif code_noise.shape != (batch, dim):
            raise ValueError(f"code_noise must be [{batch}, {dim}], got {tuple(code_noise.shape)}")
        cond["code_noise"] = code_noise.to(device)
        return cond


@register
class LowResConcat(Conditioner):
    type = "low_res_concat"
    settings = ("low_resolution",)
    in_channels = 6

    def forward(self, net, x_t, t, cond):
        x_in = torch.cat([x_t, cond["low_res"].to(x_t.dtype)], dim=1)
        return net(x_in, t, class_labels=cond["aug_t"]).sample


@register
class SourceMaskConcat(Conditioner):
    type = "source_mask_concat"
    settings = ("tasks",)
    in_channels = 7

    def forward(self, net, x_t, t, cond):
        x_in = torch.cat([x_t, cond["source"].to(x_t.dtype), cond["mask"].to(x_t.dtype)], dim=1)
        return net(x_in, t, class_labels=cond["task"]).sample


@register
class SemanticCode(_CodeFed):
    type = "semantic_code"
    settings = ("semantic_dim", "encoder_channels")

    def __init__(self, spec: dict, time_dim: int):
        super().__init__(spec, time_dim)
        self.encoder = SemanticEncoder(tuple(spec["encoder_channels"]), spec["semantic_dim"])

    def forward(self, net, x_t, t, cond):
        return self.feed(net, x_t, t, cond["z_sem"])


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
