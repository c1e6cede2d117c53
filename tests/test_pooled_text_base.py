"""The pooled text base: the DiffAE decoder fed a semantic code predicted from pooled text
(`core.models.conditioners.PooledTextCode`), and its training (`core.training.bases`)."""
import pytest
import torch

from core.models.checkpoints import save_model
from core.models.loading import load_model
from core.models.networks import DiffusionModel, ModelConfig, unet_backbone
from core.training.registry import default_config
from tests.tiny import decoder_inputs as _inputs
from tests.tiny import tiny_clip, tiny_diffae, tiny_pooled_text_base, write_tiny_checkpoints_with


def _root_with_pooled_text_base(root, guidance=None):
    """Tiny checkpoints under `root` whose text base is a pooled one made from their DiffAE."""
    config, _ = tiny_clip()

    def make(decoder):
        model = tiny_pooled_text_base(decoder, pooled_dim=config.embed_dim)
        if guidance is not None:
            model.config.sampling["guidance"] = guidance
        return model
    write_tiny_checkpoints_with(root, "text_base", make)
    return root


def test_it_is_the_decoder_fed_the_predicted_code():
    decoder = tiny_diffae()
    model = tiny_pooled_text_base(decoder)
    pooled = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    x, t = _inputs()
    code = model.conditioner.code(pooled)
    # code = mean + std * mlp(pooled): the de-normalised code
    c = model.conditioner
    assert torch.allclose(code, c.code_mean + c.code_std * c.text_mlp(pooled))
    got = model.eps(x, t, {"pooled": pooled, "tokens": torch.zeros(3, 2, 4), "mask": torch.ones(3, 2, dtype=bool)})
    want = decoder.eps(x, t, {"z_sem": code})
    assert torch.allclose(got, want, atol=1e-5)
    # the text matters: another pooled embedding, another output
    other = model.eps(x, t, {"pooled": pooled.flip(0)})
    assert (other - got).abs().max() > 1e-3


def test_checkpoint_round_trip_on_both_networks(tmp_path):
    model = tiny_pooled_text_base(tiny_diffae())
    save_model(model, tmp_path / "tb", "# tiny pooled text base\n")
    core_net = load_model(tmp_path / "tb")                       # auto: core.models.unet covers it
    diffusers_net = load_model(tmp_path / "tb", network="diffusers")
    assert type(core_net.net).__module__ == "core.models.unet"
    pooled = torch.randn(3, 16)
    x, t = _inputs()
    a, b = core_net.eps(x, t, {"pooled": pooled}), diffusers_net.eps(x, t, {"pooled": pooled})
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(a, model.eps(x, t, {"pooled": pooled}), atol=1e-2)   # fp16 weights


def test_the_cascade_runs_it_with_guidance(tmp_path):
    from core.cascade import generate
    from core.models.modelset import ModelSet
    _root_with_pooled_text_base(tmp_path)
    models = ModelSet(tmp_path, "cpu")
    out = generate(models, prompt="red apple", num=2, seed=3, size=32, base_model="pixel")
    again = generate(models, prompt="red apple", num=2, seed=3, size=32, base_model="pixel")
    other = generate(models, prompt="thumbs up", num=2, seed=3, size=32, base_model="pixel")
    x = out.stages[32]
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all() and x.abs().max() <= 1
    assert torch.equal(x, again.stages[32])                     # seeded
    assert not torch.allclose(x, other.stages[32])              # the prompt reaches the network


def test_bad_configs_are_refused():
    unet = tiny_diffae().config.unet
    with pytest.raises(ValueError, match="text_conditioning"):
        ModelConfig.from_dict(dict(kind="text_base", resolution=32, unet=unet, prediction="v",
                                     text_conditioning="sideways"))
    with pytest.raises(ValueError, match="needs pooled_dim, text_hidden, semantic_dim"):
        DiffusionModel(ModelConfig(kind="text_base", resolution=32, backbone=unet_backbone(unet),
                                   conditioner={"type": "pooled_text_code", "text_encoder": "clip"}))
    with pytest.raises(ValueError, match="text-conditioning must be one of"):
        default_config("text_base", "x", text_conditioning="sideways")
    with pytest.raises(ValueError, match="text_base only, not class_base"):
        default_config("class_base", "x", text_conditioning="pooled")


