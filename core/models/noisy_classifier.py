"""A noise-aware classifier p(y | x_t, t) of the emoji subgroups, for classifier guidance
(Dhariwal & Nichol 2021, sec. 4: a classifier trained on noisy images x_t ~ q(x_t | x_0) at every
t, whose gradient grad_x log p(y | x_t) steers an unconditional diffusion model towards y).

Network (`NoisyClassifier`): 3x3 convolutions (widths `channels`, the first at full resolution,
each next one with stride 2), each followed by GroupNorm whose scale and shift come from the
timestep embedding (sinusoidal, then an MLP; FiLM, as the adaptive group norm of the guided
diffusion classifier), SiLU; global average pooling and a linear head over the classes. About
0.3 M parameters at (32, 64, 128, 128): 0.6 MB in fp16.

Training (`core.training.noisy_classifier`, `python -m core train noisy_classifier`): the training split at
32x32 with light augmentation (shifts with white padding, flips), t uniform on 0..T-1 of the
class base's schedule, x_t = q(x_t | x_0), cross-entropy on the natural class frequencies (so
that p(y | x_t) is the posterior that Bayes' rule in classifier guidance assumes). The model card
lists its held-out accuracy against t (`accuracy_vs_t`).

Checkpoint: `checkpoints/noisy_classifier/` with config.json (kind "noisy_classifier", classes,
channels, the schedule), fp16 model.safetensors and README.md; `core.models.checkpoints.save_model`
writes it, `core.models.loading.load_model` reads it.
`class_log_prob` is the `log_prob_fn` of `core.diffusion.guidance.classifier_guided_denoiser`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from torch import Tensor, nn

from core.diffusion.schedules import NoiseSchedule, make_schedule
from core.models.checkpoints import JsonConfig

KIND = "noisy_classifier"
EVAL_TIMES = (0, 100, 250, 500, 750, 900, 999)


@dataclass
class NoisyClassifierConfig(JsonConfig):
    """Everything needed to rebuild the classifier; stored as config.json."""
    classes: list[str]
    resolution: int = 32
    channels: tuple[int, ...] = (32, 64, 128, 128)
    time_dim: int = 64
    groups: int = 8
    schedule: dict = field(default_factory=lambda: {"name": "cosine", "T": 1000})
    kind: str = KIND

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.kind != KIND:
            raise ValueError(f"expected kind {KIND!r}, got {self.kind!r}")
        if not self.classes:
            raise ValueError("a noisy classifier needs at least one class")
        if not self.channels or any(c % self.groups for c in self.channels):
            raise ValueError(f"channels must be multiples of groups ({self.groups}), got {self.channels}")



class NoisyClassifier(nn.Module):
    """logits = f(x_t, t): conv -> GroupNorm with a t-dependent scale and shift -> SiLU, per width."""

    def __init__(self, config: NoisyClassifierConfig):
        super().__init__()
        self.config = config
        self.schedule: NoiseSchedule = make_schedule(config.schedule["name"], config.schedule["T"])
        c, d = config.channels, config.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU())
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, 1 if i == 0 else 2, 1)
                                   for i, (c_in, c_out) in enumerate(zip((3,) + c[:-1], c)))
        self.norms = nn.ModuleList(nn.GroupNorm(config.groups, w, affine=False) for w in c)
        self.films = nn.ModuleList(nn.Linear(d, 2 * w) for w in c)
        self.head = nn.Linear(c[-1], len(config.classes))

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x_t.device).float().expand(x_t.shape[0])
        emb = self.time_mlp(get_timestep_embedding(t, self.config.time_dim, flip_sin_to_cos=True,
                                                   downscale_freq_shift=0).to(x_t.dtype))
        h = x_t
        for conv, norm, film in zip(self.convs, self.norms, self.films):
            scale, shift = film(emb)[:, :, None, None].chunk(2, dim=1)
            h = F.silu(norm(conv(h)) * (1 + scale) + shift)
        return self.head(h.mean(dim=(2, 3)))


def class_log_prob(classifier: NoisyClassifier, labels: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """log p(y | x_t) of the given labels [B] (class indices of the classifier), per sample: the
    `log_prob_fn` of classifier guidance."""
    def log_prob(x_t: Tensor, t: Tensor) -> Tensor:
        logits = classifier(x_t.float(), t)
        return logits.log_softmax(dim=1).gather(1, labels.to(logits.device).view(-1, 1)).squeeze(1)

    return log_prob


def classifier_labels(classifier: NoisyClassifier, names: Sequence[str]) -> Tensor:
    """The classifier's class indices [B] of `names`; ValueError naming an unknown class."""
    unknown = [n for n in names if n not in classifier.config.classes]
    if unknown:
        raise ValueError(f"the noise-aware classifier does not know class {unknown[0]!r}")
    return torch.tensor([classifier.config.classes.index(n) for n in names],
                        device=next(classifier.parameters()).device)


@torch.no_grad()
def accuracy_vs_t(classifier: NoisyClassifier, images: Tensor, labels: Tensor, times: Sequence[int] = EVAL_TIMES,
                  seed: int = 0, batch: int = 512) -> list[dict]:
    """Top-1 and top-5 accuracy on x_t ~ q(x_t | x_0) of `images` [N, 3, r, r] at each t (the
    same seeded noise at every t): rows {t, top1, top5}."""
    device = next(classifier.parameters()).device
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    rows = []
    for t in times:
        top1 = top5 = 0
        for s in range(0, len(images), batch):
            x_t = classifier.schedule.q_sample(images[s:s + batch], float(t), noise[s:s + batch]).to(device)
            logits = classifier(x_t, torch.full((len(x_t),), float(t), device=device)).float().cpu()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            y = labels[s:s + batch].view(-1, 1)
            top1 += int((top[:, :1] == y).sum())
            top5 += int((top == y).any(dim=1).sum())
        rows.append({"t": int(t), "top1": round(top1 / len(images), 3), "top5": round(top5 / len(images), 3)})
    return rows


def accuracy_table(rows: Sequence[dict], majority: float | None = None) -> str:
    """The rows of `accuracy_vs_t` as markdown, with the schedule's ab_t and SNR beside t."""
    schedule = make_schedule("cosine", 1000)
    lines = ["| t | alpha_bar_t | top-1 | top-5 |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['t']} | {float(schedule.alpha_bar(r['t'])):.3f} | {r['top1']:.3f} | {r['top5']:.3f} |"
              for r in rows]
    if majority is not None:
        lines.append(f"\nAlways answering the most frequent class scores {majority:.3f}.")
    return "\n".join(lines)


# ---- checkpoints -------------------------------------------------------------------------------------
def check_compatible(classifier: NoisyClassifier, model) -> None:
    """ValueError unless the classifier was trained on the diffusion model's schedule and size."""
    if classifier.config.schedule != model.config.schedule:
        raise ValueError(f"the noise-aware classifier was trained on schedule {classifier.config.schedule}, "
                         f"the model samples on {model.config.schedule}")
    if classifier.config.resolution != model.resolution:
        size = classifier.config.resolution
        raise ValueError(f"the noise-aware classifier is for {size}x{size} images, "
                         f"the model makes {model.resolution}x{model.resolution}")
