"""DiffAE (core/diffae.py): stochastic encoding round-trips, edits, directions, interpolation,
errors and the CLI, on tiny seeded untrained models; the training task on real data (smoke)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.diffae import (
    ATTRIBUTES_FILE,
    DIRECTIONS_FILE,
    Directions,
    attribute_labels,
    decode,
    edit,
    encode,
    fit_directions,
    fit_from_codes,
    fresh_noise,
    interpolate,
    reconstruct,
    slerp,
)
from core.images import ImageError, pil_to_tensor, read_parameters, tensor_to_pil
from core.models.checkpoints import CheckpointError, save_model
from core.models.loading import load_model
from tests.tiny import tiny_diffae, tiny_directions

STEPS = 50


def _images(n=2, res=32, seed=0):
    """Emoji-like test images: white background with a few coloured blocks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.ones(n, 3, res, res)
    for i in range(n):
        for _ in range(3):
            a, b = torch.randint(0, res - 8, (2,), generator=g).tolist()
            x[i, :, a:a + 8, b:b + 8] = torch.rand(3, 1, 1, generator=g) * 2 - 1
    return x


@pytest.fixture(scope="module")
def model():
    return tiny_diffae()


@pytest.fixture(scope="module")
def directions(model):
    return tiny_directions(model)


@pytest.fixture(scope="module")
def root(tmp_path_factory, model, directions):
    root = tmp_path_factory.mktemp("ckpt")
    save_model(model, root / "diffae", "# tiny diffae\n")
    directions.save(root / "diffae")
    return root


def test_inversion_round_trip(model):
    x = _images()
    z, x_T = encode(model, x, STEPS)
    assert z.shape == (2, model.config.semantic_dim) and x_T.shape == x.shape
    rec = decode(model, z, x_T, STEPS)
    err = (rec - x).abs().mean().item()
    fresh = (decode(model, z, fresh_noise(model, [0, 1]), STEPS) - x).abs().mean().item()
    coarse = (reconstruct(model, x, 5) - x).abs().mean().item()
    # DDIM inversion of the deterministic ODE: nearly exact, far better than fresh noise, and
    # better with more steps (the discretisation error shrinks).
    assert err < 0.06 and err < 0.15 * fresh and err < coarse, (err, fresh, coarse)
    # the stochastic code looks like noise: about unit variance
    assert 0.3 < x_T.std().item() < 1.5


def test_edit_strength_zero_is_reconstruction_exactly(model, directions):
    x = _images(1)
    rec = reconstruct(model, x, 10)
    for name in directions.names:
        assert torch.equal(edit(model, directions, x, name, 0.0, 10), rec)
    assert not torch.equal(edit(model, directions, x, "woman", 3.0, 10), rec)


