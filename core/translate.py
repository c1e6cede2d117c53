"""Image-to-image translation: SDEdit, Palette (colorization, inpainting) and RePaint.

- `sdedit` (Meng et al. 2022, "SDEdit"): the input is diffused to t0 = strength (T - 1) with
  q(x_t0 | x0), then the reverse process runs from t0 with any core sampler (`t_start`),
  guided by a prompt through the text base (classifier-free guidance against the empty prompt)
  or unguided; the SR stages may follow. strength 0 returns the input, strength 1 is
  text-to-image from pure noise with the same seed.
- Palette (Saharia et al. 2022, "Palette: Image-to-Image Diffusion Models"): one 64x64 model
  conditioned on a source image and a mask concatenated to x_t and on a task label
  (`PALETTE_TASKS`): `colorize` (source = the grayscale image, mask = all ones) and `inpaint`
  (source = the image with the region to fill set to 0, mask = that region), trained by
  `python -m core train palette` (`core.training.palette`). A model with `residual_scale` diffuses the scaled
  difference to the task's baseline (`palette_baseline`: the grayscale image, the mean-colour
  fill), as residual SR does over the upsampled input: an untrained model returns the baseline.
- `repaint` (Lugmayr et al. 2022, "RePaint"): inpainting with the unconditional / text base,
  which never saw a mask: at every reverse step the known region is replaced by a sample of
  q(x_{t-1} | x0) of the input, with resampling (jumps back up the chain) so the generated
  region harmonises with it.

- `ilvr` (Choi et al. 2021, "ILVR"): generation with the text or class base whose low
  frequencies are those of a reference image (core.ilvr); `factor` N sets how much is kept.

Inpainting keeps every pixel outside the mask exactly (it is copied from the input at the end).

`translate` is the PIL-level API the CLI (`python -m core translate ...`) and the UI call;
`python -m core.translate evaluate [--n N]` measures the models on held-out emoji.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Literal, Sequence, get_args

import torch
import torch.nn.functional as F
from PIL import Image

from core.images import open_image, pil_to_tensor, save_png, tensor_to_pil
from core.data.masks import mask_from_image, random_mask, resize_mask
from core.models.networks import PALETTE_TASKS, DiffusionModel
from core.pipeline import (BASE_DEFAULTS, SR_STAGE_DEFAULTS, StageSettings, check_seeds, sample_stage, stage_denoiser,
                           stage_spacing, upscale)
from core.diffusion.rng import BatchGenerator
from core.diffusion.samplers import sample, timesteps
from core.diffusion.schedules import check_finite
from core.models.text_encoders import fit_prompts

Callback = Callable[[dict], None]
TranslateTask = Literal["sdedit", "colorize", "inpaint", "ilvr"]
TASKS: tuple[str, ...] = get_args(TranslateTask)
InpaintMethod = Literal["palette", "repaint"]
METHODS: tuple[str, ...] = get_args(InpaintMethod)
SIZES = (32, 64, 128)
DEFAULT_STRENGTH = 0.6
PALETTE_DEFAULTS = StageSettings(guidance=1.0, steps=25)
# What `translate` samples with unless told: the settings its figures were measured with (25 DDIM
# steps), kept when the generation defaults moved to fewer DPM-Solver++ steps.
TRANSLATE_DEFAULTS = StageSettings(sampler="ddim", steps=25)
REPAINT_JUMP, REPAINT_RESAMPLE = 5, 3


# ---- helpers ---------------------------------------------------------------------------------------
def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B) of [B, 3, H, W] in [-1, 1], replicated
    to 3 channels: the colorization source."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def mean_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The baseline inpainting: the mask region filled with the mean colour of the known pixels."""
    keep = 1 - mask
    mean = (x * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp(min=1)
    return torch.where(mask > 0.5, mean.expand_as(x), x)


def check_strength(strength) -> float:
    """SDEdit strength: a finite number in [0, 1], else ValueError naming it."""
    strength = check_finite("strength", strength)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength!r}")
    return strength


