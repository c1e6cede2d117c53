"""The semantic cascade (prior -> DiffAE decoder -> SR) and image variations, on tiny models:
from Python and from the command line."""
import shutil

import pytest
import torch
from PIL import Image

from core.bases import default_base
from core.cascade import generate, variations
from core.cli.main import main as cli
from core.diffae import semantic_code
from core.images import read_parameters
from core.models.modelset import ModelSet
from core.pipeline import BASE_DEFAULTS, StageSettings
from core.semantic import (
    DECODER_SAMPLER,
    DECODER_STEPS,
    PRIOR_DEFAULTS,
    generate_semantic,
    render,
    sample_semantic_codes,
)


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    return ModelSet(tiny_checkpoints, "cpu")


def test_default_base_is_semantic_when_the_prior_is_there(models, tiny_checkpoints, tmp_path):
    assert default_base(models.available()) == "semantic"
    assert default_base(models.available(), text=False) == "semantic"
    partial = tmp_path / "no_prior"
    shutil.copytree(tiny_checkpoints, partial, ignore=shutil.ignore_patterns("prior"))
    assert default_base(ModelSet(partial, "cpu").available()) == "pixel"
    assert default_base(["prior", "diffae"], text=False) == "semantic"   # a label needs no text encoder
    assert default_base(["prior", "diffae"], text=True) == "pixel"       # a prompt needs the prior's clip


def test_semantic_text_generation_is_prior_then_decoder_then_sr(models):
    result = generate(models, prompt="thumbs up", num=2, seed=3, size=64, base_model="semantic", decoder_steps=4)
    assert set(result.stages) == {32, 64}
    assert result.stages[64].shape == (2, 3, 64, 64)
    assert result.parameters["base_model"] == "semantic" and result.parameters["decoder_steps"] == 4
    # the 32 px stage is exactly the prior's code for the prompt (at the prior's own defaults), rendered
    # by the decoder
    assert result.parameters["base"] == vars(PRIOR_DEFAULTS)
    expected = generate_semantic(models.get("prior"), models.get("diffae"), models.get("clip"), prompt="thumbs up",
                                 seeds=[3, 4], guidance=PRIOR_DEFAULTS.guidance, steps=PRIOR_DEFAULTS.steps,
                                 sampler=PRIOR_DEFAULTS.sampler, decoder_steps=4)
    assert torch.equal(result.stages[32], expected)
    other = generate(models, prompt="red apple", num=2, seed=3, size=32, base_model="semantic", decoder_steps=4)
    assert not torch.allclose(other.final, result.stages[32])     # the prompt matters


def test_semantic_label_generation_and_pixel_choice(models):
    sem = generate(models, label="cat-face", num=1, size=32, base_model="semantic", decoder_steps=3)
    pix = generate(models, label="cat-face", num=1, size=32, base_model="pixel")
    assert sem.parameters["base_model"] == "semantic" and pix.parameters["base_model"] == "pixel"
    assert not torch.allclose(sem.final, pix.final)
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        generate(models, label="zebra", size=32, base_model="semantic")
    with pytest.raises(ValueError, match="base must be one of pixel, semantic"):
        generate(models, label="cat-face", size=32, base_model="latent")


def test_variations_keep_the_code_and_change_the_noise(models):
    decoder = models.get("diffae")
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    result = variations(models, image, num=3, seed=0, size=32, decoder_steps=4)
    z = semantic_code(decoder, image).expand(3, -1)
    assert torch.equal(result.final, render(decoder, z, [0, 1, 2], steps=4))
    assert not torch.allclose(result.final[0], result.final[1])   # fresh noise per seed
    big = torch.nn.functional.interpolate(image, size=128, mode="bilinear")
    assert variations(models, big, num=1, size=64, decoder_steps=2).final.shape == (1, 3, 64, 64)


def test_text_guided_variation_moves_the_code_to_the_prompt(models):
    decoder, prior, clip = models.get("diffae"), models.get("prior"), models.get("clip")
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    full = variations(models, image, num=2, seed=5, size=32, prompt="red apple", mix=1.0, decoder_steps=4)
    z_prompt = sample_semantic_codes(prior, clip, prompt="red apple", seeds=[5, 6], guidance=PRIOR_DEFAULTS.guidance,
                                     steps=PRIOR_DEFAULTS.steps, sampler=PRIOR_DEFAULTS.sampler)
    assert torch.allclose(full.final, render(decoder, z_prompt, [5, 6], steps=4), atol=1e-4)
    half = variations(models, image, num=2, seed=5, size=32, prompt="red apple", mix=0.5, decoder_steps=4)
    assert half.parameters["mix"] == 0.5 and half.parameters["prompt"] == "red apple"
    with pytest.raises(ValueError, match="give a prompt"):
        variations(models, image, mix=0.5, size=32)
    with pytest.raises(ValueError, match="mix must be a number from 0"):
        variations(models, image, prompt="x", mix=1.5, size=32)


