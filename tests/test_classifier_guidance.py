"""Classifier guidance of the class base with a noise-aware classifier (core.models.noisy_classifier,
core.pipeline.generate_class): the network, its training kind and checkpoint, guidance from
Python and the CLI."""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
from PIL import Image

from core.images import read_parameters
from core.models.checkpoints import save_model
from core.models.loading import load_model
from core.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig, class_log_prob
from core.pipeline import StageSettings, generate_class, sample_stage
from tests.tiny import CLASSES, tiny_model, tiny_noisy_classifier

FAST = StageSettings(steps=4, guidance=1.0, threshold=None)
SEEDS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def base():
    return tiny_model("class_base")


@pytest.fixture(scope="module")
def classifier():
    return tiny_noisy_classifier()


def _log_p(classifier, images, label):
    labels = torch.full((len(images),), CLASSES.index(label))
    return class_log_prob(classifier, labels)(images, torch.zeros(len(images)))


def test_the_network_depends_on_t_and_round_trips(classifier, tmp_path):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = classifier(x, torch.tensor([10.0, 10.0])), classifier(x, torch.tensor([900.0, 900.0]))
    assert a.shape == (2, len(CLASSES)) and not torch.allclose(a, b)
    save_model(classifier, tmp_path / "nc", "# card\n")
    loaded = load_model(tmp_path / "nc")
    assert loaded.classes == CLASSES and not any(p.requires_grad for p in loaded.parameters())
    assert torch.allclose(loaded(x, torch.tensor([10.0, 10.0])), a, atol=2e-2)   # fp16 weights


def test_scale_0_is_the_unconditional_model(base, classifier):
    out = generate_class(base, ["cat-face"], SEEDS, FAST, classifier=classifier, classifier_scale=0.0)
    plain = sample_stage(base, base.null_cond(len(SEEDS)), None, SEEDS, FAST)
    assert torch.equal(out, plain)


def test_guidance_raises_the_classifiers_probability_of_the_label(base, classifier):
    """The guided samples are what the classifier calls the label, more and more with the scale."""
    log_p = []
    for scale in (0.0, 3.0, 10.0):
        x = generate_class(base, ["person-activity"], SEEDS, FAST, classifier=classifier, classifier_scale=scale)
        log_p.append(_log_p(classifier, x, "person-activity").mean().item())
    assert log_p[0] < log_p[1] < log_p[2]
    other = generate_class(base, ["cat-face"], SEEDS, FAST, classifier=classifier, classifier_scale=10.0)
    assert _log_p(classifier, other, "cat-face").mean() > log_p[0]


def test_guidance_matches_the_wrapper_by_hand(base, classifier):
    """generate_class is classifier_guided_denoiser over the null-label model, nothing else."""
    from core.diffusion.guidance import classifier_guided_denoiser
    from core.diffusion.rng import BatchGenerator
    from core.diffusion.samplers import sample
    labels = torch.full((2,), CLASSES.index("cat-face"))
    null = base.null_cond(2)
    guided = classifier_guided_denoiser(lambda x, t: base.eps(x, t, null), base.schedule,
                                        class_log_prob(classifier, labels), 5.0)
    gen = BatchGenerator([s * 1009 for s in (0, 1)])
    with torch.no_grad():
        expected = sample("ddim", guided, gen.randn((2, 3, 32, 32)), base.schedule, 4, generator=gen,
                          spacing="leading").clamp(-1, 1)
    out = generate_class(base, ["cat-face"], [0, 1], FAST, classifier=classifier, classifier_scale=5.0)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"classifier": None, "classifier_scale": 1.0}, "needs the noise-aware classifier"),
    ({"classifier_scale": -1.0}, "classifier scale must be between 0 and 100"),
    ({"classifier_scale": math.nan}, "classifier scale must be a finite number"),
    ({"classifier_scale": 1.0, "class_names": ["cat-face", "person-activity"]}, "got 2 classes for 4 seeds"),
])
def test_bad_guidance_input_is_named(base, classifier, kwargs, message):
    kwargs = {"classifier": classifier, "class_names": ["cat-face"], **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_class(base, seeds=SEEDS, settings=FAST, **kwargs)


def test_a_classifier_for_other_classes_or_schedule_is_refused(base):
    other = NoisyClassifier(NoisyClassifierConfig(classes=["heart"], channels=(8,)))
    with pytest.raises(ValueError, match="does not know class 'cat-face'"):
        generate_class(base, ["cat-face"], SEEDS, FAST, classifier=other, classifier_scale=1.0)
    linear = NoisyClassifier(NoisyClassifierConfig(classes=CLASSES, channels=(8,),
                                                   schedule={"name": "linear", "T": 1000}))
    with pytest.raises(ValueError, match="trained on schedule"):
        generate_class(base, ["cat-face"], SEEDS, FAST, classifier=linear, classifier_scale=1.0)


# ---- training ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_kind_learns_and_writes_a_card(tmp_path):
    """A tiny seeded run of `python -m core train noisy_classifier` (150 steps): it learns (on clean
    images its cross-entropy is below that of the best constant guess, the class frequencies, and
    at t = T-1, pure noise, it is back near that), its export loads, is fp16 and small, and the
    card lists the accuracy against t."""
    import torch.nn.functional as F
    from safetensors.torch import load_file

    from core.data.emoji import load_dataset
    from core.training.loop import train
    from core.training.registry import default_config
    cfg = default_config("noisy_classifier", str(tmp_path / "run"), steps=150, batch=32, channels=(16, 32),
                         warmup=20, lr=5e-3, ema_decay=0.9, save_every=1000, sample_every=1000, threads=1)
    summary = train(cfg, export=tmp_path / "nc", log=lambda s: None)
    assert summary["step"] == 150
    model = load_model(tmp_path / "nc")
    data = load_dataset()
    train_idx = torch.as_tensor(data.indices("train"))
    idx = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(0))[:512]]
    x0, y = data.images_at(32, idx), torch.as_tensor(data.labels)[idx]
    freq = torch.bincount(torch.as_tensor(data.labels)[train_idx], minlength=len(data.classes)).double()
    freq = freq / freq.sum()
    constant = -freq[y].log().mean().item()        # cross-entropy of always answering the class frequencies
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))

    def cross_entropy(t):
        with torch.no_grad():
            logits = model(model.schedule.q_sample(x0, float(t), noise), torch.full((len(x0),), float(t)))
        return F.cross_entropy(logits, y).item()

    assert cross_entropy(0) < constant - 0.2 and cross_entropy(0) < cross_entropy(999) - 0.2
    assert abs(cross_entropy(999) - constant) < 0.3
    card = (tmp_path / "nc" / "README.md").read_text()
    assert "| t | alpha_bar_t | top-1 | top-5 |" in card and "| 999 |" in card and "steps: 150" in card
    assert "min_snr_gamma" not in card
    assert all(t.dtype == torch.float16 for t in load_file(str(tmp_path / "nc" / "model.safetensors")).values())
    assert (tmp_path / "nc" / "model.safetensors").stat().st_size < 200_000


