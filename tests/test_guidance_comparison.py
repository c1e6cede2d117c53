"""Classifier-free, classifier and CLIP guidance of the semantic prior compared
(core.evaluation.guidance_comparison) on tiny models, with a judge whose heads read the brightness (the
tiny checkpoints have no judge)."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

import core.evaluation.guidance_comparison as gc
from core.cli.main import main
from core.evaluation.judge import Judge, JudgeNet
from core.images import read_parameters

FAST = dict(seeds=[0, 1, 2], steps=2)


class BrightnessJudge(Judge):
    """core.evaluation.judge.Judge whose heads read the mean brightness m of an image: accepted as an emoji
    when m > -0.9 (not black), its subgroup 'cat-face' when m > 0, else 'heart'; its features the first
    four pixel values."""

    def __init__(self):
        super().__init__(JudgeNet(3, 0, width=8), ["cat-face", "heart", "person-activity"], {"threshold": 0.5})

    def outputs(self, images, batch=256):
        m = images.float().mean(dim=(1, 2, 3))
        return {"features": images.flatten(1)[:, :4], "realism": (m > -0.9).float(),
                "subgroup": torch.stack([m, -m, torch.full_like(m, -9.0)], dim=1)}


@pytest.fixture
def stub_judge(monkeypatch):
    monkeypatch.setattr(gc, "_judge", lambda folder: BrightnessJudge())


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    from core.models.modelset import ModelSet
    return ModelSet(tiny_checkpoints, "cpu")


def test_score_samples():
    judge = BrightnessJudge()
    bright, dark = torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), -0.5)
    dark[1] = -1.0
    scores = gc.score_samples({"cat-face": torch.cat([bright, dark[:1]]), "heart": dark}, judge)
    # recognised: the 2 bright cats and the grey heart; not the dark "cat" (named heart), nor the black
    # heart (named heart, but not accepted as an emoji)
    assert scores["recognisability"] == pytest.approx(3 / 5)
    assert scores["recognised"] == [True, True, False, True, False]
    # pixels: cat-face pairs at RMS 0.5, 0.5, 0 ([0, 1] scale); heart pair at 0.25 -> mean of 1/3 and 0.25
    assert scores["diversity_pixels"] == pytest.approx((1 / 3 + 0.25) / 2)
    # normalised features: cat-face pairs at 0, 2, 2 (opposite directions); the two hearts point the same way
    assert scores["diversity"] == pytest.approx((4 / 3 + 0) / 2)
    with pytest.raises(ValueError, match="the judge knows no subgroup 'nope'"):
        gc.score_samples({"nope": bright}, judge)


def test_rows_and_every_guidance_at_scale_0_is_the_unguided_prior(models, stub_judge):
    result = gc.compare_guidance(models, ["cat-face", "person-activity"], cfg_scales=[0, 3],
                                 classifier_scales=[0, 30], clip_scales=[0, 30], **FAST)
    assert [(r["guidance"], r["scale"]) for r in result.rows] == [
        ("unguided", 0.0), ("classifier-free (label)", 0.0), ("classifier-free (label)", 3.0), ("classifier", 0.0),
        ("classifier", 30.0), ("classifier-free (text)", 0.0), ("classifier-free (text)", 3.0), ("CLIP", 0.0),
        ("CLIP", 30.0)]
    assert all(0 <= r["recognisability"] <= 1 and r["diversity"] >= 0 for r in result.rows)
    for i in (1, 3, 5, 7):   # CFG at 0 and the gradient guidances at 0 are the unconditional prior: the same samples
        assert torch.equal(result.images[0], result.images[i])
    for i in (2, 4, 6, 8):   # each guidance steers
        assert not torch.allclose(result.images[0], result.images[i], atol=1e-3)
    assert len(result.parameters["prompts"]) == 6 and result.parameters["clip_scales"] == [0, 30]
    grid = gc.labelled_grid(result)
    assert grid.size[1] == 22 + 9 * (96 + 4 + 2)
    assert len(result.parameters["recognised"]) == 9 and len(result.parameters["recognised"][0]) == 6
    assert "GLIDE's finding" in gc.summary(result.rows)


def test_summary_says_what_the_rows_show():
    rows = [{"guidance": "unguided", "scale": 0, "recognisability": 0.1, "diversity": 1.0},
            {"guidance": "classifier-free (label)", "scale": 3, "recognisability": 0.8, "diversity": 0.8},
            {"guidance": "classifier", "scale": 10, "recognisability": 0.6, "diversity": 0.6},
            {"guidance": "classifier-free (text)", "scale": 3, "recognisability": 0.8, "diversity": 0.7},
            {"guidance": "CLIP", "scale": 10, "recognisability": 0.5, "diversity": 0.7}]
    text = gc.summary(rows)
    assert "Unguided, the prior draws the asked subgroup in 10% of samples" in text
    assert "holds here" in text and "(80% against 50% at their best scales)" in text
    assert "Classifier guidance reaches 0.75 of classifier-free guidance's recognisability" in text
    rows[4]["recognisability"] = 0.9
    assert "does not hold here" in gc.summary(rows)


@pytest.mark.parametrize("kwargs,message", [
    ({"labels": []}, "choose at least one class label"),
    ({"labels": ["nope"]}, "unknown class 'nope'"),
    ({"seeds": [0]}, "give from 2 to 16 seeds"),
    ({"cfg_scales": [-1]}, "guidance must be a number from 0 to 30"),
    ({"classifier_scales": [math.inf]}, "classifier scale must be a finite number"),
    ({"clip_scales": [1000]}, "CLIP scale must be between 0 and 100"),
    ({"classifier_scales": []}, "give from 1 to 12 classifier guidance scales"),
])
def test_bad_input_is_named(models, stub_judge, kwargs, message):
    kwargs = {"labels": ["cat-face"], **FAST, **kwargs}
    with pytest.raises(ValueError, match=message):
        gc.compare_guidance(models, **kwargs)


def test_cli_writes_the_plot_and_the_grid(tiny_checkpoints, tmp_path, stub_judge, capsys):
    assert main(["guidance-comparison", "--labels", "cat-face", "--cfg-scales", "1,3", "--classifier-scales", "5",
                 "--clip-scales", "5", "--seeds", "0,1", "--steps", "2", "--checkpoints", str(tiny_checkpoints),
                 "--out", str(tmp_path / "p.png"), "--grid", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert "| guidance | scale | recognisability | diversity | diversity_pixels | seconds_per_image |" in out
    assert "GLIDE's finding" in out
    assert Image.open(tmp_path / "p.png").size == (720, 480)
    rows = read_parameters(tmp_path / "g.png")["rows"]
    assert [r["guidance"] for r in rows] == ["unguided"] + ["classifier-free (label)"] * 2 + ["classifier"] + \
        ["classifier-free (text)"] * 2 + ["CLIP"]
    assert main(["guidance-comparison", "--labels", "nope", "--checkpoints", str(tiny_checkpoints),
                 "--out", str(tmp_path / "q.png")]) == 2
    assert "unknown class 'nope'" in capsys.readouterr().err and not (tmp_path / "q.png").exists()


def test_without_a_judge_the_error_names_it_before_any_sampling(models, monkeypatch):
    """The tiny checkpoints have no judge: the comparison says so (and how to train one) at once."""
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the judge was checked")
    monkeypatch.setattr(gc, "sample_codes", no_sampling)
    with pytest.raises(ValueError, match=r"judge: .*judge.*python -m core train judge"):
        gc.compare_guidance(models, ["cat-face"], cfg_scales=[1], classifier_scales=[0], clip_scales=[0], **FAST)


def test_a_label_the_judge_does_not_know_is_named(models, monkeypatch):
    judge = BrightnessJudge()
    judge.subgroups = ["heart", "person-activity"]
    monkeypatch.setattr(gc, "_judge", lambda folder: judge)
    with pytest.raises(ValueError, match="the judge knows no subgroup 'cat-face'"):
        gc.compare_guidance(models, ["cat-face"], cfg_scales=[1], classifier_scales=[0], clip_scales=[0], **FAST)