def resize_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] at size x size: unchanged when already there, box (area) average when
    shrinking (as the data set's lower resolutions), bicubic when enlarging."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.clone()
    if x.shape[-1] > size:
        return F.interpolate(x, size=(size, size), mode="area").clamp(-1, 1)
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _batched(x: torch.Tensor, n: int, name: str) -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f"{name} must be [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[0] == n:
        return x
    if x.shape[0] == 1:
        return x.expand(n, *x.shape[1:])
    raise ValueError(f"{name} has batch {x.shape[0]} for {n} seeds")


def _check_image(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
        raise ValueError("image must be a float tensor [B, 3, H, W] in [-1, 1]")
    return image.float()


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _text_conds(encoder, prompt: str | None, negative_prompt: str, n: int, settings: StageSettings):
    """(cond, uncond, settings): the prompt against the negative / empty prompt, or, with no
    prompt, the empty prompt alone at guidance 1 (unguided)."""
    if not prompt or not prompt.strip():
        emb = encoder.encode([""] * n)
        return {"tokens": emb.tokens, "mask": emb.mask}, None, replace(settings, guidance=1.0)
    emb, neg = encoder.encode([prompt] * n), encoder.encode([negative_prompt] * n)
    return {"tokens": emb.tokens, "mask": emb.mask}, {"tokens": neg.tokens, "mask": neg.mask}, settings


def _staged(callback: Callback | None, resolution: int) -> Callback | None:
    return None if callback is None else (lambda info: callback({**info, "stage": resolution}))


def _super_resolve(x: torch.Tensor, seeds: list[int], sr_models: Sequence[DiffusionModel],
                   sr_settings: Sequence[StageSettings] | None, callback: Callback | None) -> torch.Tensor:
    sr_settings = list(sr_settings) if sr_settings is not None else list(SR_STAGE_DEFAULTS[:len(sr_models)])
    if len(sr_settings) < len(sr_models):
        raise ValueError(f"got {len(sr_settings)} SR settings for {len(sr_models)} SR stages")
    for i, (model, settings) in enumerate(zip(sr_models, sr_settings)):
        x = upscale(model, x, seeds, settings, callback=_staged(callback, model.resolution), stage=i + 1)
    return x


# ---- SDEdit ----------------------------------------------------------------------------------------
def sdedit(base: DiffusionModel, encoder, image: torch.Tensor, strength: float, prompt: str | None = None,
           seeds: Sequence[int] = (0,), settings: StageSettings = BASE_DEFAULTS, negative_prompt: str = "",
           sr_models: Sequence[DiffusionModel] = (), sr_settings: Sequence[StageSettings] | None = None,
           callback: Callback | None = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022, Alg. 1): x_t0 = sqrt(ab_t0) x + sqrt(1 - ab_t0) z with
    t0 = strength (T - 1), then the reverse process from t0 with `settings.sampler` (its grid
    points below t0, so fewer model calls at lower strength). `image` is [B or 1, 3, H, W] in
    [-1, 1], any H = W; it is resized to the base resolution (32). The output is
    32 * 2^len(sr_models) wide. strength 0: the input resized to the output size, untouched;
    strength 1: the input is ignored and the result equals text-to-image (`generate_text`)
    with the same seeds. The noise comes from the generation streams of each seed."""
    strength = check_strength(strength)
    seeds = check_seeds(seeds)
    image = _batched(_check_image(image), len(seeds), "image")
    out_size = base.resolution * 2 ** len(sr_models)
    if strength == 0.0:
        return resize_image(image, out_size)
    device = _device(base)
    x0 = resize_image(image, base.resolution).to(device)
    cond, uncond, settings = _text_conds(encoder, prompt, negative_prompt, len(seeds), settings)
    denoiser = stage_denoiser(base, cond, uncond, settings)
    gen = BatchGenerator([s * 1009 for s in seeds], device)   # the streams of sample_stage, stage 0
    noise = gen.randn(x0.shape)
    if strength == 1.0:   # from pure noise: exactly the text-to-image run
        x, t_start = noise, None
    else:                 # q(x_t0 | x0), Ho et al. 2020 eq. 4
        t_start = strength * (base.schedule.T - 1)
        x = base.schedule.q_sample(x0, t_start, noise)
    with torch.no_grad():
        x = sample(settings.sampler, denoiser, x, base.schedule, settings.steps, generator=gen,
                   callback=_staged(callback, base.resolution), eta=settings.eta,
                   spacing=stage_spacing(settings), t_start=t_start).clamp(-1, 1)
        return _super_resolve(x, seeds, sr_models, sr_settings, callback)


# ---- Palette ---------------------------------------------------------------------------------------
def _check_palette(model: DiffusionModel) -> None:
    if getattr(model, "kind", None) != "palette":
        raise ValueError(f"expected a palette model, got kind {getattr(model, 'kind', type(model).__name__)!r}")


def _task_labels(task: str, n: int, device) -> torch.Tensor:
    return torch.full((n,), PALETTE_TASKS.index(task), dtype=torch.long, device=device)


def palette_baseline(source: torch.Tensor, mask: torch.Tensor, colorizing: torch.Tensor | bool) -> torch.Tensor:
    """The simple answer a residual Palette model improves on ([B, 3, H, W]): for colorization the
    grayscale source itself, for inpainting the source with the mask region filled with the mean
    colour of its known pixels (`mean_fill`). `colorizing`: a bool, or [B, 1, 1, 1] per example."""
    return torch.where(torch.as_tensor(colorizing, device=source.device), source, mean_fill(source, mask))


def colorize(model: DiffusionModel, image: torch.Tensor, seeds: Sequence[int] = (0,),
             settings: StageSettings = PALETTE_DEFAULTS, callback: Callback | None = None) -> torch.Tensor:
    """Palette colorization: the grayscale of `image` (resized to the model's 64x64) is the
    source, the mask is all ones. Returns [B, 3, 64, 64] in [-1, 1]."""
    _check_palette(model)
    seeds = check_seeds(seeds)
    device = _device(model)
    x = resize_image(_batched(_check_image(image), len(seeds), "image"), model.resolution).to(device)
    source, mask = grayscale(x), torch.ones_like(x[:, :1])
    cond = {"source": source, "mask": mask, "task": _task_labels("colorize", len(seeds), device)}
    residual_base = palette_baseline(source, mask, True) if model.config.residual_scale else None
    return sample_stage(model, cond, None, seeds, settings, callback=callback, residual_base=residual_base)


def inpaint(model: DiffusionModel, image: torch.Tensor, mask: torch.Tensor, seeds: Sequence[int] = (0,),
            settings: StageSettings = PALETTE_DEFAULTS, callback: Callback | None = None) -> torch.Tensor:
    """Palette inpainting at the model's resolution (64): source = image with the mask region set
    to 0, mask = 1 where to fill ([B or 1, 1, h, w], resized covering). Outside the mask the
    result is the (resized) input, copied exactly."""
    _check_palette(model)
    seeds = check_seeds(seeds)
    device = _device(model)
    x = resize_image(_batched(_check_image(image), len(seeds), "image"), model.resolution).to(device)
    m = _batched(resize_mask(mask.float(), model.resolution), len(seeds), "mask").to(device)
    keep = m < 0.5
    source = torch.where(keep, x, torch.zeros_like(x))
    cond = {"source": source, "mask": m, "task": _task_labels("inpaint", len(seeds), device)}
    residual_base = palette_baseline(source, m, False) if model.config.residual_scale else None
    out = sample_stage(model, cond, None, seeds, settings, callback=callback, residual_base=residual_base)
    return torch.where(keep, x, out)


# ---- RePaint ---------------------------------------------------------------------------------------
def repaint_path(n: int, jump: int, resample: int) -> list[int]:
    """The levels RePaint visits (Lugmayr et al. 2022, Alg. 1 with the jump schedule of its
    sec. 4.2): level n is pure noise, level 0 the clean image; a step down is a reverse step, a
    step up re-noises with q(x_t | x_{t-1}). Every `jump` levels (n - jump, n - 2 jump, ... > 0)
    the chain goes back up `jump` levels, `resample - 1` times."""
    path, level = [n], n
    remaining = {L: resample - 1 for L in range(n - jump, 0, -jump)}
    while level > 0:
        level -= 1
        path.append(level)
        if remaining.get(level, 0) > 0:
            remaining[level] -= 1
            for _ in range(jump):
                level += 1
                path.append(level)
    return path


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def repaint(base: DiffusionModel, encoder, image: torch.Tensor, mask: torch.Tensor, prompt: str | None = None,
            seeds: Sequence[int] = (0,), steps: int = 25, jump: int = REPAINT_JUMP,
            resample: int = REPAINT_RESAMPLE, guidance: float = 3.0, threshold: float | None = 0.995,
            negative_prompt: str = "", sr_models: Sequence[DiffusionModel] = (),
            sr_settings: Sequence[StageSettings] | None = None, callback: Callback | None = None) -> torch.Tensor:
    """RePaint inpainting with the text base (no mask-aware training), at its resolution (32),
    then the SR stages. `image` [B or 1, 3, H, W] and `mask` [B or 1, 1, h, w] (1 = fill) are
    taken at the output size 32 * 2^len(sr_models); the base sees them box-downsampled (the
    mask covering). Reverse steps are DDPM ancestral steps on the `steps`-point leading grid
    (posterior q(x_{t'} | x_t, x0_pred), Ho et al. 2020 eqs. 6-7); after each, the known region is
    replaced by q(x_{t'} | x0) of the input (RePaint eq. 8); `jump` / `resample` as in
    `repaint_path`. The prompt guides with CFG against the empty / negative prompt; without a
    prompt it is unguided. Outside the mask the output equals the (resized) input exactly."""
    seeds = check_seeds(seeds)
    settings = StageSettings(sampler="ddpm", steps=_check_int("steps", steps, 1, base.schedule.T),
                             guidance=guidance, threshold=threshold)
    jump = _check_int("jump", jump, 1)
    resample = _check_int("resample", resample, 1, 20)
    device = _device(base)
    out_size = base.resolution * 2 ** len(sr_models)
    image = _batched(_check_image(image), len(seeds), "image").to(device)
    mask_out = _batched(resize_mask(mask.float(), out_size), len(seeds), "mask").to(device)
    image_out = resize_image(image, out_size)
    if not bool(mask_out.any()):
        return image_out
    known = resize_image(image_out, base.resolution)
    fill = resize_mask(mask_out, base.resolution) > 0.5
    cond, uncond, settings = _text_conds(encoder, prompt, negative_prompt, len(seeds), settings)
    denoiser = stage_denoiser(base, cond, uncond, settings)
    schedule = base.schedule
    grid = [-1.0] + timesteps(schedule.T, settings.steps, "leading")[::-1]   # level -> t; level 0 = clean
    gen = BatchGenerator([s * 1009 for s in seeds], device)
    x = gen.randn(known.shape)
    path = repaint_path(len(grid) - 1, jump, resample)
    total = sum(1 for a, b in zip(path, path[1:]) if b < a)
    done = 0
    with torch.no_grad():
        for a, b in zip(path, path[1:]):
            t_a, t_b = grid[a], grid[b]
            if b < a:   # reverse step: unknown region from p(x_{t_b} | x_{t_a}), known from q(x_{t_b} | x0)
                eps = denoiser(x, torch.full((x.shape[0],), t_a, dtype=torch.float32, device=device))
                x0 = schedule.x0_from_eps(x, t_a, eps)
                if callback is not None:
                    callback({"step": done, "total": total, "t": t_a, "x": x, "x0": x0, "stage": base.resolution})
                mean, var = schedule.posterior(x0, x, t_a, t_b)
                if b > 0:
                    unknown = mean + var.sqrt() * gen.randn_like(x)
                    x_known = schedule.q_sample(known, t_b, gen.randn_like(x))
                else:
                    unknown, x_known = mean.clamp(-1, 1), known
                x = torch.where(fill, unknown, x_known)
                done += 1
            else:       # jump back: x_{t_b} ~ q(x_{t_b} | x_{t_a}) = N(sqrt(ab_b / ab_a) x, (1 - ab_b / ab_a) I)
                ratio = float(schedule.alpha_bar(t_b) / schedule.alpha_bar(t_a))
                x = math.sqrt(ratio) * x + math.sqrt(1 - ratio) * gen.randn_like(x)
        x = _super_resolve(x, seeds, sr_models, sr_settings, callback)
    return torch.where(mask_out > 0.5, x.clamp(-1, 1), image_out)


# ---- the PIL-level API -----------------------------------------------------------------------------
def _palette_size(task: str, size: int | None) -> int:
    if size not in (None, 64):
        raise ValueError(f"{task} with the Palette model gives 64x64 images (its resolution); "
                         f"size {size} is not available")
    return 64


def translate(models, task: str, image: Image.Image, mask: Image.Image | None = None, prompt: str | None = None,
              strength: float | None = None, seed: int = 0, method: str = "palette", size: int | None = None,
              steps: int | None = None, sampler: str | None = None, guidance: float | None = None,
              negative_prompt: str = "", jump: int = REPAINT_JUMP, resample: int = REPAINT_RESAMPLE,
              factor: int | None = None, label: str | None = None, model: str | None = None,
              callback: Callback | None = None) -> tuple[Image.Image, dict]:
    """One translated image and its parameters (for the PNG text chunk).

    task "sdedit": `strength` (default 0.6), optional `prompt`, output `size` 32/64/128 (default
    128). task "colorize": the Palette model, 64x64. task "inpaint": `mask` (white or opaque =
    fill) with `method` "palette" (64x64) or "repaint" (text base + SR, `size`, optional prompt).
    An empty mask returns the input unchanged (parameters["note"] says so); a full mask is an
    error. task "ilvr": the reference `image`, `factor` N (default 4, at 32x32), the base `model`
    "text_base" (default; optional `prompt`) or "class_base" (optional `label`), output `size`
    32/64/128 (default 128). Bad input raises ValueError / ImageError with a one-line message."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if task != "ilvr":
        for name, value in (("factor", factor), ("label", label), ("model", model)):
            if value is not None:
                raise ValueError(f"{name} is a setting of task ilvr only, not {task}")
    if task != "sdedit" and strength is not None:
        raise ValueError(f"strength is a setting of task sdedit only, not {task}")
    if task != "inpaint" and mask is not None:
        raise ValueError(f"a mask is used by task inpaint only, not {task}")
    if task == "inpaint" and method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    palette = task == "colorize" or (task == "inpaint" and method == "palette")
    if palette and prompt:
        raise ValueError(f"{task} with the Palette model takes no prompt (it is not text-conditioned)")
    if palette:
        size = _palette_size(task, size)
    else:
        size = 128 if size is None else size
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if task == "sdedit":
        strength = check_strength(DEFAULT_STRENGTH if strength is None else strength)
    defaults = TRANSLATE_DEFAULTS
    if task == "ilvr":
        from core.ilvr import ILVR_DEFAULTS as defaults
    default_guidance = 3.0 if ((prompt or label) and not palette) else 1.0
    settings = StageSettings(sampler=sampler or defaults.sampler,
                             steps=defaults.steps if steps is None else steps,
                             guidance=default_guidance if guidance is None else guidance)
    x = pil_to_tensor(image, size=size)
    params = {"command": "translate", "task": task, "seed": seed, "size": size, "steps": settings.steps}
    if prompt and not palette:   # the text encoder reads a bounded context: use (and store) what it reads
        prompt, negative_prompt, note = fit_prompts(models.text_encoder(), prompt, negative_prompt)
        if note:
            params["note"] = note
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpaint needs a mask (white or opaque = the region to fill)")
        m = mask_from_image(mask, size)
        params.update(method=method, mask_coverage=round(float(m.mean()), 4))
        if not bool(m.any()):
            params["note"] = "the mask is empty: nothing to inpaint, the input is returned unchanged"
            return tensor_to_pil(x)[0], params
        if bool(m.all()):
            raise ValueError("the mask covers the whole image: nothing is left to keep (use generate for a new image)")
    sr_names = [name for res, name in ((64, "sr64"), (128, "sr128")) if res <= size]

    if task == "colorize":
        params.update(sampler=settings.sampler)
        out = colorize(models.get("palette"), x, [seed], settings, callback=callback)
    elif task == "inpaint" and method == "palette":
        params.update(sampler=settings.sampler)
        out = inpaint(models.get("palette"), x, m, [seed], settings, callback=callback)
    elif task == "ilvr":
        from core.ilvr import BASES, DEFAULT_FACTOR, ilvr
        model = model or ("class_base" if label else "text_base")
        if model not in BASES:
            raise ValueError(f"model must be one of {', '.join(BASES)}; got {model!r}")
        factor = DEFAULT_FACTOR if factor is None else factor
        guided = bool((prompt and prompt.strip()) or label)
        params.update(model=model, factor=factor, prompt=prompt, label=label, negative_prompt=negative_prompt,
                      sampler=settings.sampler, guidance=settings.guidance if guided else 1.0)
        out = ilvr(models.get(model), x, factor, encoder=models.text_encoder() if model == "text_base" else None,
                   prompt=prompt, label=label, seeds=[seed], settings=settings, negative_prompt=negative_prompt,
                   sr_models=[models.get(n) for n in sr_names], callback=callback)
    elif task == "inpaint":
        params.update(prompt=prompt, negative_prompt=negative_prompt, guidance=settings.guidance, jump=jump,
                      resample=resample, sampler="repaint (ddpm)")
        out = repaint(models.get("text_base"), models.text_encoder(), x, m, prompt, [seed], settings.steps, jump,
                      resample, settings.guidance, negative_prompt=negative_prompt,
                      sr_models=[models.get(n) for n in sr_names], callback=callback)
    else:
        params.update(prompt=prompt, negative_prompt=negative_prompt, strength=strength, sampler=settings.sampler,
                      guidance=settings.guidance if prompt else 1.0)
        if strength == 0.0:   # nothing is noised: the input at the output size, no model needed
            out = x
        else:
            out = sdedit(models.get("text_base"), models.text_encoder(), x, strength, prompt, [seed], settings,
                         negative_prompt, sr_models=[models.get(n) for n in sr_names], callback=callback)
    return tensor_to_pil(out)[0], params


# ---- the command line ------------------------------------------------------------------------------
def add_cli(sub, common) -> None:
    """`python -m core translate ...` (DESIGN.md's contract plus extras)."""
    p = sub.add_parser("translate", help="image-to-image: SDEdit, colorization, inpainting, ILVR")
    p.add_argument("--task", required=True, metavar="|".join(TASKS))
    p.add_argument("--image", required=True, help="input image (any size or mode)")
    p.add_argument("--mask", help="inpaint: mask image, white (or opaque) = the region to fill")
    p.add_argument("--prompt", help="sdedit / repaint / ilvr: text guidance (none = unguided)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--strength", type=float,
                   help=f"sdedit: 0 (keep) .. 1 (ignore the input); default {DEFAULT_STRENGTH}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help=f"sampling steps (default {TRANSLATE_DEFAULTS.steps})")
    p.add_argument("--sampler", help="ddpm|ddim|euler|heun|euler-maruyama|dpmpp-2m (default ddim)")
    p.add_argument("--guidance", type=float, help="sdedit / repaint with a prompt (default 3)")
    p.add_argument("--method", default="palette", metavar="|".join(METHODS), help="inpaint: palette (64x64) or repaint")
    p.add_argument("--size", type=int, help="sdedit / repaint: 32|64|128 (default 128); Palette tasks: 64")
    p.add_argument("--jump", type=int, default=REPAINT_JUMP, help="repaint: jump length")
    p.add_argument("--resample", type=int, default=REPAINT_RESAMPLE, help="repaint: resamplings per jump")
    p.add_argument("--factor", type=int, help="ilvr: the low-pass factor N at 32x32 (1, 2, 4, 8, 16, 32; default 4): "
                                              "the sample keeps the reference downsampled by N")
    p.add_argument("--model", help="ilvr: the base, text_base (default) or class_base (the default with --label)")
    p.add_argument("--label", help="ilvr with --model class_base: guide with this class (default: unconditional)")
    p.add_argument("--out", required=True, help="output PNG file")
    common(p)
    p.set_defaults(handler=run_cli, out_kind="file")


def run_cli(args, models) -> None:
    out = Path(args.out)
    if args.task == "inpaint" and not args.mask:
        raise ValueError("--task inpaint needs --mask (white or opaque = the region to fill)")
    image = open_image(args.image)
    mask = open_image(args.mask) if args.mask else None
    result, params = translate(models, args.task, image, mask=mask, prompt=args.prompt, strength=args.strength,
                               seed=args.seed, method=args.method, size=args.size, steps=args.steps,
                               sampler=args.sampler, guidance=args.guidance, negative_prompt=args.negative_prompt,
                               jump=args.jump, resample=args.resample, factor=args.factor, label=args.label,
                               model=args.model)
    params = {**params, "image": str(args.image), **({"mask": str(args.mask)} if args.mask else {})}
    save_png(result, out, params)
    if "note" in params:
        print(f"note: {params['note']}")
    print(f"wrote {out}")


# ---- evaluation ------------------------------------------------------------------------------------
def srgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) of sRGB images [B, 3, H, W] in [-1, 1]: sRGB decoding (IEC 61966-2-1),
    linear RGB -> XYZ, then CIE 1976 L*a*b* relative to the D65 white."""
    c = ((x.double() + 1) / 2).clamp(0, 1)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                      [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64, device=x.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, linear)
    white = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    t = xyz / white
    delta = 6 / 29
    f = torch.where(t > delta ** 3, t.clamp(min=0) ** (1 / 3), t / (3 * delta ** 2) + 4 / 29)
    L = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], dim=1)


def delta_e(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean CIE76 colour difference per image (Euclidean distance in Lab)."""
    return (srgb_to_lab(x) - srgb_to_lab(y)).pow(2).sum(dim=1).sqrt().mean(dim=(1, 2))


def psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB per image on the [0, 1] scale, over the pixels where mask = 1 (all by default)."""
    err = ((x.double() - y.double()) / 2) ** 2
    if mask is None:
        mse = err.mean(dim=(1, 2, 3))
    else:
        m = mask.double().expand_as(err)
        mse = (err * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp(min=1)
    return 10 * torch.log10(1 / mse.clamp(min=1e-10))


def evaluate(models, n: int = 32, steps: int = 25, seed: int = 0, batch: int = 16,
             strengths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), repaint_steps: int = 25,
             inpaint_samples: int = 1, log: Callable[[str], None] = print) -> dict:
    """Measure the translation models on the first `n` held-out emoji; returns a dict of rows
    (missing models are listed under "missing"). With `inpaint_samples` K > 1, Palette inpainting
    is also scored as the mean of K samples per image: PSNR rewards the posterior mean, which a
    single sharp sample is not and the mean-colour fill crudely is. With the CLIP model, Palette's
    outputs and baselines are also scored for realism (FD_CLIP to the real emoji)."""
    inpaint_samples = _check_int("inpaint_samples", inpaint_samples, 1)
    from core.data.emoji import load_dataset
    available = set(models.available())
    results: dict = {"n": 0, "steps": steps, "missing": [m for m in ("palette", "text_base", "clip")
                                                          if m not in available], "rows": [], "sdedit": []}
    if "palette" not in available and not {"text_base", "clip"} <= available:
        return results   # nothing to measure: no need for the data set
    data = load_dataset()
    idx = torch.as_tensor(data.indices("heldout"))[:n]
    results["n"] = len(idx)
    settings = StageSettings(steps=steps, guidance=1.0)
    gen = torch.Generator().manual_seed(seed)

    def batches(x):
        for s in range(0, len(x), batch):
            yield s, x[s:s + batch]

    # realism is scored as the Frechet distance to real emoji in the project CLIP's image space
    from core.evaluate import frechet_distance
    from core.mechanics import clip_embedder
    embedder = clip_embedder(models) if "clip" in available else None

    def embed(images):
        return torch.cat([embedder.image_embeddings(xb).cpu() for _, xb in batches(images)]).double().numpy()

    if "palette" in available:
        model = models.get("palette")
        x64 = data.images_at(64, idx)
        masks = torch.cat([random_mask(64, gen) for _ in range(len(idx))])
        col, samples = [], [[] for _ in range(inpaint_samples)]
        for s, xb in batches(x64):
            seeds = list(range(seed + s, seed + s + len(xb)))
            col.append(colorize(model, xb, seeds, settings).cpu())
            for k, sample_k in enumerate(samples):   # sample k of each image: its seed shifted by k * n
                sample_k.append(inpaint(model, xb, masks[s:s + len(xb)], [sd + k * len(idx) for sd in seeds],
                                        settings).cpu())
        samples = [torch.cat(sample_k) for sample_k in samples]
        col, inp, gray, fill = torch.cat(col), samples[0], grayscale(x64), mean_fill(x64, masks)
        results["rows"] += [
            ("colorize (Palette, 64x64)", "PSNR, dB (higher is better)", psnr(col, x64).mean().item(),
             psnr(gray, x64).mean().item(), "grayscale input"),
            ("colorize (Palette, 64x64)", "mean Lab colour error dE76 (lower is better)",
             delta_e(col, x64).mean().item(), delta_e(gray, x64).mean().item(), "grayscale input"),
            ("inpaint (Palette, 64x64)", "PSNR inside the mask, dB", psnr(inp, x64, masks).mean().item(),
             psnr(fill, x64, masks).mean().item(), "mean-colour fill"),
            ("inpaint (Palette, 64x64)", "max abs change outside the mask (must be 0)",
             ((inp - x64).abs() * (1 - masks)).max().item(), 0.0, "-"),
        ]
        if inpaint_samples > 1:
            mean = torch.stack(samples).mean(dim=0)
            results["rows"].append(
                ("inpaint (Palette, 64x64)", f"PSNR inside the mask, mean of {inpaint_samples} samples, dB",
                 psnr(mean, x64, masks).mean().item(), psnr(fill, x64, masks).mean().item(), "mean-colour fill"))
        if embedder is not None and len(idx) >= 2:
            # Realism, as Palette (Saharia et al. 2022) reports FID beside the per-pixel errors
            # (lower is better).
            real = embed(x64)
            results["rows"] += [
                ("colorize (Palette, 64x64)", "FD_CLIP to the real emoji (lower is better)",
                 frechet_distance(embed(col), real), frechet_distance(embed(gray), real), "grayscale input"),
                ("inpaint (Palette, 64x64)", "FD_CLIP to the real emoji (lower is better)",
                 frechet_distance(embed(inp), real), frechet_distance(embed(fill), real), "mean-colour fill")]
    if "text_base" in available and "clip" in available:
        base, encoder = models.get("text_base"), models.text_encoder()
        x32 = data.images_at(32, idx)
        masks32 = torch.cat([random_mask(32, gen) for _ in range(len(idx))])
        rep = []
        for s, xb in batches(x32):
            seeds = list(range(seed + s, seed + s + len(xb)))
            rep.append(repaint(base, encoder, xb, masks32[s:s + len(xb)], None, seeds, repaint_steps).cpu())
        rep = torch.cat(rep)
        results["rows"] += [
            ("inpaint (RePaint, text base unguided, 32x32)", "PSNR inside the mask, dB",
             psnr(rep, x32, masks32).mean().item(), psnr(mean_fill(x32, masks32), x32, masks32).mean().item(),
             "mean-colour fill"),
            ("inpaint (RePaint, text base unguided, 32x32)", "max abs change outside the mask (must be 0)",
             ((rep - x32).abs() * (1 - masks32)).max().item(), 0.0, "-"),
        ]
        # SDEdit's trade-off (Meng et al., fig. 4): colour sketches of the held-out emoji, edited at
        # each strength; faithfulness = distance to the sketch, realism = FD to real emoji in CLIP space.
        real = embedder.image_embeddings(x32).cpu().double().numpy()
        train = torch.as_tensor(data.indices("train"))
        pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 2))[: len(idx)]]
        results["fd_real_train"] = frechet_distance(
            embedder.image_embeddings(data.images_at(32, pick)).cpu().double().numpy(), real)
        sketches = colour_sketch(x32)
        base_settings = StageSettings(steps=steps, guidance=1.0)
        for strength in strengths:
            outs = []
            for s, xb in batches(sketches):
                seeds = list(range(seed + s, seed + s + len(xb)))
                outs.append(sdedit(base, encoder, xb, strength, None, seeds, base_settings).cpu())
            out = torch.cat(outs)
            rmse = (((out - sketches) / 2) ** 2).mean(dim=(1, 2, 3)).sqrt().mean().item()
            fd = frechet_distance(embedder.image_embeddings(out).cpu().double().numpy(), real)
            results["sdedit"].append((strength, rmse, psnr(out, x32).mean().item(), fd))
    return results


def colour_sketch(images: torch.Tensor, cells: int = 8, levels: int = 4) -> torch.Tensor:
    """A rough colour sketch of each image (SDEdit's stroke-painting input, made synthetically):
    the mean colour of each of cells x cells blocks, quantised to `levels` values per channel."""
    size = images.shape[-1]
    blocks = F.interpolate(images, size=cells, mode="area")
    blocks = torch.round((blocks + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
    return F.interpolate(blocks, size=size, mode="nearest")


def markdown(results: dict) -> str:
    lines = [f"Held-out emoji: {results['n']}, {results['steps']} sampling steps.", ""]
    if results["missing"]:
        lines += [f"Missing models (not evaluated): {', '.join(results['missing'])}.", ""]
    if results["rows"]:
        lines += ["| task | metric | model | baseline | baseline is |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {t} | {m} | {v:.3f} | {b:.3f} | {what} |" for t, m, v, b, what in results["rows"]]
        lines.append("")
    if results["sdedit"]:
        lines += ["SDEdit (text base, unguided, 32x32) on colour sketches of the held-out emoji (8x8 blocks, "
                  "4 levels per channel): faithfulness (RMSE to the sketch) against realism (Frechet "
                  f"distance to the real held-out emoji in CLIP image space; real training emoji score "
                  f"{results.get('fd_real_train', math.nan):.3f})", "",
                  "| strength | RMSE to the sketch ([0, 1] scale) | PSNR to the original emoji, dB | FD_CLIP to real |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {s:.2f} | {r:.4f} | {p:.2f} | {fd:.3f} |" for s, r, p, fd in results["sdedit"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.translate", description="Image-to-image translation tools.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("evaluate", help="measure Palette / RePaint / SDEdit on held-out emoji; prints markdown")
    e.add_argument("--n", type=int, default=32, help="held-out images")
    e.add_argument("--steps", type=int, default=25)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--inpaint-samples", type=int, default=1,
                   help="also score Palette inpainting as the mean of this many samples per image")
    e.add_argument("--checkpoints", default=None)
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    a = p.parse_args(argv)
    from core.cascade import ModelSet
    from core.models.checkpoints import CheckpointError
    try:
        models = ModelSet(a.checkpoints, a.device)
        results = evaluate(models, n=a.n, steps=a.steps, seed=a.seed, inpaint_samples=a.inpaint_samples)
    except (ValueError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
