"""Generation with trained models: a base stage (text or class), SR stages, and the cascade
that composes them (Imagen / DeepFloyd IF / CDM in miniature). Stages hand tensors in
[-1, 1]; every stage has its own sampler, steps and guidance.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from core.checks import check_finite, check_seeds, seed_streams
from core.diffusion.guidance import cfg_denoiser, classifier_guided_denoiser, dynamic_threshold, x0_transform_denoiser
from core.diffusion.parameterization import Denoiser
from core.diffusion.rng import BatchGenerator
from core.diffusion.samplers import SAMPLERS, SPACINGS, Projection, sample, sampler_stage_spacing
from core.diffusion.schedules import NoiseSchedule
from core.models.networks import DiffusionModel
from core.models.prior import NOISE_STREAM as PRIOR_NOISE_STREAM
from core.models.sampling import sampling_defaults

Callback = Callable[[dict], None]
Guide = Callable[[Denoiser], Denoiser]   # a guidance wrapper: an eps-denoiser in, the guided one out
MAX_CLASSIFIER_SCALE = 100.0
# A code class base draws its code's noise from this stream of each seed, the one the semantic
# prior draws its starting noise from (`core.models.prior.sample_codes`): its label code
# generator learned the prior's map from that noise, so seed s draws the emoji the semantic
# base draws for seed s.
CODE_NOISE_STREAM = PRIOR_NOISE_STREAM




@dataclass(frozen=True)
class StageSettings:
    """How one stage samples. `guidance` uses eps_u + s (eps_c - eps_u) (s = 1: no guidance);
    `threshold` is the thresholding percentile p of x0 (Imagen), None for off, and
    `threshold_max` caps its scale s = clamp(quantile_p(|x0|), 1, threshold_max) (diffusers'
    sample_max_value): 1.0 is static clipping of x0 to [-1, 1], larger values allow Imagen's
    dynamic thresholding. `aug_level` is the SR stage's noise-augmentation timestep for its
    low-res input (CDM). `spacing` lays the steps out over 0..T-1 (`core.diffusion.samplers.SPACINGS`, Lin
    et al. 2023, Table 2); None is the sampler's entry in `core.diffusion.samplers.STAGE_SPACING`.

    Static clipping is the default. Emoji are drawn on pure white: about half of every image sits
    at +1, where the predicted x0 overshoots a little, so quantile_p(|x0|) > 1 on every image and
    uncapped dynamic thresholding divides the whole image by s at every step, greying it out.
    Measured (`python -m core evaluate --models text_base,class_base --n 32 --guidance 3`, CPU):
    text base CLIP score 64.7 -> 66.6, skin tone as asked 0.24 -> 0.59, class base CAS top-1
    0.53 -> 0.59 when going from uncapped dynamic thresholding to static clipping."""
    sampler: str = "ddim"
    steps: int = 25
    guidance: float = 3.0
    eta: float = 0.0
    threshold: float | None = 0.995
    threshold_max: float = 1.0
    aug_level: int = 50
    spacing: str | None = None

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not (self.guidance == self.guidance) or not 0.0 <= self.guidance <= 30.0:
            raise ValueError(f"guidance must be between 0 and 30, got {self.guidance!r}")
        if not (self.eta == self.eta) or not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be between 0 and 1, got {self.eta!r}")
        if self.threshold is not None and not 0.5 <= self.threshold <= 1.0:
            raise ValueError(f"threshold (a percentile) must be between 0.5 and 1, got {self.threshold!r}")
        if not (self.threshold_max >= 1.0):   # also rejects NaN; inf is uncapped dynamic thresholding
            raise ValueError(f"threshold_max must be at least 1 (1 = static clipping), got {self.threshold_max!r}")
        if not 0 <= self.aug_level < 1000:
            raise ValueError(f"aug_level must be between 0 and 999, got {self.aug_level!r}")
        if self.spacing is not None and self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}; got {self.spacing!r}")


@dataclass
class CascadeResult:
    """Images in [-1, 1] per resolution reached, and the parameters that made them (the cascade's,
    `core.cascade.generate`, and DeepFloyd IF's)."""
    stages: dict[int, torch.Tensor]
    parameters: dict = field(default_factory=dict)

    @property
    def final(self) -> torch.Tensor:
        return self.stages[max(self.stages)]


STAGE_KEYS = tuple(StageSettings.__dataclass_fields__)   # what a config's `sampling` may set of a stage


def stage_spacing(settings: StageSettings) -> str:
    """The step spacing a stage with these settings samples on."""
    return settings.spacing or sampler_stage_spacing(settings.sampler)


# The defaults: the fewest steps whose samples are as good as the 25 / 20 / 20 leading DDIM steps
# before them, within their spread over seed sets (`python scripts/sweep_steps.py`, N = 32 held-out
# emoji, seed sets 0-2; the cards have the tables). Bases: DPM-Solver++(2M) on the trailing grid,
# 10 steps: FD_CLIP text base 0.162 / 0.168 / 0.162 (25 DDIM: 0.164 / 0.173 / 0.171; 5 steps would
# do for it alone: 0.172 / 0.172 / 0.173), class base 0.505 / 0.499 / 0.525 (25 DDIM: 0.503 / 0.487
# / 0.516; at 8 steps it stays 0.010-0.019 above on every seed set). SR: DDIM as before, 8 steps at
# 64 px (FD_CLIP 0.0164 / 0.0164 / 0.0159, SSIM 0.922; 20 steps 0.0163 / 0.0164 / 0.0161, 0.918)
# and 4 at 128 px (SSIM 0.932, PSNR 28.9 dB; 20 steps 0.931, 28.6 dB). At 128 px FD_CLIP (CLIP
# sees 64 px) cannot tell the grain that fewer steps or the trailing grid leave, SSIM can (3 DDIM
# steps 0.916, 4 trailing DPM-Solver++ steps 0.905).
# These are the values the committed checkpoints' config.json `sampling` names; the code reads the
# loaded model's (`model_defaults`) and uses these only without one (or for a model trained just now).
BASE_DEFAULTS = StageSettings(sampler="dpmpp-2m", steps=10)
SR_DEFAULTS = StageSettings(sampler="ddim", guidance=1.0, steps=8, aug_level=50)
SR_STAGE_DEFAULTS = (SR_DEFAULTS, replace(SR_DEFAULTS, steps=4))   # the cascade's 64 and 128 px stages


def residual_maps(model: DiffusionModel, residual_base: torch.Tensor | None):
    """(to_image, to_x0) for a stage: a residual model's x0 r (SR, Palette) stands for the image
    residual_base + r / residual_scale; without a base both maps are the identity."""
    if residual_base is None:
        return (lambda x0: x0), (lambda image: image)
    scale = model.config.residual_scale
    if not scale:
        raise ValueError("residual_base given for a model that does not diffuse residuals")
    return (lambda r: residual_base + r / scale), (lambda image: (image - residual_base) * scale)


def stage_denoiser(model: DiffusionModel, cond: dict, uncond: dict | None, settings: StageSettings,
                   residual_base: torch.Tensor | None = None, guide: Guide | None = None):
    """The eps-denoiser of a stage: CFG against `uncond` (none at guidance 1 or without one),
    then `guide` (another guidance wrapper, e.g. classifier guidance), then thresholding of x0
    (static or dynamic), all as wrappers. A residual model's x0 (SR, Palette) is thresholded as
    the image it stands for (`residual_maps`)."""
    if uncond is None or settings.guidance == 1.0:
        denoiser = lambda x_t, t: model.eps(x_t, t, cond)  # noqa: E731
    else:
        denoiser = cfg_denoiser(model.eps, cond, uncond, settings.guidance)
    if guide is not None:
        denoiser = guide(denoiser)
    if settings.threshold is not None:
        to_image, to_x0 = residual_maps(model, residual_base)
        denoiser = x0_transform_denoiser(denoiser, model.schedule, lambda x0: to_x0(
            dynamic_threshold(to_image(x0), settings.threshold, settings.threshold_max)))
    return denoiser


def sample_stage(model: DiffusionModel, cond: dict, uncond: dict | None, seeds: Sequence[int],
                 settings: StageSettings, size: int | None = None, stage: int = 0,
                 callback: Callback | None = None, residual_base: torch.Tensor | None = None,
                 project: Projection | None = None, guide: Guide | None = None) -> torch.Tensor:
    """One stage: initial noise from one generator per seed, CFG and thresholding as wrappers,
    then the chosen sampler. Returns x_0 in [-1, 1]. For a residual model, `residual_base` is
    what it adds to (SR: the clean upsampled low-res image; Palette: its task's baseline): the
    sampler runs on the scaled residual, and the result (and what the callback shows, x_t and
    x0 alike) is the image it stands for. `project` is the samplers' projection after each
    step (ILVR, core.ilvr), on the sampler's own x; `guide` a guidance wrapper (`stage_denoiser`)."""
    seeds = check_seeds(seeds)
    device = next(model.parameters()).device
    size = size or model.resolution
    gen = BatchGenerator(seed_streams(seeds, stage), device)  # stage-specific streams
    x = gen.randn((len(seeds), 3, size, size))
    denoiser = stage_denoiser(model, cond, uncond, settings, residual_base, guide)
    to_image, _ = residual_maps(model, residual_base)
    if callback is not None and residual_base is not None:
        shown = callback
        callback = lambda info: shown({**info, "x": to_image(info["x"]), "x0": to_image(info["x0"])})  # noqa: E731
    with torch.inference_mode():  # no autograd state at all (classifier guidance takes its gradient itself)
        out = sample(settings.sampler, denoiser, x, model.schedule, settings.steps, generator=gen,
                     callback=callback, eta=settings.eta, spacing=stage_spacing(settings), project=project)
    return to_image(out).clamp(-1, 1)


def generate_text(model: DiffusionModel, encoder, prompts: Sequence[str], negative_prompt: str = "",
                  seeds: Sequence[int] = (0,), settings: StageSettings | None = None, guidance: float | None = None,
                  steps: int | None = None, callback: Callback | None = None) -> torch.Tensor:
    """The text-conditioned base stage; one prompt per seed (a single prompt is repeated)."""
    seeds = check_seeds(seeds)
    prompts = list(prompts) * len(seeds) if len(prompts) == 1 else list(prompts)
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts for {len(seeds)} seeds")
    settings = with_overrides(settings or model_defaults(model), guidance, steps)
    emb = encoder.encode(prompts)
    neg = encoder.encode([negative_prompt] * len(prompts))
    cond, uncond = emb.as_cond(), neg.as_cond()
    return sample_stage(model, cond, uncond, seeds, settings, callback=callback)


def generate_class(model: DiffusionModel, class_names: Sequence[str], seeds: Sequence[int] = (0,),
                   settings: StageSettings | None = None, guidance: float | None = None,
                   steps: int | None = None, callback: Callback | None = None, classifier=None,
                   classifier_scale: float | None = None) -> torch.Tensor:
    """The class-conditional base; classifier-free guidance on the label against the null label.
    With `classifier_scale` (and a `classifier`, a core.models.noisy_classifier.NoisyClassifier) it is
    classifier guidance instead (Dhariwal & Nichol 2021): the model runs unconditionally (the
    null label) and grad log p(label | x_t) of the noise-aware classifier, times the scale, steers
    it; `settings.guidance` is not used. Scale 0: unconditional samples."""
    seeds = check_seeds(seeds)
    names = list(class_names) * len(seeds) if len(class_names) == 1 else list(class_names)
    if len(names) != len(seeds):
        raise ValueError(f"got {len(names)} classes for {len(seeds)} seeds")
    settings = with_overrides(settings or model_defaults(model), guidance, steps)
    cond, uncond = class_conds(model, names, seeds)
    if classifier_scale is None:
        return sample_stage(model, cond, uncond, seeds, settings, callback=callback)
    guide = classifier_guide(model, classifier, names, classifier_scale)
    return sample_stage(model, uncond, None, seeds, replace(settings, guidance=1.0), callback=callback, guide=guide)


def check_classifier_scale(scale) -> float:
    """A classifier-guidance scale: a finite number from 0 to MAX_CLASSIFIER_SCALE."""
    scale = check_finite("classifier scale", scale)
    if not 0 <= scale <= MAX_CLASSIFIER_SCALE:
        raise ValueError(f"classifier scale must be between 0 and {MAX_CLASSIFIER_SCALE:g}, got {scale!r}")
    return scale


def classifier_guide(model: DiffusionModel, classifier, names: Sequence[str], scale: float) -> Guide | None:
    """The classifier-guidance wrapper towards `names` (one per sample); None at scale 0."""
    from core.models.noisy_classifier import (  # deferred: diffusers (its network), for classifier guidance only
        check_compatible,
        class_log_prob,
        classifier_labels,
    )
    scale = check_classifier_scale(scale)
    if classifier is None:
        raise ValueError("classifier guidance needs the noise-aware classifier (checkpoints/noisy_classifier; "
                         "`python -m core train noisy_classifier` trains it)")
    check_compatible(classifier, model)
    labels = classifier_labels(classifier, names)
    if scale == 0:
        return None
    return lambda denoiser: classifier_guided_denoiser(denoiser, model.schedule, class_log_prob(classifier, labels),
                                                       scale)


def class_labels(model: DiffusionModel, names: Sequence[str]) -> torch.Tensor:
    """The class indices [B] of `names` on the model's device; ValueError naming an unknown class."""
    classes = model.config.classes or []
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}; `python -m core classes` lists them")
    return torch.tensor([classes.index(n) for n in names], device=next(model.parameters()).device)


