"""ILVR, iterative latent variable refinement (Choi et al. 2021, "ILVR: Conditioning Method for
Denoising Diffusion Probabilistic Models"): generation guided by a reference image's low
frequencies, with no training.

After every reverse step the low frequencies of x_{t'} are replaced by those of the reference
y diffused to the same t' (Alg. 1, eq. 4):

    x_{t'} <- x_{t'} - phi_N(x_{t'}) + phi_N(y_{t'}),    y_{t'} ~ q(y_{t'} | y),

where phi_N is a low-pass filter: downsampling by the factor N, then upsampling back (here box
averaging down, bicubic up). The final step lands on t' = -1, where y_{t'} = y, so the sample's
low-pass equals the reference's. N sets how much of the reference is kept: N = 1 returns the
reference itself; N = 4 keeps an 8x8 thumbnail of a 32x32 image (colours and layout) and lets
the model draw the rest; N = 32 keeps only the mean colour. Diversity grows with N.

- `low_pass` is phi_N; `ilvr_projection` the replacement step, a `core.diffusion.samplers.Projection`, so
  ILVR runs inside any core sampler over any denoiser and schedule (`sample_ilvr`).
- `ilvr` runs it on a base model of the hub (the text base, with a prompt or unguided; the class
  base, with a label or unconditionally) at its resolution (32), then through the SR stages,
  which only add detail to the ILVR sample (they are not conditioned on the reference).
- `ilvr_strip` runs one seed (or several) at several N side by side, with the figures behind
  it (the low-pass error to the reference and the diversity of the samples).
- `python -m core translate --task ilvr --image REF --factor N --out OUT` (core.translate)
  writes one sample; `python -m core ilvr-strip --image REF --factors 2,4,8,16 --out strip.png`
  the strip and its table.

N is given at the base resolution (32x32): 1, 2, 4, 8, 16 or 32.

Measured on the committed text base, unguided, with the cat face emoji as the reference
(`python -m core ilvr-strip --image cat-face.png --factors 1,2,4,8,16,32 --seeds 0,1,2,3 --out strip.png`,
DDPM 50 steps; RMS distances on the [0, 1] scale at 32x32): the samples' low-pass stays within
0.007 of the reference's at every N, while their distance to the reference grows with N (0.07,
0.13, 0.19, 0.29, 0.32 at N = 2 ... 32) and so does their diversity (mean pairwise distance 0.04,
0.09, 0.18, 0.31, 0.35); at N = 2 and 4 every sample is a cat face, at 8 most are, at 16 and 32
only the colours remain.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from core.bases import PIXEL_MODELS
from core.cascade import SIZES, sr_models, upscale_chain
from core.checks import as_batch, check_seeds, seed_streams
from core.conditions import base_conds
from core.diffusion.rng import BatchGenerator, Generator, randn_like
from core.diffusion.samplers import Projection, SamplerName, sample
from core.diffusion.schedules import NoiseSchedule
from core.images import check_images, pil_to_tensor, resize_image, tensor_to_pil
from core.metrics import pixel_diversity
from core.models.networks import DiffusionModel
from core.pipeline import BASE_DEFAULTS, StageSettings, sample_stage

ILVR_DEFAULTS = replace(BASE_DEFAULTS, sampler="ddpm", steps=50)   # the paper's sampler: DDPM ancestral steps
DEFAULT_FACTOR = 4
STRIP_FACTORS = (2, 4, 8, 16)
STRIP_FRAME = 96   # px: the strip's frames are enlarged to at least this
REFERENCE_STREAM = 700   # the reference's noise q(y_t | y) has its own stream per seed


def check_factor(factor, size: int) -> int:
    """N: an integer from 1 to `size` that divides it, else ValueError naming it."""
    allowed = [n for n in range(1, size + 1) if size % n == 0]
    if isinstance(factor, bool) or not isinstance(factor, int) or factor not in allowed:
        raise ValueError(f"factor N must be one of {', '.join(map(str, allowed))} (it divides the "
                         f"{size}x{size} image into NxN blocks), got {factor!r}")
    return factor


def low_pass(x: Tensor, factor: int) -> Tensor:
    """phi_N(x) of [B, C, H, W]: box-average down by N, bicubic up back to H x W (N = 1: x)."""
    h, w = x.shape[-2:]
    if factor == 1:
        return x
    if h % factor or w % factor:
        raise ValueError(f"factor {factor} does not divide the image size {h}x{w}")
    small = F.interpolate(x, size=(h // factor, w // factor), mode="area")
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)


def _per_sample(factors: int | Sequence[int], batch: int, size: int) -> list[int]:
    factors = [factors] * batch if isinstance(factors, int) and not isinstance(factors, bool) else list(factors)
    if len(factors) != batch:
        raise ValueError(f"got {len(factors)} factors for a batch of {batch}")
    return [check_factor(n, size) for n in factors]


def low_pass_each(x: Tensor, factors: Sequence[int]) -> Tensor:
    """phi_N of each sample with its own N (factors[i] for x[i])."""
    out = torch.empty_like(x)
    for n in set(factors):
        rows = torch.tensor([i for i, f in enumerate(factors) if f == n], device=x.device)
        out[rows] = low_pass(x[rows], n)
    return out


def ilvr_projection(reference: Tensor, factors: int | Sequence[int], schedule: NoiseSchedule,
                    generator: Generator) -> Projection:
    """ILVR's refinement (Choi et al. 2021, Alg. 1 line 6): x <- x - phi_N(x) + phi_N(y_t) with
    y_t = sqrt(ab_t) y + sqrt(1 - ab_t) z (Ho et al. 2020, eq. 4), z from `generator`; y itself at
    t = -1 (the clean data). `reference` is [B, C, H, W] in the sampler's scale; `factors` one N
    for all or one per sample."""
    if not isinstance(reference, Tensor) or reference.ndim != 4:
        raise ValueError("reference must be a tensor [B, C, H, W]")
    factors = _per_sample(factors, reference.shape[0], min(reference.shape[-2:]))
    reference_low = low_pass_each(reference, factors)

    def project(x: Tensor, t: float) -> Tensor:
        if x.shape != reference.shape:
            raise ValueError(f"x has shape {tuple(x.shape)}, the reference {tuple(reference.shape)}")
        if t < 0:
            target = reference_low.to(x)
        else:
            y_t = schedule.q_sample(reference.to(x), t, randn_like(x, generator))
            target = low_pass_each(y_t, factors)
        return x - low_pass_each(x, factors) + target

    return project


# ---- luminance: ILVR's projection with phi = the luma operator (colorization) -----------------------------------
LUMA_WEIGHTS = (0.299, 0.587, 0.114)   # ITU-R BT.601


def grayscale(x: Tensor) -> Tensor:
    """Luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B) of [B, 3, H, W] in [-1, 1], replicated
    to 3 channels. A linear projection (the weights sum to 1): grayscale(grayscale(x)) = grayscale(x)."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def keep_luminance(x: Tensor, grey: Tensor) -> Tensor:
    """x with its luma replaced by that of `grey` and its colour (x - luma(x)) shrunk per pixel
    just enough to stay in [-1, 1]: x' = g + s (x - luma(x)), s = the largest value in [0, 1] with
    every channel in range. grayscale(x') = grayscale(grey) exactly (up to float rounding)."""
    g = grayscale(grey.to(x))
    chroma = x - grayscale(x)
    # per channel, the largest s with -1 <= g + s c <= 1
    room = torch.where(chroma > 0, (1 - g) / chroma.clamp_min(1e-12), (-1 - g) / chroma.clamp_max(-1e-12))
    s = room.clamp(0, 1).amin(dim=1, keepdim=True)
    return g + s * chroma


