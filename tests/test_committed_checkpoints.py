"""One smoke test per committed checkpoint: it loads, and generates at a few steps."""
import pytest
import torch

from core.cascade import generate
from core.models.checkpoints import DEFAULT_CHECKPOINTS
from core.models.modelset import ModelSet
from core.pipeline import StageSettings, upscale

FAST = StageSettings(steps=2)


def committed(name: str) -> bool:
    return (DEFAULT_CHECKPOINTS / name / "config.json").is_file()


@pytest.fixture(scope="module")
def models():
    return ModelSet(DEFAULT_CHECKPOINTS, "cpu")


@pytest.mark.skipif(not committed("text_base"), reason="no committed text_base")
def test_text_base(models):
    out = generate(models, prompt="woman dancing, dark skin tone", num=2, size=32, base=FAST).final
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
    card = (DEFAULT_CHECKPOINTS / "text_base" / "README.md").read_text()
    assert "steps:" in card


@pytest.mark.skipif(not committed("class_base"), reason="no committed class_base")
def test_class_base(models):
    label = models.classes()[0]
    out = generate(models, label=label, size=32, base=FAST).final
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,low,high", [("sr64", 32, 64), ("sr128", 64, 128)])
def test_sr_stage(models, name, low, high):
    if not committed(name):
        pytest.skip(f"no committed {name}")
    out = upscale(models.get(name), torch.zeros(1, 3, low, low), [0], FAST)
    assert out.shape == (1, 3, high, high) and torch.isfinite(out).all()


@pytest.mark.skipif(not committed("clip"), reason="no committed clip")
def test_clip_encodes(models):
    emb = models.get("clip").encode(["thumbs up", ""])
    assert emb.tokens.shape[0] == 2 and torch.isfinite(emb.tokens).all()


@pytest.mark.skipif(not (committed("palette") and committed("diffae")), reason="no committed palette and diffae")
@pytest.mark.parametrize("task", ["colorize", "inpaint"])
@pytest.mark.parametrize("method", ["palette", "diffae"])
def test_palette(models, task, method):
    from PIL import Image

    from core.translate import translate
    image = Image.new("RGB", (64, 64), (200, 120, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out, params = translate(models, task, image, mask=mask if task == "inpaint" else None, steps=2, method=method,
                            size=64)
    assert out.size == (64, 64) and params["task"] == task and params["method"] == method
    if task == "inpaint":   # outside the mask the input comes back exactly
        assert out.getpixel((2, 2)) == image.getpixel((2, 2))


@pytest.mark.skipif(not committed("diffae"), reason="no committed diffae")
def test_diffae(models):
    from core.diffae import edit, load_directions, reconstruct
    model = models.get("diffae")
    directions = load_directions(models)
    assert {"dark-skin", "woman"} <= set(directions.names)
    x = torch.ones(1, 3, model.resolution, model.resolution)
    assert torch.isfinite(reconstruct(model, x, steps=2)).all()
    out = edit(model, directions, x, "dark-skin", 1.0, steps=2)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.skipif(not committed("prior"), reason="no committed prior")
def test_prior_fits_the_committed_diffae_and_clip(models):
    """The prior models the committed DiffAE's codes (its statistics are those of the train-split
    codes) and reads the committed CLIP's pooled embedding; the semantic base generates."""
    prior, diffae = models.get("prior"), models.get("diffae")
    assert prior.config.dim == diffae.config.semantic_dim
    assert prior.config.text_dim == models.get(prior.config.text_encoder).pooled_width
    assert prior.config.classes == models.classes()
    out = generate(models, prompt="red apple", size=32, base=FAST, base_model="semantic", decoder_steps=2).final
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    x = torch.ones(1, 3, diffae.resolution, diffae.resolution)   # a blank white emoji's code is in range
    from core.diffae import semantic_code
    zn = prior.normalise(semantic_code(diffae, x))
    assert zn.abs().max() < 50


@pytest.mark.skipif(not (committed("noisy_classifier") and committed("class_base")),
                    reason="no committed noisy_classifier / class_base")
def test_noisy_classifier_guides_the_class_base(models):
    from safetensors.torch import load_file

    from core.models.checkpoints import DEFAULT_CHECKPOINTS
    classifier = models.get("noisy_classifier")
    assert classifier.classes == models.classes()   # one label space for guidance
    folder = DEFAULT_CHECKPOINTS / "noisy_classifier"
    assert (folder / "model.safetensors").stat().st_size < 1_000_000
    assert all(t.dtype == torch.float16 for t in load_file(str(folder / "model.safetensors")).values())
    assert "| t | alpha_bar_t | top-1 | top-5 |" in (folder / "README.md").read_text()
    out = generate(models, label="person-role", num=2, size=32, base=FAST, classifier_scale=10.0,
                   base_model="pixel").final
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()


@pytest.mark.skipif(not all(committed(n) for n in ("prior", "code_classifier", "code_matcher")),
                    reason="no committed prior / code_classifier / code_matcher")
def test_code_guides_steer_the_committed_prior(models):
    """The code classifier and matcher read the committed prior's space, and their gradients move the
    prior's samples towards the asked label / text: the classifier's p(label | z_0) and the matcher's
    similarity of the final codes rise against the unguided prior (same seeds)."""
    from safetensors.torch import load_file

    from core.models.code_guidance import check_compatible, class_log_prob, text_similarity
    from core.models.prior import denoise_codes
    from core.semantic import code_guide
    prior, classifier, matcher = models.get("prior"), models.get("code_classifier"), models.get("code_matcher")
    for model, name in ((classifier, "code_classifier"), (matcher, "code_matcher")):
        check_compatible(model, prior)
        folder = DEFAULT_CHECKPOINTS / name
        assert (folder / "model.safetensors").stat().st_size < 2_000_000 and (folder / "guided.png").is_file()
        assert all(t.dtype == torch.float16 for t in load_file(str(folder / "model.safetensors")).values())
    assert classifier.classes == prior.config.classes
    n, t0 = 16, torch.zeros(16)
    noise = torch.randn(n, prior.config.dim, generator=torch.Generator().manual_seed(0))
    uncond = prior.null_cond(n)
    plain = denoise_codes(prior, uncond, uncond, noise, 1.0, 25)
    labels = classifier.label_indices(["cat-face"] * n)
    guided = denoise_codes(prior, uncond, uncond, noise, 1.0, 25,
                           guide=code_guide(prior, classifier=classifier, label="cat-face", classifier_scale=10.0,
                                            batch=n))
    log_p = class_log_prob(classifier, labels)
    assert log_p(guided, t0).exp().mean() > log_p(plain, t0).exp().mean() + 0.3
    pooled = models.get(prior.config.text_encoder).encode(["cat face"]).pooled
    steered = denoise_codes(prior, uncond, uncond, noise, 1.0, 25,
                            guide=code_guide(prior, matcher=matcher, pooled=pooled, clip_scale=10.0, batch=n))
    similarity = text_similarity(matcher, pooled)
    assert similarity(steered, t0).mean() > similarity(plain, t0).mean() + 1.0
