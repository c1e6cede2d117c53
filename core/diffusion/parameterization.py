"""The denoiser protocol every sampler and guidance wrapper speaks.

A `Denoiser` maps (x_t, t) to the predicted noise eps, where t is a float tensor of shape [B] on
the 0..T-1 scale of the model's NoiseSchedule (fractional t is allowed). A `ConditionalModel`
takes a third argument, a dict of conditioning tensors of batch B. Networks that predict x0 or
v are adapted once with `eps_denoiser` (k-diffusion `external.py`, EDM `EDMPrecond`), so one
sampler serves all of them. Networks that also output their variance (improved DDPM, DeepFloyd
IF) are split once by `LearnedVariance`: guidance and samplers see eps only, and the DDPM sampler
reads the variance from it.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from core.diffusion.schedules import NoiseSchedule, Prediction

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


class LearnedVariance:
    """The variance half of a network whose output is [eps, v] along channels (Nichol & Dhariwal
    2021, eq. 15; DeepFloyd IF's "learned_range"): v in [-1, 1] sets the step's variance between
    the posterior's beta~ (v = -1) and beta (v = 1) in log space, which `sample_ddpm` applies.

    `wrap(model)` is the same model returning eps only; each call keeps its v here, and
    `latest(batch)` gives the last `batch` rows of the latest call. Under `cfg_denoiser` one call
    carries [uncond; cond], so those rows are the conditional half, the v IF's pipelines use.
    One instance per sampling run: it holds that run's latest v.
    """

    def __init__(self, channels: int):
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.channels = channels
        self._v: Tensor | None = None

    def wrap(self, model: ConditionalModel) -> ConditionalModel:
        def eps_only(x_t: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
            out = model(x_t, t, cond)
            if out.shape[1] != 2 * self.channels:
                raise ValueError(f"a learned-variance network must output {2 * self.channels} channels "
                                 f"(eps and v), got {out.shape[1]}")
            eps, self._v = out.split(self.channels, dim=1)
            return eps

        return eps_only

    def latest(self, batch: int) -> Tensor:
        if self._v is None:
            raise ValueError("no variance yet: the wrapped model has not been called")
        if self._v.shape[0] < batch:
            raise ValueError(f"the latest call had batch {self._v.shape[0]}, fewer than {batch}")
        return self._v[self._v.shape[0] - batch:]
