"""How diffusion works, shown on the project's own models: the panels of the "How it works" tab
as plain functions, and a command line for each.

- forward process: x_t ~ q(x_t | x0) (Ho et al. 2020, eq. 4) for a row of t, on the linear and
  cosine schedules with the same noise; alpha_bar_t and log SNR of both schedules as curves;
- samplers at equal cost: one prompt and seeds through each sampler at a budget of network
  evaluations (NFE: Heun spends 2 per step but the last; a guided evaluation batches the
  conditional and unconditional halves into one), with seconds per image and CLIP score;
- guidance sweep: the same seeds at several guidance scales (Ho & Salimans 2021): fidelity
  (CLIP score to the prompt) against diversity (mean pairwise distance between the samples,
  in CLIP image-embedding space and in pixels);
- trajectory: x_t and the predicted x0 at chosen steps of one sampling run;
- likelihood: bits per dimension of images under a base model (core.diffusion.likelihood);
- h-space editing (core.hspace).

The CLIP that scores the samples is the project's own (`checkpoints/clip`), the same one whose text
tower conditions the text base, so its scores are optimistic; compare them with each other only.

Command line: `python -m core mechanics forward|curves|samplers|guidance|trajectory|likelihood|
hspace-directions|hspace ...` (`--help` on each; `core.cli.mechanics`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import Tensor

from core import hspace
from core.checks import check_finite, check_int, check_seeds
from core.data.emoji import load_dataset
from core.diffusion.likelihood import bits_per_dim
from core.diffusion.samplers import SAMPLERS
from core.diffusion.schedules import SCHEDULES, make_schedule
from core.images import grid_image, labelled_rows
from core.metrics import mean_pairwise_distance
from core.pipeline import BASE_DEFAULTS, StageSettings, class_conds, generate_class, generate_text

BaseModel = Literal["text_base", "class_base"]
BASE_MODELS: tuple[str, ...] = ("text_base", "class_base")
FORWARD_TIMES = (0, 100, 250, 500, 750, 999)
NFE_BUDGETS = (10,)
GUIDANCE_SCALES = (1.0, 3.0, 7.5)
GUIDANCE_SEEDS = (0, 1, 2)
GUIDANCE_STEPS = 10
MAX_SEEDS = 16
MAX_NFE = 200
MAX_BUDGETS = 12        # NFE budgets per comparison: the work is samplers x budgets x seeds runs
Callback = Callable[[dict], None]


# ---- what a base model is asked for ---------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """A base model and its conditioning: a prompt for text_base, a class label for class_base.
    An empty prompt / no label is the unconditional model (allowed where no CLIP score is needed)."""
    model: BaseModel = "text_base"
    prompt: str = ""
    label: str | None = None

    def __post_init__(self):
        if self.model not in BASE_MODELS:
            raise ValueError(f"model must be one of {', '.join(BASE_MODELS)}; got {self.model!r}")
        if not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be text, got {self.prompt!r}")

    @property
    def unconditional(self) -> bool:
        return not self.prompt.strip() if self.model == "text_base" else not self.label

    def text(self) -> str:
        """The text a CLIP score compares images with: the prompt, or the label's words."""
        return self.prompt.strip() if self.model == "text_base" else (self.label or "").replace("-", " ")

    def require_text(self) -> None:
        if self.unconditional:
            raise ValueError("prompt is empty; describe the emoji to generate" if self.model == "text_base"
                             else "choose a class label")

    def describe(self) -> str:
        return f"{self.model} " + (f"prompt {self.prompt!r}" if self.model == "text_base" else f"label {self.label!r}")


def fitted(models, condition: Condition) -> Condition:
    """The condition with the prompt the text encoder reads (a long prompt is cut, see
    core.models.text_encoders.TextEncoder.fit): what the panels sample from and store."""
    if condition.model != "text_base" or condition.unconditional:
        return condition
    return replace(condition, prompt=models.text_encoder().fit(condition.prompt))


def model_and_cond(models, condition: Condition):
    """(model, cond dict of batch 1) for the likelihood and h-space panels (no guidance)."""
    model = models.get(condition.model)
    device = next(model.parameters()).device
    if condition.model == "text_base":
        emb = models.text_encoder().encode([condition.prompt.strip()])
        return model, emb.to(device).as_cond()
    if condition.unconditional:
        return model, model.null_cond(1, device)
    return model, class_conds(model, [condition.label])[0]   # a code class base: its central code (zero noise)