def luminance_projection(grey: Tensor, schedule: NoiseSchedule, generator: Generator) -> Projection:
    """ILVR's refinement (Choi et al. 2021, Alg. 1 line 6) with the luma operator L in place of the
    low-pass phi_N: x <- x - L(x) + L(y_t), y_t = sqrt(ab_t) y + sqrt(1 - ab_t) z (Ho et al. 2020,
    eq. 4); at t = -1, y itself, so the sample's luma is the grey image's."""
    if not isinstance(grey, Tensor) or grey.ndim != 4 or grey.shape[1] != 3:
        raise ValueError("grey must be a tensor [B, 3, H, W]")
    grey_luma = grayscale(grey)

    def project(x: Tensor, t: float) -> Tensor:
        if x.shape != grey.shape:
            raise ValueError(f"x has shape {tuple(x.shape)}, the grey image {tuple(grey.shape)}")
        if t < 0:
            target = grey_luma.to(x)
        else:   # L(y_t), y_t ~ q(y_t | y)
            target = grayscale(schedule.q_sample(grey_luma.to(x), t, randn_like(x, generator)))
        return x - grayscale(x) + target

    return project


def sample_ilvr(sampler: SamplerName, denoiser, x: Tensor, schedule: NoiseSchedule, steps: int,
                reference: Tensor, factor: int | Sequence[int], *, generator: Generator,
                reference_generator: Generator | None = None, **kwargs) -> Tensor:
    """ILVR with core sampler `sampler` over any eps-denoiser: `x` is the starting noise, the
    reference's noise comes from `reference_generator` (default: `generator`). Other keyword
    arguments go to the sampler (spacing, callback, eta, ...)."""
    project = ilvr_projection(reference, factor, schedule, reference_generator or generator)
    return sample(sampler, denoiser, x, schedule, steps, generator=generator, project=project, **kwargs)


