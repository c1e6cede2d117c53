"""Samplers against the analytic Gaussian case: for x0 ~ N(mu, Sigma) or a Gaussian mixture in
2-D, E[eps | x_t] is known in closed form, so the exact denoiser is available and every sampler
must reproduce the data distribution up to sampling error (N samples) and a small
discretisation bias (steps are chosen to keep it at a few percent)."""
import math

import pytest
import torch

from core.diffusion import samplers
from core.diffusion.rng import BatchGenerator
from core.diffusion.schedules import make_schedule
from tests.gaussian_denoiser import GaussianMixture

N = 4000
SINGLE = ([1.0], [[0.5, -0.3]], [[[0.30, 0.10], [0.10, 0.20]]])
MIXTURE = ([0.3, 0.7], [[-1.0, 0.5], [0.8, -0.2]], [[[0.05, 0.0], [0.0, 0.08]], [[0.06, 0.02], [0.02, 0.04]]])

# (sampler, steps, options): steps keep each one's bias on the covariance within ~3 %
CASES = [
    ("ddpm", 500, {}),
    ("ddpm", 100, {"variance": "fixed_large"}),
    ("ddim", 200, {}),
    ("ddim", 200, {"eta": 0.5}),
    ("euler", 200, {}),
    ("heun", 25, {}),
    ("euler-maruyama", 250, {}),
    ("dpmpp-2m", 50, {}),
]
CASE_IDS = [f"{name}-{steps}" + "".join(f"-{v}" for v in kw.values()) for name, steps, kw in CASES]


def assert_distribution(samples: torch.Tensor, data: GaussianMixture, bias: float = 0.03, z: float = 4.5):
    """Mean, covariance and component weights within z standard errors plus a bias allowance."""
    n, mean, cov = samples.shape[0], data.mean, data.cov
    var = cov.diag()
    assert ((samples.mean(0) - mean).abs() <= z * (var / n).sqrt() + 0.01).all(), samples.mean(0)
    se_cov = ((var[:, None] * var[None, :] + cov ** 2) / n).sqrt()
    assert ((torch.cov(samples.T) - cov).abs() <= z * se_cov + bias * cov.abs().max()).all(), torch.cov(samples.T)
    if len(data.weights) > 1:
        nearest = torch.cdist(samples, data.means).argmin(dim=1)
        share = torch.bincount(nearest, minlength=len(data.weights)).double() / n
        w = data.weights
        assert ((share - w).abs() <= z * (w * (1 - w) / n).sqrt() + 0.01).all(), share


