"""ILVR (core.ilvr): against the exact denoiser of a known Gaussian, where the conditional the
method aims at is known in closed form; then on the hub's (tiny) models, from Python and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.diffusion.rng import BatchGenerator
from core.diffusion.samplers import sample
from core.diffusion.schedules import make_schedule
from core.ilvr import check_factor, ilvr, ilvr_projection, ilvr_strip, low_pass, sample_ilvr
from core.images import read_parameters
from core.pipeline import StageSettings
from tests.gaussian_denoiser import GaussianMixture

S = 8                   # 1 x 8 x 8 "images": a 64-dimensional Gaussian
SEEDS = list(range(32))
FAST = StageSettings(sampler="ddpm", steps=3)


@pytest.fixture(scope="module")
def gaussian():
    """Smooth images plus fine detail: a squared-exponential covariance over the pixel grid
    (length 1.5 px) and independent per-pixel noise, mean 0."""
    schedule = make_schedule("cosine", 1000)
    pos = torch.stack(torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij"), -1).reshape(-1, 2).double()
    d2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    cov = 0.25 * torch.exp(-d2 / (2 * 1.5 ** 2)) + 0.04 * torch.eye(S * S, dtype=torch.float64)
    data = GaussianMixture([1.0], [[0.0] * S * S], [cov.tolist()], schedule)
    reference = data.sample(1, torch.Generator().manual_seed(5)).float().view(1, 1, S, S)
    return data, schedule, cov, reference


def _denoiser(data):
    return lambda x, t: data.eps(x.reshape(x.shape[0], -1), t).reshape(x.shape)


def _run(gaussian, factor, sampler="ddpm", steps=50):
    data, schedule, _, y = gaussian
    gen = BatchGenerator(SEEDS)
    x = gen.randn((len(SEEDS), 1, S, S))
    return sample_ilvr(sampler, _denoiser(data), x, schedule, steps, y.expand(len(SEEDS), -1, -1, -1), factor,
                       generator=gen, spacing="leading")


def _down(x, factor):
    return F.interpolate(x, size=S // factor, mode="area")


def _exact_conditional(cov, reference, factor):
    """Mean and covariance of x ~ N(0, cov) given A x = A y, A the box downsampling by `factor`."""
    d = S * S
    a = _down(torch.eye(d, dtype=torch.float64).view(d, 1, S, S), factor).reshape(d, -1).T
    gain = cov @ a.T @ torch.linalg.inv(a @ cov @ a.T)
    return gain @ (a @ reference.double().flatten()), cov - gain @ a @ cov


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("factor", [2, 4, 8])
def test_low_pass_of_the_samples_is_the_references(gaussian, factor, sampler):
    _, _, _, y = gaussian
    out = _run(gaussian, factor, sampler)
    assert (low_pass(out, factor) - low_pass(y, factor)).abs().max() < 0.01
    assert (_down(out, factor) - _down(y, factor)).abs().max() < 0.01
    # the samples are not the reference: the high frequencies are the model's
    assert (out - y).pow(2).mean().sqrt() > 0.1


def test_without_ilvr_the_low_pass_is_free(gaussian):
    data, schedule, _, y = gaussian
    gen = BatchGenerator(SEEDS)
    out = sample("ddpm", _denoiser(data), gen.randn((len(SEEDS), 1, S, S)), schedule, 50, generator=gen,
                 spacing="leading")
    assert (_down(out, 4) - _down(y, 4)).abs().max() > 0.5


def test_diversity_shrinks_as_the_factor_falls(gaussian):
    _, _, _, y = gaussian
    diversity = {}
    for factor in (1, 2, 4, 8):
        out = _run(gaussian, factor)
        diversity[factor] = torch.pdist(out.flatten(1)).mean().item()
        if factor == 1:   # nothing is left to the model: every sample is the reference
            assert torch.allclose(out, y.expand_as(out), atol=1e-5)
    assert diversity[1] < 1e-4 < diversity[2] < diversity[4] < diversity[8]


@pytest.mark.parametrize("factor", [2, 4])
def test_samples_follow_the_exact_conditional(gaussian, factor):
    """ILVR aims at p(x | phi_N(x) = phi_N(y)); for a Gaussian that is Gaussian too. The samples'
    mean is the conditional mean (within their standard error), and their spread is most of the
    conditional's (ILVR is an approximation: measured 81% and 86% of the variance at N = 2, 4)."""
    _, _, cov, y = gaussian
    out = _run(gaussian, factor).double().flatten(1)
    mean, ccov = _exact_conditional(cov, y, factor)
    stderr = (ccov.diagonal() / len(SEEDS)).sqrt()
    assert ((out.mean(0) - mean) / stderr).pow(2).mean().sqrt() < 2.0
    ratio = out.var(0).sum() / ccov.diagonal().sum()
    assert 0.7 < ratio < 1.1


