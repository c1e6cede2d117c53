"""Noise-aware models of the semantic prior's codes, whose gradients guide the prior's sampling.

The semantic prior (`core.models.prior`) decides the emoji in its own 256-d space of normalised
DiffAE codes: its sampling trajectory z_T -> z_0 is where a cat face or a thumbs up is chosen.
Two small MLPs read a noisy code z_t at any timestep of the prior's own schedule:

- `CodeClassifier`: p(y | z_t, t) over the subgroup labels, for classifier guidance (Dhariwal &
  Nichol 2021, sec. 4): eps' = eps - s sqrt(1 - ab_t) grad_z log p(y | z_t).
- `CodeMatcher`: a CLIP-style pair of embeddings (Radford et al. 2021), f(z_t, t) of the noisy
  code and g(c) of the pooled text embedding the prior is conditioned on, trained contrastively;
  CLIP guidance (GLIDE, Nichol et al. 2022, sec. 3.2) follows the gradient of their similarity,
  here the contrastive logit tau * cos(f(z_t, t), g(c)), in the same formula.

Both are trained on z_t ~ q(z_t | z_0) at t uniform on 0..T-1 of the prior's schedule, z_0 the
prior's normalised codes of the training-split emoji (`core.training.code_guidance`,
`python -m core train code_classifier` / `code_matcher`). Each stores the prior's code statistics
it was trained with, so that `check_compatible` can refuse a prior whose space differs.

Network: z_t -> Linear -> `depth` adaLN-Zero residual blocks driven by the timestep embedding
(the prior's own block, `core.models.prior.PriorBlock`) -> LayerNorm -> a linear head (the class
logits, or the code embedding). Checkpoints: config.json (kind `code_classifier` or
`code_matcher`) + fp16 weights + card, written by `core.models.checkpoints.save_model` and read
by `core.models.loading.load_model`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.diffusion.schedules import NoiseSchedule, make_schedule
from core.models.checkpoints import CheckpointError, JsonConfig
from core.models.prior import PriorBlock, timestep_embedding

CLASSIFIER_KIND, MATCHER_KIND = "code_classifier", "code_matcher"
KINDS = (CLASSIFIER_KIND, MATCHER_KIND)
EVAL_TIMES = (0, 250, 500, 750, 900, 999)


@dataclass
class CodeGuideConfig(JsonConfig):
    """Everything needed to rebuild a code classifier or code matcher; stored as config.json."""
    kind: str
    dim: int = 256                    # width of the prior's code
    classes: list[str] = field(default_factory=list)   # code_classifier: the subgroup labels
    text_dim: int = 192               # code_matcher: width of the pooled text embedding
    embed_dim: int = 128              # code_matcher: width of the joint embedding
    width: int = 128
    depth: int = 2
    schedule: dict = field(default_factory=lambda: {"name": "cosine", "T": 1000})
    prior: str = "prior"              # folder of the prior whose codes it reads
    text_encoder: str = "clip"        # code_matcher: folder of the text encoder

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"expected kind {' or '.join(KINDS)}, got {self.kind!r}")
        if self.kind == CLASSIFIER_KIND and not self.classes:
            raise ValueError("a code classifier needs at least one class")



class CodeTrunk(nn.Module):
    """h(z_t, t): the code in, adaLN-Zero residual blocks on the timestep embedding, normalised out."""

    def __init__(self, config: CodeGuideConfig):
        super().__init__()
        w = config.width
        self.width = w
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.x_in = nn.Linear(config.dim, w)
        self.blocks = nn.ModuleList(PriorBlock(w, 2) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False)

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=z_t.device).float().expand(z_t.shape[0])
        e = self.time_mlp(timestep_embedding(t, self.width).to(z_t.dtype))
        h = self.x_in(z_t)
        for block in self.blocks:
            h = block(h, e)
        return self.norm_out(h)


class _CodeModel(nn.Module):
    def __init__(self, config: CodeGuideConfig):
        super().__init__()
        self.config = config
        self.schedule: NoiseSchedule = make_schedule(config.schedule["name"], config.schedule["T"])
        self.register_buffer("code_mean", torch.zeros(config.dim))   # the prior's code statistics
        self.register_buffer("code_std", torch.ones(config.dim))
        self.trunk = CodeTrunk(config)


class CodeClassifier(_CodeModel):
    """logits of p(y | z_t, t) over `config.classes`, z_t a noisy normalised code of the prior."""

    def __init__(self, config: CodeGuideConfig):
        super().__init__(config)
        self.head = nn.Linear(config.width, len(config.classes))

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        return self.head(self.trunk(z_t, t))

    def label_indices(self, labels: Sequence[str]) -> Tensor:
        unknown = [name for name in labels if name not in self.config.classes]
        if unknown:
            raise ValueError(f"unknown class {unknown[0]!r}; run `python -m core classes` for the labels")
        return torch.tensor([self.config.classes.index(name) for name in labels], device=self.code_mean.device)


class CodeMatcher(_CodeModel):
    """f(z_t, t) and g(text), both L2-normalised in `embed_dim`; logits = tau cos(f, g) with a learned
    temperature tau = exp(logit_scale) (CLIP's)."""

    def __init__(self, config: CodeGuideConfig):
        super().__init__(config)
        self.code_head = nn.Linear(config.width, config.embed_dim)
        self.text_head = nn.Sequential(nn.Linear(config.text_dim, config.width), nn.SiLU(),
                                       nn.Linear(config.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def code_embedding(self, z_t: Tensor, t: Tensor) -> Tensor:
        return F.normalize(self.code_head(self.trunk(z_t, t)), dim=-1)

    def text_embedding(self, pooled: Tensor) -> Tensor:
        if pooled.ndim != 2 or pooled.shape[1] != self.config.text_dim:
            raise ValueError(f"pooled text embeddings must be [B, {self.config.text_dim}], got {tuple(pooled.shape)}")
        return F.normalize(self.text_head(pooled.float()), dim=-1)

    def temperature(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=100.0)

    def forward(self, z_t: Tensor, t: Tensor, pooled: Tensor) -> Tensor:
        """The logit of each code with its own text: tau cos(f(z_t, t), g(text)), shape [B]."""
        return self.temperature() * (self.code_embedding(z_t, t) * self.text_embedding(pooled)).sum(-1)


# ---- the log_prob_fn of `core.diffusion.guidance.classifier_guided_denoiser` ----------------------
def class_log_prob(classifier: CodeClassifier, labels: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """log p(y | z_t) of the labels [B] (indices of the classifier's classes), per sample."""
    def log_prob(z_t: Tensor, t: Tensor) -> Tensor:
        logits = classifier(z_t.float(), t)
        return F.log_softmax(logits, dim=-1).gather(1, labels.to(logits.device).view(-1, 1)).squeeze(1)

    return log_prob


def text_similarity(matcher: CodeMatcher, pooled: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """tau cos(f(z_t, t), g(text)) of each noisy code with its text (pooled [B, text_dim] or
    [1, text_dim]), per sample: the quantity CLIP guidance climbs (GLIDE sec. 3.2)."""
    text = matcher.text_embedding(pooled).detach()

    def similarity(z_t: Tensor, t: Tensor) -> Tensor:
        return matcher.temperature() * (matcher.code_embedding(z_t.float(), t) * text).sum(-1)

    return similarity


# ---- measuring -------------------------------------------------------------------------------------
@torch.no_grad()
def accuracy_vs_t(model: CodeClassifier | CodeMatcher, codes: Tensor, targets: Tensor,
                  times: Sequence[int] = EVAL_TIMES, seed: int = 0) -> list[dict]:
    """Top-1 / top-5 accuracy at each t of normalised codes [N, dim] noised with the same seeded noise.
    For a classifier, targets are class indices [N]; for a matcher, pooled text embeddings [N, text_dim]
    (one per code): the code must pick its own text among the N (retrieval)."""
    noise = torch.randn(codes.shape, generator=torch.Generator().manual_seed(seed))
    rows = []
    for t in times:
        tt = torch.full((len(codes),), int(t))
        z_t = model.schedule.q_sample(codes, tt, noise).float()
        if isinstance(model, CodeClassifier):
            logits, truth = model(z_t, tt), targets
        else:
            logits = model.code_embedding(z_t, tt) @ model.text_embedding(targets).T
            truth = torch.arange(len(codes))
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        rows.append({"t": int(t), "top1": float((top5[:, 0] == truth).float().mean()),
                     "top5": float((top5 == truth[:, None]).any(1).float().mean())})
    return rows


def accuracy_table(rows: Sequence[dict], schedule: NoiseSchedule, chance: float) -> str:
    lines = ["| t | alpha_bar_t | top-1 | top-5 |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['t']} | {float(schedule.alpha_bar(r['t'])):.3f} | {r['top1']:.3f} | {r['top5']:.3f} |"
              for r in rows]
    lines.append(f"\nChance (top-1): {chance:.3f}.")
    return "\n".join(lines)


# ---- checkpoints -----------------------------------------------------------------------------------
def check_compatible(model: CodeClassifier | CodeMatcher, prior) -> None:
    """CheckpointError unless `model` reads the prior's space: same schedule, same code statistics."""
    name = model.config.kind.replace("_", " ")
    if model.config.schedule != prior.config.schedule:
        raise CheckpointError(f"the {name} was trained on schedule {model.config.schedule}, "
                              f"the prior samples on {prior.config.schedule}")
    same = (model.code_mean.shape == prior.code_mean.shape
            and torch.allclose(model.code_mean.cpu(), prior.code_mean.cpu(), atol=1e-2)
            and torch.allclose(model.code_std.cpu(), prior.code_std.cpu(), rtol=1e-2, atol=1e-3))
    if not same:
        raise CheckpointError(f"the {name} was trained on another prior's codes (their mean / std differ); "
                              f"retrain it: python -m core train {model.config.kind}")
