"""Evaluation: the metrics against closed forms, the classifiers learn, the CLI runs end to end."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from core.cli.main import main as cli
from core.evaluation.classifiers import (
    Classifier,
    ClassifierSettings,
    cache_name,
    training_examples,
)
from core.metrics import frechet_distance, gaussian_window, psnr, ssim
from core.models.small_cnn import to_resolution
from core.training.classifiers import load_or_train, train_classifier


def main(argv):
    """`python -m core evaluate ARGV`."""
    return cli(["evaluate", *argv])


# --------------------------------------------------------------------------- Frechet distance

def test_fd_of_a_set_with_itself_is_zero_and_grows_with_a_mean_shift():
    x = np.random.default_rng(0).normal(size=(300, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    # a shift d of every vector moves only the mean: FD = ||d||^2 exactly
    assert frechet_distance(x, x + 0.5) == pytest.approx(8 * 0.25, rel=1e-8)
    fds = [frechet_distance(x, x + s) for s in (0.0, 0.1, 0.5, 1.0, 2.0)]
    assert fds == sorted(fds) and fds[-1] > fds[1] > 0


def test_fd_covariance_term_matches_closed_form():
    # y = 2x: S_y = 4 S_x, (S_x S_y)^(1/2) = 2 S_x, so FD = ||mu_x||^2 + Tr(S_x)
    x = np.random.default_rng(1).normal(size=(400, 6)) + 0.3
    expected = float(x.mean(0) @ x.mean(0) + np.trace(np.cov(x, rowvar=False)))
    assert frechet_distance(x, 2 * x) == pytest.approx(expected, rel=1e-6)


def test_fd_small_n_below_dimension():
    """N < D (singular covariances, as with few samples in CLIP space): still ~0 for itself."""
    x = np.random.default_rng(2).normal(size=(6, 32))
    assert frechet_distance(x, x) < 1e-4
    assert frechet_distance(x, x + 1.0) == pytest.approx(32.0, rel=1e-3)
    with pytest.raises(ValueError):
        frechet_distance(x[:1], x)


# --------------------------------------------------------------------------- PSNR / SSIM

def _images(seed=0, shape=(2, 3, 24, 24)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64)


def test_psnr_identical_is_inf_and_falls_with_noise():
    x = _images()
    assert torch.isinf(psnr(x, x)).all()
    values = [float(psnr(x, x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(3),
                                                 dtype=torch.float64)).mean()) for s in (0.01, 0.05, 0.2)]
    assert values[0] > values[1] > values[2]
    # closed form: a uniform error of 0.1 on [0, 1] images is 20 dB
    error = torch.full((1, 3, 8, 8), 0.1, dtype=torch.float64)
    assert psnr(torch.zeros(1, 3, 8, 8), error).item() == pytest.approx(20.0, abs=1e-9)


def test_ssim_identical_is_one_and_falls_with_noise():
    x = _images()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    values = [float(ssim(x, (x + s * noise).clamp(0, 1)).mean()) for s in (0.02, 0.1, 0.3)]
    assert 1 > values[0] > values[1] > values[2]


def test_ssim_constant_images_closed_form():
    """Constant images a and b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)."""
    a, b = 0.3, 0.7
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(torch.full((1, 3, 16, 16), a, dtype=torch.float64), torch.full((1, 3, 16, 16), b, dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.72419, abs=1e-5)  # by hand: 0.4201 / 0.5801


def test_ssim_matches_a_direct_windowed_computation():
    """The conv implementation against the definition, window by window (Wang et al. 2004)."""
    x, y = _images(5, (1, 1, 13, 12))[0, 0], _images(6, (1, 1, 13, 12))[0, 0]
    y = 0.6 * x + 0.4 * y  # correlated, so every term matters
    g = gaussian_window(11, 1.5)
    w = np.outer(g.numpy(), g.numpy())
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i in range(13 - 10):
        for j in range(12 - 10):
            px, py = x[i:i + 11, j:j + 11].numpy(), y[i:i + 11, j:j + 11].numpy()
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    assert ssim(x[None, None], y[None, None]).item() == pytest.approx(float(np.mean(vals)), rel=1e-10)


def test_gaussian_window():
    g = gaussian_window(11, 1.5)
    assert g.shape == (11,) and g.sum().item() == pytest.approx(1.0)
    assert torch.equal(g, g.flip(0)) and g.argmax().item() == 5
    assert (g[5] / g[6]).item() == pytest.approx(math.exp(1 / (2 * 1.5 ** 2)))


def test_ssim_needs_a_big_enough_image():
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# --------------------------------------------------------------------------- classifiers

@pytest.fixture(scope="module")
def data():
    from core.data.emoji import load_dataset
    return load_dataset()


TINY = ClassifierSettings(steps=30, batch=32, width=8, max_train=48, shift=1, warmup=5, lr=5e-3)


def test_classifier_beats_chance_on_its_training_batch_and_is_deterministic(data):
    task = "skin_tone"
    a = train_classifier(task, data, TINY, log=None)
    b = train_classifier(task, data, TINY, log=None)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    idx, labels = training_examples(data, task, TINY)
    assert len(idx) == 48
    assert set(data.indices("train").tolist()) >= set(idx.tolist())  # never the held-out split
    chance = torch.bincount(labels).max().item() / len(labels)  # majority class
    acc = a.accuracy(data.images_at(32, idx), labels)
    assert acc > chance + 0.1, (acc, chance)
    assert 0.0 <= a.info["heldout_accuracy"] <= 1.0 and a.info["train_images"] == 48


def test_classifier_any_resolution_and_cache(data, tmp_path):
    settings = ClassifierSettings(steps=2, batch=8, width=4, max_train=16)
    clf = load_or_train("gender", tmp_path, data, settings, log=None)
    assert (tmp_path / cache_name("gender", settings) / "model.safetensors").is_file()
    assert cache_name("gender", ClassifierSettings()) == "gender"  # defaults keep the plain name
    again = load_or_train("gender", tmp_path, data, settings, log=lambda s: pytest.fail(f"retrained: {s}"))
    idx = data.indices("heldout")[:4]
    x128 = data.images_at(128, idx)
    assert torch.equal(clf.logits(x128), again.logits(x128))
    # 128 px images are area-downsampled to exactly the 32 px images of the data set
    assert torch.allclose(to_resolution(x128), data.images_at(32, idx), atol=1 / 127.5 + 1e-6)
    assert clf.logits(data.images_at(64, idx)).shape == (4, 3)
    assert Classifier.load(tmp_path / cache_name("gender", settings)).classes == ["man", "woman", "person"]


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def cli_run(tiny_checkpoints, tmp_path_factory, data):
    from core.training.judge import JudgeSettings, train_judge
    out = tmp_path_factory.mktemp("eval")
    judge = train_judge(data, JudgeSettings(steps=2, batch=4, width=4, max_train=16, poor=0), log=None)
    judge.save(out / "judge", "# tiny judge\n")
    argv = ["--checkpoints", str(tiny_checkpoints), "--n", "2", "--steps", "2", "--device", "cpu",
            "--classifiers", str(out / "classifiers"), "--classifier-steps", "2", "--json", str(out / "r.json"),
            "--judge", str(out / "judge"), "--grid-dir", str(out / "grids"), "--old-judge", str(out / "judge")]
    return argv, out


@pytest.fixture
def shared_data(data, monkeypatch):
    """The CLI loads the data set itself; hand it the module's copy (with its resized images)."""
    monkeypatch.setattr("core.evaluation.evaluate.load_dataset", lambda *a, **k: data)
    return data