def test_cli_generate_semantic_and_variations(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "gen"
    assert cli(["generate", "--prompt", "thumbs up", "--base", "semantic", "--size", "32", "--num", "2",
                "--decoder-steps", "3", "--steps", "5", "--out", str(out), "--checkpoints", str(tiny_checkpoints),
                "--device", "cpu"]) == 0
    params = read_parameters(out / "001.png")
    assert params["base_model"] == "semantic" and params["seed"] == 1 and params["command"] == "generate"
    assert params["base"]["steps"] == 5 and params["base"]["sampler"] == PRIOR_DEFAULTS.sampler   # --steps: the prior's

    source = tmp_path / "in.png"
    Image.new("RGBA", (70, 50), (200, 30, 30, 255)).save(source)
    vout = tmp_path / "var"
    assert cli(["variations", "--image", str(source), "--num", "2", "--size", "64", "--decoder-steps", "3",
                "--sr-steps", "2", "--out", str(vout), "--checkpoints", str(tiny_checkpoints), "--device", "cpu"]) == 0
    assert Image.open(vout / "000.png").size == (64, 64) and (vout / "001.png").is_file()
    assert read_parameters(vout / "000.png")["command"] == "variations"

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert cli(["variations", "--image", str(source), "--out", str(a_file),
                "--checkpoints", str(tiny_checkpoints)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert cli(["variations", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "v2"),
                "--checkpoints", str(tiny_checkpoints)]) == 2
    assert not (tmp_path / "v2").exists()


def test_the_judges_semantic_sampler_draws_what_the_cascade_draws(models):
    """core.evaluation.scorecard.semantic_sampler batches different prompts (or labels) and seeds; each image
    is the one generate(base_model="semantic") gives for that prompt and seed."""
    from core.evaluation.scorecard import semantic_sampler
    settings = StageSettings(steps=3)
    sample = semantic_sampler(models, "text", settings, decoder_steps=2, batch=2)
    got = sample(["red apple", "thumbs up", "heart"], [4, 9, 1])
    for i, (prompt, seed) in enumerate([("red apple", 4), ("thumbs up", 9), ("heart", 1)]):
        one = generate(models, prompt=prompt, seed=seed, size=32, base=settings, base_model="semantic",
                       decoder_steps=2, prompt_reading="as-typed").final
        # the decoder's DPM-Solver++ starts at t = 999, where sqrt(ab) = 5e-5: its first step turns the
        # float32 rounding of another batch size into differences of ~1e-3 (0.1 of a 8-bit level)
        assert torch.allclose(got[i:i + 1], one, atol=2e-3), prompt
    labels = semantic_sampler(models, "label", settings, decoder_steps=2)(["cat-face", "person-activity"], [0, 0])
    assert labels.shape == (2, 3, 32, 32) and not torch.allclose(labels[0], labels[1])
    # without settings, its prior samples as the app's does (PRIOR_DEFAULTS, not the pixel base's)
    default = semantic_sampler(models, "text", decoder_steps=2)(["red apple"], [4])
    one = generate(models, prompt="red apple", seed=4, size=32, base_model="semantic", decoder_steps=2,
                   prompt_reading="as-typed").final
    assert torch.allclose(default, one, atol=2e-3)


def test_each_base_samples_with_its_own_defaults(models, tiny_checkpoints, tmp_path):
    """Without settings, the pixel base samples with BASE_DEFAULTS and the semantic base's prior with
    PRIOR_DEFAULTS, from Python and from the command line."""
    assert generate(models, prompt="heart", size=32, base_model="pixel").parameters["base"] == vars(BASE_DEFAULTS)
    semantic = generate(models, label="cat-face", size=32, decoder_steps=2)   # the default base
    assert semantic.parameters["base_model"] == "semantic" and semantic.parameters["base"] == vars(PRIOR_DEFAULTS)
    guided = generate(models, label="cat-face", size=32, classifier_scale=2.0, base_model="pixel")
    assert guided.parameters["base"] == {**vars(BASE_DEFAULTS), "guidance": 1.0}
    # on the semantic base, classifier guidance steers the unconditional prior (its guidance 0)
    guided = generate(models, label="cat-face", size=32, classifier_scale=2.0, decoder_steps=2)
    assert guided.parameters["base"] == {**vars(PRIOR_DEFAULTS), "guidance": 0.0}
    for base, expected in (("semantic", PRIOR_DEFAULTS), ("pixel", BASE_DEFAULTS)):
        out = tmp_path / base
        assert cli(["generate", "--prompt", "heart", "--size", "32", "--decoder-steps", "2", "--base", base,
                    "--out", str(out), "--checkpoints", str(tiny_checkpoints)]) == 0
        stored = read_parameters(out / "000.png")["base"]
        assert (stored["sampler"], stored["steps"], stored["guidance"]) == (expected.sampler, expected.steps,
                                                                             expected.guidance)


def test_render_samples_with_the_decoder_sampler_and_ddim_is_diffae_decode(models):
    decoder = models.get("diffae")
    z = torch.randn(2, decoder.config.semantic_dim, generator=torch.Generator().manual_seed(0))
    steps = []
    image = render(decoder, z, [3, 4], callback=lambda info: steps.append(info["t"]))
    assert len(steps) == DECODER_STEPS and steps[0] == 999 and DECODER_SAMPLER == "dpmpp-2m"   # the trailing grid
    assert image.shape == (2, 3, 32, 32) and image.abs().max() <= 1
    from core.diffae import decode, fresh_noise
    assert torch.equal(render(decoder, z, [3, 4], steps=5, sampler="ddim"),
                       decode(decoder, z, fresh_noise(decoder, [3, 4]), steps=5))
