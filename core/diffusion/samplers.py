"""Samplers as pure functions over an eps-denoiser (k-diffusion `sampling.py`, EDM `edm_sampler`).

Every sampler is `sample_<name>(denoiser, x, schedule, steps, *, spacing, generator, callback,
t_start, ...)`: `x` is the starting point x_{t_0} in the variance-preserving scale (pure noise
N(0, I) for generation), and the return value is x_0, in x's dtype. The denoiser is called as
`denoiser(x_t, t)` with t a float32 tensor of shape [B] on the 0..T-1 scale.

Time grid. `steps` model steps are laid out over 0..T-1 with a spacing (`leading`, `trailing`,
`linspace`, Table 2 of Lin et al. 2023); each sampler's default spacing and rounding are those of
the matching diffusers scheduler, so default settings reproduce it. The grid ends with one step
into t = -1, the clean data (ab = 1, sigma = 0). All schedule arithmetic is float64 and done once
per call; the loop only scales tensors by Python floats, in x's dtype.

Partial runs (SDEdit, Meng et al. 2022): with `t_start`, x is x_{t_start} (e.g. schedule.q_sample
of an image) and the grid is t_start followed by the grid points below it, so the same code path
serves every sampler, at any float t_start.

Projection: with `project`, every step is followed by x_{t'} <- project(x_{t'}, t'), a
conditioning step on the sampler's own trajectory (ILVR's low-pass replacement, core.ilvr);
t' = -1 after the final step into x_0.

Randomness comes only from `generator` (a core.diffusion.rng.BatchGenerator or a torch.Generator); the
stochastic samplers (ddpm, ddim with eta > 0, euler-maruyama) raise ValueError without one. No
sampler adds noise on its final step into x_0.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from core.checks import check_finite, check_int
from core.diffusion.parameterization import Denoiser, LearnedVariance
from core.diffusion.rng import BatchGenerator, Generator, randn_like
from core.diffusion.schedules import NoiseSchedule

SamplerName = Literal["ddpm", "ddim", "euler", "heun", "euler-maruyama", "dpmpp-2m"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
Spacing = Literal["leading", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
Variance = Literal["fixed_small", "fixed_large"]
VARIANCES: tuple[str, ...] = get_args(Variance)
Callback = Callable[[dict], None]
# x_{t'} -> x_{t'}, applied after every step with the t' it reached (-1 after the final step into x_0):
# a conditioning step between sampler steps, such as ILVR's low-pass replacement (core.ilvr).
Projection = Callable[[Tensor, float], Tensor]

# How each matching diffusers scheduler lays out its timesteps in `set_timesteps`:
# (default spacing, linspace rounded to integers, grid stops above t = 0 (one extra point dropped)).
_LAYOUT: dict[str, tuple[str, bool, bool]] = {
    "ddpm": ("leading", True, False),            # DDPMScheduler
    "ddim": ("leading", True, False),            # DDIMScheduler
    "euler": ("linspace", False, False),         # EulerDiscreteScheduler
    "heun": ("linspace", False, False),          # HeunDiscreteScheduler
    "euler-maruyama": ("linspace", False, False),  # no diffusers twin: laid out like euler
    "dpmpp-2m": ("linspace", True, True),        # DPMSolverMultistepScheduler
}


# The grid a stage uses when its settings name none: "leading" (the first step below t = T - 1),
# except for DPM-Solver++, whose leading grid starts from pure noise at t = 888-912 for 8-12 steps
# and loses to "trailing" (first step at t = 999) at every step count measured: text base FD_CLIP
# 0.182 vs 0.163 at 8 steps, sr64 0.0215 vs 0.0131 at 2 (`scripts/sweep_steps.py`, N = 32).
# Euler and Heun keep leading: from t = 999 (sigma ~ 2e4) Heun's first step is far too long.
# The pipeline's stages and the DiffAE decoder sample on it (`sampler_stage_spacing`).
STAGE_SPACING: dict[str, str] = {"dpmpp-2m": "trailing"}


def sampler_stage_spacing(sampler: str) -> str:
    """The grid a generation stage samples on with `sampler` (STAGE_SPACING, else leading)."""
    return STAGE_SPACING.get(sampler, "leading")


# ---- argument checks -----------------------------------------------------------------------------
def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_x(x) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] < 1:
        raise ValueError("x must be a floating-point tensor of shape [B, ...]")


def _require_generator(generator, sampler: str, x: Tensor) -> None:
    if generator is None:
        raise ValueError(f"generator is required: sampler {sampler!r} is stochastic "
                         "(pass a core.diffusion.rng.BatchGenerator or a torch.Generator)")
    if not isinstance(generator, (BatchGenerator, torch.Generator)):
        raise ValueError(f"generator must be a BatchGenerator or a torch.Generator, got {type(generator).__name__}")
    if isinstance(generator, BatchGenerator) and len(generator) != x.shape[0]:
        raise ValueError(f"generator has {len(generator)} seeds for a batch of {x.shape[0]}")


# ---- the time grid -------------------------------------------------------------------------------
def timesteps(T: int, steps: int, spacing: Spacing, *, integer: bool = True, skip_zero: bool = False) -> list[float]:
    """`steps` descending model timesteps on 0..T-1, laid out as diffusers' `set_timesteps` does.
    `integer` rounds the linspace layout; `skip_zero` lays out steps + 1 points and drops the
    lowest (DPMSolverMultistepScheduler), except at steps == T where every integer t is needed."""
    steps = check_int("steps", steps, 1, T)
    _check_choice("spacing", spacing, SPACINGS)
    extra = 1 if skip_zero and steps < T else 0
    n = steps + extra
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, n)[::-1]
        ts = ts.round() if integer else ts
    elif spacing == "leading":
        ts = (np.arange(n) * (T // n))[::-1].astype(np.float64)
    else:  # trailing
        ts, extra = np.round(T - np.arange(steps) * (T / steps)) - 1, 0
    ts = ts[: len(ts) - extra]
    if np.any(np.diff(ts) >= 0):
        raise ValueError(f"steps={steps} with spacing {spacing!r} gives repeated timesteps for T={T}")
    return [float(t) for t in ts]


def t_start_for_strength(schedule: NoiseSchedule, strength: float) -> float:
    """SDEdit strength in (0, 1] as a t_start on the 0..T-1 scale (1 = start from pure noise)."""
    strength = check_finite("strength", strength)
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    return strength * (schedule.T - 1)


def _plan(sampler: str, schedule: NoiseSchedule, steps: int, spacing: str | None,
          t_start: float | None) -> list[float]:
    """The sampler's grid t_0 > t_1 > ... > t_{n-1} > -1 (the last entry, -1, is the clean data)."""
    default, integer, skip_zero = _LAYOUT[sampler]
    grid = timesteps(schedule.T, steps, spacing or default, integer=integer, skip_zero=skip_zero)
    if t_start is not None:
        t_start = check_finite("t_start", t_start)
        if not 0 < t_start <= schedule.T - 1:
            raise ValueError(f"t_start must be in (0, {schedule.T - 1}], got {t_start!r}")
        grid = [t_start] + [t for t in grid if t < t_start]
    return grid + [-1.0]


