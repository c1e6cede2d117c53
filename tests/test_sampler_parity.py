"""Parity with diffusers' schedulers: same denoiser, schedule, initial noise and step noise.

The denoiser is exact for data whose pixels are i.i.d. draws of a 1-D two-component Gaussian
mixture: nonlinear in x, smooth in (fractional) t, and consistent with the schedule, so samples
stay in range. diffusers computes its schedule in float32; ours is float64, so the two agree to
float32 accuracy (ATOL) where the problem is well conditioned.

Documented differences checked here:
- diffusers' DDPM/DDIM clip x0 by default (clip_sample=True); our samplers never clip, the
  clipping is the `static_threshold_denoiser` wrapper (equal to DDIM's use_clipped_model_output).
- Euler/Heun: diffusers scales the initial noise by sigma_max for linspace/trailing spacing; our
  samplers take x_T in the variance-preserving scale, i.e. sqrt(sigma_max^2 + 1) in sigma units.
  Passing x = noise * sigma_max / sqrt(sigma_max^2 + 1) reproduces diffusers exactly.
- DDIM on the linspace grid: see test_ddim_linspace_documented_difference.
- On the cosine schedule the default Euler/Heun/DPM grids start at t = 999, where
  sqrt(ab) = 5e-5: one step amplifies float32 rounding by ~1e4, in diffusers and here alike, so
  there the two agree only as well as our own float32 and float64 runs agree.
"""
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
)

from core.diffusion import samplers
from core.diffusion.guidance import static_threshold_denoiser
from core.diffusion.parameterization import LearnedVariance
from core.diffusion.rng import BatchGenerator
from core.diffusion.schedules import make_schedule
from tests.gaussian_denoiser import GaussianMixture

# diffusers' schedulers call np.array on tensors the numpy 2 way; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ATOL = 2e-5
DIFFUSERS_NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def setup(name):
    schedule = make_schedule(name)
    data = GaussianMixture([0.3, 0.7], [[-0.6], [0.4]], [[[0.02]], [[0.05]]], schedule)
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    config = dict(beta_schedule=DIFFUSERS_NAMES[name], beta_start=1e-4, beta_end=0.02)
    return schedule, data.pixel_denoiser, noise, config


def diffusers_loop(scheduler, denoiser, noise, steps, generator=None, **step_kwargs):
    """The standard pipeline loop."""
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    if generator is not None:
        step_kwargs["generator"] = generator
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t)
        eps = denoiser(model_in, t.float().expand(x.shape[0]))
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
    return x


def counting(denoiser):
    def wrapped(x, t):
        wrapped.calls += 1
        return denoiser(x, t)
    wrapped.calls = 0
    return wrapped


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddpm(name, variance, steps):
    schedule, denoiser, noise, config = setup(name)
    ref_sched = DDPMScheduler(**config, variance_type=variance, clip_sample=False)
    ref = diffusers_loop(ref_sched, denoiser, noise, steps, torch.Generator().manual_seed(7))
    ours = samplers.sample_ddpm(denoiser, noise, schedule, steps, variance=variance,
                                generator=torch.Generator().manual_seed(7))
    assert (ours - ref).abs().max().item() < ATOL


def test_ddpm_full_chain_and_per_sample_generators():
    """steps = T, and a BatchGenerator draws like diffusers' list of generators. Over 1000 steps
    diffusers' float32 betas (1 - ab_t / ab_{t-1}, ~1e-3 relative error near t = 0) add up."""
    schedule, denoiser, noise, config = setup("linear")
    ref = diffusers_loop(DDPMScheduler(**config, clip_sample=False), denoiser, noise, 1000,
                         [torch.Generator().manual_seed(s) for s in (3, 4)])
    ours = samplers.sample("ddpm", denoiser, noise, schedule, 1000, generator=BatchGenerator([3, 4]))
    assert (ours - ref).abs().max().item() < 5 * ATOL


