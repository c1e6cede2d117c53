"""Classifier-free guidance of the DiffAE decoder on z_sem (DALL-E 2's decoder): the training task
drops the code to the null code (zeros) and can keep the encoder frozen; sampling at guidance 1 is
the plain decoder, other scales follow eps_u + s (eps_c - eps_u); the checkpoint's named scale is
what fresh noise is drawn with, everywhere the decoder renders a code (tiny seeded models)."""
from dataclasses import replace

import pytest
import torch

from core.diffae import decode, fresh_noise, fresh_noise_guidance
from core.semantic import render
from tests.tiny import tiny_diffae


@pytest.fixture(scope="module")
def model():
    return tiny_diffae()


def _code(model, b=3, seed=0):
    return torch.randn(b, model.config.semantic_dim, generator=torch.Generator().manual_seed(seed))


def test_guidance_1_is_the_plain_decoder_exactly(model):
    z, x_T = _code(model), fresh_noise(model, [0, 1, 2])
    plain = decode(model, z, x_T, steps=4, sampler="dpmpp-2m")
    assert torch.equal(decode(model, z, x_T, steps=4, sampler="dpmpp-2m", guidance=1.0), plain)
    assert not torch.allclose(decode(model, z, x_T, steps=4, sampler="dpmpp-2m", guidance=3.0), plain)


def test_guidance_is_eps_u_plus_s_times_the_difference_against_the_null_code(model):
    """One DPM-Solver++ step from x_T (its grid's first t) to the end is the predicted x0 of the
    guided eps, here built by hand from the conditional and the null-code (zeros) predictions."""
    from core.diffusion.samplers import sampler_stage_spacing, sampler_timesteps
    z, x = _code(model, 2), fresh_noise(model, [5, 6])
    s = 2.5
    t0 = sampler_timesteps("dpmpp-2m", model.schedule, 1, spacing=sampler_stage_spacing("dpmpp-2m"))[0]
    assert t0 > model.schedule.T / 2
    t = torch.full((2,), float(t0))
    with torch.no_grad():
        eps = model.eps(x, t, {"z_sem": torch.zeros_like(z)})
        eps = eps + s * (model.eps(x, t, {"z_sem": z}) - eps)
    expected = model.schedule.x0_from_eps(x, t0, eps).clamp(-1, 1)
    got = decode(model, z, x, steps=1, sampler="dpmpp-2m", guidance=s)
    # one batched forward of [null; cond] against two: float32 rounding, divided by sqrt(ab) at t0
    assert torch.allclose(got, expected, atol=3e-3)
    assert (got - decode(model, z, x, steps=1, sampler="dpmpp-2m")).abs().max() > 0.05


def test_the_checkpoint_names_the_scale_fresh_noise_is_drawn_with(model):
    z = _code(model)
    assert fresh_noise_guidance(model) == 1.0   # a decoder without a named scale: unguided
    guided = type(model)(replace(model.config, sampling={"guidance": 2.0}))
    guided.load_state_dict(model.state_dict())
    guided.eval()
    assert fresh_noise_guidance(guided) == 2.0 and fresh_noise_guidance(guided, 1.0) == 1.0
    x_T = fresh_noise(model, [0, 1, 2])
    assert torch.equal(render(guided, z, [0, 1, 2], steps=3), decode(guided, z, x_T, 3, sampler="dpmpp-2m",
                                                                        guidance=2.0))
    assert torch.equal(render(guided, z, [0, 1, 2], steps=3, guidance=1.0), render(model, z, [0, 1, 2], steps=3))


@pytest.mark.parametrize("bad", [float("nan"), -1.0, 11.0, "2"])
def test_bad_guidance_is_refused(model, bad):
    with pytest.raises(ValueError, match="decoder guidance"):
        decode(model, _code(model), fresh_noise(model, [0, 1, 2]), steps=2, guidance=bad)


def test_training_drops_the_code_and_can_freeze_the_encoder(tmp_path, monkeypatch):
    """The task's batch has every code either the encoder's or the null code (zeros), about
    cond_dropout of them null; with freeze_encoder no gradient reaches the encoder."""
    from core.training.diffae import DiffAETask
    from core.training.registry import default_config
    cfg = default_config("diffae", str(tmp_path), smoke=True, resolution=32, cond_dropout=0.5, freeze_encoder=True,
                         batch=64)
    task = DiffAETask(cfg)
    model = task.build()
    gen = torch.Generator().manual_seed(0)
    task._encoder = model.conditioner.encoder
    x0, cond = task.x0_and_cond(gen, torch.device("cpu"))
    own = model.conditioner.encoder(x0)
    null = (cond["z_sem"] == 0).all(1)
    assert 0.3 < null.float().mean() < 0.7
    assert torch.allclose(cond["z_sem"][~null], own[~null].detach(), atol=1e-6)
    loss = task.loss(model, gen, torch.device("cpu"))
    loss.backward()
    assert all(p.grad is None for p in model.conditioner.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())
    unfrozen = DiffAETask(cfg.replace(freeze_encoder=False, cond_dropout=0.0))
    model = unfrozen.build()
    unfrozen.loss(model, torch.Generator().manual_seed(0), torch.device("cpu")).backward()
    assert all(p.grad is not None for p in model.conditioner.encoder.parameters())


# ---- every surface: Python, the command line, the app --------------------------------------------
def test_the_cascade_records_and_applies_the_decoder_guidance(tiny_checkpoints):
    from core.cascade import generate, variations
    from core.models.modelset import ModelSet
    models = ModelSet(tiny_checkpoints, "cpu")
    kwargs = dict(prompt="thumbs up", size=32, base_model="semantic", decoder_steps=2)
    default = generate(models, **kwargs)
    assert default.parameters["decoder_guidance"] == 1.0   # the tiny decoder names no scale
    assert torch.equal(generate(models, decoder_guidance=1.0, **kwargs).final, default.final)
    guided = generate(models, decoder_guidance=3.0, **kwargs)
    assert guided.parameters["decoder_guidance"] == 3.0 and not torch.equal(guided.final, default.final)
    with pytest.raises(ValueError, match="pixel base has none"):
        generate(models, prompt="thumbs up", size=32, base_model="pixel", decoder_guidance=2.0)
    image = torch.zeros(1, 3, 32, 32)
    v1, v3 = (variations(models, image, num=1, size=32, decoder_steps=2, decoder_guidance=g) for g in (1.0, 3.0))
    assert v3.parameters["decoder_guidance"] == 3.0 and not torch.equal(v1.final, v3.final)


def test_the_command_line_takes_decoder_guidance(tiny_checkpoints, tmp_path):
    from core.cli.main import main
    from core.images import read_parameters
    args = ["generate", "--prompt", "thumbs up", "--size", "32", "--base", "semantic", "--decoder-steps", "2",
            "--checkpoints", str(tiny_checkpoints)]
    assert main([*args, "--decoder-guidance", "2.5", "--out", str(tmp_path / "a")]) == 0
    from PIL import Image
    assert read_parameters(Image.open(tmp_path / "a" / "000.png"))["decoder_guidance"] == 2.5
    with pytest.raises(SystemExit) as refused:   # outside the spec's range, 0 to 10: the parser refuses it
        main([*args, "--decoder-guidance", "20", "--out", str(tmp_path / "b")])
    assert refused.value.code == 2
    assert not (tmp_path / "b").exists()
