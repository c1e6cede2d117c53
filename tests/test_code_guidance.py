"""Classifier and CLIP guidance of the semantic prior in its code space (core.models.code_guidance,
core.semantic.code_guide, core.models.prior.denoise_codes): the exact noisy-code classifier of a
Gaussian mixture moves samples to the asked component; scale 0 is the unguided sampler; the models
round-trip; generate from Python and the CLI."""
from __future__ import annotations

import pytest
import torch

from core.images import read_parameters
from core.models.checkpoints import CheckpointError, save_model
from core.models.code_guidance import (
    CodeClassifier,
    CodeGuideConfig,
    accuracy_vs_t,
    class_log_prob,
)
from core.models.loading import load_model
from core.models.prior import denoise_codes
from core.semantic import code_guide
from tests.gaussian_denoiser import GaussianMixture
from tests.tiny import CLASSES, tiny_code_guide, tiny_prior

COMPONENTS = ("left", "right")


def mixture_prior_and_classifier():
    """A 2-D 'prior' whose denoiser is the exact one of a two-component Gaussian mixture of codes, and
    a code classifier whose logits are the exact log p(x_t | k) + log pi_k of that mixture."""
    prior = tiny_prior(dim=2, classes=COMPONENTS)
    mixture = GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], torch.eye(2).repeat(2, 1, 1) * 0.1, prior.schedule)
    prior.eps = lambda x, t, cond: mixture.eps(x, t.expand(x.shape[0])).to(x.dtype)
    classifier = CodeClassifier(CodeGuideConfig(kind="code_classifier", dim=2, classes=list(COMPONENTS)))
    classifier.forward = lambda z, t: mixture._terms(z, torch.as_tensor(t).expand(z.shape[0]))[0].T.float()
    return prior, mixture, classifier


def _sample(prior, guide, n=256, steps=50):
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    cond = prior.null_cond(n)
    return denoise_codes(prior, cond, cond, noise, guidance=1.0, steps=steps, sampler="ddim", guide=guide)


def test_exact_classifier_guidance_moves_samples_to_the_asked_component():
    prior, _, classifier = mixture_prior_and_classifier()
    unguided = _sample(prior, None)
    share_right = float((unguided[:, 0] > 0).float().mean())
    assert 0.3 < share_right < 0.7   # the mixture's two halves
    for label, sign in (("right", 1), ("left", -1)):
        guide = code_guide(prior, classifier=classifier, label=label, classifier_scale=1.0, batch=256)
        guided = _sample(prior, guide)
        on_asked = (guided[:, 0] * sign > 0).float().mean()
        assert on_asked > 0.97, (label, float(on_asked))
        # the samples land on the component itself (its mean at +-2, spread 0.3), not between them
        assert abs(float(guided[guided[:, 0] * sign > 0, 0].abs().mean()) - 2.0) < 0.3


def test_scale_zero_is_the_unguided_sampler_exactly():
    prior, _, classifier = mixture_prior_and_classifier()
    unguided = _sample(prior, None, n=32, steps=10)
    assert code_guide(prior, classifier=classifier, label="right", classifier_scale=0.0) is None
    # and the wrapper itself at scale 0 changes nothing
    from core.diffusion.guidance import classifier_guided_denoiser
    labels = classifier.label_indices(["right"] * 32)
    wrapped = _sample(prior, lambda d: classifier_guided_denoiser(d, prior.schedule, class_log_prob(classifier, labels),
                                                                  0.0), n=32, steps=10)
    assert torch.equal(unguided, wrapped)


def test_clip_guidance_moves_samples_towards_the_text():
    """A matcher whose code embedding is the direction of the code and whose text embedding is the
    pooled vector itself: CLIP guidance towards the text (1, 0) draws the mixture's right component."""
    prior, _, _ = mixture_prior_and_classifier()
    matcher = tiny_code_guide("code_matcher", dim=2, text_dim=2)
    matcher.code_embedding = lambda z, t: torch.nn.functional.normalize(z, dim=-1)
    matcher.text_embedding = lambda pooled: torch.nn.functional.normalize(pooled.float(), dim=-1)
    for text, sign in (([[1.0, 0.0]], 1), ([[-1.0, 0.0]], -1)):
        guide = code_guide(prior, matcher=matcher, pooled=torch.tensor(text), clip_scale=1.0, batch=256)
        guided = _sample(prior, guide)
        assert (guided[:, 0] * sign > 0).float().mean() > 0.9