@pytest.mark.parametrize("name,spacing", [("linear", "leading"), ("linear", "linspace"), ("cosine", "leading")])
def test_ddpm_learned_range(name, spacing):
    """A network that outputs [eps, v] (improved DDPM / DeepFloyd IF): LearnedVariance splits it and
    sample_ddpm uses v as DDPMScheduler(variance_type="learned_range") does. (Not cosine from t = 999:
    see the module docstring.)"""
    schedule, denoiser, noise, config = setup(name)

    def network(x, t, cond=None):  # v in (-1, 1), varying per pixel and with t
        return torch.cat([denoiser(x, t), torch.tanh(2 * x + t.view(-1, 1, 1, 1) / 400 - 1)], dim=1)

    ref_sched = DDPMScheduler(**config, variance_type="learned_range", clip_sample=False, timestep_spacing=spacing)
    ref = diffusers_loop(ref_sched, network, noise, 10, torch.Generator().manual_seed(7))
    learned = LearnedVariance(3)
    model = learned.wrap(network)
    ours = samplers.sample("ddpm", lambda x, t: model(x, t, {}), noise, schedule, 10, variance=learned,
                           spacing=spacing, generator=torch.Generator().manual_seed(7))
    assert (ours - ref).abs().max().item() < ATOL
    fixed = samplers.sample_ddpm(denoiser, noise, schedule, 10, spacing=spacing,
                                 generator=torch.Generator().manual_seed(7))
    assert (ours - fixed).abs().max().item() > 1e-3  # v matters
    with pytest.raises(ValueError, match="must output 6 channels"):
        model(noise[:, :2], torch.zeros(2), {})
    with pytest.raises(ValueError, match="or a LearnedVariance"):
        samplers.sample_ddpm(denoiser, noise, schedule, 10, variance="learned_range", generator=torch.Generator())


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("name,steps,spacing", [("linear", 10, "leading"), ("linear", 25, "leading"),
                                                ("linear", 25, "trailing"), ("cosine", 10, "leading"),
                                                ("cosine", 25, "leading")])
def test_ddim(name, eta, steps, spacing):
    schedule, denoiser, noise, config = setup(name)
    ref_sched = DDIMScheduler(**config, clip_sample=False, timestep_spacing=spacing)
    ref = diffusers_loop(ref_sched, denoiser, noise, steps, torch.Generator().manual_seed(7), eta=eta)
    ours = samplers.sample_ddim(denoiser, noise, schedule, steps, eta=eta, spacing=spacing,
                                generator=torch.Generator().manual_seed(7))
    assert (ours - ref).abs().max().item() < ATOL


def test_ddim_linspace_documented_difference():
    """DDIMScheduler.step() always goes to t - T // steps, which is not the next grid point on the
    linspace grid (999 -> 959 while the grid has 957); our DDIM always steps to the next grid
    point, as DDPMScheduler does. On leading grids (the default) and trailing grids with T
    divisible by steps the two coincide (tested above)."""
    ref = DDIMScheduler(timestep_spacing="linspace")
    ref.set_timesteps(25)
    grid = ref.timesteps.tolist()
    assert grid[0] - 1000 // 25 != grid[1]
    assert samplers.timesteps(1000, 25, "linspace")[:2] == grid[:2]


def test_clipping_is_a_wrapper():
    schedule, denoiser, noise, config = setup("linear")
    loud = lambda x, t: 3 * denoiser(x, t)  # noqa: E731  (x0 predictions far outside [-1, 1])
    clipped = static_threshold_denoiser(loud, schedule)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    ref = diffusers_loop(DDPMScheduler(**config), loud, noise, 20, g())
    assert (samplers.sample_ddpm(clipped, noise, schedule, 20, generator=g()) - ref).abs().max().item() < ATOL
    ref = diffusers_loop(DDIMScheduler(**config), loud, noise, 20, g(), eta=0.5, use_clipped_model_output=True)
    ours = samplers.sample_ddim(clipped, noise, schedule, 20, eta=0.5, generator=g())
    assert (ours - ref).abs().max().item() < ATOL


SCHEDULERS = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler,
              "dpmpp-2m": DPMSolverMultistepScheduler}


@pytest.mark.parametrize("sampler,scheduler", [("ddpm", DDPMScheduler), ("ddim", DDIMScheduler),
                                               ("euler", EulerDiscreteScheduler), ("heun", HeunDiscreteScheduler),
                                               ("dpmpp-2m", DPMSolverMultistepScheduler)])