def noise(n=N, seed=0, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("params", [SINGLE, MIXTURE], ids=["gaussian", "mixture"])
@pytest.mark.parametrize("name,steps,options", CASES, ids=CASE_IDS)
def test_sampler_reproduces_the_data(name, steps, options, params):
    schedule = make_schedule("linear")
    data = GaussianMixture(*params, schedule)
    out = samplers.sample(name, data.eps, noise(), schedule, steps, generator=torch.Generator().manual_seed(1),
                          **options)
    assert out.dtype == torch.float64
    assert_distribution(out, data)


@pytest.mark.parametrize("name,steps,options", [("ddim", 200, {}), ("dpmpp-2m", 25, {}),
                                                ("ddpm", 100, {"variance": "fixed_large"}),
                                                ("heun", 25, {"spacing": "leading"})])
def test_cosine_schedule(name, steps, options):
    """(Heun on the cosine schedule needs a grid that avoids sigma(999) = 2e4: leading spacing.)"""
    schedule = make_schedule("cosine")
    data = GaussianMixture(*MIXTURE, schedule)
    out = samplers.sample(name, data.eps, noise(), schedule, steps, generator=torch.Generator().manual_seed(1),
                          **options)
    assert_distribution(out, data)


@pytest.mark.parametrize("t_start", [400.5, 150.0])
@pytest.mark.parametrize("name,steps,options", CASES, ids=CASE_IDS)
def test_t_start_keeps_the_data_distribution(name, steps, options, t_start):
    """SDEdit: x_{t_start} ~ q(x_t | x0) with x0 from the data, then only the steps below t_start."""
    schedule = make_schedule("linear")
    data = GaussianMixture(*MIXTURE, schedule)
    x0 = data.sample(N, torch.Generator().manual_seed(2))
    x_t = schedule.q_sample(x0, t_start, noise(seed=3))
    steps_seen = []
    out = samplers.sample(name, data.eps, x_t, schedule, steps, generator=torch.Generator().manual_seed(1),
                          t_start=t_start, callback=lambda d: steps_seen.append(d["t"]), **options)
    assert steps_seen[0] == t_start and all(t < t_start for t in steps_seen[1:])
    assert_distribution(out, data)


def test_t_start_from_strength():
    schedule = make_schedule("linear")
    assert samplers.t_start_for_strength(schedule, 1.0) == 999
    assert samplers.t_start_for_strength(schedule, 0.5) == pytest.approx(499.5)
    with pytest.raises(ValueError, match="strength"):
        samplers.t_start_for_strength(schedule, 0.0)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddim_inversion_round_trip(name):
    """Inversion then sampling returns x0 up to the first-order mismatch of the two directions
    (each step uses eps at its own starting point): the error halves when the steps double. A
    few points near the boundary between the modes may cross it."""
    schedule = make_schedule(name)
    data = GaussianMixture(*MIXTURE, schedule)
    x0 = data.sample(1000, torch.Generator().manual_seed(4))
    errors = {}
    for steps in (100, 200):
        x_T = samplers.ddim_invert(data.eps, x0, schedule, steps)
        errors[steps] = (samplers.sample_ddim(data.eps, x_T, schedule, steps) - x0).norm(dim=1)
    # the inverted codes look like the prior: mean 0, identity covariance (to a few percent)
    assert x_T.mean(0).abs().max().item() < 0.15
    assert (torch.cov(x_T.T) - torch.eye(2, dtype=torch.float64)).abs().max().item() < 0.15
    err = errors[200]
    assert err.median().item() < 0.02 and err.quantile(0.99).item() < 0.06, (err.median(), err.quantile(0.99))
    assert 0.4 < err.median().item() / errors[100].median().item() < 0.6


def test_callback_reports_every_step():
    schedule = make_schedule("linear")
    data = GaussianMixture(*SINGLE, schedule)
    seen = []
    out = samplers.sample_dpmpp_2m(data.eps, noise(100), schedule, 10, callback=seen.append)
    assert [d["step"] for d in seen] == list(range(10)) and {d["total"] for d in seen} == {10}
    ts = [d["t"] for d in seen]
    assert ts == sorted(ts, reverse=True) and ts[0] == 999
    assert all(d["x"].shape == d["x0"].shape == out.shape for d in seen)
    assert (seen[-1]["x0"] - out).abs().max().item() < 0.05  # the last x0 prediction is nearly the sample


def test_any_number_of_steps():
    schedule = make_schedule("linear", T=20)
    data = GaussianMixture(*SINGLE, schedule)
    for name in samplers.SAMPLERS:
        for steps in (1, 2, 7, 19, 20):
            for spacing in samplers.SPACINGS:
                out = samplers.sample(name, data.eps, noise(8), schedule, steps, spacing=spacing,
                                      generator=BatchGenerator(list(range(8))))
                assert torch.isfinite(out).all(), (name, steps, spacing)
    assert samplers.timesteps(1000, 4, "leading") == [750, 500, 250, 0]
    assert samplers.timesteps(1000, 4, "trailing") == [999, 749, 499, 249]
    assert samplers.timesteps(1000, 4, "linspace") == [999, 666, 333, 0]
    assert samplers.timesteps(1000, 4, "linspace", integer=False)[1] == 666.0
    assert samplers.timesteps(1000, 4, "linspace", skip_zero=True) == [999, 749, 500, 250]


def test_same_seed_same_sample_whatever_the_batch():
    schedule = make_schedule("linear")
    data = GaussianMixture([0.3, 0.7], [[-0.6], [0.4]], [[[0.02]], [[0.05]]], schedule)
    seeds = [11, 12, 13]

    def run(batch_seeds):
        gen = BatchGenerator(batch_seeds)
        x = gen.randn((len(batch_seeds), 3, 8, 8))
        return samplers.sample("ddpm", data.pixel_denoiser, x, schedule, 30, generator=gen)

    together = run(seeds)
    for i, s in enumerate(seeds):
        assert torch.allclose(run([s]), together[i:i + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(together[0], together[1])


# ---- argument checks ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0}, "steps"), ({"steps": -3}, "steps"), ({"steps": 1001}, "steps"), ({"steps": 2.5}, "steps"),
    ({"steps": True}, "steps"),
    ({"name": "plms"}, "sampler"),
    ({"name": "ddim", "eta": math.nan}, "eta"), ({"name": "ddim", "eta": math.inf}, "eta"),
    ({"name": "ddim", "eta": -0.1}, "eta"), ({"name": "ddim", "eta": 50.0}, "eta"),
    ({"name": "ddim", "eta": 0.5, "generator": None}, "generator"),
    ({"name": "euler", "eta": 0.5}, "eta"),
    ({"name": "ddpm", "generator": None}, "generator"),
    ({"name": "euler-maruyama", "generator": None}, "generator"),
    ({"name": "ddpm", "generator": BatchGenerator([1])}, "generator"),
    ({"name": "ddpm", "variance": "learned"}, "variance"),
    ({"spacing": "karras"}, "spacing"),
    ({"t_start": 0.0}, "t_start"), ({"t_start": 1000.0}, "t_start"), ({"t_start": math.nan}, "t_start"),
    ({"name": "heun", "variance": "fixed_small"}, "variance"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    schedule = make_schedule("linear")
    data = GaussianMixture(*SINGLE, schedule)
    args = {"name": "ddpm", "steps": 10, "generator": torch.Generator()} | kwargs
    name, steps = args.pop("name"), args.pop("steps")
    with pytest.raises(ValueError, match=match):
        samplers.sample(name, data.eps, noise(4), schedule, steps, **args)


def test_deterministic_samplers_accept_eta_0_and_a_generator():
    schedule = make_schedule("linear")
    data = GaussianMixture(*SINGLE, schedule)
    x = noise(4)
    a = samplers.sample("euler", data.eps, x, schedule, 5, eta=0.0, generator=torch.Generator())
    assert torch.equal(a, samplers.sample_euler(data.eps, x, schedule, 5))