def sampler_timesteps(name: SamplerName, schedule: NoiseSchedule, steps: int, spacing: Spacing | None = None,
                      t_start: float | None = None) -> list[float]:
    """The descending timesteps at which sampler `name` calls the model (Heun also calls it at
    each next one but the last)."""
    _check_choice("sampler", name, SAMPLERS)
    return _plan(name, schedule, steps, spacing, t_start)[:-1]


def _values(schedule: NoiseSchedule, ts: list[float]) -> tuple[Tensor, Tensor]:
    """float64 (alpha_bar, sigma) on the grid."""
    sigma = schedule.sigma(torch.tensor(ts, dtype=torch.float64))
    return 1 / (1 + sigma ** 2), sigma


# ---- the shared loop -----------------------------------------------------------------------------
def _denoise(denoiser: Denoiser, x: Tensor, t: float) -> Tensor:
    # t = -1 (clean data) is only a starting point of ddim_invert; the network sees t = 0 there.
    return denoiser(x, torch.full((x.shape[0],), max(t, 0.0), dtype=torch.float32, device=x.device))


def _run(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, ts: list[float],
         update: Callable[[int, Tensor, Tensor], Tensor], callback: Callback | None,
         project: Projection | None = None) -> Tensor:
    """For each step i: eps = denoiser(x, t_i), report, x = update(i, x, eps), then
    x = project(x, t_{i+1}) when a projection is given."""
    n = len(ts) - 1
    for i in range(n):
        eps = _denoise(denoiser, x, ts[i])
        if callback is not None:
            callback({"step": i, "total": n, "t": ts[i], "x": x, "x0": schedule.x0_from_eps(x, ts[i], eps)})
        x = update(i, x, eps)
        if project is not None:
            x = project(x, ts[i + 1])
    return x