# ---- on the hub's models -----------------------------------------------------------------------------
def ilvr(base: DiffusionModel, reference: Tensor, factor: int | Sequence[int] = DEFAULT_FACTOR, *,
         encoder=None, prompt: str | None = None, label: str | None = None, seeds: Sequence[int] = (0,),
         settings: StageSettings = ILVR_DEFAULTS, negative_prompt: str = "", sr_models: Sequence[DiffusionModel] = (),
         sr_settings: Sequence[StageSettings] | None = None, callback=None) -> Tensor:
    """ILVR on a base model (its resolution, 32), then the SR stages. `reference` is [B or 1, 3, H, W]
    in [-1, 1], resized to the base resolution; `factor` N at that resolution, one for all seeds
    or one per seed. The starting noise comes from the generation streams of each seed (those of
    `generate`), the reference's noise from a stream of its own. Returns [B, 3, 32 * 2^len(sr_models), ...]."""
    seeds = check_seeds(seeds)
    size = base.resolution
    factors = _per_sample(factor, len(seeds), size)
    device = next(base.parameters()).device
    y = resize_image(as_batch(check_images(reference, "reference"), len(seeds), "reference"), size).to(device)
    cond, uncond, settings = base_conds(base, seeds, settings, encoder, prompt, label, negative_prompt)
    gen = BatchGenerator(seed_streams(seeds, REFERENCE_STREAM), device)
    project = ilvr_projection(y, factors, base.schedule, gen)
    staged = None if callback is None else (lambda info: callback({**info, "stage": size}))
    x = sample_stage(base, cond, uncond, seeds, settings, callback=staged, project=project)
    with torch.no_grad():
        stages = upscale_chain(sr_models, x, seeds, sr_settings, callback)
    return stages[max(stages)]


