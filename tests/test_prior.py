"""The semantic prior: its sampler recovers the modes of a known mixture of codes, guidance
sharpens them, seeds are per sample; save / load; training; the semantic cascade and variations."""
import json

import pytest
import torch

from core.models.checkpoints import save_folder
from core.models.loading import load_model
from core.models.prior import PriorConfig, SemanticPrior, sample_codes
from tests.gaussian_denoiser import GaussianMixture

CLASSES = ["a", "b", "c"]
MEANS = [[2.0, 0.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0], [0.0, 2.5, 0.0, 0.0]]


def _mixture_prior(std=0.3):
    """A SemanticPrior whose eps is exact for codes from a 3-mode mixture in normalised space:
    label k -> mode k alone, the null label -> the whole mixture. code_mean / std are not trivial,
    so sample_codes must denormalise."""
    prior = SemanticPrior(PriorConfig(dim=4, text_dim=8, classes=CLASSES, width=16, depth=1))
    prior.code_mean.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0]))
    prior.code_std.copy_(torch.tensor([2.0, 0.5, 1.0, 1.0]))
    cov = (torch.eye(4) * std ** 2).tolist()
    whole = GaussianMixture([1 / 3] * 3, MEANS, [cov] * 3, prior.schedule)
    modes = [GaussianMixture([1.0], [m], [cov], prior.schedule) for m in MEANS]

    def eps(x, t, cond):
        out = whole.eps(x, t)
        for k, mode in enumerate(modes):
            rows = cond["labels"] == k
            if rows.any():
                out[rows] = mode.eps(x[rows], t[rows] if t.ndim else t)
        return out

    prior.eps = eps
    return prior


def _nearest_mode(prior, z):
    zn = prior.normalise(z)
    return torch.cdist(zn, torch.tensor(MEANS)).argmin(1)


@pytest.mark.parametrize("label", [0, 1, 2])
def test_label_samples_land_on_their_mode(label):
    prior = _mixture_prior()
    seeds = list(range(24))
    z = sample_codes(prior, prior.label_cond([CLASSES[label]] * 24), prior.null_cond(24), seeds,
                     guidance=1.0, steps=40)
    assert (_nearest_mode(prior, z) == label).all()
    zn = prior.normalise(z)
    assert torch.allclose(zn.mean(0), torch.tensor(MEANS[label]), atol=0.2)
    assert 0.15 < zn.std(0).mean() < 0.45      # the mode's own spread (0.3), not a point


def test_unconditional_samples_cover_every_mode():
    prior = _mixture_prior()
    n = 60
    z = sample_codes(prior, prior.null_cond(n), prior.null_cond(n), list(range(n)), guidance=1.0, steps=40)
    counts = torch.bincount(_nearest_mode(prior, z), minlength=3)
    assert (counts >= 10).all(), counts


def test_guidance_moves_samples_away_from_the_other_modes():
    """CFG eps_u + s (eps_c - eps_u) with s > 1 extrapolates away from the unconditional mixture:
    the guided samples sit farther from the other modes than the plain conditional ones."""
    prior = _mixture_prior(std=0.6)
    n = 32
    cond, uncond = prior.label_cond(["a"] * n), prior.null_cond(n)
    plain = prior.normalise(sample_codes(prior, cond, uncond, list(range(n)), guidance=1.0, steps=40))
    guided = prior.normalise(sample_codes(prior, cond, uncond, list(range(n)), guidance=4.0, steps=40))
    other = torch.tensor(MEANS[1:])
    assert torch.cdist(guided, other).min(1).values.mean() > torch.cdist(plain, other).min(1).values.mean() + 0.1


def test_a_seed_gives_the_same_code_in_any_batch():
    prior = _mixture_prior()
    both = sample_codes(prior, prior.null_cond(2), prior.null_cond(2), [5, 9], guidance=1.0, steps=10)
    alone = sample_codes(prior, prior.null_cond(1), prior.null_cond(1), [9], guidance=1.0, steps=10)
    assert torch.allclose(both[1:], alone, atol=1e-6)


def test_unknown_label_is_named():
    prior = _mixture_prior()
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        prior.label_cond(["zebra"])


def test_save_load_round_trip(tmp_path):
    from tests.tiny import tiny_prior
    prior = tiny_prior()
    prior.code_mean.fill_(0.25)
    save_folder(tmp_path / "prior", prior.config.to_dict(), prior.state_dict(), "# card\n")
    loaded = load_model(tmp_path / "prior")
    assert isinstance(loaded, SemanticPrior) and loaded.kind == "prior"
    assert torch.equal(loaded.code_mean, prior.code_mean)
    x, t = torch.randn(3, 16), torch.tensor([10.0, 500.0, 990.0])
    cond = prior.null_cond(3)
    assert torch.allclose(loaded(x, t, cond), prior(x, t, cond), atol=2e-2)   # fp16 weights
    config = json.loads((tmp_path / "prior" / "config.json").read_text())
    config["depth"] = 5
    (tmp_path / "prior" / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="does not match its config"):
        load_model(tmp_path / "prior")


@pytest.mark.slow
def test_training_learns_the_codes_and_exports(tmp_path, tiny_checkpoints):
    """`python -m core train prior` on the tiny DiffAE and CLIP: the codes are the DiffAE's
    normalised train-split codes, the loss falls, and the export loads as a prior."""
    from core.cli.main import main
    from core.data.emoji import load_dataset
    from core.diffae import semantic_code
    from core.training.registry import default_config, make_task

    cfg = default_config("prior", str(tmp_path / "run"), smoke=True, checkpoints=str(tiny_checkpoints), batch=64)
    task = make_task(cfg)
    torch.manual_seed(0)   # the network's initialisation: independent of the tests run before
    model = task.build()
    data = load_dataset()
    diffae = load_model(tiny_checkpoints / "diffae")
    z = semantic_code(diffae, data.images_at(32, torch.as_tensor(data.indices("train"))))
    assert torch.allclose(model.denormalise(task.codes), z, atol=1e-4)
    assert torch.allclose(task.codes.mean(0), torch.zeros(z.shape[1]), atol=1e-4)
    assert task.caption_emb.shape[1] == model.config.text_dim

    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = task.loss(model, g, torch.device("cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10]), losses

    out = tmp_path / "export"
    assert main(["train", "prior", "--smoke", "--run", str(tmp_path / "run2"), "--export", str(out),
                 "--checkpoints", str(tiny_checkpoints)]) == 0
    assert load_model(out).kind == "prior"
    assert "steps: 4" in (out / "README.md").read_text()