def tiny_checkpoints_root(argv):
    return argv[argv.index("--checkpoints") + 1]


def test_cli_end_to_end_on_tiny_checkpoints(cli_run, shared_data, capsys):
    argv, out = cli_run
    assert main(argv) == 0
    report = capsys.readouterr().out
    for heading in ("## CLIP", "## Classifiers", "## Text base (32x32)", "## Class base (32x32)",
                    "## Super-resolution stages", "## Timing"):
        assert heading in report, heading
    assert "same CLIP whose text tower conditions the text base" in report
    assert "(ceiling)" in report and "(floor)" in report and "compare FD numbers only at equal N" in report
    for g in ("guidance 1.0", "guidance 3.0", "guidance 5.0"):
        assert report.count(g) == 2, g  # text base and class base
    assert "| sr64 (32->64" in report and "| sr128 (64->128" in report
    assert "skipped" not in report
    results = json.loads((out / "r.json").read_text())
    t = results["text_base"]
    assert t["n"] == 2 and len(t["sweep"]) == 3
    assert all(r["steps"] == 2 for r in t["sweep"])
    assert all(isinstance(r["fd_clip"], float) and isinstance(r["clip_score"], float) for r in t["sweep"])
    assert 0 <= t["reference"]["clip_score"] <= 100
    c = results["class_base"]
    assert c["n"] == 2 and all(0 <= r["accuracy_top1"] <= 1 for r in c["sweep"])
    for name, res in (("sr64", 64), ("sr128", 128)):
        r = results[name]
        assert r["resolution"] == res and r["steps"] == 2 and r["n"] == 2
        assert -1 <= r["model"]["ssim"] <= 1 and r["bicubic"]["psnr"] > 10
    # the chain: both stages in turn from the real 32 px image, as the cascade runs them
    chain = results["sr_chain"]
    assert chain["resolution"] == 128 and chain["steps"] == [2, 2] and chain["n"] == 2
    assert "| both stages, 32->64->128" in report
    from dataclasses import replace

    from core.cascade import upscale_chain
    from core.evaluation.held_out import heldout_order
    from core.metrics import to_unit
    from core.models.modelset import ModelSet
    from core.pipeline import SR_STAGE_DEFAULTS
    ms = ModelSet(tiny_checkpoints_root(argv), "cpu")
    idx = heldout_order(shared_data, 0)[:2]
    by_hand = upscale_chain([ms.get("sr64"), ms.get("sr128")], shared_data.images_at(32, idx), [0, 1],
                            [replace(s, steps=2) for s in SR_STAGE_DEFAULTS])[128]
    high = to_unit(shared_data.images_at(128, idx))
    assert chain["model"]["psnr"] == pytest.approx(psnr(to_unit(by_hand), high).mean().item(), abs=1e-4)
    bicubic = torch.nn.functional.interpolate(shared_data.images_at(32, idx), size=128, mode="bicubic",
                                              align_corners=False).clamp(-1, 1)
    assert chain["bicubic"]["psnr"] == pytest.approx(psnr(to_unit(bicubic), high).mean().item(), abs=1e-6)
    assert results["timing"]["seconds"] > 0 and set(results["timing"]["stages"]) == {"32", "64", "128"}
    assert set(results["classifiers"]) == {"subgroup", "skin_tone", "gender"}
    # the judge's scorecard of both bases, the old measures of the same images beside, the grids
    assert "## Judge: recognisability, retrieval, FD" in report and "### text_base" in report
    assert "CLIP score (old)" in report and "CAS (old)" in report and "real, blurred to 16 px and back" in report
    j = results["judge"]
    assert list(j["text_base"]["splits"]) == ["seen, People & Body", "seen, other", "held-out"]
    assert list(j["class_base"]["splits"]) == ["People & Body subgroups", "other subgroups"]
    row = j["text_base"]["splits"]["held-out"]["rows"]["samples"]
    assert 0 <= row["recognisable"] <= min(row["accepted"], row["subgroup_as_asked"]) and row["fd_judge"] >= 0
    old_judge = {"accepted, old judge", "recognisable, old judge"}
    assert set(j["text_base"]["old"]) == {"CLIP score", "CAS", "retrieval@5, old judge"} | old_judge
    assert set(j["class_base"]["old"]) == {"CAS"} | old_judge
    # the old judge here is the judge itself: its verdicts on the same images are the judge's
    for name in ("text_base", "class_base"):
        for split, s in j[name]["splits"].items():
            for row, r in s["rows"].items():
                assert j[name]["old"]["recognisable, old judge"][split][row] == r["recognisable"]
                assert j[name]["old"]["accepted, old judge"][split][row] == r["accepted"]
    # attribute retention of the text base's samples, beside the real renders', in the report
    a = j["text_base"]["attributes"]
    assert set(a) == {"skin_tone", "gender"} and "attributes" not in j["class_base"]
    assert all(0 <= r["samples"] <= 1 and 0 <= r["real"] <= 1 for r in a.values() if r["n"])
    assert "Attribute retention" in report and "recognisable, old judge (old)" in report
    for name, cells in (("text_base", 24), ("class_base", 6)):  # the tiny class base knows 3 of the 12 classes
        assert (out / "grids" / name / "grid.png").is_file() and len(j[name]["grid"]["cells"]) == cells


