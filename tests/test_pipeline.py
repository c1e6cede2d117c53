"""Every generation path with tiny seeded models: text, negative prompt, class, each SR stage,
early stop, per-stage samplers, and the seed/batch contract."""
import pytest
import torch

from core.cascade import generate
from core.diffusion.samplers import SAMPLERS
from core.models.checkpoints import CheckpointError
from core.models.modelset import ModelSet
from core.pipeline import StageSettings, augment_low_res, upscale

FAST = StageSettings(steps=2)


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    return ModelSet(tiny_checkpoints, "cpu")


def test_cascade_sizes_and_early_stop(models):
    full = generate(models, prompt="woman dancing", num=2, base=FAST, sr=(FAST, FAST))
    assert {k: tuple(v.shape) for k, v in full.stages.items()} == {
        32: (2, 3, 32, 32), 64: (2, 3, 64, 64), 128: (2, 3, 128, 128)}
    assert full.final.min() >= -1 and full.final.max() <= 1
    early = generate(models, prompt="woman dancing", num=2, size=32, base=FAST, sr=(FAST, FAST))
    assert list(early.stages) == [32]
    # stopping early changes nothing upstream: the same 32x32 base images
    assert torch.equal(early.stages[32], full.stages[32])
    mid = generate(models, prompt="woman dancing", num=2, size=64, base=FAST, sr=(FAST, FAST))
    assert torch.equal(mid.stages[64], full.stages[64])


def test_prompt_and_negative_prompt_change_the_image(models):
    a = generate(models, prompt="thumbs up", size=32, base=FAST).final
    b = generate(models, prompt="red apple", size=32, base=FAST).final
    c = generate(models, prompt="thumbs up", negative_prompt="red apple", size=32, base=FAST).final
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    again = generate(models, prompt="thumbs up", size=32, base=FAST).final
    assert torch.equal(a, again)


def test_negative_prompt_is_the_unconditional_half(models):
    """CFG with a negative prompt equals eps_neg + s (eps_c - eps_neg), computed by hand."""
    base, enc = models.get("text_base"), models.text_encoder()
    torch.manual_seed(0)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([500.0])
    from core.diffusion.guidance import cfg_denoiser
    cond, neg = enc.encode(["cat face"]), enc.encode(["red apple"])
    c = {"tokens": cond.tokens, "mask": cond.mask}
    n = {"tokens": neg.tokens, "mask": neg.mask}
    guided = cfg_denoiser(base.eps, c, n, 4.0)(x, t)
    e_c, e_n = base.eps(x, t, c), base.eps(x, t, n)
    assert torch.allclose(guided, e_n + 4.0 * (e_c - e_n), atol=1e-5)


def test_class_generation_and_unknown_class(models):
    classes = models.classes()
    out = generate(models, label=classes[0], num=3, size=32, base=FAST)
    assert out.final.shape == (3, 3, 32, 32)
    other = generate(models, label=classes[1], num=3, size=32, base=FAST)
    assert not torch.allclose(out.final, other.final)
    with pytest.raises(ValueError, match="unknown class"):
        generate(models, label="no-such-class", size=32, base=FAST)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_at_every_stage(models, sampler):
    s = StageSettings(sampler=sampler, steps=2, eta=0.5 if sampler == "ddim" else 0.0)
    out = generate(models, prompt="cat face", base=s, sr=(s, s))
    assert out.final.shape == (1, 3, 128, 128) and torch.isfinite(out.final).all()


def test_seed_is_independent_of_batch(models):
    """Image k of a batch equals the image drawn alone with the same seed."""
    batch = generate(models, prompt="fire", num=3, seed=10, base=StageSettings(steps=2, sampler="ddpm"),
                     sr=(FAST, FAST), size=64)
    alone = generate(models, prompt="fire", num=1, seed=12, base=StageSettings(steps=2, sampler="ddpm"),
                     sr=(FAST, FAST), size=64)
    assert torch.allclose(batch.final[2:3], alone.final, atol=1e-5)


def test_sr_stage_uses_the_low_res_input(models):
    sr = models.get("sr64")
    low_a, low_b = torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32) * 0.5
    a = upscale(sr, low_a, [0], StageSettings(steps=2, aug_level=0))
    b = upscale(sr, low_b, [0], StageSettings(steps=2, aug_level=0))
    assert a.shape == (1, 3, 64, 64) and not torch.allclose(a, b)
    # any input size is brought to the stage's low resolution first
    c = upscale(sr, torch.zeros(1, 3, 50, 50), [0], StageSettings(steps=2, aug_level=0))
    assert torch.allclose(a, c, atol=1e-5)
    with pytest.raises(ValueError, match="low-res images must be"):
        upscale(sr, torch.zeros(3, 32, 32), [0])


def _exact_sr_denoiser(model, target):
    """Make `model` predict, at every step, the x0 that stands for `target`: the image itself, or
    for a residual model residual_scale * (target - bilinear(low)) (low = target, area-resized)."""
    import torch.nn.functional as F
    low = F.interpolate(target, size=model.config.low_resolution, mode="area")
    up = F.interpolate(low, size=model.resolution, mode="bilinear", align_corners=False)
    x0 = target if not model.config.residual_scale else (target - up) * model.config.residual_scale
    model.eps = lambda x_t, t, cond: model.schedule.eps_from_x0(x_t, t, x0)
    return low, up