def generate(models, condition: Condition, seeds: Sequence[int], settings: StageSettings,
             callback: Callback | None = None) -> Tensor:
    """The base stage of the Text-to-image / Class-conditional tabs (same seeds, same images)."""
    if condition.model == "text_base":
        return generate_text(models.get("text_base"), models.text_encoder(), [condition.prompt.strip()], "",
                             seeds, settings, callback=callback)
    if condition.unconditional:
        raise ValueError("choose a class label")
    return generate_class(models.get("class_base"), [condition.label], seeds, settings, callback=callback)


# ---- forward process -----------------------------------------------------------------------------
def check_times(ts: Sequence[float], T: int = 1000) -> list[float]:
    ts = [check_finite("t", t) for t in ts]
    if not 1 <= len(ts) <= 16:
        raise ValueError(f"give from 1 to 16 times t, got {len(ts)}")
    bad = [t for t in ts if not 0 <= t <= T - 1]
    if bad:
        raise ValueError(f"each t must be between 0 and {T - 1}, got {bad[0]:g}")
    return ts


def forward_process(image: Tensor, ts: Sequence[float] = FORWARD_TIMES, seed: int = 0,
                    schedules: Sequence[str] = SCHEDULES, T: int = 1000) -> Tensor:
    """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps (Ho et al. 2020, eq. 4) for one image [1, 3, r, r]
    at each t, one row per schedule, the same eps everywhere: [len(schedules), len(ts), 3, r, r]."""
    if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"image must be [1, 3, H, W] in [-1, 1], got "
                         f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
    ts = check_times(ts, T)
    for name in schedules:
        if name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {name!r}")
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(int(seed))).to(image)
    rows = []
    for name in schedules:
        schedule = make_schedule(name, T)
        rows.append(torch.cat([schedule.q_sample(image, t, noise) for t in ts]).clamp(-1, 1))
    return torch.stack(rows)


def schedule_curves(T: int = 1000, points: int = 101) -> list[dict]:
    """alpha_bar_t, sqrt(alpha_bar_t) (the signal's scale) and log SNR_t = log(ab / (1 - ab)) of
    each schedule at `points` evenly spaced t: rows {schedule, t, alpha_bar, signal, log_snr}."""
    ts = torch.linspace(0, T - 1, points).round()
    rows = []
    for name in SCHEDULES:
        schedule = make_schedule(name, T)
        ab, log_snr = schedule.alpha_bar(ts), schedule.log_snr(ts)
        rows += [{"schedule": name, "t": int(t), "alpha_bar": float(a), "signal": math.sqrt(float(a)),
                  "log_snr": float(s)} for t, a, s in zip(ts.tolist(), ab, log_snr)]
    return rows


