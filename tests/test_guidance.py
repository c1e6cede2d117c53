"""Guidance wrappers: classifier-free guidance, thresholding, classifier guidance."""
import math

import pytest
import torch
from torch import nn

from core.diffusion import samplers
from core.diffusion.guidance import (
    cfg_denoiser,
    classifier_guided_denoiser,
    dynamic_threshold_denoiser,
    static_threshold_denoiser,
)
from core.diffusion.schedules import make_schedule
from tests.gaussian_denoiser import GaussianMixture

B = 3


class TinyConditional(nn.Module):
    """eps(x, t, cond) with a label [B] and tokens [B, L, 4]; samples never interact."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.label = nn.Embedding(5, 3)
        self.tokens = nn.Linear(4, 3)
        self.calls, self.batches = 0, []

    def forward(self, x, t, cond):
        self.calls += 1
        self.batches.append(x.shape[0])
        c = self.label(cond["label"]) + self.tokens(cond["tokens"]).mean(1)
        return self.conv(x) * (1 + t[:, None, None, None] / 1000) + c[:, :, None, None]


def inputs():
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(B, 3, 8, 8, generator=g), torch.tensor([10.0, 500.0, 999.0])
    cond = {"label": torch.tensor([1, 2, 3]), "tokens": torch.randn(B, 5, 4, generator=g)}
    null = {"label": torch.tensor([0]), "tokens": torch.zeros(1, 5, 4)}           # batch 1: expanded
    negative = {"label": torch.tensor([4, 4, 4]), "tokens": torch.randn(B, 5, 4, generator=g)}
    return x, t, cond, null, negative


@torch.no_grad()
def test_scale_1_is_the_conditional_model_in_one_forward():
    model = TinyConditional()
    x, t, cond, null, _ = inputs()
    out = cfg_denoiser(model, cond, null, 1.0)(x, t)
    assert model.calls == 1 and model.batches == [B]
    assert torch.equal(out, model(x, t, cond))


@torch.no_grad()
@pytest.mark.parametrize("scale", [0.0, 3.5, -1.0])
def test_one_batched_forward_equals_two_calls(scale):
    model = TinyConditional()
    x, t, cond, null, _ = inputs()
    out = cfg_denoiser(model, cond, null, scale)(x, t)
    assert model.calls == 1 and model.batches == [2 * B]
    null_b = {k: v.expand(B, *v.shape[1:]) for k, v in null.items()}
    eps_u, eps_c = model(x, t, null_b), model(x, t, cond)
    assert torch.allclose(out, eps_u + scale * (eps_c - eps_u), atol=1e-6)


@torch.no_grad()
def test_negative_conditioning_is_the_uncond():
    model = TinyConditional()
    x, t, cond, null, negative = inputs()
    out = cfg_denoiser(model, cond, negative, 4.0)(x, t)
    eps_n, eps_c = model(x, t, negative), model(x, t, cond)
    assert torch.allclose(out, eps_n + 4.0 * (eps_c - eps_n), atol=1e-6)
    assert not torch.allclose(out, cfg_denoiser(model, cond, null, 4.0)(x, t), atol=1e-3)


@torch.no_grad()
def test_cfg_runs_in_a_sampler():
    model = TinyConditional()
    x, _, cond, null, _ = inputs()
    out = samplers.sample("ddim", cfg_denoiser(model, cond, null, 3.0), x, make_schedule("linear"), 4)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert model.batches == [2 * B] * 4


def test_cfg_bad_arguments():
    model = TinyConditional()
    x, t, cond, null, _ = inputs()
    for scale in (math.nan, math.inf, "3"):
        with pytest.raises(ValueError, match="scale"):
            cfg_denoiser(model, cond, null, scale)
    with pytest.raises(ValueError, match="keys"):
        cfg_denoiser(model, cond, {"label": null["label"]}, 2.0)
    bad = {"label": torch.tensor([0, 0]), "tokens": torch.zeros(2, 5, 4)}
    with pytest.raises(ValueError, match="batch"):
        cfg_denoiser(model, cond, bad, 2.0)(x, t)


# ---- thresholding ---------------------------------------------------------------------------------
SCHEDULE = make_schedule("linear")
T_MID = torch.tensor([300.0, 300.0])


def predicting(x0):
    """A denoiser whose x0 prediction is exactly `x0`."""
    return lambda x, t: SCHEDULE.eps_from_x0(x, t, x0)


def x0_of(denoiser, x):
    return SCHEDULE.x0_from_eps(x, T_MID, denoiser(x, T_MID))


def test_dynamic_threshold_identity_inside_unit_range():
    g = torch.Generator().manual_seed(0)
    x, x0 = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64), torch.rand(2, 3, 8, 8, generator=g) * 1.8 - 0.9
    x0 = x0.double()
    base = predicting(x0)
    wrapped = dynamic_threshold_denoiser(base, SCHEDULE)
    assert torch.allclose(wrapped(x, T_MID), base(x, T_MID), atol=1e-10)


def test_dynamic_threshold_keeps_x0_in_unit_range_per_sample():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    x0 = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    x0[0] *= 3.0    # percentile well above 1: rescaled by its own s
    x0[1] *= 0.3    # a few values above 1 at most: percentile <= 1, static clipping to [-1, 1]
    x0[1, 0, 0, 0] = 2.0
    out = x0_of(dynamic_threshold_denoiser(predicting(x0), SCHEDULE, percentile=0.995), x)
    assert out.abs().max().item() <= 1 + 1e-9
    s = torch.quantile(x0[0].abs().flatten(), 0.995).item()
    assert s > 1
    assert torch.allclose(out[0], x0[0].clamp(-s, s) / s, atol=1e-9)
    assert torch.allclose(out[1], x0[1].clamp(-1, 1), atol=1e-9)
    capped = x0_of(dynamic_threshold_denoiser(predicting(x0), SCHEDULE, max_value=1.5), x)
    assert torch.allclose(capped[0], x0[0].clamp(-1.5, 1.5) / 1.5, atol=1e-9)


def test_static_threshold_and_bad_arguments():
    g = torch.Generator().manual_seed(0)
    x, x0 = torch.randn(2, 4, generator=g, dtype=torch.float64), 3 * torch.randn(2, 4, generator=g, dtype=torch.float64)
    out = x0_of(static_threshold_denoiser(predicting(x0), SCHEDULE, limit=1.2), x)
    assert torch.allclose(out, x0.clamp(-1.2, 1.2), atol=1e-9)
    for p in (0.0, 1.5, math.nan):
        with pytest.raises(ValueError, match="percentile"):
            dynamic_threshold_denoiser(predicting(x0), SCHEDULE, percentile=p)
    with pytest.raises(ValueError, match="limit"):
        static_threshold_denoiser(predicting(x0), SCHEDULE, limit=-1)


# ---- classifier guidance --------------------------------------------------------------------------
MIXTURE = ([0.3, 0.7], [[-1.0, 0.5], [0.8, -0.2]], [[[0.05, 0.0], [0.0, 0.08]], [[0.06, 0.02], [0.02, 0.04]]])


def guided_samples(scale, n=2000):
    schedule = make_schedule("linear")
    data = GaussianMixture(*MIXTURE, schedule)
    guided = classifier_guided_denoiser(data.eps, schedule, lambda x, t: data.log_prob_class(x, t, 0), scale)
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.inference_mode():  # the gradient is taken even here
        out = samplers.sample("dpmpp-2m", guided, x, schedule, 50)
    return data, out.clone()


def test_classifier_guidance_at_scale_1_samples_the_class():
    """With the exact noisy classifier, eps - sqrt(1 - ab) grad log p(y | x_t) is the exact eps of
    p(x | y): at scale 1 the samples follow component 0 alone."""
    data, out = guided_samples(1.0)
    n = out.shape[0]
    mean, cov = data.means[0], data.covs[0]
    assert ((out.mean(0) - mean).abs() <= 4.5 * (cov.diag() / n).sqrt() + 0.01).all()
    assert (torch.cov(out.T) - cov).abs().max().item() < 0.01
    assert (torch.cdist(out, data.means).argmin(1) == 0).double().mean().item() > 0.995


@pytest.mark.parametrize("scale", [0.0, 0.3])
def test_classifier_guidance_shifts_towards_the_class(scale):
    data, out = guided_samples(scale)
    share = (torch.cdist(out, data.means).argmin(1) == 0).double().mean().item()
    if scale == 0:
        assert abs(share - 0.3) < 0.05
    else:
        assert 0.35 < share < 0.995


def test_classifier_guidance_bad_scale():
    schedule = make_schedule("linear")
    with pytest.raises(ValueError, match="scale"):
        classifier_guided_denoiser(lambda x, t: x, schedule, lambda x, t: x.sum(1), math.nan)
