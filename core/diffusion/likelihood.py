"""How likely an image is under a diffusion model, in bits per dimension (lower is more likely).

Two estimators, both over an eps-denoiser `denoiser(x_t, t)` (core.diffusion.parameterization):

- ``ode``: the exact log-likelihood of the probability-flow ODE (Song et al. 2021, sec. 4.3 and
  app. D.2), written in the sigma parameterisation y = x_t / sqrt(ab) = x0 + sigma eps, where the
  ODE is dy/dsigma = eps_hat(y, sigma) (Karras et al. 2022, eq. 4 with D = y - sigma eps_hat).
  The instantaneous change of variables (Chen et al. 2018, thm. 1) integrated from sigma_min to
  sigma_max gives
      log p_{sigma_min}(y(sigma_min)) = log p_{sigma_max}(y(sigma_max)) + int div_y eps_hat dsigma,
  with the prior p_{sigma_max} = N(0, (1 + sigma_max^2) I) (the VP prior N(0, I) on x_T), the
  divergence from Hutchinson's estimator z^T (d eps_hat / d y) z with one Rademacher z per
  trajectory (FFJORD, Grathwohl et al. 2019), y integrated by Heun's method on a geometric sigma
  grid, and the divergence integral by the trapezoidal rule in log sigma (its integrand
  sigma * div is bounded, so few steps suffice). It measures the density at sigma_min = sigma(t_min)
  (t_min = 0: the smallest noise the network was trained on).
- ``vlb``: the variational bound of the `steps`-step DDPM chain on a linspace grid t_N = T-1 > ...
  > t_0 = 0 (Ho et al. 2020, eq. 5): KL(q(x_T | x) || N(0, I)) + sum of the KL terms, each
  1/2 (SNR(t_{i-1}) - SNR(t_i)) ||x - x0_hat(x_{t_i})||^2 (Kingma et al. 2021, eq. 13; one
  draw of x_{t_i} per probe), + the discretised Gaussian decoder -log p(x | x_{t_0}) (Ho et al.
  2020, eq. 13) with standard deviation sigma(t_0). An upper bound on the NLL of discrete
  images; more steps make it tighter.

Dequantisation. Images are 8-bit: level k sits at x = k / 127.5 - 1, as the models were trained
(core.images.pil_to_tensor), so each level owns a bin of width 2/255 on the model's scale. The
ODE gives a density, so it is evaluated at x + u with u ~ U(-1/255, 1/255) per dimension
(uniform dequantisation, Theis et al. 2016; Song et al. 2021, app. D.2): then
-E_u[log p(x + u)] - D log(2/255) >= -log P(k), an upper bound on the discrete NLL in nats;
per dimension in bits that is -log p / (D ln 2) + log2(127.5), the "+7 bits" offset of the
literature for 256 levels. The bound's decoder integrates the bins directly (edge bins reach to
+-infinity), so both estimators measure the same discrete quantity.

Randomness (dequantisation, probes, the bound's x_t draws) comes only from `generator`; each
probe is one row of the batch, and the result is the mean over probes with its standard error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from core.checks import check_finite, check_int
from core.diffusion.parameterization import Denoiser
from core.diffusion.schedules import NoiseSchedule

Method = Literal["ode", "vlb"]
METHODS: tuple[str, ...] = get_args(Method)
LEVELS = 256                        # 8-bit images
BIN = 2.0 / (LEVELS - 1)            # the width of one level on the model's [-1, 1] scale
BITS_OFFSET = math.log2(1 / BIN)    # -log2(bin width): converts a density to the bin's probability
MAX_STEPS = 1000
MAX_PROBES = 64
SIGMA_LINEAR = 80.0  # above this the ODE is linear in sigma for data in [-1, 1]: one Heun step is exact


@dataclass(frozen=True)
class Likelihood:
    """Bits per dimension of each image [B] (mean over probes) with its standard error [B] (NaN
    with one probe), and how it was estimated (`nfe`: network evaluations per probe)."""
    bits_per_dim: Tensor
    stderr: Tensor
    method: str
    steps: int
    probes: int
    nfe: int

    def rows(self) -> list[dict]:
        return [{"bits_per_dim": float(b), "stderr": float(s)} for b, s in zip(self.bits_per_dim, self.stderr)]


# ---- checks ----------------------------------------------------------------------------------------
def _check_images(x) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2 or x.shape[0] < 1:
        raise ValueError("images must be a floating-point tensor of shape [B, ...] in [-1, 1]")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("images must be finite")
    return x


def quantize(x: Tensor) -> Tensor:
    """Images in [-1, 1] snapped to the 8-bit levels k / 127.5 - 1 (values outside are clipped)."""
    _check_images(x)
    k = ((x.double().clamp(-1, 1) + 1) * (LEVELS - 1) / 2).round()
    return (k * BIN - 1).to(x.dtype)


def _probe_batch(x: Tensor, probes: int) -> Tensor:
    """Each image repeated `probes` times along the batch: rows [i * probes, (i + 1) * probes) are image i."""
    return x.repeat_interleave(probes, dim=0)


def _summary(per_row: Tensor, batch: int, probes: int) -> tuple[Tensor, Tensor]:
    v = per_row.reshape(batch, probes).double()
    stderr = v.std(dim=1) / math.sqrt(probes) if probes > 1 else torch.full((batch,), float("nan"))
    return v.mean(dim=1), stderr


def _uniform(shape, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device).to(like.device)


def _normal(shape, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device).to(like.device)


# ---- the probability-flow ODE --------------------------------------------------------------------
def ode_grid(schedule: NoiseSchedule, steps: int, t_min: float = 0.0, t_max: float | None = None
             ) -> tuple[list[float], list[float]]:
    """(t, sigma) at steps + 1 points, sigma geometric from sigma(t_min) to sigma(t_max), each t the
    model time of its sigma (so sigma = schedule.sigma(t) exactly at every node)."""
    t_max = float(schedule.T - 1) if t_max is None else check_finite("t_max", t_max)
    t_min = check_finite("t_min", t_min)
    if not 0 <= t_min < t_max <= schedule.T - 1:
        raise ValueError(f"need 0 <= t_min < t_max <= {schedule.T - 1}, got t_min={t_min}, t_max={t_max}")
    lo, hi = float(schedule.sigma(t_min)), float(schedule.sigma(t_max))
    top = min(hi, SIGMA_LINEAR) if steps > 1 else hi
    sigmas = torch.exp(torch.linspace(math.log(lo), math.log(top), steps + (top == hi), dtype=torch.float64))
    if top < hi:
        sigmas = torch.cat([sigmas, torch.tensor([hi], dtype=torch.float64)])
    ts = schedule.sigma_to_t(sigmas)
    ts[0], ts[-1] = t_min, t_max
    return ts.tolist(), schedule.sigma(ts).tolist()


def _eps_and_divergence(denoiser: Denoiser, y: Tensor, t: float, sigma: float, z: Tensor,
                        dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """eps_hat(y, sigma) and Hutchinson's z^T (d eps_hat / d y) z per row; the network sees
    x_t = y / sqrt(1 + sigma^2), so d/dy = d/dx_t / sqrt(1 + sigma^2)."""
    scale = 1.0 / math.sqrt(1.0 + sigma * sigma)
    with torch.inference_mode(False), torch.enable_grad():
        x_t = (y * scale).to(dtype).detach().requires_grad_(True)
        eps = denoiser(x_t, torch.full((y.shape[0],), t, dtype=torch.float32, device=y.device))
        (jz,) = torch.autograd.grad((eps * z.to(eps.dtype)).sum(), x_t)   # z^T J (a vector-Jacobian product)
    div = (jz.double() * z).flatten(1).sum(dim=1) * scale
    return eps.detach().double(), div


def ode_log_likelihood(denoiser: Denoiser, x: Tensor, schedule: NoiseSchedule, steps: int = 20, *,
                       generator: torch.Generator, t_min: float = 0.0, t_max: float | None = None) -> Tensor:
    """log p(x) in nats per row of x [B, ...] (continuous x, no dequantisation), from the
    probability-flow ODE with one Hutchinson probe per row; 2 * steps network evaluations."""
    x = _check_images(x)
    steps = check_int("steps", steps, 1, MAX_STEPS)
    ts, sigmas = ode_grid(schedule, steps, t_min, t_max)
    dtype = x.dtype
    y = x.double()
    z = torch.where(_uniform(x.shape, generator, x) < 0.5, -1.0, 1.0).double()   # Rademacher probes
    log_det = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    eps, div = _eps_and_divergence(denoiser, y, ts[0], sigmas[0], z, dtype)
    for i in range(steps):
        s0, s1 = sigmas[i], sigmas[i + 1]
        y_euler = y + (s1 - s0) * eps                                   # Heun predictor (Karras Alg. 1 line 5)
        eps1, div1 = _eps_and_divergence(denoiser, y_euler, ts[i + 1], s1, z, dtype)
        y = y + (s1 - s0) * 0.5 * (eps + eps1)                          # trapezoidal corrector (Alg. 1 line 7)
        # int div dsigma = int sigma * div dlog(sigma), trapezoidal rule in log sigma
        log_det = log_det + math.log(s1 / s0) * 0.5 * (s0 * div + s1 * div1)
        if i + 1 < steps:
            eps, div = _eps_and_divergence(denoiser, y, ts[i + 1], s1, z, dtype)
    d = x[0].numel()
    var = 1.0 + sigmas[-1] ** 2                                         # prior N(0, (1 + sigma_max^2) I) on y
    log_prior = -0.5 * (y.flatten(1).pow(2).sum(dim=1) / var + d * math.log(2 * math.pi * var))
    return log_prior + log_det


def ode_bits_per_dim(denoiser: Denoiser, images: Tensor, schedule: NoiseSchedule, steps: int = 20,
                     probes: int = 1, *, generator: torch.Generator, t_min: float = 0.0) -> Likelihood:
    """Bits per dimension of 8-bit images [B, C, H, W] in [-1, 1] (snapped to the levels): the ODE
    log-likelihood of the uniformly dequantised image, plus the bin-width offset log2(127.5)."""
    probes = check_int("probes", probes, 1, MAX_PROBES)
    x = _probe_batch(quantize(_check_images(images)), probes)
    x = x + ((_uniform(x.shape, generator, x) - 0.5) * BIN).to(x.dtype)   # uniform dequantisation in the bin
    log_p = ode_log_likelihood(denoiser, x, schedule, steps, generator=generator, t_min=t_min)
    d = x[0].numel()
    bpd = -log_p / (d * math.log(2)) + BITS_OFFSET     # -log P(k) <= -log p(x + u) - D log(bin)
    mean, stderr = _summary(bpd, images.shape[0], probes)
    return Likelihood(mean, stderr, "ode", steps, probes, 2 * steps)


# ---- the variational bound -----------------------------------------------------------------------
def _log_normal_cdf_difference(lo: Tensor, hi: Tensor) -> Tensor:
    """log(Phi(hi) - Phi(lo)) for standardised bin edges, stable in both tails:
    log Phi(hi) + log(1 - Phi(lo) / Phi(hi)), or, above the mean, the mirrored Phi(-lo) - Phi(-hi)."""
    log_cdf = torch.special.log_ndtr

    def log_difference(a: Tensor, b: Tensor) -> Tensor:   # log(Phi(b) - Phi(a)) for a < b
        return log_cdf(b) + torch.log(-torch.expm1(log_cdf(a) - log_cdf(b)))

    return torch.where(lo > 0, log_difference(-hi, -lo), log_difference(lo, hi))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, std: float) -> Tensor:
    """log P(level of x) per row under N(mean, std^2) integrated over each level's bin
    [x - BIN/2, x + BIN/2], the edge bins extended to -inf / +inf (Ho et al. 2020, eq. 13)."""
    x, mean = x.double(), mean.double()
    lo = torch.where(x <= -1 + 1e-6, torch.full_like(x, -math.inf), (x - BIN / 2 - mean) / std)
    hi = torch.where(x >= 1 - 1e-6, torch.full_like(x, math.inf), (x + BIN / 2 - mean) / std)
    return _log_normal_cdf_difference(lo, hi).flatten(1).sum(dim=1)


def vlb_bits_per_dim(denoiser: Denoiser, images: Tensor, schedule: NoiseSchedule, steps: int = 25,
                     probes: int = 1, *, generator: torch.Generator) -> Likelihood:
    """The variational bound of the full T-step DDPM chain in bits per dimension, its T - 1 KL
    terms estimated from `steps` of them (see the module docstring); steps + 1 network
    evaluations per probe."""
    steps = check_int("steps", steps, 1, schedule.T - 1)
    probes = check_int("probes", probes, 1, MAX_PROBES)
    x = _probe_batch(quantize(_check_images(images)), probes)
    x64, n = x.double(), x.shape[0]

    def x0_hat(t: Tensor) -> Tensor:
        """x0 predicted from one draw of x_t ~ q(x_t | x), t [n] integer steps."""
        x_t = schedule.q_sample(x64, t, _normal(x.shape, generator, x)).to(x.dtype)
        eps = denoiser(x_t, t.to(device=x.device, dtype=torch.float32))
        return schedule.x0_from_eps(x_t.double(), t, eps.double())

    # L_T = KL(N(sqrt(ab) x, (1 - ab) I) || N(0, I)) at t = T - 1, closed form
    ab = float(schedule.alpha_bar(schedule.T - 1))
    nats = 0.5 * (ab * x64.pow(2) + (1 - ab) - 1 - math.log(1 - ab)).flatten(1).sum(dim=1)
    # sum_{t=1}^{T-1} L_{t-1}, L_{t-1} = 1/2 (SNR(t-1) - SNR(t)) E||x - x0_hat(x_t)||^2 (Kingma et al. 2021,
    # eq. 13): t drawn with probability q_t proportional to its step in log SNR (where the terms are
    # about equal), one draw per stratum of q (stratified sampling), each term weighted by 1 / q_t.
    snr = schedule.snr(torch.arange(schedule.T, dtype=torch.float64))
    d_snr, d_log_snr = snr[:-1] - snr[1:], snr[:-1].log() - snr[1:].log()
    q = d_log_snr / d_log_snr.sum()
    u = (torch.arange(steps, dtype=torch.float64) + _uniform((n, steps), generator, x).cpu()) / steps
    index = torch.searchsorted(q.cumsum(0), u).clamp(max=schedule.T - 2)        # [n, steps]: term t = index + 1
    for k in range(steps):
        i = index[:, k]
        err = (x64 - x0_hat((i + 1).double())).pow(2).flatten(1).sum(dim=1)
        nats = nats + (0.5 * d_snr[i] / q[i]).to(x.device) * err / steps
    # L_0 = -log p(x | x_0): the discretised decoder N(x0_hat, sigma(0)^2) over each level's bin
    x0 = x0_hat(torch.zeros(n, dtype=torch.float64))
    nats = nats - discretized_gaussian_log_likelihood(x64, x0, float(schedule.sigma(0)))
    bpd = nats / (x[0].numel() * math.log(2))
    mean, stderr = _summary(bpd, images.shape[0], probes)
    return Likelihood(mean, stderr, "vlb", steps, probes, steps + 1)


def bits_per_dim(denoiser: Denoiser, images: Tensor, schedule: NoiseSchedule, method: Method = "ode",
                 steps: int | None = None, probes: int = 1, seed: int = 0) -> Likelihood:
    """Bits per dimension of 8-bit images [B, C, H, W] in [-1, 1] by `method` (ode or vlb), with
    all randomness from one generator seeded with `seed`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    if method == "ode":
        return ode_bits_per_dim(denoiser, images, schedule, 20 if steps is None else steps, probes,
                                generator=generator)
    return vlb_bits_per_dim(denoiser, images, schedule, 25 if steps is None else steps, probes, generator=generator)

