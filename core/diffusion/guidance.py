"""Guidance as denoiser wrappers (k-diffusion `make_cfg_model_fn`): each takes a model and returns
a Denoiser, so every sampler works with every guidance unchanged.

- `cfg_denoiser`: classifier-free guidance (Ho & Salimans 2021), both halves in one forward.
- `dynamic_threshold_denoiser` / `static_threshold_denoiser`: Imagen's thresholding of the
  predicted x0 (Saharia et al. 2022, sec. 2.3), returned as the matching eps.
- `classifier_guided_denoiser`: classifier guidance (Dhariwal & Nichol 2021, sec. 4).
- `clip_guided_denoiser`: CLIP guidance (GLIDE, Nichol et al. 2022, sec. 3.2).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from core.checks import as_batch, check_finite
from core.diffusion.parameterization import ConditionalModel, Denoiser
from core.diffusion.schedules import NoiseSchedule, expand_to


def cfg_denoiser(model: ConditionalModel, cond: dict[str, Tensor], uncond: dict[str, Tensor],
                 scale: float) -> Denoiser:
    """Classifier-free guidance: eps = eps_u + s (eps_c - eps_u) (Ho & Salimans 2021, eq. 6, with
    s = 1 + w). s = 1 is the plain conditional model (one forward, no unconditional half); s = 0
    the unconditional one. Otherwise x, t and every cond tensor are concatenated along the batch,
    [uncond; cond], for one forward. Negative prompting: pass the negative prompt's cond as
    `uncond`. cond values are tensors [B, ...]; batch-1 values are expanded to B."""
    scale = check_finite("scale", scale)
    if set(cond) != set(uncond):
        raise ValueError(f"cond and uncond must have the same keys, got {sorted(cond)} and {sorted(uncond)}")
    if scale == 1.0:
        return lambda x, t: model(x, t, cond)
    cache: dict[int, dict[str, Tensor]] = {}

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        if b not in cache:  # the conds are fixed for a run: concatenate them once per batch size
            cache[b] = {k: torch.cat([as_batch(uncond[k], b, f"cond[{k!r}]"), as_batch(cond[k], b, f"cond[{k!r}]")])
                        for k in cond}
        eps_u, eps_c = model(torch.cat([x, x]), torch.cat([t, t]), cache[b]).chunk(2)
        return eps_u + scale * (eps_c - eps_u)

    return denoise


def x0_transform_denoiser(denoiser: Denoiser, schedule: NoiseSchedule,
                          transform: Callable[[Tensor], Tensor]) -> Denoiser:
    """Apply `transform` to the predicted x0 and return the eps that predicts it."""
    def denoise(x: Tensor, t: Tensor) -> Tensor:
        x0 = transform(schedule.x0_from_eps(x, t, denoiser(x, t)))
        return schedule.eps_from_x0(x, t, x0)

    return denoise


def dynamic_threshold(x0: Tensor, percentile: float = 0.995, max_value: float = math.inf) -> Tensor:
    """Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3): per sample,
    s = max(1, quantile(|x0|, percentile)) (capped at max_value, as diffusers' sample_max_value),
    x0 <- clamp(x0, -s, s) / s. x0 inside [-1, 1] is unchanged; with max_value = 1 it is static
    clipping to [-1, 1]."""
    flat = x0.reshape(x0.shape[0], -1).abs().float()  # quantile needs float32/64
    s = torch.quantile(flat, percentile, dim=1).clamp(min=1.0, max=max_value)
    s = expand_to(s, x0)
    return x0.clamp(-s, s) / s


def dynamic_threshold_denoiser(denoiser: Denoiser, schedule: NoiseSchedule, percentile: float = 0.995,
                               max_value: float = math.inf) -> Denoiser:
    """`dynamic_threshold` applied to the denoiser's predicted x0."""
    percentile = check_finite("percentile", percentile)
    if not 0 < percentile <= 1:
        raise ValueError(f"percentile must be in (0, 1], got {percentile!r}")
    if not max_value >= 1:  # also rejects NaN
        raise ValueError(f"max_value must be >= 1, got {max_value!r}")
    return x0_transform_denoiser(denoiser, schedule, lambda x0: dynamic_threshold(x0, percentile, max_value))


def static_threshold_denoiser(denoiser: Denoiser, schedule: NoiseSchedule, limit: float = 1.0) -> Denoiser:
    """Static thresholding: x0 <- clamp(x0, -limit, limit) (DDPM's clipping; diffusers' clip_sample)."""
    limit = check_finite("limit", limit)
    if limit <= 0:
        raise ValueError(f"limit must be > 0, got {limit!r}")
    return x0_transform_denoiser(denoiser, schedule, lambda x0: x0.clamp(-limit, limit))


def classifier_guided_denoiser(denoiser: Denoiser, schedule: NoiseSchedule,
                               log_prob_fn: Callable[[Tensor, Tensor], Tensor], scale: float) -> Denoiser:
    """Classifier guidance (Dhariwal & Nichol 2021, Alg. 2 / eq. 14):
    eps' = eps - scale * sqrt(1 - ab_t) * grad_x log p(y | x_t). `log_prob_fn(x_t, t)` returns
    log p(y | x_t) per sample, shape [B]; it is differentiated even under no_grad/inference_mode."""
    scale = check_finite("scale", scale)

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        eps = denoiser(x, t)
        with torch.inference_mode(False), torch.enable_grad():
            x_in = x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_prob_fn(x_in, t.clone()).sum(), x_in)
        s = expand_to((1 - schedule.alpha_bar(t)).sqrt(), x)
        return eps - scale * s * grad.to(x.dtype)

    return denoise


def clip_guided_denoiser(denoiser: Denoiser, schedule: NoiseSchedule,
                         similarity_fn: Callable[[Tensor, Tensor], Tensor], scale: float) -> Denoiser:
    """CLIP guidance (GLIDE, Nichol et al. 2022, sec. 3.2): classifier guidance with the classifier's
    log p(y | x_t) replaced by a noise-aware CLIP's similarity of x_t with the caption,
    eps' = eps - scale * sqrt(1 - ab_t) * grad_x (f(x_t, t) . g(c)). `similarity_fn(x_t, t)` gives it
    per sample, shape [B]."""
    return classifier_guided_denoiser(denoiser, schedule, similarity_fn, scale)