@pytest.mark.parametrize("spacing", [None, "leading", "trailing", "linspace"])
def test_timesteps_match_diffusers(sampler, scheduler, spacing):
    """Our grids are diffusers' set_timesteps grids, default spacing included. (Not for steps such
    as 61 or 103 with trailing spacing, where float rounding in np.arange gives diffusers one
    extra timestep, -1.)"""
    schedule = make_schedule("linear")
    for steps in (1, 3, 10, 25, 50, 999):
        ref = scheduler(**({"timestep_spacing": spacing} if spacing else {}))
        ref.set_timesteps(steps)
        expected = ref.timesteps.double()
        if sampler == "heun":
            expected = torch.cat([expected[:1], expected[1::2]])  # diffusers repeats t for the 2nd stage
        ours = torch.tensor(samplers.sampler_timesteps(sampler, schedule, steps, spacing), dtype=torch.float64)
        assert torch.allclose(ours, expected, atol=1e-4), (steps, ours[:5])


def diffusers_start(scheduler, noise):
    """Our x_T for diffusers' initial latents noise * init_noise_sigma."""
    if isinstance(scheduler, (DPMSolverMultistepScheduler, DDIMScheduler)):
        return noise
    s = scheduler.sigmas[0].double()
    return (noise.double() * scheduler.init_noise_sigma / (1 + s ** 2).sqrt()).float()


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp-2m"])
@pytest.mark.parametrize("name,spacing", [("linear", None), ("linear", "trailing"), ("linear", "leading"),
                                          ("cosine", "leading")])
@pytest.mark.parametrize("steps", [10, 25])
def test_ode_samplers(sampler, name, spacing, steps):
    schedule, denoiser, noise, config = setup(name)
    kw = {"timestep_spacing": spacing} if spacing else {}
    ref_sched = SCHEDULERS[sampler](**config, **kw)
    ref = diffusers_loop(ref_sched, denoiser, noise, steps)
    x = diffusers_start(ref_sched, noise)
    if spacing == "leading" and sampler != "dpmpp-2m":
        assert torch.equal(x, noise)  # leading: diffusers starts from sqrt(sigma^2 + 1) noise, as we do
    den = counting(denoiser)
    ours = samplers.sample(sampler, den, x, schedule, steps, spacing=spacing)
    assert den.calls == (2 * steps - 1 if sampler == "heun" else steps)
    assert (ours - ref).abs().max().item() < ATOL


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp-2m", "ddim"])
def test_cosine_from_t_999_agrees_to_float32_conditioning(sampler):
    schedule, denoiser, noise, config = setup("cosine")
    if sampler == "ddim":
        ref_sched, spacing = DDIMScheduler(**config, clip_sample=False, timestep_spacing="trailing"), "trailing"
    else:
        ref_sched, spacing = SCHEDULERS[sampler](**config), None
    ref = diffusers_loop(ref_sched, denoiser, noise, 10)
    x = diffusers_start(ref_sched, noise)
    ours = samplers.sample(sampler, denoiser, x, schedule, 10, spacing=spacing)
    exact = samplers.sample(sampler, denoiser, x.double(), schedule, 10, spacing=spacing)
    assert (ours - ref).abs().max().item() <= 5 * (ours.double() - exact).abs().max().item() + ATOL


def test_euler_is_ddim_with_eta_0_on_the_same_grid():
    schedule, denoiser, noise, _ = setup("cosine")
    x = noise.double()
    euler = samplers.sample_euler(denoiser, x, schedule, 20, spacing="leading")
    ddim = samplers.sample_ddim(denoiser, x, schedule, 20, spacing="leading")
    assert (euler - ddim).abs().max().item() < 1e-10


def test_ddim_eta_1_is_ddpm():
    schedule, denoiser, noise, _ = setup("linear")
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    ddim = samplers.sample_ddim(denoiser, noise.double(), schedule, 30, eta=1.0, generator=g())
    ddpm = samplers.sample_ddpm(denoiser, noise.double(), schedule, 30, generator=g())
    assert (ddim - ddpm).abs().max().item() < 1e-10
