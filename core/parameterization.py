"""The denoiser protocol every sampler and guidance wrapper speaks.

A `Denoiser` maps (x_t, t) to the predicted noise eps, where t is a float tensor of shape [B] on
the 0..T-1 scale of the model's NoiseSchedule (fractional t is allowed). A `ConditionalModel`
takes a third argument, a dict of conditioning tensors of batch B. Networks that predict x0 or
v are adapted once with `eps_denoiser` (k-diffusion `external.py`, EDM `EDMPrecond`), so one
sampler serves all of them.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from core.schedules import NoiseSchedule, Prediction

Denoiser = Callable[[Tensor, Tensor], Tensor]
ConditionalModel = Callable[[Tensor, Tensor, dict[str, Tensor]], Tensor]


def eps_denoiser(model_fn: Callable[..., Tensor], schedule: NoiseSchedule,
                 prediction: Prediction = "eps") -> Callable[..., Tensor]:
    """Turn a network predicting eps, x0 or v into one predicting eps. Extra arguments (a cond
    dict) pass through, so this adapts a Denoiser or a ConditionalModel alike. An eps network is
    returned as it is."""
    if prediction not in ("eps", "x0", "v"):
        raise ValueError(f"prediction must be one of eps, x0, v; got {prediction!r}")
    if prediction == "eps":
        return model_fn

    def denoise(x_t: Tensor, t: Tensor, *args, **kwargs) -> Tensor:
        return schedule.eps_from_prediction(model_fn(x_t, t, *args, **kwargs), x_t, t, prediction)

    return denoise


def predict_x0(schedule: NoiseSchedule, x_t: Tensor, t: float | Tensor, eps: Tensor) -> Tensor:
    """x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) (Ho et al. 2020, eq. 15)."""
    return schedule.x0_from_eps(x_t, t, eps)