# ---- samplers at equal cost ----------------------------------------------------------------------
def nfe(sampler: str, steps: int) -> int:
    """Network evaluations of one run: Heun's 2 per step but the last (an Euler step into sigma =
    0), so 2 steps - 1; every other sampler 1 per step."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    return 2 * steps - 1 if sampler == "heun" else steps


def steps_for_nfe(sampler: str, budget: int) -> int:
    """The most steps whose NFE fits the budget (at least 1)."""
    budget = check_int("NFE budget", budget, 1, MAX_NFE)
    return max(1, (budget + 1) // 2) if sampler == "heun" else budget


@dataclass
class Comparison:
    """Rows (one per setting, with its numbers) and the images of each row [n_seeds, 3, r, r];
    the grid puts `per_line` consecutive rows side by side on one line."""
    rows: list[dict]
    images: list[Tensor]
    parameters: dict = field(default_factory=dict)
    per_line: int = 1
    line_labels: list[str] | None = None     # a name per line (e.g. the sampler): a labelled grid
    column_labels: list[str] | None = None   # over the columns: a label per cell or per block of cells

    def grid(self) -> Image.Image:
        k = self.per_line
        lines = [torch.cat(self.images[i:i + k]) for i in range(0, len(self.images), k)]
        if self.line_labels:
            return labelled_rows(lines, self.line_labels, self.column_labels or ())
        return grid_image(lines)


def compare_samplers(models, condition: Condition, samplers: Sequence[str] = SAMPLERS,
                     budgets: Sequence[int] = NFE_BUDGETS, seeds: Sequence[int] = (0, 1),
                     guidance: float = BASE_DEFAULTS.guidance, thresholding: bool = True,
                     progress: Callable[[str], None] | None = None) -> Comparison:
    """Each sampler at each NFE budget on the same seeds; a row per (sampler, budget) with the
    steps, the NFE spent, seconds per image and the mean CLIP score to the prompt. The grid has a
    line per sampler: its budgets left to right, the seeds within each."""
    condition.require_text()
    condition = fitted(models, condition)
    seeds = check_seeds(seeds, 1, MAX_SEEDS)
    samplers, budgets = list(samplers), list(budgets)
    if not samplers or not budgets:
        raise ValueError("choose at least one sampler and one NFE budget")
    if len(budgets) > MAX_BUDGETS:
        raise ValueError(f"give at most {MAX_BUDGETS} NFE budgets, got {len(budgets)}")
    if len(set(samplers)) != len(samplers):
        raise ValueError("each sampler may be chosen once")
    for b in budgets:
        steps_for_nfe(samplers[0], b)     # every budget checked before any sampling
    for s in samplers:
        nfe(s, 1)
    embedder = models.clip_embedder()
    base = StageSettings(guidance=float(guidance), threshold=BASE_DEFAULTS.threshold if thresholding else None)
    generate(models, condition, seeds[:1], replace(base, steps=1))        # warm-up: first calls are slow
    rows, images = [], []
    for sampler in samplers:
        for budget in budgets:
            steps = steps_for_nfe(sampler, budget)
            if progress:
                progress(f"{sampler}, {budget} NFE")
            start = time.perf_counter()
            x = generate(models, condition, seeds, replace(base, sampler=sampler, steps=steps))
            seconds = (time.perf_counter() - start) / len(seeds)
            rows.append({"sampler": sampler, "nfe_budget": budget, "steps": steps, "nfe": nfe(sampler, steps),
                         "seconds_per_image": round(seconds, 3),
                         "clip_score": round(float(embedder.clip_score(x, condition.text()).mean()), 2)})
            images.append(x.cpu())
    parameters = {"panel": "samplers", "condition": condition.describe(), "seeds": seeds, "guidance": float(guidance),
                  "thresholding": thresholding, "budgets": budgets, "samplers": samplers}
    return Comparison(rows, images, parameters, per_line=len(budgets), line_labels=samplers,
                      column_labels=[f"{b} NFE" for b in budgets])


def guidance_sweep(models, condition: Condition, scales: Sequence[float] = GUIDANCE_SCALES,
                   seeds: Sequence[int] = GUIDANCE_SEEDS, sampler: str = "ddim", steps: int = GUIDANCE_STEPS,
                   thresholding: bool = True, progress: Callable[[str], None] | None = None) -> Comparison:
    """The same seeds at each guidance scale; a row per scale with the fidelity (mean CLIP
    score to the prompt) and the diversity (mean pairwise distance of the samples: between their
    CLIP image embeddings, and in pixels as RMS over [-1, 1] values)."""
    condition.require_text()
    condition = fitted(models, condition)
    seeds = check_seeds(seeds, 2, MAX_SEEDS)
    scales = [check_finite("guidance scale", s) for s in scales]
    if not 1 <= len(scales) <= 12:
        raise ValueError(f"give from 1 to 12 guidance scales, got {len(scales)}")
    embedder = models.clip_embedder()
    rows, images = [], []
    for scale in scales:
        if progress:
            progress(f"guidance {scale:g}")
        settings = StageSettings(sampler=sampler, steps=int(steps), guidance=scale,
                                 threshold=BASE_DEFAULTS.threshold if thresholding else None)
        start = time.perf_counter()
        x = generate(models, condition, seeds, settings)
        seconds = (time.perf_counter() - start) / len(seeds)
        emb = embedder.image_embeddings(x).cpu()
        pixels = mean_pairwise_distance(x.cpu()) / math.sqrt(x[0].numel())   # RMS per pixel value
        rows.append({"guidance": scale, "clip_score": round(float(embedder.clip_score(x, condition.text()).mean()), 2),
                     "diversity_clip": round(mean_pairwise_distance(emb), 4), "diversity_pixels": round(pixels, 4),
                     "seconds_per_image": round(seconds, 3)})
        images.append(x.cpu())
    parameters = {"panel": "guidance", "condition": condition.describe(), "seeds": seeds, "scales": scales,
                  "sampler": sampler, "steps": int(steps), "thresholding": thresholding}
    return Comparison(rows, images, parameters, line_labels=[f"guidance {s:g}" for s in scales],
                      column_labels=[f"seed {s}" for s in seeds])


# ---- trajectory ----------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """x_t and the predicted x0 at the shown steps [n, 3, r, r], their step indices and times, and
    the final sample [1, 3, r, r]."""
    steps: list[int]
    times: list[float]
    x_t: Tensor
    x0: Tensor
    final: Tensor
    parameters: dict = field(default_factory=dict)

    def strip(self) -> Image.Image:
        """Top row x_t, bottom row the predicted x0, each column headed by its t; the final sample
        ends both rows."""
        return labelled_rows([torch.cat([self.x_t, self.final]), torch.cat([self.x0, self.final])],
                             ["x_t", "predicted x0"], [f"t={t:g}" for t in self.times] + ["final"])


def trajectory(models, condition: Condition, seed: int = 0, sampler: str = "ddim", steps: int = 20,
               guidance: float = BASE_DEFAULTS.guidance, frames: int = 6, thresholding: bool = True) -> Trajectory:
    """One sampling run, recording x_t (the input of step i) and the predicted x0 at `frames`
    evenly spaced steps (the first and the last included)."""
    seed = check_seeds([seed])[0]
    condition = fitted(models, condition)
    frames = check_int("frames", frames, 2, 16)
    settings = StageSettings(sampler=sampler, steps=int(steps), guidance=float(guidance),
                             threshold=BASE_DEFAULTS.threshold if thresholding else None)
    shown = sorted({round(i * (settings.steps - 1) / (frames - 1)) for i in range(frames)})
    seen: dict[int, dict] = {}

    def keep(info: dict) -> None:
        if info["step"] in shown:
            seen[info["step"]] = {"t": info["t"], "x": info["x"][:1].detach().cpu().clamp(-1, 1),
                                  "x0": info["x0"][:1].detach().cpu().clamp(-1, 1)}

    final = generate(models, condition, [seed], settings, callback=keep).cpu()
    order = [s for s in shown if s in seen]
    parameters = {"panel": "trajectory", "condition": condition.describe(), "seed": seed, "sampler": sampler,
                  "steps": settings.steps, "guidance": float(guidance), "thresholding": thresholding}
    return Trajectory(order, [seen[s]["t"] for s in order], torch.cat([seen[s]["x"] for s in order]),
                      torch.cat([seen[s]["x0"] for s in order]), final, parameters)


# ---- likelihood ----------------------------------------------------------------------------------
def pink_noise(size: int = 32, seed: int = 0) -> Tensor:
    """A photo-like picture [1, 3, size, size] in [-1, 1]: Gaussian noise with a 1/f amplitude
    spectrum, the power law of natural images (Field 1987), colour channels correlated."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size).abs()
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).clamp(min=1.0 / size)
    luminance = torch.fft.ifft2(torch.fft.fft2(torch.randn(size, size, generator=g)) / radius).real
    colour = torch.fft.ifft2(torch.fft.fft2(torch.randn(3, size, size, generator=g)) / radius).real
    x = luminance[None] + 0.3 * colour
    x = (x - x.mean()) / (3 * x.std())
    return x.clamp(-1, 1)[None]


