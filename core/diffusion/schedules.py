"""Noise schedules of the discrete variance-preserving diffusion, computed in float64.

q(x_t | x_0) = N(sqrt(ab_t) x_0, (1 - ab_t) I) with ab_t = prod_{s<=t} (1 - beta_s), t = 0..T-1
(Ho et al. 2020). Time is the float index t on the 0..T-1 scale; t = -1 stands for the clean
data (ab = 1, sigma = 0), the target of every sampler's final step. Fractional t interpolates
sigma = sqrt((1 - ab) / ab) linearly in t, as diffusers' EulerDiscreteScheduler does, so
alpha_bar(t) = 1 / (1 + sigma(t)^2) everywhere.

Every method computes in float64 and returns tensors in the dtype and device of its tensor
input (x, x_t, x0), or float64 tensors when it returns schedule values (alpha_bar, sigma, ...).
`t` may be a Python number or a tensor of shape [B] (one t per sample).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

import torch
from torch import Tensor

from core.checks import check_finite

ScheduleName = Literal["linear", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)
Prediction = Literal["eps", "x0", "v"]


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Ho et al. 2020: betas linear from 1e-4 to 0.02 (independent of T, as in diffusers)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, eq. (17): ab(t) = f(t)/f(0), f(t) = cos((t/T + s)/(1 + s) * pi/2)^2,
    beta_t = min(1 - ab(t+1)/ab(t), max_beta) (diffusers' squaredcos_cap_v2)."""
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=torch.float64)


def expand_to(values: Tensor, like: Tensor) -> Tensor:
    """A per-sample coefficient (0-d or [B]) shaped to broadcast against `like` ([B, ...]),
    cast to its dtype and device."""
    values = values.reshape(values.shape + (1,) * (like.ndim - values.ndim))
    return values.to(device=like.device, dtype=like.dtype)