@pytest.mark.parametrize("residual_scale", [None, 4.0])
def test_sr_with_an_exact_denoiser_returns_its_target(residual_scale):
    """DDIM with a denoiser that knows x0 lands on it; a residual model's sample is put back on
    the clean upsampled input, and the thresholding acts on that image, not on the residual:
    the target sits 0.5 above the upsampled input in places, a residual of 2 once scaled, which
    clipping the residual to [-1, 1] would halve."""
    from tests.tiny import tiny_model
    model = tiny_model("sr", resolution=16, low_resolution=8, residual_scale=residual_scale)
    torch.manual_seed(0)
    target = (torch.rand(2, 3, 16, 16) * 1.6 - 0.8)
    target[:, :, ::4, ::4] = 1.0   # sharp dots: far from what bilinear upsampling gives
    low, up = _exact_sr_denoiser(model, target)
    assert (target - up).abs().max() > 0.5
    seen = []
    out = upscale(model, low, [0, 1], StageSettings(steps=5, aug_level=100), callback=seen.append)
    assert torch.allclose(out, target, atol=1e-4)
    # what the callback shows is the image too, for the residual model as for the plain one
    assert torch.allclose(seen[-1]["x0"], target, atol=1e-4)


def test_residual_sr_clips_the_image_to_its_range():
    from tests.tiny import tiny_model
    model = tiny_model("sr", resolution=16, low_resolution=8, residual_scale=4.0)
    target = torch.zeros(1, 3, 16, 16)
    target[..., :8] = 1.0
    low, up = _exact_sr_denoiser(model, target)
    model.eps = lambda x_t, t, cond: model.schedule.eps_from_x0(x_t, t, torch.full_like(x_t, 8.0))  # image up + 2
    out = upscale(model, low, [0], StageSettings(steps=3, aug_level=0))
    assert torch.allclose(out, torch.ones_like(out), atol=1e-5)


def test_noise_augmentation_levels(models):
    sched = models.get("sr64").schedule
    x, noise = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    out = augment_low_res(sched, x, torch.tensor([0, 999]), noise)
    assert torch.equal(out[0], x[0])  # level 0: unchanged
    assert torch.allclose(out[1], sched.q_sample(x[1:], torch.tensor([999]), noise[1:])[0])


def test_callback_reports_every_stage(models):
    seen = []
    generate(models, prompt="cat face", base=StageSettings(steps=3), sr=(FAST, FAST), callback=seen.append,
             base_model="pixel")   # the pixel base reports its own steps (the semantic one, its decoder's)
    stages = [info["stage"] for info in seen]
    assert stages.count(32) == 3 and stages.count(64) == 2 and stages.count(128) == 2
    assert all(info["x0"].shape == info["x"].shape for info in seen)


def test_bad_arguments(models):
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(models, prompt="   ")
    with pytest.raises(ValueError, match="exactly one of prompt or label"):
        generate(models)
    with pytest.raises(ValueError, match="size must be one of"):
        generate(models, prompt="x", size=96)
    with pytest.raises(ValueError, match="num must be"):
        generate(models, prompt="x", num=0)
    with pytest.raises(ValueError, match="sampler must be one of"):
        StageSettings(sampler="plms")
    with pytest.raises(ValueError, match="steps"):
        StageSettings(steps=0)
    with pytest.raises(ValueError, match="guidance"):
        StageSettings(guidance=float("nan"))


def test_missing_model_is_named(tmp_path, tiny_checkpoints):
    import shutil
    shutil.copytree(tiny_checkpoints, tmp_path / "c")
    shutil.rmtree(tmp_path / "c" / "sr128")
    models = ModelSet(tmp_path / "c", "cpu")
    assert generate(models, prompt="x", size=64, base=FAST, sr=(FAST, FAST)).final.shape[-1] == 64
    with pytest.raises(CheckpointError, match="sr128"):
        generate(models, prompt="x", size=128, base=FAST, sr=(FAST, FAST))


class _ConstantX0:
    """A stand-in model whose prediction is always the same x0 (half the pixels at 1.1, half at
    0.5): enough to tell static clipping from dynamic thresholding."""

    def __init__(self):
        from core.diffusion.schedules import make_schedule
        self.schedule = make_schedule("cosine", 1000)
        self.x0 = torch.full((1, 3, 4, 4), 0.5)
        self.x0[..., :2, :] = 1.1

    def eps(self, x, t, cond):
        return self.schedule.eps_from_x0(x, t, self.x0.expand_as(x))


@pytest.mark.parametrize("threshold_max, expected_low", [(1.0, 0.5), (float("inf"), 0.5 / 1.1)])
def test_threshold_cap_static_versus_dynamic(threshold_max, expected_low):
    from core.pipeline import stage_denoiser
    model = _ConstantX0()
    settings = StageSettings(guidance=1.0, threshold=0.995, threshold_max=threshold_max)
    denoise = stage_denoiser(model, {}, None, settings)
    x, t = torch.randn(1, 3, 4, 4), torch.tensor([500])
    x0 = model.schedule.x0_from_eps(x, t, denoise(x, t))
    assert torch.allclose(x0[..., :2, :], torch.ones(()), atol=1e-4)     # the overshoot is clipped ...
    assert torch.allclose(x0[..., 2:, :], torch.tensor(expected_low), atol=1e-4)  # ... and the rest kept or scaled


def test_default_thresholding_is_static_clipping():
    from core.pipeline import BASE_DEFAULTS, SR_DEFAULTS
    assert BASE_DEFAULTS.threshold_max == 1.0 and SR_DEFAULTS.threshold_max == 1.0
    with pytest.raises(ValueError, match="threshold_max"):
        StageSettings(threshold_max=0.5)
    with pytest.raises(ValueError, match="threshold_max"):
        StageSettings(threshold_max=float("nan"))