def class_conds(model: DiffusionModel, names: Sequence[str], seeds: Sequence[int] | None = None) -> tuple[dict, dict]:
    """(cond, uncond) of a class model: the labels of `names` and the null label. A code class
    base (`ModelConfig.sampled_code`) also gets the noise its codes are drawn from, the same in
    both: sample i's from seeds[i]'s stream `CODE_NOISE_STREAM`, or zeros without seeds."""
    labels = class_labels(model, names)
    if seeds is not None and len(seeds) != len(names):
        raise ValueError(f"got {len(seeds)} seeds for {len(names)} classes")
    uncond = null_conds(model, len(names), seeds)
    cond = {"labels": labels, **{k: v for k, v in uncond.items() if k != "labels"}}
    return cond, uncond


def null_conds(model: DiffusionModel, n: int, seeds: Sequence[int] | None = None) -> dict:
    """The null label's cond of a class model for n samples; a code class base's code noise is
    drawn from each seed's stream `CODE_NOISE_STREAM` (zeros without seeds)."""
    device = next(model.parameters()).device
    noise = None
    if model.config.sampled_code and seeds is not None:
        gen = BatchGenerator(seed_streams(check_seeds(seeds), CODE_NOISE_STREAM), device)
        noise = gen.randn((len(seeds), model.config.semantic_dim))
    return model.null_cond(n, device, noise)