@dataclass
class Strip:
    """The reference's low-pass phi_N(y) per N [n, 3, s, s] and the ILVR samples per seed and N
    ([seeds, n, 3, s, s]), at the output size, with the figures behind them."""
    factors: list[int]
    low_passes: Tensor
    samples: Tensor
    rows: list[dict]
    parameters: dict = field(default_factory=dict)

    def image(self, min_frame: int = STRIP_FRAME) -> Image.Image:
        """Top row: phi_N of the reference; below it, a row of samples per seed; N grows to the
        right, and "N = n" is written under every frame. Frames smaller than `min_frame` px are
        enlarged by a whole factor (nearest neighbour: every pixel stays a sharp block)."""
        size = self.low_passes.shape[-1]
        scale = max(1, -(-min_frame // size))
        frame = size * scale
        rows = [self.low_passes, *self.samples]
        band, pad = 18, 4
        out = Image.new("RGB", (pad + len(self.factors) * (frame + pad), pad + len(rows) * (frame + band + pad)),
                        "white")
        draw = ImageDraw.Draw(out)
        font = ImageFont.load_default(size=13)
        for i, row in enumerate(rows):
            top = pad + i * (frame + band + pad)
            for j, (n, image) in enumerate(zip(self.factors, tensor_to_pil(row.float().cpu()))):
                left = pad + j * (frame + pad)
                out.paste(image.resize((frame, frame), Image.Resampling.NEAREST), (left, top))
                draw.text((left + frame // 2, top + frame + band // 2), f"N = {n}", fill="black", font=font,
                          anchor="mm")
        return out


def strip_figures(samples: Tensor, reference: Tensor, factors: Sequence[int], base_size: int) -> list[dict]:
    """Per N: the RMS distance (on the [0, 1] scale) between the samples' and the reference's
    low-pass at the base size (phi_N: how well the reference's low frequencies are kept), the
    RMS distance of the samples to the reference, and the diversity (mean pairwise RMS distance
    between the seeds' samples; none for one seed)."""
    ref = resize_image(reference.float().cpu(), base_size)
    rows = []
    for j, n in enumerate(factors):
        x = samples[:, j].float().cpu()
        small = resize_image(x, base_size)
        low_err = ((low_pass(small, n) - low_pass(ref, n)) / 2).pow(2).mean().sqrt()
        full_err = ((small - ref) / 2).pow(2).mean().sqrt()
        diversity = pixel_diversity(x) if len(x) > 1 else None
        rows.append({"factor": n, "low_pass_rmse": round(float(low_err), 4),
                     "rmse_to_reference": round(float(full_err), 4),
                     "diversity": None if diversity is None else round(diversity, 4)})
    return rows


def ilvr_strip(models, image: Image.Image, factors: Sequence[int] = STRIP_FACTORS, seeds: Sequence[int] = (0,),
               model: str = "text_base", prompt: str | None = None, label: str | None = None, size: int = 32,
               settings: StageSettings = ILVR_DEFAULTS, negative_prompt: str = "", callback=None) -> Strip:
    """ILVR of one reference at each N in `factors` for each seed (every N of a seed starts from
    the same noise), through the cascade up to `size`, in one batch."""
    if model not in PIXEL_MODELS:
        raise ValueError(f"model must be one of {', '.join(PIXEL_MODELS)}; got {model!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    factors = list(factors)
    if not 1 <= len(factors) <= 8:
        raise ValueError(f"give from 1 to 8 factors, got {len(factors)}")
    seeds = check_seeds(seeds)
    if len(seeds) * len(factors) > 32:
        raise ValueError(f"{len(seeds)} seeds x {len(factors)} factors is too many samples (at most 32)")
    base = models.get(model)
    factors = [check_factor(n, base.resolution) for n in factors]
    reference = pil_to_tensor(image, size=size)
    out = ilvr(base, reference, factors * len(seeds), encoder=models.text_encoder() if model == "text_base" else None,
               prompt=prompt, label=label, seeds=[s for s in seeds for _ in factors], settings=settings,
               negative_prompt=negative_prompt, sr_models=sr_models(models, size), callback=callback).cpu()
    samples = out.view(len(seeds), len(factors), *out.shape[1:])
    small = resize_image(reference, base.resolution)
    low = torch.cat([resize_image(low_pass(small, n), size) for n in factors]).clamp(-1, 1)
    rows = strip_figures(samples, reference, factors, base.resolution)
    parameters = {"command": "ilvr-strip", "factors": factors, "seeds": seeds, "model": model, "prompt": prompt,
                  "label": label, "size": size, "sampler": settings.sampler, "steps": settings.steps,
                  "guidance": settings.guidance if (prompt or label) else 1.0,
                  "rows": "phi_N(reference), then one row per seed; N grows to the right"}
    return Strip(factors, low, samples, rows, parameters)
