"""The code class base (`label_conditioning="code"`): the DiffAE decoder fed a semantic code that
a one-step generator draws for the label from noise, the noise each seed's own (the semantic
prior's starting noise), distilled from the prior's sampler by training."""
import pytest
import torch

from core.models.checkpoints import save_model
from core.models.loading import load_model
from core.models.networks import DiffusionModel, ModelConfig, unet_backbone
from core.pipeline import class_conds
from core.training.registry import default_config
from tests.tiny import decoder_inputs as _inputs
from tests.tiny import tiny_code_class_base, tiny_diffae, tiny_prior, write_tiny_checkpoints_with


def _root_with_code_class_base(root):
    """Tiny checkpoints under `root` whose class base is a code one made from their DiffAE."""
    write_tiny_checkpoints_with(root, "class_base", tiny_code_class_base)
    return root


@pytest.mark.parametrize("modes", [0, 6])
def test_it_is_the_decoder_fed_the_drawn_code(modes):
    decoder = tiny_diffae()
    model = tiny_code_class_base(decoder, modes=modes)
    labels = torch.tensor([0, 2, 3])          # 3 = the null label
    noise = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    x, t = _inputs()
    code = model.conditioner.code(labels, noise)
    # code = mean + std * label_code(label, noise): the de-normalised code
    c = model.conditioner
    assert torch.allclose(code, c.code_mean + c.code_std * c.label_code(labels, noise))
    got = model.eps(x, t, {"labels": labels, "code_noise": noise})
    assert torch.allclose(got, decoder.eps(x, t, {"z_sem": code}), atol=1e-5)
    # both the label and the noise reach the network
    assert (model.eps(x, t, {"labels": labels.flip(0), "code_noise": noise}) - got).abs().max() > 1e-3
    assert (model.eps(x, t, {"labels": labels, "code_noise": noise.flip(0)}) - got).abs().max() > 1e-3


def test_each_seed_draws_the_noise_the_prior_starts_from():
    """Seed s gives the code generator the noise the semantic prior's sampler starts from for seed
    s, so the distilled generator draws for seed s the emoji the semantic base draws."""
    from core.models.prior import denoise_codes, sample_codes
    model = tiny_code_class_base(tiny_diffae())
    cond, uncond = class_conds(model, ["cat-face", "hand-fingers-open"], seeds=[3, 4])
    assert torch.equal(cond["code_noise"], uncond["code_noise"])        # one noise for both halves of CFG
    assert cond["labels"].tolist() == [0, 1] and uncond["labels"].tolist() == [3, 3]
    prior = tiny_prior()
    p_cond, p_uncond = prior.label_cond(["cat-face", "hand-fingers-open"]), prior.null_cond(2)
    want = sample_codes(prior, p_cond, p_uncond, [3, 4], guidance=2.0, steps=4)
    got = prior.denormalise(denoise_codes(prior, p_cond, p_uncond, cond["code_noise"], 2.0, 4))
    assert torch.allclose(got, want, atol=1e-5)
    # a seed's noise does not depend on the batch; another seed, another noise; no seeds: zeros
    alone, _ = class_conds(model, ["cat-face"], seeds=[4])
    assert torch.equal(alone["code_noise"][0], cond["code_noise"][1])
    assert not torch.allclose(cond["code_noise"][0], cond["code_noise"][1])
    assert torch.equal(class_conds(model, ["cat-face"])[0]["code_noise"], torch.zeros(1, 16))
    with pytest.raises(ValueError, match="2 seeds for 1 classes"):
        class_conds(model, ["cat-face"], seeds=[1, 2])
    # with no label (unconditional, e.g. ILVR without a label), the same seeds draw the same noise
    from core.conditions import base_conds
    from core.pipeline import BASE_DEFAULTS
    alone_null, no_uncond, settings = base_conds(model, [3, 4], BASE_DEFAULTS)
    assert no_uncond is None and settings.guidance == 1.0 and alone_null["labels"].tolist() == [3, 3]
    assert torch.equal(alone_null["code_noise"], cond["code_noise"])