def _as_time(t: float | int | Tensor) -> Tensor:
    """t as a float64 tensor, on its own device (CPU for numbers and for MPS, which lacks float64)."""
    if isinstance(t, Tensor):
        device = t.device if t.device.type != "mps" else torch.device("cpu")
        return t.detach().to(device=device, dtype=torch.float64)
    return torch.tensor(check_finite("t", t), dtype=torch.float64)


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete VP noise schedule: its betas (float64, shape [T]) and its name."""
    betas: Tensor
    name: str = "custom"

    def __post_init__(self):
        betas = torch.as_tensor(self.betas).detach().to("cpu", torch.float64)
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError(f"betas must be a 1-D tensor of at least 2 values, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        object.__setattr__(self, "betas", betas)

    # ---- the table ---------------------------------------------------------------------------
    @property
    def T(self) -> int:
        return len(self.betas)

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """ab_t = prod_{s<=t} (1 - beta_s), float64, shape [T]."""
        return torch.cumprod(1 - self.betas, dim=0)

    @cached_property
    def _sigma_table(self) -> Tensor:
        """sigma at t = -1, 0, 1, ..., T-1 (sigma(-1) = 0: clean data)."""
        ab = self.alphas_cumprod
        return torch.cat([torch.zeros(1, dtype=torch.float64), ((1 - ab) / ab).sqrt()])

    @cached_property
    def _log_sigmas(self) -> Tensor:
        return self._sigma_table[1:].log()

    # ---- values at (fractional) t --------------------------------------------------------------
    def sigma(self, t: float | Tensor) -> Tensor:
        """sigma(t) = sqrt((1 - ab) / ab), linear in t between integer steps; t in [-1, T-1]
        (clamped), sigma(-1) = 0."""
        t = _as_time(t)
        table = self._sigma_table.to(t.device)
        pos = (t + 1).clamp(0, self.T)
        low = pos.floor().clamp(max=self.T - 1)
        w = pos - low
        low = low.long()
        return table[low] * (1 - w) + table[low + 1] * w

    def alpha_bar(self, t: float | Tensor) -> Tensor:
        """ab(t) = 1 / (1 + sigma(t)^2); equals alphas_cumprod[t] at integer t, 1 at t = -1."""
        return 1 / (1 + self.sigma(t) ** 2)

    def snr(self, t: float | Tensor) -> Tensor:
        """Signal-to-noise ratio ab / (1 - ab) = 1 / sigma^2 (inf at t = -1)."""
        return self.sigma(t) ** -2

    def log_snr(self, t: float | Tensor) -> Tensor:
        """log(ab / (1 - ab)) = -2 log sigma (lambda of Kingma et al. 2021; DPM-Solver uses half of it)."""
        return -2 * self.sigma(t).log()

    def sigma_to_t(self, sigma: float | Tensor) -> Tensor:
        """The inverse of sigma(t), interpolating linearly in log sigma between integer steps
        (k-diffusion DiscreteSchedule.sigma_to_t, diffusers `_sigma_to_t`); clamped to [0, T-1]."""
        sigma = _as_time(sigma)
        log_sigmas = self._log_sigmas.to(sigma.device)
        log_sigma = sigma.clamp(min=1e-10).log()
        dists = log_sigma - log_sigmas.reshape((-1,) + (1,) * sigma.ndim)
        low = (dists >= 0).cumsum(dim=0).argmax(dim=0).clamp(max=self.T - 2)
        low_v, high_v = log_sigmas[low], log_sigmas[low + 1]
        w = ((low_v - log_sigma) / (low_v - high_v)).clamp(0, 1)
        return (1 - w) * low + w * (low + 1)

    # ---- the forward process and its posterior -------------------------------------------------
    def _sqrt_ab(self, t: float | Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(sqrt(ab), sqrt(1 - ab)) at t, shaped and cast for `like`."""
        ab = self.alpha_bar(t)
        return expand_to(ab.sqrt(), like), expand_to((1 - ab).sqrt(), like)

    def q_sample(self, x0: Tensor, t: float | Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise (Ho et al. 2020, eq. 4)."""
        a, s = self._sqrt_ab(t, x0)
        return a * x0 + s * noise

    def posterior_coefficients(self, t_from: float | Tensor, t_to: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_{t_to} | x_{t_from}, x0) = N(c0 x0 + ct x_{t_from}, var) for t_to < t_from (Ho et al.
        2020, eqs. 6-7, with beta = 1 - ab(t_from)/ab(t_to) the beta of the (respaced) step).
        Returns float64 (c0, ct, var)."""
        ab, ab_to = self.alpha_bar(t_from), self.alpha_bar(t_to)
        if isinstance(ab_to, Tensor) and ab_to.device != ab.device:
            ab_to = ab_to.to(ab.device)
        alpha = ab / ab_to
        beta = 1 - alpha
        c0 = ab_to.sqrt() * beta / (1 - ab)
        ct = alpha.sqrt() * (1 - ab_to) / (1 - ab)
        var = (1 - ab_to) / (1 - ab) * beta
        return c0, ct, var

    def posterior(self, x0: Tensor, x_t: Tensor, t_from: float | Tensor,
                  t_to: float | Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t_to} | x_{t_from} = x_t, x0); t_to = t_from - 1 is the usual
        one-step posterior, any t_to < t_from a respaced one, t_to = -1 gives (x0, 0)."""
        c0, ct, var = self.posterior_coefficients(t_from, t_to)
        mean = expand_to(c0, x_t) * x0 + expand_to(ct, x_t) * x_t
        return mean, expand_to(var, x_t)

    # ---- parameterisations: eps, x0 and v given x_t and t ---------------------------------------
    def x0_from_eps(self, x_t: Tensor, t: float | Tensor, eps: Tensor) -> Tensor:
        """x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) = sqrt(1 + sigma^2) x_t - sigma eps."""
        sigma = self.sigma(t)
        return expand_to((1 + sigma ** 2).sqrt(), x_t) * x_t - expand_to(sigma, x_t) * eps

    def eps_from_x0(self, x_t: Tensor, t: float | Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""
        a, s = self._sqrt_ab(t, x_t)
        return (x_t - a * x0) / s

    def eps_from_v(self, x_t: Tensor, t: float | Tensor, v: Tensor) -> Tensor:
        """eps = sqrt(ab) v + sqrt(1 - ab) x_t (Salimans & Ho 2022, v = sqrt(ab) eps - sqrt(1 - ab) x0)."""
        a, s = self._sqrt_ab(t, x_t)
        return a * v + s * x_t

    def x0_from_v(self, x_t: Tensor, t: float | Tensor, v: Tensor) -> Tensor:
        """x0 = sqrt(ab) x_t - sqrt(1 - ab) v."""
        a, s = self._sqrt_ab(t, x_t)
        return a * x_t - s * v

    def v_from_eps(self, x_t: Tensor, t: float | Tensor, eps: Tensor) -> Tensor:
        """v = sqrt(ab) eps - sqrt(1 - ab) x0 = sqrt(1 + sigma^2) eps - sigma x_t."""
        sigma = self.sigma(t)
        return expand_to((1 + sigma ** 2).sqrt(), x_t) * eps - expand_to(sigma, x_t) * x_t

    def velocity(self, x0: Tensor, noise: Tensor, t: float | Tensor) -> Tensor:
        """The v-prediction target sqrt(ab) noise - sqrt(1 - ab) x0 (Salimans & Ho 2022)."""
        a, s = self._sqrt_ab(t, x0)
        return a * noise - s * x0

    def eps_from_prediction(self, out: Tensor, x_t: Tensor, t: float | Tensor, prediction: Prediction) -> Tensor:
        """A network output that predicts eps, x0 or v, as eps."""
        if prediction == "eps":
            return out
        if prediction == "x0":
            return self.eps_from_x0(x_t, t, out)
        if prediction == "v":
            return self.eps_from_v(x_t, t, out)
        raise ValueError(f"prediction must be one of eps, x0, v; got {prediction!r}")

    # ---- config.json ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """{"name", "T"} for the named schedules; a custom one also stores its betas."""
        d: dict = {"name": self.name, "T": self.T}
        if self.name not in SCHEDULES:
            d["betas"] = self.betas.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NoiseSchedule:
        unknown = set(d) - {"name", "T", "betas"}
        if unknown:
            raise ValueError(f"unknown schedule keys: {', '.join(sorted(unknown))}")
        if "betas" in d:
            schedule = cls(torch.tensor(d["betas"], dtype=torch.float64), str(d.get("name", "custom")))
            if "T" in d and d["T"] != schedule.T:
                raise ValueError(f"schedule T={d['T']} does not match its {schedule.T} betas")
            return schedule
        return make_schedule(d.get("name"), d.get("T", 1000))


def make_schedule(name: ScheduleName, T: int = 1000) -> NoiseSchedule:
    """The linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021) schedule with T steps."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an integer >= 2, got {T!r}")
    if name == "linear":
        return NoiseSchedule(linear_betas(T), "linear")
    if name == "cosine":
        return NoiseSchedule(cosine_betas(T), "cosine")
    raise ValueError(f"schedule name must be one of {', '.join(SCHEDULES)}; got {name!r}")