@pytest.mark.slow
def test_training_starts_from_the_decoder_and_regresses_the_codes(tmp_path):
    """A fresh pooled run: the network is the committed DiffAE decoder, the code statistics are
    the training codes', and the warm start fits text_mlp towards each caption's code; then the
    usual training runs and exports a checkpoint the pipeline samples from."""
    from core.data.emoji import captions_for
    from core.models.checkpoints import DEFAULT_CHECKPOINTS
    from core.models.modelset import ModelSet
    from core.pipeline import generate_text
    from core.training.bases import TextBaseTask
    from core.training.loop import train

    cfg = default_config("text_base", str(tmp_path / "run"), smoke=True, text_conditioning="pooled", steps=2)
    task = TextBaseTask(cfg)
    model = task.build()
    decoder = load_model(DEFAULT_CHECKPOINTS / "diffae")
    for k, v in decoder.net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), k
    c = model.conditioner
    assert torch.allclose(c.code_mean, task.codes.mean(0)) and torch.allclose(c.code_std, task.codes.std(0))

    idx = task.train_idx[:200].tolist()
    captions = [captions_for(task.data.records[i])[0] for i in idx]
    pooled = task.encoder.encode(captions).pooled
    target = (task.codes[:200] - model.conditioner.code_mean) / model.conditioner.code_std

    def error():
        with torch.no_grad():
            return (model.conditioner.text_mlp(pooled) - target).pow(2).mean().item()
    before = error()
    task.warm_start(model, log=lambda s: None)
    assert error() < 0.8 * before

    summary = train(cfg, export=tmp_path / "text_base", log=lambda s: None)
    assert summary["step"] == 2
    exported = load_model(tmp_path / "text_base")
    assert exported.config.pooled_text
    images = generate_text(exported, ModelSet(DEFAULT_CHECKPOINTS, "cpu").get("clip"), ["red apple", "fire"],
                           seeds=[0, 1], steps=2)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()


def test_a_checkpoint_names_its_default_guidance(tmp_path):
    """`guidance` in a base's config is the default of the pipeline, the cascade and the CLI; the
    caller's own guidance still wins."""
    from core.cascade import base_defaults, generate
    from core.cli.main import main as cli
    from core.models.modelset import ModelSet
    from core.pipeline import BASE_DEFAULTS, model_defaults
    _root_with_pooled_text_base(tmp_path, guidance=1.0)
    models = ModelSet(tmp_path, "cpu")
    text_base = models.get("text_base")
    assert model_defaults(text_base).guidance == 1.0 and BASE_DEFAULTS.guidance != 1.0
    assert model_defaults(models.get("class_base")) == BASE_DEFAULTS          # names none
    assert base_defaults("pixel", models).guidance == 1.0
    assert base_defaults("pixel", models, text=False) == BASE_DEFAULTS         # the class base names none
    assert base_defaults("semantic", models).guidance == 3.0                 # the prior's own
    out = generate(models, prompt="red apple", num=1, seed=0, size=32, base_model="pixel")
    assert out.parameters["base"]["guidance"] == 1.0
    assert cli(["generate", "--checkpoints", str(tmp_path), "--prompt", "red apple", "--base", "pixel",
                "--size", "32", "--steps", "2", "--out", str(tmp_path / "out")]) == 0
    assert cli(["generate", "--checkpoints", str(tmp_path), "--prompt", "red apple", "--base", "pixel",
                "--size", "32", "--steps", "2", "--guidance", "4", "--out", str(tmp_path / "out4")]) == 0
    from core.images import read_parameters
    assert read_parameters(tmp_path / "out" / "000.png")["base"]["guidance"] == 1.0
    assert read_parameters(tmp_path / "out4" / "000.png")["base"]["guidance"] == 4.0


def test_the_tabs_start_from_the_checkpoints_guidance(tmp_path):
    """The app's default sampling of the pixel base follows its checkpoint; the semantic base's
    is the prior's; a missing pixel base falls back to the pipeline's defaults."""
    from demos.common import Models, sampling_of
    _root_with_pooled_text_base(tmp_path, guidance=1.5)
    models = Models.load(tmp_path, "cpu")
    assert sampling_of(models, "pixel", text=True).guidance == 1.5
    assert sampling_of(models, "pixel", text=False).guidance == 3.0
    assert sampling_of(models, "semantic", text=True).guidance == 3.0
    (tmp_path / "text_base" / "model.safetensors").unlink()
    assert sampling_of(Models.load(tmp_path, "cpu"), "pixel", text=True).guidance == 3.0


def test_translation_with_a_prompt_starts_from_its_measured_guidance(tmp_path):
    from PIL import Image

    from core.models.modelset import ModelSet
    from core.translate import SDEDIT_GUIDANCE, translate
    _root_with_pooled_text_base(tmp_path, guidance=1.5)
    models = ModelSet(tmp_path, "cpu")
    image = Image.new("RGB", (32, 32), (200, 40, 40))
    _, params = translate(models, "sdedit", image, prompt="red apple", size=32, steps=2)
    assert params["guidance"] == SDEDIT_GUIDANCE != 1.5   # prompted SDEdit's measured default, not the base's
    _, params = translate(models, "sdedit", image, prompt="red apple", size=32, steps=2, guidance=4.0)
    assert params["guidance"] == 4.0
    _, params = translate(models, "ilvr", image, label="cat-face", model="class_base", size=32, steps=2)
    assert params["guidance"] == 3.0                  # the class base names none: the pipeline's