@pytest.mark.parametrize("modes", [0, 6])
def test_checkpoint_round_trip_on_both_networks(tmp_path, modes):
    model = tiny_code_class_base(tiny_diffae(), modes=modes)
    save_model(model, tmp_path / "cb", "# tiny code class base\n")
    core_net, diffusers_net = load_model(tmp_path / "cb"), load_model(tmp_path / "cb", network="diffusers")
    assert type(core_net.net).__module__ == "core.models.unet" and core_net.config.sampled_code
    cond = {"labels": torch.tensor([0, 1, 3]), "code_noise": torch.randn(3, 16)}
    x, t = _inputs()
    a, b = core_net.eps(x, t, cond), diffusers_net.eps(x, t, cond)
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(a, model.eps(x, t, cond), atol=1e-2)   # fp16 weights


def test_a_mixture_draws_a_centre_of_its_own_label_plus_a_residual():
    """A mixture label_code: the code is the best-scoring centre among its label's (any, for the
    null label) plus the residual; the other labels' centres are out of reach."""
    from core.models.conditioners import LabelCodeNet
    torch.manual_seed(0)
    net = LabelCodeNet(num_labels=4, dim=8, hidden=16, modes=6)
    net.mode_codes.normal_()
    net.mode_labels.copy_(torch.tensor([0, 0, 1, 1, 2, 2]))
    labels = torch.tensor([0, 1, 2, 3] * 50)
    noise = torch.randn(200, 8)
    residual, logits = net.mixture(labels, noise)
    picked = logits.argmax(1)
    assert torch.equal(net.mode_labels[picked][labels < 3], labels[labels < 3])
    assert torch.isinf(logits[labels == 0][:, 2:]).all()
    assert torch.isfinite(logits[labels == 3]).all()   # the null label: any centre
    assert torch.allclose(net(labels, noise), net.mode_codes[picked] + residual)


def test_a_mixture_learns_a_jump_a_regression_blurs():
    """Codes that jump from one centre to another as the noise crosses a line: the mixture learns
    the jump as a choice, a regression of the same width and steps averages across it."""
    from core.models.conditioners import LabelCodeNet
    from core.training.bases import fit_mixture, fit_regression
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=g) * 2

    def codes(labels, noise):            # label l draws centre 2l or 2l + 1 by the sign of noise[0]
        return 2 * labels + (noise[:, 0] > 0).long()
    labels, noise = torch.randint(2, (4096,), generator=g), torch.randn(4096, 8, generator=g)
    choice = codes(labels, noise)
    torch.manual_seed(0)
    mixture, regression = LabelCodeNet(3, 8, 32, modes=4), LabelCodeNet(3, 8, 32)
    mixture.mode_codes.copy_(centres)
    mixture.mode_labels.copy_(torch.tensor([0, 0, 1, 1]))
    fit_mixture(mixture, labels, noise, choice, torch.zeros(4096, 8), steps=300, seed=0, batch=256)
    fit_regression(regression, (labels, noise), centres[choice], steps=300, seed=0, batch=256)
    test_labels, test_noise = torch.randint(2, (1000,), generator=g), torch.randn(1000, 8, generator=g)
    want = centres[codes(test_labels, test_noise)]
    with torch.no_grad():
        mixture_error = (mixture(test_labels, test_noise) - want).pow(2).mean()
        regression_error = (regression(test_labels, test_noise) - want).pow(2).mean()
    assert mixture_error < 0.5 * regression_error


def test_the_centres_are_the_means_of_the_codes_nearest_each_emoji():
    """`fit_modes`: one centre per training emoji, owned by its label, at the mean of the distilled
    codes of that label nearest the emoji's code; a code is assigned among its own label's centres
    only (the null label's among all, without moving them); a centre no code reaches stays at
    its emoji's code."""
    from types import SimpleNamespace

    from core.training.bases import ClassBaseTask
    model = tiny_code_class_base(tiny_diffae(), modes=4)
    model.conditioner.code_mean.zero_()
    model.conditioner.code_std.fill_(1.0)
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(4, 16, generator=g) * 3
    # records 1-4 are the training emoji: two of label 0, one of label 1, one of label 2
    task = SimpleNamespace(codes=codes, labels=torch.tensor([2, 0, 0, 1, 2]), train_idx=torch.tensor([1, 2, 3, 4]))
    labels = torch.tensor([0, 0, 0, 1, 1, 3, 3])     # 3 = the null label
    near = torch.tensor([0, 0, 1, 2, 0, 3, 0])       # the emoji each code is drawn near
    target = codes[near] + 0.1 * torch.randn(7, 16, generator=g)
    choice = ClassBaseTask.fit_modes(task, model, labels, target)
    assert choice.tolist() == [0, 0, 1, 2, 2, 3, 0]  # label 1's code near emoji 0 takes label 1's centre
    net = model.conditioner.label_code
    assert net.mode_labels.tolist() == [0, 0, 1, 2]
    assert torch.allclose(net.mode_codes[0], target[:2].mean(0)) and torch.allclose(net.mode_codes[1], target[2])
    assert torch.allclose(net.mode_codes[2], target[3:5].mean(0))
    assert torch.equal(net.mode_codes[3], codes[3])  # only the null label's code came near it