def test_projection_replaces_only_the_low_frequencies():
    schedule = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    project = ilvr_projection(y, [4, 8], schedule, BatchGenerator([0, 1]))
    out = project(x, -1.0)   # at t = -1 the target is the clean reference
    for i, n in enumerate((4, 8)):
        assert torch.allclose(out[i] - x[i], (low_pass(y, n) - low_pass(x, n))[i], atol=1e-6)
    noisy = ilvr_projection(y, 4, schedule, BatchGenerator([0, 1]))(x, 500.0)
    again = ilvr_projection(y, 4, schedule, BatchGenerator([0, 1]))(x, 500.0)
    assert torch.equal(noisy, again)   # the reference's noise comes from the generator passed in


@pytest.mark.parametrize("factor,message", [(3, "factor N must be one of 1, 2, 4, 8, 16, 32"), (0, "factor N"),
                                            (64, "factor N"), (2.0, "factor N"), (True, "factor N")])
def test_bad_factors_are_named(factor, message):
    with pytest.raises(ValueError, match=message):
        check_factor(factor, 32)


# ---- on the hub's models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    from core.models.modelset import ModelSet
    return ModelSet(tiny_checkpoints, "cpu")


def _smooth_reference(size=32):
    """A smooth image well inside [-1, 1] (so clamping does not touch the low-pass)."""
    u = torch.linspace(-1, 1, size)
    r = 0.5 * torch.sin(2 * u)[None, :] * torch.cos(1.5 * u)[:, None]
    return torch.stack([r, -r, 0.3 * r])[None]


@pytest.mark.parametrize("model,kw", [("text_base", {}), ("text_base", {"prompt": "red apple"}),
                                      ("class_base", {}), ("class_base", {"label": "cat-face"})])
def test_every_base_keeps_the_references_low_pass(models, model, kw):
    base = models.get(model)
    y = _smooth_reference()
    encoder = models.text_encoder() if model == "text_base" else None
    out = ilvr(base, y, 4, encoder=encoder, seeds=[0, 1], settings=FAST, **kw)
    assert out.shape == (2, 3, 32, 32)
    error = (_low(out, 4) - _low(y, 4)).pow(2).mean().sqrt()
    plain = (_low(ilvr(base, y, 32, encoder=encoder, seeds=[0, 1], settings=FAST, **kw), 4) - _low(y, 4))
    assert error < 0.03 and plain.pow(2).mean().sqrt() > 4 * error   # N = 32 keeps only the mean colour
    again = ilvr(base, y, 4, encoder=encoder, seeds=[1], settings=FAST, **kw)
    assert torch.allclose(again[0], out[1], atol=1e-5)   # a seed gives the same sample in any batch


