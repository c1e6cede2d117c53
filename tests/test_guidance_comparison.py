"""Classifier against classifier-free guidance (core.evaluation.guidance_comparison) on tiny models, with a
judge whose heads read the brightness (the tiny checkpoints have no judge) and a stand-in for the
subgroup classifier whose features diversity is measured in (the real one trains for minutes)."""
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
    when m > -0.9 (not black), its subgroup 'cat-face' when m > 0, else 'heart'."""

    def __init__(self):
        super().__init__(JudgeNet(3, 0, width=8), ["cat-face", "heart", "person-activity"], {"threshold": 0.5})

    def outputs(self, images, batch=256):
        m = images.float().mean(dim=(1, 2, 3))
        return {"features": images.flatten(1)[:, :4], "realism": (m > -0.9).float(),
                "subgroup": torch.stack([m, -m, torch.full_like(m, -9.0)], dim=1)}


@pytest.fixture
def stub_judge(monkeypatch):
    monkeypatch.setattr(gc, "_judge", lambda folder: BrightnessJudge())
    monkeypatch.setattr(gc, "_classifier", lambda: None)
    monkeypatch.setattr(gc, "classifier_features", lambda classifier, images: images.mean(dim=(2, 3)))   # mean colour


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    from core.models.modelset import ModelSet
    return ModelSet(tiny_checkpoints, "cpu")


def test_score_samples(stub_judge):
    judge = BrightnessJudge()
    bright, dark = torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), -0.5)
    dark[1] = -1.0
    scores = gc.score_samples({"cat-face": torch.cat([bright, dark[:1]]), "heart": dark}, judge)
    # recognised: the 2 bright cats and the grey heart; not the dark "cat" (named heart), nor the black
    # heart (named heart, but not accepted as an emoji)
    assert scores["recognisability"] == pytest.approx(3 / 5)
    # pixels: cat-face pairs at RMS 0.5, 0.5, 0 ([0, 1] scale); heart pair at 0.25 -> mean of 1/3 and 0.25
    assert scores["diversity_pixels"] == pytest.approx((1 / 3 + 0.25) / 2)
    # features (here the mean colour, 3-d): cat-face pairs at sqrt(3), sqrt(3), 0; heart pair at sqrt(3) / 2
    assert scores["diversity"] == pytest.approx((2 * 3 ** 0.5 / 3 + 3 ** 0.5 / 2) / 2)
    with pytest.raises(ValueError, match="the judge knows no subgroup 'nope'"):
        gc.score_samples({"nope": bright}, judge)


def test_comparison_rows_and_both_guidances_agree_at_scale_0(models, stub_judge):
    result = gc.compare_guidance(models, ["cat-face", "person-activity"], cfg_scales=[0, 3],
                                 classifier_scales=[0, 10], **FAST)
    assert [(r["guidance"], r["scale"]) for r in result.rows] == [
        ("classifier-free", 0.0), ("classifier-free", 3.0), ("classifier", 0.0), ("classifier", 10.0)]
    assert all(0 <= r["recognisability"] <= 1 and r["diversity"] > 0 for r in result.rows)
    # CFG at 0 and classifier guidance at 0 are both the unconditional model: the same samples
    assert torch.allclose(result.images[0], result.images[2], atol=1e-4)
    assert result.rows[0]["diversity"] == pytest.approx(result.rows[2]["diversity"], abs=1e-3)
    assert not torch.allclose(result.images[2], result.images[3], atol=1e-3)   # the classifier steers
    assert result.grid().size == (2 + 6 * 34, 2 + 4 * 34)


@pytest.mark.parametrize("kwargs,message", [
    ({"labels": []}, "choose at least one class label"),
    ({"labels": ["nope"]}, "unknown class 'nope'"),
    ({"seeds": [0]}, "give from 2 to 16 seeds"),
    ({"cfg_scales": [-1]}, "guidance scale must be between 0 and 30"),
    ({"classifier_scales": [math.inf]}, "classifier scale must be a finite number"),
    ({"classifier_scales": []}, "give from 1 to 12 classifier guidance scales"),
])
def test_bad_input_is_named(models, stub_judge, kwargs, message):
    kwargs = {"labels": ["cat-face"], **FAST, **kwargs}
    with pytest.raises(ValueError, match=message):
        gc.compare_guidance(models, **kwargs)


def test_cli_writes_the_plot_and_the_grid(tiny_checkpoints, tmp_path, stub_judge, capsys):
    assert main(["guidance-comparison", "--labels", "cat-face", "--cfg-scales", "1,3", "--classifier-scales", "0,5",
                 "--seeds", "0,1", "--steps", "2", "--checkpoints", str(tiny_checkpoints),
                 "--out", str(tmp_path / "p.png"), "--grid", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert "| guidance | scale | recognisability | diversity | diversity_pixels | seconds_per_image |" in out
    assert Image.open(tmp_path / "p.png").size == (640, 440)
    rows = read_parameters(tmp_path / "g.png")["rows"]
    assert [r["guidance"] for r in rows] == ["classifier-free"] * 2 + ["classifier"] * 2
    assert main(["guidance-comparison", "--labels", "nope", "--checkpoints", str(tiny_checkpoints),
                 "--out", str(tmp_path / "q.png")]) == 2
    assert "unknown class 'nope'" in capsys.readouterr().err and not (tmp_path / "q.png").exists()


def test_classifier_features_are_the_pooled_normalised_features():
    """The features are what the classifier's head reads (at 32x32), normalised."""
    from core.evaluation.classifiers import Classifier
    from core.models.small_cnn import SmallCNN
    torch.manual_seed(0)
    classifier = Classifier(SmallCNN(3, width=8), ["a", "b", "c"], {})
    images = torch.rand(4, 3, 64, 64) * 2 - 1
    features = gc.classifier_features(classifier, images)
    assert features.shape == (4, 32) and torch.allclose(features.norm(dim=1), torch.ones(4))
    head = classifier.model.head[3]
    logits = classifier.logits(images)
    scale = (logits - head.bias) / (head(features) - head.bias)   # per image, one positive factor
    assert torch.allclose(scale, scale[:, :1].expand_as(scale), atol=1e-4) and bool((scale > 0).all())


def test_without_a_judge_the_error_names_it_before_any_sampling(models, monkeypatch):
    """The tiny checkpoints have no judge: the comparison says so (and how to train one) at once."""
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the judge was checked")
    monkeypatch.setattr(gc, "generate_class", no_sampling)
    with pytest.raises(ValueError, match=r"judge: .*judge.*python -m core judge train"):
        gc.compare_guidance(models, ["cat-face"], cfg_scales=[1], classifier_scales=[0], **FAST)


def test_a_label_the_judge_does_not_know_is_named(models, monkeypatch):
    judge = BrightnessJudge()
    judge.subgroups = ["heart", "person-activity"]
    monkeypatch.setattr(gc, "_judge", lambda folder: judge)
    with pytest.raises(ValueError, match="the judge knows no subgroup 'cat-face'"):
        gc.compare_guidance(models, ["cat-face"], cfg_scales=[1], classifier_scales=[0], **FAST)