def uniform_noise(size: int = 32, seed: int = 0) -> Tensor:
    """Every 8-bit level equally likely, independently: [1, 3, size, size] (8 bits/dim of entropy)."""
    k = torch.randint(0, 256, (1, 3, size, size), generator=torch.Generator().manual_seed(seed))
    return k.float() / 127.5 - 1


def likelihood(models, condition: Condition, images: Tensor, method: str = "ode", steps: int | None = None,
               probes: int = 1, seed: int = 0):
    """Bits per dimension of images [B, 3, r, r] in [-1, 1] (snapped to 8 bits) under the base
    model, conditioned as asked (an empty prompt / no label: the unconditional model); see
    core.diffusion.likelihood."""
    model, cond = model_and_cond(models, fitted(models, condition))
    r = model.resolution
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1:] != (3, r, r):
        raise ValueError(f"images must be [B, 3, {r}, {r}], got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    device = next(model.parameters()).device

    def denoiser(x, t):
        return model.eps(x, t, {k: v.expand(x.shape[0], *v.shape[1:]) for k, v in cond.items()})

    return bits_per_dim(denoiser, images.to(device), model.schedule, method, steps, probes, seed)


# ---- h-space -------------------------------------------------------------------------------------
def hspace_edit(models, model_name: str, image: Tensor, attribute: str, strength: float,
                steps: int = 20, interval: float = 0.5, callback: Callback | None = None):
    """The h-space edit of one image [1, 3, r, r] under the base model's stored directions
    (core.hspace); returns a core.hspace.HEdit."""
    condition = Condition(model=model_name)                 # unconditional: empty prompt / null label
    model, cond = model_and_cond(models, condition)
    directions = hspace.HDirections.load(Path(models.root) / model_name)
    directions.index(attribute)
    return hspace.edit(model, cond, image, lambda t: directions.at(attribute, t), strength, steps, interval,
                       callback=callback)


def fit_hspace_directions(models, model_name: str, log: Callable[[str], None] = print):
    """Fit the h-space directions of a base model on the emoji data set and store them next to it."""
    model, cond = model_and_cond(models, Condition(model=model_name))
    directions = hspace.fit_from_dataset(model, cond, load_dataset(), log=log)
    return directions.save(Path(models.root) / model_name)