def _x0_coefficients(ab: Tensor) -> tuple[list[float], list[float]]:
    """x0 = x_t / sqrt(ab) - sqrt((1 - ab) / ab) eps (Ho et al. 2020, eq. 15), per grid point."""
    return (1 / ab.sqrt()).tolist(), ((1 - ab) / ab).sqrt().tolist()


def _ddim_update(schedule: NoiseSchedule, ts: list[float], eta: float, generator: Generator | None):
    """The DDIM step between consecutive grid points (either direction when eta = 0)."""
    ab, _ = _values(schedule, ts)
    ab_t, ab_next = ab[:-1], ab[1:]
    inv_a, sig = _x0_coefficients(ab_t)
    if eta > 0:  # eq. (16): sigma_t(eta) = eta sqrt((1 - ab_next) / (1 - ab_t)) sqrt(1 - ab_t / ab_next)
        std = eta * ((1 - ab_next) / (1 - ab_t) * (1 - ab_t / ab_next)).sqrt()
    else:
        std = torch.zeros_like(ab_t)
    direction = 1 - ab_next - std ** 2
    if bool((direction < 0).any()):
        raise ValueError(f"eta={eta} is too large for this grid: 1 - ab_prev - sigma_t(eta)^2 < 0")
    a_next, direction, std = ab_next.sqrt().tolist(), direction.sqrt().tolist(), std.tolist()

    def update(i: int, x: Tensor, eps: Tensor) -> Tensor:
        x0 = x * inv_a[i] - eps * sig[i]                   # "predicted x0", eq. (12) of Song et al. 2021
        x = x0 * a_next[i] + eps * direction[i]            # + "direction pointing to x_t", eq. (12)
        if std[i] > 0:                                     # + sigma_t(eta) z (zero on the final step)
            x = x + std[i] * randn_like(x, generator)
        return x

    return update


def _euler_coefficients(schedule: NoiseSchedule, ts: list[float]) -> tuple[list[float], list[float], list[float]]:
    """For the ODE in x~ = x_t / sqrt(ab) = x_t sqrt(1 + sigma^2): (sqrt(1 + sigma_i^2),
    sigma_{i+1} - sigma_i, 1 / sqrt(1 + sigma_{i+1}^2))."""
    ab, sigma = _values(schedule, ts)
    return (1 / ab[:-1].sqrt()).tolist(), (sigma[1:] - sigma[:-1]).tolist(), ab[1:].sqrt().tolist()


def _euler_step(x: Tensor, eps: Tensor, to_ve: float, d_sigma: float, to_vp: float) -> Tensor:
    # Karras et al. 2022, Alg. 1 line 5: dx~/dsigma = (x~ - D(x~)) / sigma = eps, x~' = x~ + (sigma' - sigma) eps
    return (x * to_ve + eps * d_sigma) * to_vp


# ---- the samplers ---------------------------------------------------------------------------------
def sample_ddpm(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int, *,
                variance: Variance | LearnedVariance = "fixed_small", spacing: Spacing | None = None,
                generator: Generator | None = None, callback: Callback | None = None,
                t_start: float | None = None, project: Projection | None = None) -> Tensor:
    """Ancestral sampling (Ho et al. 2020, Alg. 2) on the (respaced) grid: x_{t'} ~ N(mu~(x_t, x0), sigma^2)
    with sigma^2 = beta~ (`fixed_small`, the posterior variance) or beta (`fixed_large`), beta being
    1 - ab_t / ab_{t'}, the beta of the spaced step (Nichol & Dhariwal 2021, respacing). With a
    LearnedVariance (whose wrapped model `denoiser` calls), the network's own per-pixel variance,
    as diffusers' DDPMScheduler with variance_type="learned_range"."""
    _check_x(x)
    learned = variance if isinstance(variance, LearnedVariance) else None
    if learned is None and variance not in VARIANCES:
        raise ValueError(f"variance must be one of {', '.join(VARIANCES)} or a LearnedVariance; got {variance!r}")
    ts = _plan("ddpm", schedule, steps, spacing, t_start)
    _require_generator(generator, "ddpm", x)
    tt = torch.tensor(ts, dtype=torch.float64)
    ab, _ = _values(schedule, ts)
    inv_a, sig = _x0_coefficients(ab[:-1])
    c0, ct, var = schedule.posterior_coefficients(tt[:-1], tt[1:])
    beta = 1 - ab[:-1] / ab[1:]
    # log beta~ and log beta, the ends of the learned range (beta~ floored as diffusers does)
    log_small, log_large = var.clamp(min=1e-20).log().tolist(), beta.log().tolist()
    if variance == "fixed_large":
        var = beta
    c0, ct, std, last = c0.tolist(), ct.tolist(), var.sqrt().tolist(), len(ts) - 2

    def update(i: int, x: Tensor, eps: Tensor) -> Tensor:
        x0 = x * inv_a[i] - eps * sig[i]            # "predicted x0", eq. (15)
        x = x0 * c0[i] + x * ct[i]                  # posterior mean mu~_t(x_t, x0), eq. (7)
        if i < last and learned is not None:        # Nichol & Dhariwal 2021, eq. (15):
            f = (learned.latest(x.shape[0]).to(x.dtype) + 1) / 2   # sigma^2 = exp(f log beta + (1 - f) log beta~)
            x = x + torch.exp(0.5 * (f * log_large[i] + (1 - f) * log_small[i])) * randn_like(x, generator)
        elif i < last:                              # + sigma_t z, eq. (6); none on the step into x_0
            x = x + std[i] * randn_like(x, generator)
        return x

    return _run(denoiser, x, schedule, ts, update, callback, project)