def test_the_cascade_the_cli_and_the_image_tasks_draw_labels_with_it(tmp_path):
    from PIL import Image

    from core.cascade import generate
    from core.cli.main import main as cli
    from core.images import read_parameters
    from core.models.modelset import ModelSet
    from core.translate import translate
    _root_with_code_class_base(tmp_path)
    models = ModelSet(tmp_path, "cpu")
    x = generate(models, label="cat-face", num=2, seed=3, size=32, base_model="pixel").stages[32]
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all() and x.abs().max() <= 1
    assert torch.equal(x, generate(models, label="cat-face", num=2, seed=3, size=32, base_model="pixel").stages[32])
    other = generate(models, label="person-activity", num=2, seed=3, size=32, base_model="pixel").stages[32]
    assert not torch.allclose(x, other)                                  # the label reaches the network
    # seed 4 is the second image of seed 3's batch and the first of its own
    assert torch.allclose(generate(models, label="cat-face", num=1, seed=4, size=32,
                                   base_model="pixel").stages[32][0], x[1], atol=1e-3)
    out = generate(models, label="cat-face", num=1, seed=0, size=64, base_model="pixel", classifier_scale=2.0)
    assert out.final.shape == (1, 3, 64, 64)                             # classifier guidance of its null label
    assert cli(["generate", "--checkpoints", str(tmp_path), "--label", "cat-face", "--base", "pixel",
                "--size", "32", "--steps", "2", "--out", str(tmp_path / "out")]) == 0
    assert read_parameters(tmp_path / "out" / "000.png")["label"] == "cat-face"
    image = Image.new("RGB", (32, 32), (200, 40, 40))
    _, params = translate(models, "ilvr", image, label="cat-face", model="class_base", size=32, steps=2)
    assert params["label"] == "cat-face" and params["guidance"] == 3.0   # the tiny class base names no guidance


def test_the_tab_draws_with_it(tmp_path):
    from demos import class_conditional
    from demos.common import Models
    _root_with_code_class_base(tmp_path)
    run, classes = class_conditional.make_fns(Models.load(tmp_path, "cpu"))
    assert "cat-face" in classes()
    *_, last = run("cat-face", 1.0, "dpmpp-2m", 2, 1, 2, 32, True, base_model="pixel")
    grid, gallery, parameters = last
    assert parameters["base_model"] == "pixel" and parameters["label"] == "cat-face" and len(gallery) == 2


@pytest.mark.parametrize("make,error", [
    (lambda unet: ModelConfig.from_dict(dict(kind="class_base", resolution=32, unet=unet, prediction="v",
                                             label_conditioning="sideways")), "label_conditioning"),
    (lambda unet: DiffusionModel(ModelConfig(kind="class_base", resolution=32, backbone=unet_backbone(unet),
                                             conditioner={"type": "label_code"})),
     "needs classes, semantic_dim, code_hidden"),
    (lambda unet: default_config("class_base", "x", label_conditioning="sideways"),
     "label-conditioning must be one of"),
    (lambda unet: default_config("text_base", "x", label_conditioning="code"), "class_base only, not text_base"),
    (lambda unet: tiny_code_class_base(tiny_diffae()).null_cond(2, code_noise=torch.zeros(3, 16)),
     r"code_noise must be \[2, 16\]"),
])
def test_bad_configs_and_inputs_are_refused(make, error):
    with pytest.raises(ValueError, match=error):
        make(tiny_diffae().config.unet)