def test_fitted_direction_points_the_right_way():
    g = torch.Generator().manual_seed(1)
    d = 12
    true = torch.randn(d, generator=g)
    true /= true.norm()
    scale = torch.rand(d, generator=g) * 3 + 0.5           # anisotropic codes with an offset
    z = torch.randn(400, d, generator=g) * scale + 2.0
    zn = (z - z.mean(0)) / z.std(0)
    y = (zn @ true > 0.3).long()
    dirs = fit_from_codes(z, {"a": (torch.arange(400), y), "not-a": (torch.arange(400), 1 - y)})
    assert torch.allclose(dirs.directions.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.dot(dirs.directions[0], true) > 0.9
    assert torch.dot(dirs.directions[1], true) < -0.9
    acc = ((dirs.score(z, "a") > 0).long() == y).float().mean()
    assert acc > 0.95
    # editing along +a raises a's score and lowers not-a's; strength 0 is the identity
    for s in (1.0, 3.0):
        assert (dirs.score(dirs.shift(z, "a", s), "a") > dirs.score(z, "a")).all()
        assert (dirs.score(dirs.shift(z, "a", -s), "a") < dirs.score(z, "a")).all()
    assert torch.equal(dirs.shift(z, "a", 0.0), z)
    # the shift is strength * gap * u in normalised space: strength counts class gaps
    moved = dirs.normalise(dirs.shift(z, "a", 2.0)) - dirs.normalise(z)
    assert torch.allclose(moved, 2.0 * dirs.gap("a") * dirs.directions[0].expand_as(moved), atol=1e-4)


def test_direction_is_the_class_mean_difference_and_the_gap_its_length():
    """u = (mu+ - mu-) / |mu+ - mu-| in normalised space, even where the logistic classifier's
    weights point elsewhere; strength 1 (one class gap) puts the negative codes' mean onto mu+ along u."""
    g = torch.Generator().manual_seed(2)
    n, d = 300, 16
    y = (torch.arange(n) % 2).long()
    z = torch.randn(n, d, generator=g)
    shared = 2.0 * torch.randn(n, generator=g)
    z[:, 0] = 3.0 * y + shared            # the class difference, under noise that dim 1 also carries:
    z[:, 1] = shared + 0.05 * z[:, 1]     # the classifier subtracts dim 1; the class means differ on dim 0 only
    dirs = fit_from_codes(z, {"a": (torch.arange(n), y)})
    zn = dirs.normalise(z)
    diff = zn[y == 1].mean(0) - zn[y == 0].mean(0)
    assert torch.allclose(dirs.directions[0], diff / diff.norm(), atol=1e-5)
    assert dirs.gap("a") == pytest.approx(float(diff.norm()), rel=1e-5)
    w = dirs.weights[0] / dirs.weights[0].norm()
    assert torch.dot(w, dirs.directions[0]) < 0.9            # the classifier's weights point elsewhere
    moved = dirs.normalise(dirs.shift(z[y == 0], "a", 1.0)).mean(0)
    assert torch.allclose(moved, zn[y == 1].mean(0), atol=1e-4)


def test_strength_one_is_one_class_gap_for_every_attribute():
    """Attributes with different gaps: strength 1 moves each one's negative mean onto its positive mean."""
    g = torch.Generator().manual_seed(3)
    n, d = 400, 8
    z = torch.randn(n, d, generator=g)
    labels = {}
    for k, (name, gap) in enumerate((("small", 1.0), ("large", 6.0))):
        y = (torch.randperm(n, generator=g) < n // 2).long()
        z[:, k] += gap * y
        labels[name] = (torch.arange(n), y)
    dirs = fit_from_codes(z, labels)
    assert dirs.gap("large") > 1.5 * dirs.gap("small")   # the gaps differ (in normalised units)
    for name, (_, y) in labels.items():
        zn = dirs.normalise(z)
        moved = dirs.normalise(dirs.shift(z[y == 0], name, 1.0)).mean(0)
        assert torch.allclose(moved, zn[y == 1].mean(0), atol=1e-4), name


class _Rec:
    def __init__(self, group, subgroup, name, skin_tone="none", gender="none"):
        self.group, self.subgroup, self.name, self.skin_tone, self.gender = group, subgroup, name, skin_tone, gender


def test_attribute_labels_rules():
    recs = [_Rec("People & Body", "person", "person: dark skin tone", "dark", "person"),
            _Rec("People & Body", "person", "person: light skin tone", "light", "person"),
            _Rec("People & Body", "person", "person: medium skin tone", "medium", "person"),
            _Rec("People & Body", "person", "woman", "none", "woman"),
            _Rec("People & Body", "person", "man", "none", "man"),
            _Rec("Smileys & Emotion", "face-smiling", "grinning face"),
            _Rec("Smileys & Emotion", "face-concerned", "frowning face"),
            _Rec("Animals & Nature", "animal-mammal", "cat face")]
    labels = attribute_labels(recs)
    assert set(labels) == {"dark-skin", "woman", "smiling"}
    assert labels["dark-skin"][0].tolist() == [0, 1] and labels["dark-skin"][1].tolist() == [1, 0]
    assert labels["woman"][0].tolist() == [3, 4] and labels["woman"][1].tolist() == [1, 0]
    assert labels["smiling"][0].tolist() == [5, 6] and labels["smiling"][1].tolist() == [1, 0]


class _FakeData:
    """A data set of records + images where dark-skin / woman images are darker / redder."""

    def __init__(self, n=60):
        self.records, imgs = [], []
        g = torch.Generator().manual_seed(3)
        for i in range(n):
            dark, woman = i % 2, (i // 2) % 2
            self.records.append(_Rec("People & Body", "person", "x", "dark" if dark else "light",
                                     "woman" if woman else "man"))
            x = torch.ones(3, 32, 32) * (0.8 - 1.2 * dark)
            x[0] += 0.6 * woman
            imgs.append((x + 0.05 * torch.randn(3, 32, 32, generator=g)).clamp(-1, 1))
        self.images = torch.stack(imgs)

    def indices(self, split):
        return torch.arange(len(self.records))

    def images_at(self, res, idx):
        return self.images[idx]


def test_fit_directions_on_model_codes(model):
    data = _FakeData()
    dirs = fit_directions(model, data, iterations=200)
    assert dirs.names == ["dark-skin", "woman"]
    z = encode(model, data.images[:8], 2)[0]
    for name in dirs.names:
        assert (dirs.score(dirs.shift(z, name, 2.0), name) > dirs.score(z, name)).all()
    y = torch.tensor([r.skin_tone == "dark" for r in data.records])
    from core.diffae import semantic_code
    acc = ((dirs.score(semantic_code(model, data.images), "dark-skin") > 0) == y).float().mean()
    assert acc > 0.9


def test_directions_save_load_round_trip(tmp_path, directions):
    directions.save(tmp_path)
    meta = json.loads((tmp_path / ATTRIBUTES_FILE).read_text())
    assert meta["attributes"] == directions.names
    back = Directions.load(tmp_path)
    assert back.names == directions.names
    for k in ("directions", "gaps", "weights", "bias", "mean", "std"):
        assert torch.equal(getattr(back, k), getattr(directions, k))
    assert meta["class_gaps"] == {n: round(directions.gap(n), 4) for n in directions.names}
    with pytest.raises(CheckpointError, match=DIRECTIONS_FILE):
        Directions.load(tmp_path / "nowhere")
    # a file from before the class gaps names the command that refits it
    from safetensors.torch import load_file, save_file
    old = {k: v for k, v in load_file(str(tmp_path / DIRECTIONS_FILE)).items() if k != "gaps"}
    save_file(old, str(tmp_path / DIRECTIONS_FILE))
    with pytest.raises(CheckpointError, match="python -m core diffae-directions"):
        Directions.load(tmp_path)


def test_interpolation_endpoints_are_reconstructions(model):
    a, b = _images(2).split(1)
    frames = interpolate(model, a, b, n=4, steps=10)
    assert frames.shape == (4, 3, 32, 32)
    assert torch.allclose(frames[0], reconstruct(model, a, 10)[0], atol=1e-4)
    assert torch.allclose(frames[-1], reconstruct(model, b, 10)[0], atol=1e-4)
    assert not torch.allclose(frames[1], frames[0], atol=1e-3)


def test_slerp_keeps_the_norm_of_noise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 3, 16, 16, generator=g), torch.randn(1, 3, 16, 16, generator=g)
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm() / a.norm() - 1) < 0.1      # a straight line would shrink it by ~1/sqrt(2)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)


def test_bad_inputs_give_clear_errors(model, directions):
    x = _images(1)
    with pytest.raises(ValueError, match="valid attributes: dark-skin, woman, smiling"):
        edit(model, directions, x, "bald", 1.0, 2)
    with pytest.raises(ValueError, match="strength"):
        edit(model, directions, x, "woman", float("nan"), 2)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, 32, 32\]"):
        encode(model, torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="steps"):
        reconstruct(model, x, 0)
    with pytest.raises(ValueError, match="diffae"):
        encode(tiny_sr(), x)