def sample_ddim(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int, *, eta: float = 0.0,
                spacing: Spacing | None = None, generator: Generator | None = None,
                callback: Callback | None = None, t_start: float | None = None,
                project: Projection | None = None) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12): deterministic at eta = 0, DDPM-like at eta = 1."""
    _check_x(x)
    eta = check_finite("eta", eta, minimum=0.0)
    ts = _plan("ddim", schedule, steps, spacing, t_start)
    if eta > 0:
        _require_generator(generator, "ddim (eta > 0)", x)
    return _run(denoiser, x, schedule, ts, _ddim_update(schedule, ts, eta, generator), callback, project)


def ddim_invert(denoiser: Denoiser, x0: Tensor, schedule: NoiseSchedule, steps: int,
                callback: Callback | None = None, *, spacing: Spacing | None = None) -> Tensor:
    """DDIM inversion (eta = 0 run backwards, Song et al. 2021 sec. 4.3; Dhariwal & Nichol 2021 app. F):
    x_0 -> x_{t_0} on the grid of `sample_ddim` with the same steps and spacing, so that
    sample_ddim(ddim_invert(x0)) ~ x0. Each step uses eps at its starting point (at t = 0 for the
    first one, from the clean x0)."""
    _check_x(x0)
    ts = _plan("ddim", schedule, steps, spacing, None)[::-1]
    return _run(denoiser, x0, schedule, ts, _ddim_update(schedule, ts, 0.0, None), callback)


def sample_euler(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int, *,
                 spacing: Spacing | None = None, generator: Generator | None = None,
                 callback: Callback | None = None, t_start: float | None = None,
                 project: Projection | None = None) -> Tensor:
    """Euler on the probability-flow ODE in the sigma parameterisation (Karras et al. 2022, Alg. 1
    without the correction; diffusers EulerDiscreteScheduler). Mathematically this is DDIM with
    eta = 0 on the same grid; the default grid differs (linspace, fractional t). Deterministic:
    `generator` is accepted and unused."""
    _check_x(x)
    ts = _plan("euler", schedule, steps, spacing, t_start)
    to_ve, d_sigma, to_vp = _euler_coefficients(schedule, ts)

    def update(i: int, x: Tensor, eps: Tensor) -> Tensor:
        return _euler_step(x, eps, to_ve[i], d_sigma[i], to_vp[i])

    return _run(denoiser, x, schedule, ts, update, callback, project)


def sample_heun(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int, *,
                spacing: Spacing | None = None, generator: Generator | None = None,
                callback: Callback | None = None, t_start: float | None = None,
                project: Projection | None = None) -> Tensor:
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1; diffusers
    HeunDiscreteScheduler): 2 model calls per step except the last, an Euler step into sigma = 0
    (2 steps - 1 calls in all). Deterministic: `generator` is accepted and unused.
    On the cosine schedule the linspace/trailing grids start at t = 999, sigma = 2e4, and the first
    step to sigma ~ 20 is far too long for the trapezoidal rule (diffusers alike): there use
    spacing="leading" (starts at sigma ~ 16) or many more steps."""
    _check_x(x)
    ts = _plan("heun", schedule, steps, spacing, t_start)
    to_ve, d_sigma, to_vp = _euler_coefficients(schedule, ts)

    def update(i: int, x: Tensor, eps: Tensor) -> Tensor:
        x_next = _euler_step(x, eps, to_ve[i], d_sigma[i], to_vp[i])
        if ts[i + 1] < 0:                           # Alg. 1 line 8: sigma_{i+1} = 0, Euler only
            return x_next
        eps_next = _denoise(denoiser, x_next, ts[i + 1])
        # Alg. 1 lines 9-11: trapezoidal rule, the mean of the slopes at both ends
        return _euler_step(x, (eps + eps_next) * 0.5, to_ve[i], d_sigma[i], to_vp[i])

    return _run(denoiser, x, schedule, ts, update, callback, project)