@pytest.mark.slow
def test_training_distills_the_priors_sampler_and_pairs_each_emoji(tmp_path, monkeypatch):
    """A fresh code run: the network is the committed DiffAE decoder; the warm start takes noises
    of every label through the committed prior's sampler and fits label_code to the codes reached;
    each training emoji gets the noise of its label whose drawn code is nearest its own; then the
    usual training runs and exports a checkpoint the pipeline samples from."""
    from core.models.checkpoints import DEFAULT_CHECKPOINTS
    from core.pipeline import generate_class
    from core.training import bases
    from core.training.loop import train

    monkeypatch.setattr(bases, "DISTILL_NOISES", 8)
    monkeypatch.setattr(bases, "DISTILL_CHUNK", 4)
    monkeypatch.setattr(bases, "DISTILL_STEPS", 300)
    cfg = default_config("class_base", str(tmp_path / "run"), label_conditioning="code", steps=2, batch=4)
    task = bases.ClassBaseTask(cfg)
    model = task.build()
    decoder = load_model(DEFAULT_CHECKPOINTS / "diffae")
    for k, v in decoder.net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), k
    labels, noise, target = task.distillation_set(model)
    assert len(target) == 8 * (len(task.data.classes) + 1) and torch.equal(labels[-4:], torch.full((4,), 99))
    # made in parts (labels, chunks of noises), the set is the same: two cores can share the work
    part = task._distill_targets(model, [5], [1])
    rows = (labels == 5).nonzero().squeeze(1)[4:]
    assert torch.equal(part[1], noise[rows]) and torch.allclose(part[2], target[rows], atol=1e-5)

    def error():
        with torch.no_grad():
            return (model.conditioner.label_code(labels, noise) - target).pow(2).mean().item()
    before = error()
    task.warm_start(model, log=lambda s: None)
    assert error() < 0.5 * before
    # a mixture: one centre per training emoji, owned by the emoji's label
    assert model.conditioner.label_code.modes == len(task.train_idx)
    assert torch.equal(model.conditioner.label_code.mode_labels, task.labels[task.train_idx])

    with torch.no_grad():
        drawn = model.conditioner.label_code(labels, noise)
    codes = (task.codes - model.conditioner.code_mean) / model.conditioner.code_std
    for j in (0, 500, 2000):
        i = int(task.train_idx[j])
        rows = (labels == int(task.labels[i])).nonzero().squeeze(1)
        nearest = rows[(drawn[rows] - codes[j]).pow(2).sum(1).argmin()]
        assert torch.equal(task.code_noise[i, 0], noise[nearest])
    assert not torch.equal(task.code_noise[task.train_idx[0], 0], task.code_noise[task.train_idx[0], 1])

    summary = train(cfg, export=tmp_path / "class_base", log=lambda s: None)
    assert summary["step"] == 2
    exported = load_model(tmp_path / "class_base")
    assert exported.config.sampled_code and exported.config.guidance == bases.CODE_GUIDANCE
    images = generate_class(exported, ["cat-face", "heart"], seeds=[0, 1], steps=2)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()


@pytest.mark.parametrize("modes", [0, 3])
def test_the_label_code_check_compares_the_generator_with_the_prior(tmp_path, modes):
    """scripts/label_code_check.py: the error against the prior's codes for any code class base;
    for a mixture, the share of picks of the centre nearest the prior's code and the centres used,
    here one centre per label, so every pick is the prior's centre."""
    import subprocess
    import sys
    from pathlib import Path
    write_tiny_checkpoints_with(tmp_path, "class_base", lambda d: tiny_code_class_base(d, modes=modes))
    script = Path(__file__).resolve().parent.parent / "scripts" / "label_code_check.py"
    proc = subprocess.run([sys.executable, str(script), "--checkpoints", str(tmp_path), "--n", "4"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "squared error against the prior's code: mean" in proc.stdout and "3 labels x 4 noises" in proc.stdout
    if modes:
        assert "picks the centre nearest the prior's code: 1.000" in proc.stdout
        assert "distinct centres per label over 4 noises: 1.00 (the prior's codes: 1.00)" in proc.stdout
    else:
        assert "picks" not in proc.stdout


def test_the_label_code_check_refuses_a_class_base_that_draws_no_code(tiny_checkpoints):
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parent.parent / "scripts" / "label_code_check.py"
    proc = subprocess.run([sys.executable, str(script), "--checkpoints", str(tiny_checkpoints)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "does not draw codes" in proc.stderr