def tiny_sr():
    from tests.tiny import tiny_model
    return tiny_model("sr", resolution=32, low_resolution=16)


def test_cli_reconstruct_attributes_edit(tmp_path, root, model, capsys):
    from core.cli.main import main
    src = tmp_path / "in.png"
    Image.new("RGBA", (50, 40), (200, 30, 30, 128)).save(src)
    common = ["--checkpoints", str(root), "--device", "cpu"]
    assert main(["attributes", *common]) == 0
    assert capsys.readouterr().out.split() == ["dark-skin", "woman", "smiling"]

    assert main(["reconstruct", "--image", str(src), "--steps", "4", "--out", str(tmp_path / "r.png"), *common]) == 0
    r = Image.open(tmp_path / "r.png")
    assert r.size == (32, 32) and read_parameters(r)["command"] == "reconstruct"

    assert main(["edit", "--image", str(src), "--attribute", "dark-skin", "--strength", "0", "--steps", "4",
                 "--out", str(tmp_path / "e0.png"), *common]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "e0.png")), np.asarray(r))   # strength 0 = reconstruction
    assert main(["edit", "--image", str(src), "--attribute", "dark-skin", "--strength", "2.5", "--seed", "3",
                 "--steps", "4", "--out", str(tmp_path / "e.png"), *common]) == 0
    params = read_parameters(tmp_path / "e.png")
    assert params["attribute"] == "dark-skin" and params["strength"] == 2.5 and params["seed"] == 3
    capsys.readouterr()

    # errors: one line, exit 2, nothing written
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    for argv, expect in [(["edit", "--image", str(src), "--attribute", "bald", "--strength", "1"], "valid attributes"),
                         (["edit", "--image", str(bad), "--attribute", "woman", "--strength", "1"], "cannot be read"),
                         (["reconstruct", "--image", str(tmp_path / "missing.png")], "does not exist"),
                         (["edit", "--image", str(src), "--attribute", "woman", "--strength", "99"], "strength")]:
        out = tmp_path / "never.png"
        assert main([*argv, "--out", str(out), "--steps", "2", *common]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and expect in err and "\n" not in err, err
        assert not out.exists()


def test_cli_missing_directions_names_the_file(tmp_path, model, capsys):
    from core.cli.main import main
    save_model(model, tmp_path / "diffae", "# no directions\n")
    assert main(["attributes", "--checkpoints", str(tmp_path)]) == 2
    assert DIRECTIONS_FILE in capsys.readouterr().err


def test_bad_image_error_type(model):
    from core.images import open_image
    with pytest.raises(ImageError):
        open_image("/nonexistent.png")


@pytest.mark.slow
def test_task_trains_and_exports_with_directions(tmp_path):
    from core.training.loop import train
    from core.training.registry import default_config
    cfg = default_config("diffae", str(tmp_path / "run"), smoke=True)
    summary = train(cfg, export=tmp_path / "diffae", log=lambda s: None)
    assert summary["step"] == cfg.optim.steps and summary["loss_avg"] == summary["loss_avg"]
    model = load_model(tmp_path / "diffae")
    assert model.kind == "diffae" and model.config.semantic_dim == 32
    assert sum(p.numel() for p in model.conditioner.encoder.parameters()) < 50_000     # smoke: a tiny encoder too
    dirs = Directions.load(tmp_path / "diffae")
    assert {"dark-skin", "woman", "smiling"} <= set(dirs.names)
    assert (tmp_path / "run" / "samples" / f"step_{cfg.optim.steps:06d}.png").is_file()


def test_task_loss_reaches_the_encoder(tmp_path):
    from core.training.diffae import DiffAETask
    from core.training.registry import default_config
    task = DiffAETask(default_config("diffae", str(tmp_path), smoke=True))
    net = task.build()
    loss = task.loss(net, torch.Generator().manual_seed(0), torch.device("cpu"))
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.conditioner.encoder.parameters())
    assert net.conditioner.z_proj.weight.grad is not None