def test_cli_is_seeded(cli_run, shared_data, capsys):
    argv, out = cli_run
    first = json.loads((out / "r.json").read_text())
    argv2 = [a if a != str(out / "r.json") else str(out / "r2.json") for a in argv]
    assert main([*argv2, "--models", "text_base,sr64", "--no-timing"]) == 0
    second = json.loads((out / "r2.json").read_text())
    assert second["text_base"]["sweep"] == [
        {**r, "seconds": s["seconds"]} for r, s in zip(first["text_base"]["sweep"], second["text_base"]["sweep"])]
    assert second["sr64"]["model"] == first["sr64"]["model"]
    report = capsys.readouterr().out
    assert "class_base: not selected" in report and "timing: not run" in report
    rows = lambda r: {k: v["rows"] for k, v in r["judge"]["text_base"]["splits"].items()}  # noqa: E731
    assert rows(second) == rows(first)


def test_missing_models_are_skipped_with_a_line(tiny_checkpoints, shared_data, tmp_path, capsys):
    root = tmp_path / "ckpt"
    for name in ("clip", "sr64"):
        shutil.copytree(tiny_checkpoints / name, root / name)
    assert main(["--checkpoints", str(root), "--n", "2", "--steps", "1", "--device", "cpu"]) == 0
    report = capsys.readouterr().out
    assert f"text_base: skipped (no checkpoint at {root / 'text_base'})" in report
    assert f"sr128: skipped (no checkpoint at {root / 'sr128'})" in report
    assert "| sr64 (32->64" in report and "timing: skipped" in report
    assert f"prior: skipped (the semantic base needs prior and diffae; no checkpoint at {root / 'prior'}" in report


def test_bad_arguments_exit_nonzero(tiny_checkpoints, tmp_path, capsys):
    assert main(["--checkpoints", str(tiny_checkpoints), "--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["--checkpoints", str(tiny_checkpoints), "--old-judge", str(tmp_path / "none")]) == 2
    assert f"old judge {tmp_path / 'none'}: no judge there" in capsys.readouterr().err