# ---- the cascade and the CLI ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    from core.models.modelset import ModelSet
    return ModelSet(tiny_checkpoints, "cpu")


def test_cascade_records_classifier_guidance(models):
    from core.cascade import generate
    result = generate(models, label="cat-face", num=2, size=64, base=StageSettings(steps=2),
                      sr=(StageSettings(steps=2),) * 2, classifier_scale=4.0, base_model="pixel")
    assert result.final.shape == (2, 3, 64, 64)
    assert result.parameters["classifier_scale"] == 4.0 and result.parameters["base"]["guidance"] == 1.0
    with pytest.raises(ValueError, match="give a label, not a prompt"):
        generate(models, prompt="cat", classifier_scale=1.0)


def test_cli_generate_with_classifier_scale(tiny_checkpoints, tmp_path):
    from core.cli.main import main
    out = tmp_path / "o"
    assert main(["generate", "--label", "cat-face", "--classifier-scale", "2.5", "--size", "32", "--steps", "2",
                 "--num", "2", "--base", "pixel", "--checkpoints", str(tiny_checkpoints), "--out", str(out)]) == 0
    params = read_parameters(Image.open(out / "001.png"))
    assert params["classifier_scale"] == 2.5 and params["base"]["guidance"] == 1.0 and params["seed"] == 1


@pytest.mark.parametrize("args,message", [
    (["--label", "cat-face", "--classifier-scale", "2", "--guidance", "3", "--base", "pixel"],
     "are alternatives on the pixel base; give one"),
    (["--prompt", "cat", "--classifier-scale", "2"], "give a label, not a prompt"),
    (["--label", "cat-face", "--classifier-scale", "-1"], "classifier_scale -1 is not from 0 to 100"),   # the parser
    (["--label", "cat-face", "--classifier-scale", "nan"], "nan is not a finite number"),
])
def test_cli_bad_classifier_guidance_is_one_line(tiny_checkpoints, tmp_path, capsys, args, message):
    from core.cli.main import main
    out = tmp_path / "o"
    with pytest.raises(SystemExit) if {"nan", "-1"} & set(args) else contextlib.nullcontext():
        code = main(["generate", *args, "--size", "32", "--steps", "2", "--checkpoints", str(tiny_checkpoints),
                     "--out", str(out)])
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and not out.exists()
    if "nan" not in args:
        assert len(err.splitlines()) == 1


def test_cli_without_the_classifier_names_it(tiny_checkpoints, tmp_path, capsys):
    import shutil

    from core.cli.main import main
    root = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoints, root)
    shutil.rmtree(root / "noisy_classifier")
    assert main(["generate", "--label", "cat-face", "--classifier-scale", "1", "--size", "32", "--steps", "2",
                 "--base", "pixel", "--checkpoints", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "noisy_classifier" in err and "missing" in err
    shutil.rmtree(root / "code_classifier")   # the semantic base's classifier guidance reads the code classifier
    assert main(["generate", "--label", "cat-face", "--classifier-scale", "1", "--size", "32", "--steps", "2",
                 "--checkpoints", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "code_classifier" in err and "missing" in err


def test_classifier_guidance_follows_the_base(models):
    """The default (semantic) base steers its prior with the code classifier; the pixel base its UNet with
    the image classifier, unconditionally."""
    from core.cascade import generate
    result = generate(models, label="cat-face", size=32, classifier_scale=1.0, decoder_steps=2)
    assert result.parameters["base_model"] == "semantic" and result.parameters["base"]["guidance"] == 0.0
    result = generate(models, label="cat-face", size=32, base=StageSettings(steps=2), classifier_scale=1.0,
                      base_model="pixel")
    assert result.parameters["base_model"] == "pixel" and result.parameters["base"]["guidance"] == 1.0