def augment_low_res(schedule: NoiseSchedule, low_up: torch.Tensor, aug_t: torch.Tensor,
                    noise: torch.Tensor) -> torch.Tensor:
    """Noise-conditioning augmentation (CDM, Ho et al. 2021): the low-res input is diffused to
    level t_aug with q(x_t | x_0); t_aug = 0 leaves it unchanged."""
    aug_t = aug_t.to(low_up.device)
    noisy = schedule.q_sample(low_up, aug_t, noise.to(low_up.device))
    return torch.where((aug_t == 0).view(-1, 1, 1, 1), low_up, noisy)


def upscale(model: DiffusionModel, low: torch.Tensor, seeds: Sequence[int] | None = None,
            settings: StageSettings | None = None, steps: int | None = None, aug_level: int | None = None,
            callback: Callback | None = None, stage: int = 1) -> torch.Tensor:
    """An SR stage (SR3): x_t concatenated with the bilinearly upsampled, noise-augmented low-res
    image; sampled at the model's resolution. A residual model (config `residual_scale`) samples
    the scaled difference to the clean upsampled image and adds it back."""
    if low.ndim != 4 or low.shape[1] != 3:
        raise ValueError(f"low-res images must be [B, 3, H, W], got {tuple(low.shape)}")
    seeds = check_seeds(seeds if seeds is not None else range(low.shape[0]))
    if len(seeds) != low.shape[0]:
        raise ValueError(f"got {len(seeds)} seeds for {low.shape[0]} images")
    settings = settings or SR_DEFAULTS
    if aug_level is not None:
        settings = StageSettings(**{**asdict(settings), "aug_level": aug_level})
    settings = with_overrides(settings, None, steps)
    device = next(model.parameters()).device
    size = model.resolution
    low = low.to(device).float()
    if low.shape[-1] != model.config.low_resolution:
        low = F.interpolate(low, size=model.config.low_resolution, mode="area")
    low_up = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    aug_gen = BatchGenerator(seed_streams(seeds, 500 + stage), device)
    aug_t = torch.full((len(seeds),), settings.aug_level, device=device)
    cond = {"low_res": augment_low_res(model.schedule, low_up, aug_t, aug_gen.randn(low_up.shape)),
            "aug_t": aug_t.float()}
    uncond = None  # the SR stages are not text-conditioned: no guidance (CDM)
    residual_base = low_up if model.config.residual_scale else None
    return sample_stage(model, cond, uncond, seeds, settings, size=size, stage=stage, callback=callback,
                        residual_base=residual_base)


def model_defaults(model, fallback: StageSettings = BASE_DEFAULTS) -> StageSettings:
    """The default sampling of a model (a pixel base by default; an SR stage, Palette or the
    semantic prior with their `fallback`): `fallback` with what its config's ``sampling`` names
    (sampler, steps, guidance, ... as measured for it; see its model card) in place of its own."""
    measured = {key: value for key, value in sampling_defaults(model).items() if key in STAGE_KEYS}
    return replace(fallback, **measured) if measured else fallback


def with_overrides(settings: StageSettings, guidance: float | None = None, steps: int | None = None) -> StageSettings:
    """`settings` with the guidance and steps that are given (not None) in place of its own."""
    changes = {k: v for k, v in (("guidance", guidance), ("steps", steps)) if v is not None}
    return replace(settings, **changes) if changes else settings