def _low(x, n):
    return F.interpolate(x, size=x.shape[-1] // n, mode="area")


def test_ilvr_through_the_sr_stages(models):
    y = _smooth_reference()
    out = ilvr(models.get("text_base"), y, 8, encoder=models.text_encoder(), seeds=[0], settings=FAST,
               sr_models=[models.get("sr64"), models.get("sr128")], sr_settings=[StageSettings(steps=2)] * 2)
    assert out.shape == (1, 3, 128, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize("kw,message", [({"label": "cat-face"}, "a label is for the class base"),
                                        ({"encoder": None}, "needs its text encoder")])
def test_bad_conditions_are_named(models, kw, message):
    kw = {"encoder": models.text_encoder(), **kw}
    with pytest.raises(ValueError, match=message):
        ilvr(models.get("text_base"), _smooth_reference(), 4, settings=FAST, **kw)
    with pytest.raises(ValueError, match="takes a label, not a prompt"):
        ilvr(models.get("class_base"), _smooth_reference(), 4, prompt="cat", settings=FAST)
    with pytest.raises(ValueError, match="unknown class"):
        ilvr(models.get("class_base"), _smooth_reference(), 4, label="nope", settings=FAST)
    with pytest.raises(ValueError, match="needs a base model"):
        ilvr(models.get("sr64"), _smooth_reference(), 4, settings=FAST)


def _reference_image(size=48) -> Image.Image:
    arr = ((_smooth_reference(size)[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def test_strip_and_its_figures(models):
    strip = ilvr_strip(models, _reference_image(), factors=[1, 4, 16], seeds=[0, 1], model="class_base", size=64,
                       settings=FAST)
    assert strip.samples.shape == (2, 3, 3, 64, 64) and strip.low_passes.shape == (3, 3, 64, 64)
    assert strip.image().size == (4 + 3 * (128 + 4), 4 + 3 * (128 + 18 + 4))   # 64 px frames at 2x, N under each
    rows = {r["factor"]: r["diversity"] for r in strip.rows}
    assert rows[1] < rows[4] < rows[16]   # the random SR stages add detail of their own
    strip = ilvr_strip(models, _reference_image(), factors=[1, 4, 16], seeds=[0, 1], model="class_base", size=32,
                       settings=FAST)
    rows = {r["factor"]: r for r in strip.rows}
    assert rows[1]["diversity"] < 0.01 < rows[4]["diversity"] < rows[16]["diversity"]   # N = 1: the reference
    assert rows[1]["rmse_to_reference"] < 0.01 < rows[4]["rmse_to_reference"]
    assert all(r["low_pass_rmse"] < 0.03 for r in strip.rows)
    with pytest.raises(ValueError, match="too many samples"):
        ilvr_strip(models, _reference_image(), factors=[1, 2, 4, 8], seeds=list(range(9)))


def test_translate_api_and_cli(models, tiny_checkpoints, tmp_path):
    from core.cli.main import main
    from core.translate import translate
    ref = tmp_path / "ref.png"
    _reference_image(32).convert("RGBA").save(ref)
    out, params = translate(models, "ilvr", Image.open(ref), factor=1, size=32, steps=2)
    expected = np.asarray(_reference_image(32), dtype=int)
    assert np.abs(np.asarray(out, dtype=int) - expected).max() <= 1          # N = 1: the reference itself
    assert params["task"] == "ilvr" and params["factor"] == 1 and params["model"] == "text_base"
    assert main(["translate", "--task", "ilvr", "--image", str(ref), "--factor", "32", "--label", "cat-face",
                 "--size", "64", "--steps", "2", "--seed", "3", "--checkpoints", str(tiny_checkpoints),
                 "--out", str(tmp_path / "o.png")]) == 0
    written = Image.open(tmp_path / "o.png")
    p = read_parameters(written)
    assert written.size == (64, 64) and p["model"] == "class_base" and p["factor"] == 32 and p["seed"] == 3


@pytest.mark.parametrize("args,message", [
    (["--factor", "3"], "argument --factor: invalid choice: 3"),   # refused by the parser (its spec's choices)
    (["--model", "sr64"], "argument --model: invalid choice: 'sr64'"),
    (["--model", "class_base", "--prompt", "cat"], "takes a label, not a prompt"),
    (["--label", "nope"], "unknown class"),
])
def test_cli_bad_input_is_one_line(tiny_checkpoints, tmp_path, capsys, args, message):
    from core.cli.main import main
    ref = tmp_path / "ref.png"
    _reference_image(32).save(ref)
    out = tmp_path / "o.png"
    try:
        code = main(["translate", "--task", "ilvr", "--image", str(ref), "--steps", "2", "--checkpoints",
                     str(tiny_checkpoints), "--out", str(out), *args])
    except SystemExit as e:   # the parser's refusal: the same one line and status
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


def test_factor_is_refused_by_other_tasks(models):
    from core.translate import translate
    with pytest.raises(ValueError, match="factor is a setting of task ilvr only"):
        translate(models, "sdedit", _reference_image(), factor=4, steps=2)


def test_strip_cli(tiny_checkpoints, tmp_path, capsys):
    from core.cli.main import main
    ref = tmp_path / "ref.png"
    _reference_image(32).save(ref)
    assert main(["ilvr-strip", "--image", str(ref), "--factors", "2,8", "--seeds", "0,1", "--steps", "2",
                 "--checkpoints", str(tiny_checkpoints), "--out", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "| factor | low_pass_rmse | rmse_to_reference | diversity |" in out
    assert Image.open(tmp_path / "s.png").size == (4 + 2 * (96 + 4), 4 + 3 * (96 + 18 + 4))   # 3x frames, N under each
    assert read_parameters(tmp_path / "s.png")["figures"][0]["factor"] == 2