def test_code_guides_round_trip_and_refuse_another_prior(tmp_path):
    for kind in ("code_classifier", "code_matcher"):
        model = tiny_code_guide(kind)
        save_model(model, tmp_path / kind, f"# {kind}\n")
        back = load_model(tmp_path / kind)
        assert type(back) is type(model) and back.config == model.config
        z, t = torch.randn(3, 16), torch.tensor([5.0, 500.0, 900.0])
        if kind == "code_classifier":
            assert torch.allclose(back(z, t), model(z, t), atol=1e-2)
        else:
            assert torch.allclose(back.code_embedding(z, t), model.code_embedding(z, t), atol=1e-2)
    prior = tiny_prior()
    prior.code_mean += 1.0
    with pytest.raises(CheckpointError, match="another prior's codes"):
        code_guide(prior, classifier=tiny_code_guide("code_classifier"), label=CLASSES[0], classifier_scale=1.0)
    with pytest.raises(ValueError, match="unknown class 'nope'"):
        code_guide(tiny_prior(), classifier=tiny_code_guide("code_classifier"), label="nope", classifier_scale=1.0)
    with pytest.raises(ValueError, match="needs its code classifier"):
        code_guide(tiny_prior(), label=CLASSES[0], classifier_scale=1.0)
    with pytest.raises(ValueError, match="CLIP scale must be between 0 and 100"):
        code_guide(tiny_prior(), matcher=tiny_code_guide("code_matcher"), pooled=torch.zeros(1, 16), clip_scale=1e3)


def test_accuracy_vs_t_of_the_exact_classifier_falls_with_noise():
    prior, mixture, classifier = mixture_prior_and_classifier()
    codes = mixture.sample(200, torch.Generator().manual_seed(0)).float()
    labels = (codes[:, 0] > 0).long()
    rows = accuracy_vs_t(classifier, codes, labels, times=(0, 999))
    assert rows[0]["top1"] > 0.99 and rows[1]["top1"] < 0.75


def test_generate_with_code_guidance_from_python_and_cli(tiny_checkpoints, tmp_path):
    from core.cascade import generate
    from core.cli.main import main
    from core.models.modelset import ModelSet
    from core.pipeline import StageSettings
    models = ModelSet(tiny_checkpoints, device="cpu")
    plain = generate(models, label=CLASSES[0], size=32, base=StageSettings(steps=3, guidance=0.0), decoder_steps=2)
    guided = generate(models, label=CLASSES[0], size=32, base=StageSettings(steps=3, guidance=0.0), decoder_steps=2,
                      classifier_scale=50.0)
    assert guided.parameters["base_model"] == "semantic" and guided.parameters["classifier_scale"] == 50.0
    assert not torch.equal(plain.final, guided.final)
    default = generate(models, prompt="cat", size=32, clip_scale=5.0, decoder_steps=2)
    assert default.parameters["base"]["guidance"] == 0.0 and default.parameters["clip_scale"] == 5.0
    with pytest.raises(ValueError, match="CLIP guidance steers towards a text"):
        generate(models, label=CLASSES[0], clip_scale=1.0)
    with pytest.raises(ValueError, match="CLIP guidance steers the semantic base"):
        generate(models, prompt="cat", clip_scale=1.0, base_model="pixel")
    out = tmp_path / "out"
    assert main(["generate", "--checkpoints", str(tiny_checkpoints), "--device", "cpu", "--prompt", "cat",
                 "--clip-scale", "4", "--size", "32", "--steps", "3", "--decoder-steps", "2", "--out", str(out)]) == 0
    params = read_parameters(out / "000.png")
    assert params["clip_scale"] == 4.0 and params["base"]["guidance"] == 0.0 and params["base_model"] == "semantic"
    assert main(["generate", "--checkpoints", str(tiny_checkpoints), "--device", "cpu", "--label", CLASSES[0],
                 "--classifier-scale", "2", "--guidance", "3", "--size", "32", "--steps", "3", "--decoder-steps", "2",
                 "--out", str(out)]) == 0
    params = read_parameters(out / "000.png")
    assert params["classifier_scale"] == 2.0 and params["base"]["guidance"] == 3.0   # the conditional prior, too
    assert main(["generate", "--checkpoints", str(tiny_checkpoints), "--label", CLASSES[0], "--clip-scale", "2",
                 "--out", str(out)]) == 2