def sample_euler_maruyama(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int, *,
                          spacing: Spacing | None = None, generator: Generator | None = None,
                          callback: Callback | None = None, t_start: float | None = None,
                          project: Projection | None = None) -> Tensor:
    """Euler-Maruyama on the reverse VP SDE (Song et al. 2021, eq. 6 with the VP SDE of eq. 11):
    dx = [-1/2 beta x - beta grad log p_t(x)] dt + sqrt(beta) dw, grad log p_t = -eps / sqrt(1 - ab).
    Over a step, beta dt is taken as its exact integral b = log(ab_{t'} / ab_t). First order: it
    needs many steps (hundreds), and more near t = T on the cosine schedule where b is large."""
    _check_x(x)
    ts = _plan("euler-maruyama", schedule, steps, spacing, t_start)
    _require_generator(generator, "euler-maruyama", x)
    ab, _ = _values(schedule, ts)
    b = (ab[1:] / ab[:-1]).log()
    c_x, c_eps, std = (1 + b / 2).tolist(), (b / (1 - ab[:-1]).sqrt()).tolist(), b.sqrt().tolist()
    last = len(ts) - 2

    def update(i: int, x: Tensor, eps: Tensor) -> Tensor:
        # x' = x + [1/2 b x + b grad log p] + sqrt(b) z
        x = x * c_x[i] - eps * c_eps[i]
        if i < last:                                # no noise on the step into x_0
            x = x + std[i] * randn_like(x, generator)
        return x

    return _run(denoiser, x, schedule, ts, update, callback, project)


def sample_dpmpp_2m(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int, *,
                    spacing: Spacing | None = None, generator: Generator | None = None,
                    callback: Callback | None = None, t_start: float | None = None,
                    project: Projection | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2, data prediction, multistep, order 2),
    first order on the first step and on the final step into sigma = 0 (diffusers'
    lower_order_final). Deterministic: `generator` is accepted and unused."""
    _check_x(x)
    ts = _plan("dpmpp-2m", schedule, steps, spacing, t_start)
    ab, _ = _values(schedule, ts)
    inv_a, sig = _x0_coefficients(ab[:-1])
    alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
    lam = (alpha / sigma).log()                     # lambda_t = log(alpha_t / sigma_t); inf at t = -1
    h = (lam[1:] - lam[:-1]).tolist()
    ratio = sigma[1:] / sigma[:-1]                  # sigma_{t'} / sigma_t
    phi = (alpha[1:] - ratio * alpha[:-1]).tolist()  # -alpha_{t'} (e^{-h} - 1), finite at sigma_{t'} = 0
    ratio, last = ratio.tolist(), len(ts) - 2
    previous: list[Tensor] = []

    def update(i: int, x: Tensor, eps: Tensor) -> Tensor:
        x0 = x * inv_a[i] - eps * sig[i]            # the data prediction D_i
        d = x0
        if 0 < i < last:                            # D = D0 + 1/2 D1, D1 = (D0 - D_{i-1}) / r, r = h_{i-1} / h_i
            d = x0 + (x0 - previous[0]) * (0.5 * h[i] / h[i - 1])
        previous[:] = [x0]
        return x * ratio[i] + d * phi[i]            # x_{t'} = (sigma_{t'} / sigma_t) x_t - alpha_{t'} (e^{-h} - 1) D

    return _run(denoiser, x, schedule, ts, update, callback, project)


_SAMPLER_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "euler-maruyama": sample_euler_maruyama,
    "dpmpp-2m": sample_dpmpp_2m,
}


def sample(name: SamplerName, denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int,
           **kwargs) -> Tensor:
    """Run sampler `name`. Keyword arguments go to it; one it does not take raises ValueError,
    except `eta=0` (DDIM's) and `None` values, which every sampler accepts and ignores."""
    _check_choice("sampler", name, SAMPLERS)
    fn = _SAMPLER_FUNCTIONS[name]
    params = inspect.signature(fn).parameters
    for key in [k for k in kwargs if k not in params]:
        value = kwargs.pop(key)
        if value is None or (key == "eta" and check_finite("eta", value, minimum=0.0) == 0):
            continue
        raise ValueError(f"sampler {name!r} does not take {key!r}")
    return fn(denoiser, x, schedule, steps, **kwargs)
