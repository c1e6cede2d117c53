"""Bits per dimension against the analytic Gaussian case: for data x0 ~ N(mu, s^2 I) (or N(mu, Sigma)),
E[eps | x_t] is known in closed form, so the exact denoiser is available and the estimated
log-likelihood must match the exact one; the variational bound must lie above it and match its
own exact value (every term of it is a Gaussian expectation)."""
import math

import pytest
import torch

from core.diffusion.likelihood import (
    BIN,
    BITS_OFFSET,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    ode_log_likelihood,
    quantize,
    vlb_bits_per_dim,
)
from core.diffusion.schedules import make_schedule
from tests.gaussian_denoiser import GaussianMixture

MU, S = 0.1, 0.25          # per-dimension data mean and std, in the model's [-1, 1] scale
SHAPE = (3, 3, 8, 8)       # 3 images of 3 x 8 x 8 = 192 dimensions


def isotropic_eps(schedule, mu=MU, s=S):
    """The exact eps-denoiser of x0 ~ N(mu, s^2 I): x_t ~ N(a mu, (a^2 s^2 + b^2) I), a = sqrt(ab),
    b = sqrt(1 - ab), so E[eps | x_t] = b (x_t - a mu) / (a^2 s^2 + b^2)."""
    def eps(x, t):
        ab = schedule.alpha_bar(t).reshape(-1, *[1] * (x.ndim - 1)).to(x.device)
        a, b = ab.sqrt(), (1 - ab).sqrt()
        return (b * (x.double() - a * mu) / (a * a * s * s + b * b)).to(x.dtype)
    return eps


