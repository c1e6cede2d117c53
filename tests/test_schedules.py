"""Noise schedules: values against diffusers and closed forms, float64 throughout."""
import math

import pytest
import torch
from diffusers import DDPMScheduler, EulerDiscreteScheduler

from core.diffusion.schedules import NoiseSchedule, make_schedule

# diffusers' schedulers call np.array on tensors the numpy 2 way; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
DIFFUSERS_NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_matches_diffusers(name):
    schedule = make_schedule(name)
    ref = DDPMScheduler(beta_schedule=DIFFUSERS_NAMES[name])
    assert schedule.betas.dtype == torch.float64 and schedule.T == 1000
    ab = schedule.alpha_bar(torch.arange(1000))
    assert ab.dtype == torch.float64
    # diffusers keeps betas and their cumulative product in float32: agree to float32 accuracy...
    assert torch.allclose(ab, ref.alphas_cumprod.double(), rtol=3e-5, atol=0)
    # ...and exactly with the same betas multiplied in float64.
    assert torch.allclose(schedule.betas, ref.betas.double(), rtol=1e-6, atol=0)
    assert torch.allclose(ab, schedule.alphas_cumprod, rtol=1e-13, atol=0)


def test_closed_forms():
    lin = make_schedule("linear")
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    cos = make_schedule("cosine")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert cos.alpha_bar(t).item() == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-12)
    assert cos.betas.max().item() == pytest.approx(0.999)
    assert lin.alpha_bar(-1).item() == 1.0 and lin.sigma(-1).item() == 0.0


def test_fractional_t_interpolates_sigma_like_euler_discrete():
    schedule = make_schedule("linear")
    ref = EulerDiscreteScheduler()
    ref.set_timesteps(7)  # linspace: fractional timesteps 999, 832.5, ...
    ts = ref.timesteps.double()
    assert not torch.equal(ts, ts.round())
    assert torch.allclose(schedule.sigma(ts), ref.sigmas[:-1].double(), rtol=2e-4)
    t = torch.tensor([10.25, 700.5])
    lo, hi = schedule.sigma(t.floor()), schedule.sigma(t.ceil())
    assert torch.allclose(schedule.sigma(t), lo + (t.double() - t.floor().double()) * (hi - lo), rtol=1e-14)
    assert torch.allclose(schedule.alpha_bar(t), 1 / (1 + schedule.sigma(t) ** 2), rtol=1e-14)
    assert torch.allclose(schedule.snr(t), schedule.alpha_bar(t) / (1 - schedule.alpha_bar(t)), rtol=1e-12)
    assert torch.allclose(schedule.log_snr(t), schedule.snr(t).log(), rtol=1e-12)


def test_sigma_to_t_inverts_at_integers_and_interpolates_log_sigma():
    schedule = make_schedule("cosine")
    t = torch.tensor([0.0, 1.0, 250.0, 998.0, 999.0])
    assert torch.allclose(schedule.sigma_to_t(schedule.sigma(t)), t.double(), atol=1e-9)
    s_lo, s_hi = schedule.sigma(400), schedule.sigma(401)
    mid = (s_lo.log() * 0.75 + s_hi.log() * 0.25).exp()
    assert schedule.sigma_to_t(mid).item() == pytest.approx(400.25, abs=1e-9)


def test_q_sample_posterior_and_conversions():
    schedule = make_schedule("linear")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([10, 600])
    x_t = schedule.q_sample(x0, t, noise)
    assert x_t.dtype == torch.float32
    ab = schedule.alphas_cumprod[t].view(2, 1, 1, 1)
    assert torch.allclose(x_t.double(), ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double(), atol=1e-6)
    # eps / x0 / v round trips
    assert torch.allclose(schedule.x0_from_eps(x_t, t, noise), x0, atol=1e-4)
    assert torch.allclose(schedule.eps_from_x0(x_t, t, x0), noise, atol=1e-4)
    v = schedule.velocity(x0, noise, t)
    assert torch.allclose(schedule.v_from_eps(x_t, t, noise), v, atol=1e-5)
    assert torch.allclose(schedule.eps_from_v(x_t, t, v), noise, atol=1e-5)
    assert torch.allclose(schedule.x0_from_v(x_t, t, v), x0, atol=1e-5)
    for pred, out in (("eps", noise), ("x0", x0), ("v", v)):
        assert torch.allclose(schedule.eps_from_prediction(out, x_t, t, pred), noise, atol=1e-4)
    # one-step posterior, Ho et al. eq. (7), in float64
    x0d, xtd = x0.double(), x_t.double()
    mean, var = schedule.posterior(x0d, xtd, 600, 599)
    beta, ab_t, ab_p = schedule.betas[600], schedule.alphas_cumprod[600], schedule.alphas_cumprod[599]
    ref = ab_p.sqrt() * beta / (1 - ab_t) * x0d + (1 - beta).sqrt() * (1 - ab_p) / (1 - ab_t) * xtd
    assert torch.allclose(mean, ref, rtol=1e-12, atol=1e-12)
    assert var.item() == pytest.approx(((1 - ab_p) / (1 - ab_t) * beta).item(), rel=1e-12)
    # respaced posterior = the marginal: x_{t'} given x0 integrates to q(x_{t'} | x0)
    c0, ct, v2 = schedule.posterior_coefficients(600.0, 200.0)
    a, a_p = schedule.alpha_bar(600.0).sqrt(), schedule.alpha_bar(200.0).sqrt()
    assert (c0 + ct * a).item() == pytest.approx(a_p.item(), rel=1e-12)                      # mean
    assert (ct ** 2 * (1 - a ** 2) + v2).item() == pytest.approx((1 - a_p ** 2).item(), rel=1e-12)  # variance
    mean, var = schedule.posterior(x0d, xtd, 600, -1)  # into clean data
    assert torch.allclose(mean, x0d, atol=1e-12) and var.abs().max().item() < 1e-15


def test_config_round_trip_and_bad_arguments():
    for name in ("linear", "cosine"):
        s = make_schedule(name, T=50)
        d = s.to_dict()
        assert d == {"name": name, "T": 50}
        assert torch.equal(NoiseSchedule.from_dict(d).betas, s.betas)
    custom = NoiseSchedule(torch.full((10,), 0.1), "mine")
    assert torch.equal(NoiseSchedule.from_dict(custom.to_dict()).betas, custom.betas)
    with pytest.raises(ValueError, match="name"):
        make_schedule("quadratic")
    with pytest.raises(ValueError, match="T"):
        make_schedule("linear", T=0)
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="keys"):
        NoiseSchedule.from_dict({"name": "linear", "T": 10, "beta_end": 0.1})