@pytest.mark.slow
def test_directions_and_evaluate_commands(tmp_path, monkeypatch, capsys):
    """`python -m core diffae-directions` refits on the real training split; `evaluate-diffae` runs end
    to end (with stub classifiers: the real ones train for minutes when not cached)."""
    import core.evaluation.classifiers
    from core.cli.main import main
    model = tiny_diffae(resolution=64)
    save_model(model, tmp_path / "diffae", "# tiny\n")
    assert main(["diffae-directions", "--checkpoints", str(tmp_path), "--iterations", "50"]) == 0
    assert Directions.load(tmp_path / "diffae").names == ["dark-skin", "woman", "smiling"]

    class Stub:
        def __init__(self, classes):
            self.classes = list(classes)

        def index(self, name):
            return self.classes.index(name)

        def logits(self, images):   # darker images -> darker tones; "woman" when red dominates
            k = len(self.classes)
            level = (1 - images.float().mean(dim=(1, 2, 3))) * k / 2
            return -(torch.arange(k).float().view(1, -1) - level.view(-1, 1)).abs()

        def predict(self, images):
            return self.logits(images).argmax(1)

        def predict_names(self, images):
            return [self.classes[i] for i in self.predict(images).tolist()]

    monkeypatch.setattr(core.evaluation.classifiers, "load_classifier",
                        lambda task, folder, data, missing=None:
                        Stub(core.evaluation.classifiers.task_classes(task, data)))
    capsys.readouterr()
    grid = tmp_path / "sweep.png"
    assert main(["evaluate-diffae", "--checkpoints", str(tmp_path), "--n", "2", "--steps", "2",
                 "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "reconstruction PSNR on 2 held-out emoji at 64x64" in out
    result = json.loads(out[out.index("{\n"):])
    assert result["psnr_reconstruction"] > result["psnr_z_sem_only"] - 5
    accuracy = result["direction_accuracy_heldout"]
    assert {"dark-skin", "woman"} <= set(accuracy)
    assert all(a["n"] > 0 and 0 <= a["accuracy"] <= 1 for a in accuracy.values())
    assert set(result["dark_skin"]) >= {"darker_after_plus", "lighter_after_minus", "subgroup_kept"}
    assert set(result["woman"]) >= {"man_to_woman", "woman_to_man"}
    assert set(result["dark_skin"]) >= {"change_on_skin_plus", "change_on_skin_minus", "skin_area"}
    # at one class gap by default
    assert result["woman"]["strength"] == 1.0
    # rows: people under dark-skin, then men and women under woman; the original then 5 strengths;
    # 64 px tiles with 2 px padding
    rows = [r.split(":")[0] for r in result["grid"]["rows"]]
    assert rows == sorted(rows, key=["dark-skin", "woman"].index) and set(rows) == {"dark-skin", "woman"}
    gap = result["woman"]["strength"]
    assert result["grid"]["strengths"]["woman"] == [round(v, 2) for v in (-gap, -gap / 2, 0.0, gap / 2, gap)]
    assert Image.open(grid).size == (6 * 66 + 2, len(rows) * 66 + 2)


def test_skin_masks_mark_what_changes_between_tone_variants():
    from core.data.emoji import load_dataset
    from core.evaluation.diffae import change_on_mask, skin_masks
    data = load_dataset()
    toned = next(i for i, r in enumerate(data.records) if r.name == "waving hand: dark skin tone")
    plain = next(i for i, r in enumerate(data.records) if r.name == "grinning face")
    masks = skin_masks(data, [toned, plain], 32)
    assert 0.05 < masks[0].mean() < 0.6 and masks[1].sum() == 0   # no tone variants: no skin mask
    before = data.images_at(32, torch.tensor([toned, plain]))
    inside = before + 0.5 * masks                 # a change only on the skin ...
    assert change_on_mask(before, inside, masks)[0] == pytest.approx(1.0)
    everywhere = before + 0.5                    # ... and one spread evenly over the image
    on_skin, area = change_on_mask(before, everywhere, masks)
    assert on_skin == pytest.approx(area, abs=1e-6)


def test_cli_reconstruct_at_64_is_the_32_px_reconstruction_through_unaugmented_sr(tmp_path, model, directions, capsys):
    from core.cascade import SR_STAGE_DEFAULTS, stage_settings, upscale_chain
    from core.cli.main import main
    root = tmp_path / "ckpt"
    save_model(model, root / "diffae", "# tiny diffae\n")
    directions.save(root / "diffae")
    sr = tiny_sr_64()
    save_model(sr, root / "sr64", "# tiny sr64\n")
    faithful = stage_settings([sr], faithful=True)
    assert faithful[0].aug_level == 0 and faithful[0].steps == SR_STAGE_DEFAULTS[0].steps
    assert stage_settings([sr]) == [SR_STAGE_DEFAULTS[0]]

    src = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(src)
    common = ["--image", str(src), "--steps", "4", "--checkpoints", str(root), "--device", "cpu"]
    assert main(["reconstruct", *common, "--size", "64", "--out", str(tmp_path / "r64.png")]) == 0
    assert "64 px" in capsys.readouterr().out
    r64 = Image.open(tmp_path / "r64.png")
    assert r64.size == (64, 64) and read_parameters(r64)["size"] == 64
    # the same 32 px reconstruction through the stage by hand: equal with augmentation 0, not with the default 50
    stored, stored_sr = load_model(root / "diffae"), load_model(root / "sr64")   # as the CLI has them (fp16 weights)
    rec = reconstruct(stored, pil_to_tensor(Image.open(src), size=32), 4)
    by_hand = upscale_chain([stored_sr], rec, [0], faithful)[64]
    augmented = upscale_chain([stored_sr], rec, [0])[64]
    got = np.asarray(r64).astype(int)
    assert np.abs(got - np.asarray(tensor_to_pil(by_hand)[0]).astype(int)).max() <= 1
    assert np.abs(got - np.asarray(tensor_to_pil(augmented)[0]).astype(int)).max() > 1


def tiny_sr_64():
    from tests.tiny import tiny_model
    return tiny_model("sr", resolution=64, low_resolution=32)