def gaussian_log_density(x, mu=MU, s=S):
    return (-0.5 * ((x.double() - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def data(seed=0):
    return MU + S * torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_ode_matches_the_exact_gaussian_log_likelihood(name):
    schedule = make_schedule(name)
    x = data()
    est = ode_log_likelihood(isotropic_eps(schedule), x, schedule, 40, generator=torch.Generator().manual_seed(1))
    err_bits = ((est - gaussian_log_density(x)) / (x[0].numel() * math.log(2))).abs()
    assert float(err_bits.max()) < 0.02, err_bits          # measured: 0.012 (cosine), 0.011 (linear)


def test_ode_error_falls_with_more_steps():
    schedule = make_schedule("cosine")
    x = data(3)
    exact = gaussian_log_density(x)
    errors = [float((ode_log_likelihood(isotropic_eps(schedule), x, schedule, n,
                                        generator=torch.Generator().manual_seed(1)) - exact).abs().max())
              for n in (10, 20, 40)]
    assert errors[0] > errors[1] > errors[2], errors


def test_ode_with_hutchinson_noise_on_a_full_covariance():
    """A correlated Gaussian: z^T J z is then a noisy estimate of the divergence; averaged over
    probes it must still match the exact log-density."""
    schedule = make_schedule("cosine")
    d = 6
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.15
    cov = a @ a.T + 0.02 * torch.eye(d, dtype=torch.float64)
    mean = torch.linspace(-0.3, 0.3, d, dtype=torch.float64)
    gauss = GaussianMixture([1.0], mean[None], cov[None], schedule)
    x = gauss.sample(2, torch.Generator().manual_seed(1))
    probes = 64
    rows = x.repeat_interleave(probes, dim=0)
    est = ode_log_likelihood(gauss.eps, rows, schedule, 40, generator=torch.Generator().manual_seed(2))
    est = est.reshape(2, probes)
    exact = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    se = est.std(1) / math.sqrt(probes)
    assert ((est.mean(1) - exact).abs() <= 4 * se + 0.02 * d).all(), (est.mean(1), exact, se)
    assert (se > 0).all()   # the probes did differ: this case exercises the estimator's noise


def exact_discrete_bits(x, mu=MU, s=S):
    """-log2 P(8-bit level) per dimension of x ~ N(mu, s^2 I), edge bins to +-infinity."""
    return -discretized_gaussian_log_likelihood(x, torch.full_like(x, mu), s) / (x[0].numel() * math.log(2))


def test_bits_per_dim_of_8_bit_images_with_dequantisation():
    """The ODE on uniformly dequantised levels, plus the bin-width offset, gives the discrete
    NLL of the 8-bit image (an upper bound, tight for a density smooth over one bin)."""
    schedule = make_schedule("cosine")
    x = quantize(data().float())
    exact = exact_discrete_bits(x)
    result = bits_per_dim(isotropic_eps(schedule), x, schedule, "ode", steps=40, probes=4, seed=0)
    assert result.bits_per_dim.shape == (3,) and result.nfe == 80
    assert ((result.bits_per_dim - exact).abs() < 0.02).all(), (result.bits_per_dim, exact)
    assert abs(BITS_OFFSET - math.log2(127.5)) < 1e-12 and abs(BIN - 2 / 255) < 1e-12


def exact_bound_bits(x, schedule, mu=MU, s=S, draws=4000):
    """The full T-step bound of the Gaussian chain, every KL term in closed form: with
    x0_hat = mu + k (x_t - a mu), k = a s^2 / (a^2 s^2 + b^2), x - x0_hat = (1 - k a)(x - mu) - k b n,
    so E||x - x0_hat||^2 = (1 - k a)^2 ||x - mu||^2 + k^2 b^2 D; the decoder term by Monte Carlo."""
    x = x.double()
    d = x[0].numel()
    sq = (x - mu).pow(2).flatten(1).sum(1)
    t = torch.arange(schedule.T, dtype=torch.float64)
    ab = schedule.alpha_bar(t)
    a, b = ab.sqrt(), (1 - ab).sqrt()
    k = a * s * s / (a * a * s * s + b * b)
    err = (1 - k * a)[:, None] ** 2 * sq[None] + (k * k * b * b * d)[:, None]      # [T, B]
    snr = ab / (1 - ab)
    nats = 0.5 * ((snr[:-1] - snr[1:])[:, None] * err[1:]).sum(0)
    ab_t = float(ab[-1])
    nats = nats + 0.5 * (ab_t * x.pow(2) + (1 - ab_t) - 1 - math.log(1 - ab_t)).flatten(1).sum(1)
    g = torch.Generator().manual_seed(7)
    dec = []
    for _ in range(draws // 100):
        n = torch.randn((100, *x.shape), generator=g, dtype=torch.float64)
        x_t = a[0] * x + b[0] * n
        x0 = mu + k[0] * (x_t - a[0] * mu)
        sigma0 = float(schedule.sigma(0))
        dec.append(torch.stack([discretized_gaussian_log_likelihood(x, x0[j], sigma0) for j in range(100)]))
    nats = nats - torch.cat(dec).mean(0)
    return nats / (d * math.log(2))


def test_variational_bound_is_unbiased_and_above_the_likelihood():
    schedule = make_schedule("cosine")
    x = quantize(data(5).float())
    exact_bound = exact_bound_bits(x, schedule)
    result = vlb_bits_per_dim(isotropic_eps(schedule), x, schedule, steps=50, probes=16,
                              generator=torch.Generator().manual_seed(0))
    assert result.nfe == 51 and (result.stderr > 0).all()
    assert ((result.bits_per_dim - exact_bound).abs() <= 4 * result.stderr + 0.01).all(), (
        result.bits_per_dim, exact_bound, result.stderr)
    # a bound: at or above the discrete NLL (here by ~0.6 bits/dim: fixed reverse variances at low t)
    assert (exact_bound >= exact_discrete_bits(x) - 1e-6).all()


def test_same_seed_same_number_and_probes_reduce_the_error():
    schedule = make_schedule("linear")
    x = quantize(data(2).float())
    eps = isotropic_eps(schedule)
    a = bits_per_dim(eps, x, schedule, "vlb", steps=10, probes=2, seed=3)
    b = bits_per_dim(eps, x, schedule, "vlb", steps=10, probes=2, seed=3)
    assert torch.equal(a.bits_per_dim, b.bits_per_dim)
    assert torch.isnan(bits_per_dim(eps, x, schedule, "ode", steps=2, probes=1).stderr).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="elbo"), "method must be one of ode, vlb"),
    (dict(steps=0), "steps must be an integer from 1"),
    (dict(steps=2.5), "steps must be an integer"),
    (dict(probes=0), "probes must be an integer from 1 to 64"),
    (dict(method="vlb", steps=1000), "steps must be an integer from 1 to 999"),
    (dict(seed="x"), "seed must be an integer"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    schedule = make_schedule("cosine")
    with pytest.raises(ValueError, match=message):
        bits_per_dim(isotropic_eps(schedule), torch.zeros(1, 3, 4, 4), schedule, **kwargs)


@pytest.mark.parametrize("images, message", [
    (torch.zeros(3, 4, dtype=torch.long), "floating-point tensor"),
    (torch.full((1, 3, 4, 4), float("nan")), "finite"),
    (torch.zeros(4), "floating-point tensor of shape"),
])
def test_bad_images_are_clear_errors(images, message):
    schedule = make_schedule("cosine")
    with pytest.raises(ValueError, match=message):
        bits_per_dim(isotropic_eps(schedule), images, schedule)
