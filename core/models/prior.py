"""A diffusion prior over DiffAE's semantic code: text or a class label -> z_sem.

The two-stage design of DALL-E 2 (Ramesh et al. 2022, sec. 2.1: a prior from the text embedding
to an image embedding, a decoder from that embedding to pixels) with DiffAE's own latent DDIM
(Preechakul et al. 2022, sec. 3.3: a diffusion model over z_sem makes the autoencoder a
generative model). Here the "image embedding" is the committed DiffAE's z_sem, normalised per
dimension with the mean / std of the training-split codes (stored in the checkpoint), and the
decoder is the DiffAE decoder (32 px), followed by the SR 64 and SR 128 stages.

The network (`SemanticPrior`) is an MLP over the 256-d normalised code: residual blocks with
adaptive layer norm driven by one embedding e = time(t) + text(pooled CLIP) + label(subgroup)
(adaLN-Zero of DiT, Peebles & Xie 2023, sec. 3.2), predicting x0 (DALL-E 2 sec. 2.1: the prior
predicts the unnoised embedding directly). The conditions are optional per sample: a missing
text is a learned null vector and a missing label the null label `num_classes`, so with both
missing the network is the unconditional prior, and classifier-free guidance
(`core.diffusion.guidance.cfg_denoiser`) mixes the conditional and unconditional halves.

cond (batch first): ``text`` [B, text_dim] pooled text embedding, ``has_text`` [B] float
(1 = use ``text``, 0 = null text), ``labels`` [B] long (``num_classes`` = no label).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core import cancel
from core.checks import seed_streams
from core.diffusion.guidance import cfg_denoiser
from core.diffusion.rng import BatchGenerator
from core.diffusion.samplers import sample
from core.diffusion.schedules import NoiseSchedule, make_schedule
from core.models.checkpoints import JsonConfig
from core.models.sampling import sampling_default

NOISE_STREAM = 7   # the stream of each seed the starting noise is drawn from (`core.checks.seed_streams`)
# The sampling of a prior whose config names none (one trained just now); the committed prior's
# measured defaults are in its config.json `sampling` (checkpoints/prior/README.md).
FALLBACK_SAMPLING = {"sampler": "ddim", "steps": 25, "guidance": 3.0}


@dataclass
class PriorConfig(JsonConfig):
    """Everything needed to rebuild a prior; stored as config.json."""
    kind: str = "prior"
    dim: int = 256                    # width of z_sem (the DiffAE's semantic_dim)
    text_dim: int = 192               # width of the pooled text embedding
    classes: list[str] = field(default_factory=list)   # label names; the null label is len(classes)
    width: int = 384
    depth: int = 4
    mlp_ratio: int = 2
    prediction: str = "x0"
    schedule: dict = field(default_factory=lambda: {"name": "cosine", "T": 1000})
    text_encoder: str = "clip"        # folder name of the text encoder it was trained with
    decoder: str = "diffae"           # folder name of the DiffAE whose codes it models
    sampling: dict = field(default_factory=dict)   # measured defaults: sampler, steps, guidance

    CONFIG_NAME = "prior "

    @classmethod
    def check_dict(cls, d: dict) -> None:
        if d.get("kind") != "prior":
            raise ValueError(f"expected kind 'prior', got {d.get('kind')!r}")
        if d.get("prediction", "x0") not in ("eps", "x0", "v"):
            raise ValueError(f"unknown prediction {d.get('prediction')!r}; expected eps, x0 or v")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of t [B] (Vaswani et al. 2017 / DDPM's time embedding) -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


class PriorBlock(nn.Module):
    """h + gate * MLP(LN(h) * (1 + scale) + shift), (shift, scale, gate) = Linear(SiLU(e)):
    adaLN-Zero (DiT sec. 3.2); the gate starts at 0, so every block starts as the identity."""

    def __init__(self, width: int, mlp_ratio: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, width * mlp_ratio), nn.SiLU(), nn.Linear(width * mlp_ratio, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(e).chunk(3, dim=1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class SemanticPrior(nn.Module):
    """The prior network plus its schedule and the code statistics; `eps(x_t, t, cond)` is the
    ConditionalModel the core samplers and guidance wrappers use, as for the UNets."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = config
        self.schedule: NoiseSchedule = make_schedule(config.schedule["name"], config.schedule["T"])
        w = config.width
        self.register_buffer("code_mean", torch.zeros(config.dim))
        self.register_buffer("code_std", torch.ones(config.dim))
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.text_proj = nn.Linear(config.text_dim, w)
        self.null_text = nn.Parameter(torch.zeros(w))
        self.label_emb = nn.Embedding(len(config.classes) + 1, w)
        self.x_in = nn.Linear(config.dim, w)
        self.blocks = nn.ModuleList(PriorBlock(w, config.mlp_ratio) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False)
        self.x_out = nn.Linear(w, config.dim)

    @property
    def kind(self) -> str:
        return "prior"

    @property
    def num_classes(self) -> int:
        return len(self.config.classes)

    def embedding(self, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        e = self.time_mlp(timestep_embedding(t, self.config.width))
        has_text = cond["has_text"].to(e.dtype).view(-1, 1)
        e = e + has_text * self.text_proj(cond["text"].to(e.dtype)) + (1 - has_text) * self.null_text
        return e + self.label_emb(cond["labels"])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """The raw prediction (x0 of the normalised code, per `config.prediction`)."""
        t = t.to(x_t.device).expand(x_t.shape[0])
        e = self.embedding(t, cond)
        h = self.x_in(x_t)
        for block in self.blocks:
            h = block(h, e)
        return self.x_out(self.norm_out(h))

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        cancel.check()  # a cancelled job stops here, between network evaluations (core.cancel)
        return self.schedule.eps_from_prediction(self(x_t, t, cond), x_t, t, self.config.prediction)

    # -- conditions ------------------------------------------------------------------------
    def null_cond(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        """No text and no label: the unconditional prior."""
        device = device or self.code_mean.device
        return {"text": torch.zeros(batch, self.config.text_dim, device=device),
                "has_text": torch.zeros(batch, device=device),
                "labels": torch.full((batch,), self.num_classes, dtype=torch.long, device=device)}

    def text_cond(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        b = pooled.shape[0]
        if pooled.ndim != 2 or pooled.shape[1] != self.config.text_dim:
            raise ValueError(f"pooled text embeddings must be [B, {self.config.text_dim}], got {tuple(pooled.shape)}")
        cond = self.null_cond(b, pooled.device)
        cond.update(text=pooled.float(), has_text=torch.ones(b, device=pooled.device))
        return cond

    def label_cond(self, labels: Sequence[str]) -> dict[str, torch.Tensor]:
        classes = self.config.classes
        unknown = [name for name in labels if name not in classes]
        if unknown:
            raise ValueError(f"unknown class {unknown[0]!r}; run `python -m core classes` for the "
                             f"{len(classes)} labels")
        cond = self.null_cond(len(labels))
        cond["labels"] = torch.tensor([classes.index(name) for name in labels], device=self.code_mean.device)
        return cond

    # -- codes -----------------------------------------------------------------------------
    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.code_mean.to(z)) / self.code_std.to(z)

    def denormalise(self, zn: torch.Tensor) -> torch.Tensor:
        return zn * self.code_std.to(zn) + self.code_mean.to(zn)



def check_guidance(guidance) -> float:
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0.0 <= guidance <= 30.0:
        raise ValueError(f"guidance must be a number from 0 to 30, got {guidance!r}")
    return float(guidance)


def prior_sampling(prior, key: str):
    """The prior's default `key` (sampler, steps, guidance): its config's, else FALLBACK_SAMPLING."""
    return sampling_default(prior, key, FALLBACK_SAMPLING[key])


@torch.no_grad()
def sample_codes(prior: SemanticPrior, cond: dict[str, torch.Tensor], uncond: dict[str, torch.Tensor],
                 seeds: Sequence[int], guidance: float | None = None, steps: int | None = None,
                 sampler: str | None = None, callback=None, spacing: str = "leading",
                 guide=None) -> torch.Tensor:
    """z_sem [B, dim] (denormalised, ready for the DiffAE decoder) drawn from the prior given
    `cond`, with classifier-free guidance against `uncond` at scale `guidance` (1: none; 0: the
    unconditional prior alone), the steps laid out by `spacing` (`core.samplers.SPACINGS`), and
    `guide` (a wrapper of the denoiser: classifier or CLIP guidance in code space,
    `core.semantic.code_guide`) around that, if given. The starting noise of sample i comes
    from its own generator seeded with seeds[i] * 1009 + 7 (a stream of its own, apart from the
    decoder's and the SR stages'). Guidance, steps and sampler left out are the prior's own
    (`prior_sampling`)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    device = prior.code_mean.device
    gen = BatchGenerator(seed_streams(seeds, NOISE_STREAM), device)
    x = gen.randn((len(seeds), prior.config.dim))
    zn = denoise_codes(prior, cond, uncond, x, guidance, steps, sampler, gen, callback, spacing, guide)
    return prior.denormalise(zn)


@torch.no_grad()
def denoise_codes(prior: SemanticPrior, cond: dict[str, torch.Tensor], uncond: dict[str, torch.Tensor],
                  noise: torch.Tensor, guidance: float | None = None, steps: int | None = None,
                  sampler: str | None = None, generator=None, callback=None,
                  spacing: str = "leading", guide=None) -> torch.Tensor:
    """The normalised codes [B, dim] the prior's sampler reaches from the starting noise [B, dim]
    (`generator`: the stochastic samplers' noise). With a deterministic sampler (DDIM) this is a
    function of the noise: what a code class base learns (`core.training.bases`). `guide` wraps
    the (classifier-free guided) denoiser: classifier or CLIP guidance of the codes. Guidance,
    steps and sampler left out are the prior's own (`prior_sampling`)."""
    guidance = check_guidance(prior_sampling(prior, "guidance") if guidance is None else guidance)
    steps = prior_sampling(prior, "steps") if steps is None else steps
    sampler = prior_sampling(prior, "sampler") if sampler is None else sampler
    if guidance == 1.0:
        denoiser = lambda x_t, t: prior.eps(x_t, t, cond)  # noqa: E731
    elif guidance == 0.0:   # eps_u + 0 (eps_c - eps_u): the unconditional prior, one forward
        denoiser = lambda x_t, t: prior.eps(x_t, t, uncond)  # noqa: E731
    else:
        denoiser = cfg_denoiser(prior.eps, cond, uncond, guidance)
    if guide is not None:
        denoiser = guide(denoiser)
    return sample(sampler, denoiser, noise, prior.schedule, steps, generator=generator, callback=callback,
                  spacing=spacing)
