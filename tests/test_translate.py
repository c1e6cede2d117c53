"""Image-to-image translation (core.translate, core.data.masks) with tiny seeded models, 2 steps."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core import diffae
from core.data.masks import SIDES, box_mask, centred_mask, half_mask, mask_from_image, random_mask, stroke_mask
from core.diffusion.samplers import SAMPLERS
from core.ilvr import keep_luminance, luminance_projection
from core.images import ImageError, read_parameters
from core.metrics import delta_e, psnr, srgb_to_lab
from core.models.checkpoints import CheckpointError
from core.pipeline import StageSettings, generate_text
from core.translate import (
    CODE_BOOK_FILE,
    INPAINT_PREDICTOR_FILE,
    INPAINT_SNAP,
    PALETTE_TASKS,
    PREDICTOR_FILE,
    PREDICTOR_SNAP,
    CodeBook,
    CodePredictor,
    colorize,
    colorize_semantic,
    default_method,
    grayscale,
    inpaint,
    inpaint_features,
    inpaint_semantic,
    load_code_book,
    load_colour_guess,
    load_inpaint_predictor,
    mean_fill,
    repaint,
    repaint_path,
    sdedit,
    sdedit_semantic,
    smooth_fill,
    translate,
    visible_code,
)
from tests.tiny import tiny_model

FAST = StageSettings(steps=2, guidance=1.0)


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    from core.models.modelset import ModelSet
    return ModelSet(tiny_checkpoints, "cpu")


@pytest.fixture(scope="module")
def base(models):
    return models.get("text_base")


@pytest.fixture(scope="module")
def palette(models):
    return models.get("palette")


def _image(seed: int = 0, size: int = 32, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def _pil(size: int = 64, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


# ---- masks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda g: box_mask(32, g), lambda g: stroke_mask(32, g),
                                  lambda g: random_mask(32, g)])
def test_generated_masks_are_binary_seeded_and_partial(make):
    a, b = make(torch.Generator().manual_seed(3)), make(torch.Generator().manual_seed(3))
    assert a.shape == (1, 1, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert 0 < a.mean() < 1


def test_random_masks_differ_across_seeds_and_cover_every_shape():
    masks = [random_mask(32, torch.Generator().manual_seed(s)) for s in range(30)]
    assert len({m.numpy().tobytes() for m in masks}) > 20
    assert all(0 < m.mean() < 1 for m in masks)


@pytest.mark.parametrize("side", SIDES)
def test_half_masks(side):
    m = half_mask(16, side)
    assert m.mean() == 0.5
    rows, cols = m[0, 0].sum(1), m[0, 0].sum(0)
    if side == "left":
        assert m[0, 0, :, :8].all() and not m[0, 0, :, 8:].any()
    elif side == "right":
        assert m[0, 0, :, 8:].all()
    elif side == "top":
        assert m[0, 0, :8].all()
    else:
        assert m[0, 0, 8:].all() and rows[:8].sum() == 0 and cols.min() == 8
    with pytest.raises(ValueError, match="side"):
        half_mask(16, "middle")


def test_centred_mask_is_the_middle_square():
    m = centred_mask(64, 32)
    assert m.shape == (1, 1, 64, 64) and m.sum() == 32 * 32 and m[0, 0, 16:48, 16:48].all()
    assert centred_mask(32, 16)[0, 0, 8:24, 8:24].all() and centred_mask(32, 16).sum() == 256
    with pytest.raises(ValueError, match="side"):
        centred_mask(32, 40)


def _mask_picture(size=40) -> np.ndarray:
    arr = np.zeros((size, size), dtype=np.uint8)
    arr[10:30, 5:20] = 255
    return arr


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA-alpha", "LA", "P", "1", "CMYK", "I;16", "F"])
def test_mask_from_image_any_mode(mode):
    arr = _mask_picture()
    if mode == "RGBA-alpha":  # alpha decides: opaque = fill, whatever the colour
        rgba = np.zeros((40, 40, 4), dtype=np.uint8)
        rgba[..., 3] = arr
        image = Image.fromarray(rgba, "RGBA")
    elif mode == "LA":
        image = Image.fromarray(np.stack([np.full_like(arr, 255), arr], -1), "LA")
    elif mode == "I;16":
        image = Image.fromarray(arr.astype(np.uint16) * 257)
        assert image.mode.startswith("I;16")
    elif mode == "F":
        image = Image.fromarray(arr.astype(np.float32) / 255 * 255, "F")
    else:
        image = Image.fromarray(arr, "L").convert(mode)
    m = mask_from_image(image, 40)
    assert m.shape == (1, 1, 40, 40)
    assert torch.equal(m[0, 0], torch.from_numpy(arr >= 128).float()), mode


def test_mask_from_image_resizes_covering_and_pads_non_square():
    arr = np.zeros((64, 64), dtype=np.uint8)
    arr[10, 10] = 255  # one pixel: still fills its cell when shrunk
    m = mask_from_image(Image.fromarray(arr), 16)
    assert m.shape == (1, 1, 16, 16) and m.sum() == 1 and m[0, 0, 2, 2] == 1
    big = mask_from_image(Image.fromarray(arr[:16, :16]), 64)   # enlarged: nearest
    assert big.shape == (1, 1, 64, 64) and big.sum() == 16
    wide = mask_from_image(Image.new("L", (40, 20), 255), 40)   # centred on a square of "keep"
    assert wide[0, 0, 10:30].all() and not wide[0, 0, :10].any() and not wide[0, 0, 30:].any()
    assert not mask_from_image(Image.new("L", (20, 20), 0), 8).any()     # empty
    assert mask_from_image(Image.new("L", (20, 20), 255), 8).all()       # full


def test_mask_from_image_errors():
    with pytest.raises(ImageError, match="must be an image"):
        mask_from_image(np.zeros((8, 8)), 8)
    with pytest.raises(ImageError, match="2x2"):
        mask_from_image(Image.new("L", (2, 2)), 8)
    with pytest.raises(ValueError, match="size"):
        mask_from_image(Image.new("L", (20, 20)), 0)


# ---- SDEdit ----------------------------------------------------------------------------------------
def test_sdedit_strength_zero_returns_the_input(models, base):
    x = _image(size=32)
    enc = models.text_encoder()
    assert torch.equal(sdedit(base, enc, x, 0.0, "cat face", [0], FAST), x)
    x64 = _image(size=64)
    out = sdedit(base, enc, x64, 0, None, [0], FAST, sr_models=[models.get("sr64")])
    assert torch.equal(out, x64)   # at the output size: unchanged


@pytest.mark.parametrize("prompt", [None, "cat face"])
def test_sdedit_strength_one_is_text_to_image(models, base, prompt):
    enc = models.text_encoder()
    settings = StageSettings(steps=2, guidance=3.0)
    out = sdedit(base, enc, _image(), 1.0, prompt, [5, 6], settings)
    other = sdedit(base, enc, _image(seed=9), 1.0, prompt, [5, 6], settings)
    ref_settings = settings if prompt else StageSettings(steps=2, guidance=1.0)
    ref = generate_text(base, enc, [prompt or ""], seeds=[5, 6], settings=ref_settings)
    assert torch.equal(out, ref) and torch.equal(other, ref)


@pytest.mark.parametrize("strength", [float("nan"), -0.1, 1.5, math.inf, "0.5"])
def test_sdedit_strength_bounds(models, base, strength):
    with pytest.raises(ValueError, match="strength"):
        sdedit(base, models.text_encoder(), _image(), strength, None, [0], FAST)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sdedit_every_sampler(models, base, sampler):
    enc = models.text_encoder()
    x = _image(size=48)
    settings = StageSettings(sampler=sampler, steps=2, guidance=2.0)
    a = sdedit(base, enc, x, 0.5, "thumbs up", [1], settings)
    b = sdedit(base, enc, x, 0.5, "thumbs up", [1], settings)
    assert a.shape == (1, 3, 32, 32) and torch.isfinite(a).all() and a.abs().max() <= 1
    assert torch.equal(a, b)                                   # seeded
    c = sdedit(base, enc, _image(seed=4, size=48), 0.5, "thumbs up", [1], settings)
    assert not torch.equal(a, c)                               # the input matters below strength 1


def test_sdedit_with_sr_stages_and_batch_seeds(models, base):
    out = sdedit(base, models.text_encoder(), _image(size=32), 0.3, None, [0, 1], FAST,
                 sr_models=[models.get("sr64"), models.get("sr128")],
                 sr_settings=[StageSettings(steps=2, guidance=1.0)] * 2)
    assert out.shape == (2, 3, 128, 128)
    single = sdedit(base, models.text_encoder(), _image(size=32), 0.3, None, [1], FAST)
    pair = sdedit(base, models.text_encoder(), _image(size=32), 0.3, None, [0, 1], FAST)
    assert torch.allclose(pair[1:], single, atol=1e-5)        # a seed's image does not depend on the batch


# ---- Palette ---------------------------------------------------------------------------------------
def test_palette_colorize_shapes(palette):
    out = colorize(palette, _image(size=100, batch=1), [0, 1], FAST)
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()
    assert torch.equal(out, colorize(palette, _image(size=100), [0, 1], FAST))
    assert not torch.equal(out[0], out[1])
    with pytest.raises(ValueError, match="palette"):
        colorize(tiny_model("sr"), _image(size=64), [0], FAST)


def test_palette_inpaint_keeps_outside_exactly(palette):
    x = _image(size=64, batch=2)
    mask = torch.cat([box_mask(64, torch.Generator().manual_seed(0)), half_mask(64, "top")])
    out = inpaint(palette, x, mask, [0, 1], FAST)
    assert out.shape == (2, 3, 64, 64)
    keep = (mask < 0.5).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    assert not torch.equal(out[~keep], x[~keep])


def test_grayscale_and_tasks():
    assert PALETTE_TASKS == ("colorize", "inpaint")
    x = _image(size=8)
    g = grayscale(x)
    assert g.shape == x.shape and torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    assert torch.allclose(grayscale(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))


# ---- RePaint ---------------------------------------------------------------------------------------
def test_repaint_path():
    assert repaint_path(4, 1, 1) == [4, 3, 2, 1, 0]
    assert repaint_path(4, 1, 2) == [4, 3, 4, 3, 2, 3, 2, 1, 2, 1, 0]
    path = repaint_path(10, 5, 3)
    assert path[0] == 10 and path[-1] == 0 and all(abs(a - b) == 1 for a, b in zip(path, path[1:]))
    assert sum(b < a for a, b in zip(path, path[1:])) == 10 + 2 * 5


@pytest.mark.parametrize("prompt, sr", [(None, 0), ("red apple", 1)])
def test_repaint_keeps_outside_exactly(models, base, prompt, sr):
    size = 32 * 2 ** sr
    x = _image(size=size, batch=1)
    mask = stroke_mask(size, torch.Generator().manual_seed(2))
    sr_models = [models.get("sr64")][:sr]
    out = repaint(base, models.text_encoder(), x, mask, prompt, [0], steps=3, jump=1, resample=2,
                  sr_models=sr_models, sr_settings=[StageSettings(steps=2, guidance=1.0)])
    assert out.shape == (1, 3, size, size)
    keep = (mask < 0.5).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    assert not torch.equal(out[~keep], x[~keep])
    empty = repaint(base, models.text_encoder(), x, torch.zeros_like(mask), prompt, [0], steps=2,
                    sr_models=sr_models, sr_settings=[StageSettings(steps=2, guidance=1.0)])
    assert torch.equal(empty, x)
    with pytest.raises(ValueError, match="resample"):
        repaint(base, models.text_encoder(), x, mask, None, [0], steps=2, resample=0)


# ---- the PIL API and the CLI -----------------------------------------------------------------------
def test_translate_api(models):
    image = _pil(64, "RGBA")
    mask = Image.fromarray(_mask_picture(64), "L")
    out, params = translate(models, "inpaint", image, mask, steps=2, method="palette")
    assert out.size == (64, 64) and params["task"] == "inpaint" and params["method"] == "palette"
    src, res, m = np.asarray(image.convert("RGB")), np.asarray(out), _mask_picture(64) < 128
    assert (res[m] == src[m]).all()
    out, params = translate(models, "sdedit", _pil(40, "P"), strength=0.0, size=64)
    assert np.array_equal(np.asarray(out), np.asarray(_pil(40, "P").convert("RGB").resize((64, 64), Image.BICUBIC)))
    out, _ = translate(models, "colorize", _pil(128, "L"), steps=2, method="palette")
    assert out.size == (64, 64)
    out, params = translate(models, "inpaint", image, Image.new("L", (64, 64), 0), method="palette")
    assert "empty" in params["note"] and np.array_equal(np.asarray(out), np.asarray(image.convert("RGB")))
    for kwargs, match in [(dict(task="inpaint", image=image), "mask"),
                          (dict(task="inpaint", image=image, mask=Image.new("L", (64, 64), 255)), "whole image"),
                          (dict(task="paint", image=image), "task"),
                          (dict(task="sdedit", image=image, strength=2.0), "strength"),
                          (dict(task="colorize", image=image, prompt="red"), "prompt"),
                          (dict(task="colorize", image=image, size=128, method="palette"), "64x64"),
                          (dict(task="colorize", image=image, method="repaint"), "method"),
                          (dict(task="colorize", image=image, sampler="ddim"), "DDPM"),
                          (dict(task="inpaint", image=image, mask=mask, prompt="red"), "prompt"),
                          (dict(task="inpaint", image=image, mask=mask, method="magic"), "method")]:
        with pytest.raises(ValueError, match=match):
            translate(models, **kwargs)


def test_cli_translate_writes_pngs(tiny_checkpoints, tmp_path, capsys):
    from core.cli.main import main
    src = tmp_path / "in.png"
    _pil(50, "RGBA").save(src)
    mask = tmp_path / "mask.png"
    Image.fromarray(_mask_picture(64), "L").save(mask)
    common = ["--checkpoints", str(tiny_checkpoints), "--device", "cpu", "--steps", "2"]
    runs = {
        "sdedit.png": ["--task", "sdedit", "--strength", "0.5", "--prompt", "cat face", "--size", "64"],
        "col.png": ["--task", "colorize", "--method", "palette"],
        "inp.png": ["--task", "inpaint", "--mask", str(mask), "--method", "palette"],
        "sem-col.png": ["--task", "colorize", "--size", "64"],
        "sem-inp.png": ["--task", "inpaint", "--mask", str(mask), "--size", "32", "--resample", "1"],
        "rep.png": ["--task", "inpaint", "--method", "repaint", "--mask", str(mask), "--size", "32",
                    "--sampler", "ddpm", "--resample", "1"],
    }
    sizes = {"sdedit.png": 64, "col.png": 64, "inp.png": 64, "rep.png": 32, "sem-col.png": 64, "sem-inp.png": 32}
    for name, argv in runs.items():
        out = tmp_path / name
        assert main(["translate", "--image", str(src), *argv, "--out", str(out), *common]) == 0, name
        with Image.open(out) as im:
            assert im.size == (sizes[name],) * 2
            params = read_parameters(im)
        assert params["command"] == "translate" and params["image"] == str(src)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["--task", "inpaint"], "--mask"),
    (["--task", "inpaint", "--mask", "FULL"], "whole image"),
    (["--task", "paint"], "task"),
    (["--task", "sdedit", "--strength", "nan"], "strength"),
    (["--task", "sdedit", "--strength", "1.01"], "strength"),
    (["--task", "sdedit", "--sampler", "magic", "--strength", "0.5"], "sampler"),
    (["--task", "colorize", "--image", "MISSING"], "does not exist"),
])
def test_cli_translate_errors_are_one_line_and_write_nothing(tiny_checkpoints, tmp_path, capsys, argv, match):
    from core.cli.main import main
    src = tmp_path / "in.png"
    _pil(32).save(src)
    full = tmp_path / "full.png"
    Image.new("L", (32, 32), 255).save(full)
    argv = [str(full) if a == "FULL" else str(tmp_path / "nope.png") if a == "MISSING" else a for a in argv]
    if "--image" not in argv:
        argv = ["--image", str(src), *argv]
    out = tmp_path / "out.png"
    try:
        code = main(["translate", *argv, "--out", str(out), "--checkpoints", str(tiny_checkpoints), "--steps", "2"])
    except SystemExit as e:   # the parser's refusal (a range or a choice its option checks): status 2 as well
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and match in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["full.png", "in.png"]


def test_cli_empty_mask_says_so(tiny_checkpoints, tmp_path, capsys):
    from core.cli.main import main
    src, empty, out = tmp_path / "in.png", tmp_path / "empty.png", tmp_path / "out.png"
    _pil(64).save(src)
    Image.new("L", (64, 64), 0).save(empty)
    assert main(["translate", "--task", "inpaint", "--image", str(src), "--mask", str(empty), "--out", str(out),
                 "--size", "64", "--checkpoints", str(tiny_checkpoints)]) == 0
    assert "unchanged" in capsys.readouterr().out
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(_pil(64)))


# ---- evaluation helpers ----------------------------------------------------------------------------
def test_srgb_to_lab_known_values():
    colours = torch.tensor([[1.0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]]).view(4, 3, 1, 1) * 2 - 1
    lab = srgb_to_lab(colours)[:, :, 0, 0]
    expected = torch.tensor([[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86]],
                            dtype=torch.float64)
    assert torch.allclose(lab, expected, atol=0.05), lab
    assert delta_e(colours, colours).abs().max() == 0
    assert psnr(colours, colours, 2.0).min() >= 99


# ---- training --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_palette_task_trains_a_few_steps(tmp_path):
    from core.data.emoji import default_cache_dir
    from core.training.loop import train
    from core.training.registry import default_config
    if not (default_cache_dir() / "images.npy").is_file():
        pytest.skip("the emoji data set is not built (python -m core data)")
    cfg = default_config("palette", str(tmp_path / "run"), smoke=True, steps=2, sample_every=2, threads=1)
    summary = train(cfg, export=tmp_path / "palette", log=lambda s: None)
    assert summary["step"] == 2 and math.isfinite(summary["loss_avg"])
    assert (tmp_path / "run" / "samples" / "step_000002.png").is_file()
    from core.models.loading import load_model
    model = load_model(tmp_path / "palette")
    assert model.kind == "palette" and model.resolution == 64


def test_palette_task_batches(tmp_path):
    from core.data.emoji import default_cache_dir
    from core.training.palette import PaletteTask
    from core.training.registry import default_config
    if not (default_cache_dir() / "images.npy").is_file():
        pytest.skip("the emoji data set is not built (python -m core data)")
    task = PaletteTask(default_config("palette", str(tmp_path), smoke=True, batch=16, residual_scale=0))
    task.build()
    x0, cond = task.x0_and_cond(torch.Generator().manual_seed(0), torch.device("cpu"))
    assert x0.shape == cond["source"].shape == (16, 3, 64, 64) and cond["mask"].shape == (16, 1, 64, 64)
    col = cond["task"] == PALETTE_TASKS.index("colorize")
    assert 0 < col.sum() < 16
    assert torch.equal(cond["source"][col], grayscale(x0[col])) and cond["mask"][col].eq(1).all()
    m, src, x = cond["mask"][~col], cond["source"][~col], x0[~col]
    assert ((m > 0) & (m < 1)).sum() == 0 and (m.mean(dim=(1, 2, 3)) < 1).all() and (m.sum(dim=(1, 2, 3)) > 0).all()
    keep = (m < 0.5).expand_as(x)
    assert torch.equal(src[keep], x[keep]) and src[~keep].eq(0).all()


@pytest.mark.slow
def test_palette_trains_on_the_scaled_residual_over_its_baseline(tmp_path):
    """By default Palette diffuses 2 * (image - baseline): the grayscale source for colorization,
    the mean-colour fill of the mask for inpainting (zero outside the mask)."""
    from core.data.emoji import default_cache_dir
    from core.training.palette import PaletteTask
    from core.training.registry import default_config
    from core.translate import mean_fill
    if not (default_cache_dir() / "images.npy").is_file():
        pytest.skip("the emoji data set is not built (python -m core data)")
    plain = PaletteTask(default_config("palette", str(tmp_path), smoke=True, batch=16, residual_scale=0))
    assert plain.build().config.residual_scale is None
    residual = PaletteTask(default_config("palette", str(tmp_path), smoke=True, batch=16))
    assert residual.build().config.residual_scale == 2.0
    image, cond = plain.x0_and_cond(torch.Generator().manual_seed(0), torch.device("cpu"))
    x0, cond_r = residual.x0_and_cond(torch.Generator().manual_seed(0), torch.device("cpu"))
    assert all(torch.equal(cond[k], cond_r[k]) for k in cond)
    col = cond["task"] == PALETTE_TASKS.index("colorize")
    assert torch.allclose(x0[col], 2 * (image[col] - grayscale(image[col])), atol=1e-6)
    m = cond["mask"][~col]
    assert torch.allclose(x0[~col], 2 * (image[~col] - mean_fill(image[~col], m)), atol=1e-6)
    assert x0[~col][(m < 0.5).expand_as(x0[~col])].eq(0).all()


def _exact_palette_denoiser(model, x0):
    model.eps = lambda x_t, t, cond: model.schedule.eps_from_x0(x_t, t, x0)


def test_residual_palette_adds_its_sample_to_the_baseline():
    """A denoiser that knows x0 = 2 * (target - baseline) lands on the target: colorization adds
    the sample to the grayscale input, inpainting to the mean-colour fill (outside kept exactly)."""
    from core.translate import mean_fill
    model = tiny_model("palette", resolution=16, residual_scale=2.0)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 16, 16, generator=g) * 1.6 - 0.8
    _exact_palette_denoiser(model, 2 * (target - grayscale(target)))
    assert torch.allclose(colorize(model, target, [0, 1], StageSettings(steps=4, guidance=1.0)), target, atol=1e-4)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 2:10] = 1
    _exact_palette_denoiser(model, 2 * (target - mean_fill(target * (1 - mask), mask)))
    assert torch.allclose(inpaint(model, target, mask, [0, 1], StageSettings(steps=4, guidance=1.0)), target,
                          atol=1e-4)
    # the same denoiser on a plain model would return the residual itself, not the image
    plain = tiny_model("palette", resolution=16)
    _exact_palette_denoiser(plain, 2 * (target - grayscale(target)))
    assert not torch.allclose(colorize(plain, target, [0, 1], StageSettings(steps=4, guidance=1.0)), target,
                              atol=1e-2)


@pytest.mark.slow
def test_evaluate_runs_and_reports_missing_models(models, tiny_checkpoints, tmp_path, capsys):
    import shutil

    from core.cli.main import main
    from core.data.emoji import default_cache_dir
    from core.evaluation.translate import evaluate, markdown
    from core.translate import mean_fill
    if not (default_cache_dir() / "images.npy").is_file():
        pytest.skip("the emoji data set is not built (python -m core data)")
    results = evaluate(models, n=2, steps=2, repaint_steps=2, strengths=(0.0, 1.0), log=lambda s: None)
    assert not results["missing"] and len(results["rows"]) == 8 and len(results["sdedit"]) == 2
    assert results["rows"][3][2] == 0 and results["rows"][7][2] == 0   # nothing changes outside the mask
    # realism: FD_CLIP to the real emoji, for the model and the baseline (here the mean fill, by hand)
    from core.data.emoji import load_dataset
    from core.metrics import frechet_distance
    assert [r[1] for r in results["rows"][4:6]] == ["FD_CLIP to the real emoji (lower is better)"] * 2
    data = load_dataset()
    x = data.images_at(64, torch.as_tensor(data.indices("heldout"))[:2])
    gen = torch.Generator().manual_seed(0)
    masks = torch.cat([random_mask(64, gen) for _ in range(2)])
    embedder = models.clip_embedder()
    real = embedder.image_embeddings(x).double().numpy()
    fill = embedder.image_embeddings(mean_fill(x, masks)).double().numpy()
    assert results["rows"][5][3] == pytest.approx(frechet_distance(fill, real), rel=1e-6)
    assert all(r[2] >= 0 for r in results["rows"][4:6])
    assert results["sdedit"][0][1] == 0                  # strength 0 returns the sketch itself
    assert all(fd >= 0 for *_, fd in results["sdedit"]) and results["fd_real_train"] >= 0
    table = markdown(results)
    assert "| task | metric |" in table and "| 1.00 |" in table
    only = tmp_path / "only"
    shutil.copytree(tiny_checkpoints / "palette", only / "palette")
    assert main(["evaluate-translate", "--n", "1", "--steps", "2", "--checkpoints", str(only), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Missing models (not evaluated): text_base, clip" in out and "colorize" in out
    assert "mean of" not in out
    # K = 2 samples: the first is the single-sample row's (seeds 0, 1); the extra row scores the
    # mean of it and the second (seeds 2, 3), beside the same baseline
    from core.models.modelset import ModelSet
    palette_only = ModelSet(only, "cpu")
    two = evaluate(palette_only, n=2, steps=2, inpaint_samples=2, log=lambda s: None)
    assert two["rows"][2][2] == results["rows"][2][2] and "mean of 2 samples" in two["rows"][4][1]
    assert two["rows"][4][3] == two["rows"][2][3]
    a, b = (inpaint(palette_only.get("palette"), x, masks, seeds, FAST) for seeds in ([0, 1], [2, 3]))
    assert abs(two["rows"][4][2] - psnr((a + b) / 2, x, 2.0, masks).mean().item()) < 1e-3
    assert main(["evaluate-translate", "--n", "1", "--inpaint-samples", "0", "--checkpoints", str(only)]) == 2


# ---- through the DiffAE decoder ---------------------------------------------------------------------
def test_keep_luminance_sets_the_luma_exactly_and_stays_in_range():
    x, grey = _image(1, batch=4) * 1.5, grayscale(_image(2, batch=4))
    out = keep_luminance(x, grey)
    assert torch.allclose(grayscale(out), grey, atol=1e-5)
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    inside = _image(3, batch=2) * 0.2   # colours that fit keep their chroma
    assert torch.allclose(keep_luminance(inside, inside), inside, atol=1e-6)


def test_luminance_projection_is_the_grey_image_at_the_end(models):
    schedule = models.get("diffae").schedule
    grey = grayscale(_image(4, batch=2))
    from core.diffusion.rng import BatchGenerator
    project = luminance_projection(grey, schedule, BatchGenerator([0, 1], torch.device("cpu")))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(grayscale(project(x, -1.0)), grey, atol=1e-5)
    assert torch.allclose(project(x, -1.0) - grayscale(project(x, -1.0)), x - grayscale(x), atol=1e-5)  # chroma kept
    noisy = project(x, 500.0)
    assert not torch.allclose(grayscale(noisy), grey, atol=0.1)   # at t, the noised grey image


@pytest.mark.parametrize("sr", [0, 1])
def test_colorize_semantic_keeps_the_grey_image(models, sr):
    """The luminance constraint: the grey of the result is the grey input (to float rounding), also
    through an SR stage, with and without the code book; and the result has colour."""
    decoder = models.get("diffae")
    srs = [models.get("sr64")][:sr]
    x = _image(5, size=32 * 2 ** sr, batch=2)
    for book in (None, load_code_book(models)):
        out = colorize_semantic(decoder, x, book, [0, 1], steps=3, sr_models=srs,
                                sr_settings=[StageSettings(steps=2, guidance=1.0)])
        assert out.shape == x.shape
        assert (grayscale(out) - grayscale(x)).abs().max() < 1e-5
        assert (out - grayscale(out)).abs().max() > 0.01


def test_colorize_through_translate_keeps_the_grey_up_to_rounding(models):
    image = _pil(64)
    out, params = translate(models, "colorize", image, steps=3, size=64)
    assert params["method"] == "diffae" and params["sampler"] == "ddpm" and out.size == (64, 64)
    want = grayscale(torch.as_tensor(np.asarray(image), dtype=torch.float64).permute(2, 0, 1)[None])
    got = grayscale(torch.as_tensor(np.asarray(out), dtype=torch.float64).permute(2, 0, 1)[None])
    assert (got - want).abs().max() <= 1.0   # 8-bit rounding of each channel: at most one level of luma


def test_code_book_returns_the_colour_code_of_its_nearest_entry():
    g = torch.Generator().manual_seed(0)
    grey_codes, colour_codes = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    greys = grayscale(torch.rand(5, 3, 32, 32, generator=g) * 2 - 1)
    book = CodeBook(grey_codes, colour_codes, CodeBook.thumbnail(greys))
    out = book.colour_code(grey_codes[[3, 1]], greys[[3, 1]], k=1)
    assert torch.allclose(out, colour_codes[[3, 1]])
    soft = book.colour_code(grey_codes[[3]], greys[[3]], k=5)   # temperature 0.01: the nearest dominates
    assert torch.allclose(soft, colour_codes[[3]], atol=1e-3)


def _code_pairs(n: int, seed: int):
    """(grey codes, colour codes, thumbnails): colour = grey + a fixed nonlinear function of the grey code."""
    g = torch.Generator().manual_seed(seed)
    grey = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    mix = 0.3 * torch.randn(8, 8, generator=torch.Generator().manual_seed(99))
    greys = grayscale(torch.rand(n, 3, 32, 32, generator=g) * 2 - 1)
    return grey, grey + torch.tanh(grey @ mix), CodeBook.thumbnail(greys), greys


def test_code_predictor_learns_the_colour_code_and_round_trips(tmp_path):
    grey, colour, thumbs, _ = _code_pairs(256, 0)
    predictor = CodePredictor.fit(grey, colour, thumbs, hidden=64, epochs=60)
    test_grey, test_colour, _, test_greys = _code_pairs(64, 1)
    guess = predictor.colour_code(test_grey, test_greys)
    assert guess.shape == test_colour.shape
    # held-out pairs: much nearer the colour code than the grey code itself is (the identity guess)
    assert (guess - test_colour).pow(2).mean() < 0.3 * (test_grey - test_colour).pow(2).mean()
    predictor.save(tmp_path / PREDICTOR_FILE)
    loaded = CodePredictor.load(tmp_path / PREDICTOR_FILE)
    assert torch.allclose(loaded.colour_code(test_grey, test_greys), guess, atol=2e-2)   # fp16 storage
    book = CodeBook(grey, colour, thumbs)
    free = loaded.colour_code(test_grey, test_greys)
    on_book = CodePredictor.load(tmp_path / PREDICTOR_FILE, book, snap=1.0).colour_code(test_grey, test_greys)
    assert torch.allclose(on_book, book.snap(free))
    assert torch.allclose(CodePredictor.load(tmp_path / PREDICTOR_FILE, book, snap=0.0).colour_code(
        test_grey, test_greys), free)
    # the default: half-way from the guess to its snap onto the book
    halfway = CodePredictor.load(tmp_path / PREDICTOR_FILE, book).colour_code(test_grey, test_greys)
    assert PREDICTOR_SNAP == 0.5 and torch.allclose(halfway, (free + book.snap(free)) / 2, atol=1e-5)
    assert not torch.allclose(halfway, free, atol=1e-3) and not torch.allclose(halfway, on_book, atol=1e-3)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        CodePredictor.load(tmp_path / "bad.safetensors")


def test_colorize_uses_the_predictor_when_present_else_the_book(tiny_checkpoints, tmp_path):
    import shutil

    from core.models.modelset import ModelSet
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    models = ModelSet(root, "cpu")
    image = _pil(32, seed=3)
    assert isinstance(load_colour_guess(models), CodeBook)   # no predictor file: the book
    book_out, params = translate(models, "colorize", image, steps=3, size=32)
    assert params["colour_code"] == "code book"
    book = load_code_book(models)
    predictor = CodePredictor.fit(book.grey, book.colour, book.thumbnails, hidden=16, epochs=2)
    predictor.save(root / "palette" / PREDICTOR_FILE)
    guess = load_colour_guess(models)
    assert isinstance(guess, CodePredictor) and guess.book is not None   # snapped to the book beside it
    first, params = translate(models, "colorize", image, steps=3, size=32)
    assert params["colour_code"] == "predictor"
    assert not np.array_equal(np.asarray(first), np.asarray(book_out))
    predictor.b2 = predictor.b2 + 3 * torch.randn(predictor.b2.shape, generator=torch.Generator().manual_seed(1))
    predictor.save(root / "palette" / PREDICTOR_FILE)
    second, _ = translate(models, "colorize", image, steps=3, size=32)
    assert not np.array_equal(np.asarray(second), np.asarray(first))   # another predictor, another output
    (root / "palette" / CODE_BOOK_FILE).unlink()   # the predictor alone, unsnapped, still colorizes
    assert default_method(models, "colorize") == "diffae" and load_colour_guess(models).book is None
    translate(models, "colorize", image, steps=3, size=32)
    (root / "palette" / PREDICTOR_FILE).unlink()
    assert default_method(models, "colorize") == "palette"


def test_inpaint_semantic_keeps_the_outside_exactly(models):
    decoder = models.get("diffae")
    x = _image(6, size=64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    out = inpaint_semantic(decoder, x, mask, [0], steps=3, resample=2, sr_models=[models.get("sr64")],
                           sr_settings=[StageSettings(steps=2, guidance=1.0)])
    keep = (mask < 0.5).expand_as(x)
    assert out.shape == x.shape and torch.equal(out[keep], x[keep]) and not torch.equal(out[~keep], x[~keep])
    assert torch.equal(inpaint_semantic(decoder, x, torch.zeros_like(mask), [0], steps=2,
                                        sr_models=[models.get("sr64")]), x)


def _hole_pairs(n: int, seed: int):
    """(visible code, extra features, whole code): what the hole hides of the code is a fixed nonlinear
    function of the code and the features (the mask's coverage, the thumbnail) the predictor is given."""
    g = torch.Generator().manual_seed(seed)
    whole, extra = torch.randn(n, 8, generator=g), torch.rand(n, 4 * 64, generator=g)
    mix = torch.randn(4 * 64, 8, generator=torch.Generator().manual_seed(99)) / 16
    return whole - torch.tanh(extra @ mix + 0.3 * whole), extra, whole


def test_inpaint_predictor_learns_the_whole_code_and_visible_code_uses_it(models):
    """`CodePredictor` fitted on (visible code, features) -> whole code guesses the whole code of pairs it
    never saw better than the visible code itself (what `visible_code` returns without a predictor or a
    book); `visible_code` with a predictor is its guess from the smooth fill's code and `inpaint_features`."""
    code, extra, whole = _hole_pairs(512, 0)
    predictor = CodePredictor.fit(code, whole, extra, hidden=64, epochs=60)
    test_code, test_extra, test_whole = _hole_pairs(64, 1)
    guess = predictor.guess(test_code, test_extra)
    assert (guess - test_whole).pow(2).mean() < 0.3 * (test_code - test_whole).pow(2).mean()
    decoder = models.get("diffae")
    x, masks = _image(7, batch=2), torch.cat([box_mask(32, torch.Generator().manual_seed(s)) for s in (1, 2)])
    filled = smooth_fill(x, masks)
    features = inpaint_features(filled, masks)
    assert features.shape == (2, 4 * 64) and torch.allclose(features[:, :64].view(2, 1, 8, 8),
                                                            F.interpolate(masks, size=8, mode="area"))
    z = diffae.semantic_code(decoder, filled)
    big = CodePredictor.fit(z.repeat(4, 1), z.repeat(4, 1) + 1, features.repeat(4, 1), hidden=16, epochs=2)
    assert torch.allclose(visible_code(decoder, x, masks, predictor=big), big.guess(z, features), atol=1e-5)
    assert torch.allclose(visible_code(decoder, x, masks), z, atol=1e-5)   # neither: the encoder's code itself


def test_inpaint_uses_the_predictor_when_present_else_the_book(tiny_checkpoints, tmp_path):
    import shutil

    from core.models.modelset import ModelSet
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    models = ModelSet(root, "cpu")
    image, mask = _pil(64, seed=4), Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    assert load_inpaint_predictor(models) is None   # no file: the smooth fill's code snapped to the book
    book_out, params = translate(models, "inpaint", image, mask, steps=3, size=64, resample=1)
    assert params["visible_code"] == "code book"
    book = load_code_book(models)
    extra = torch.rand(len(book.grey), 4 * 64, generator=torch.Generator().manual_seed(2))
    predictor = CodePredictor.fit(book.grey, book.colour, extra, hidden=16, epochs=2)
    predictor.b2 = predictor.b2 + 3 * torch.randn(predictor.b2.shape, generator=torch.Generator().manual_seed(1))
    predictor.save(root / "palette" / INPAINT_PREDICTOR_FILE)
    loaded = load_inpaint_predictor(models)
    assert loaded.book is not None and loaded.snap == INPAINT_SNAP   # moved towards the book beside it
    out, params = translate(models, "inpaint", image, mask, steps=3, size=64, resample=1)
    assert params["visible_code"] == "predictor"
    a, b, x = (np.asarray(i).astype(int) for i in (out, book_out, image))
    hole = np.zeros((64, 64), dtype=bool)
    hole[16:48, 16:48] = True
    assert np.array_equal(a[~hole], x[~hole]) and not np.array_equal(a[hole], b[hole])   # another code inside only
    (root / "palette" / CODE_BOOK_FILE).unlink()   # the predictor alone, not moved, still inpaints
    assert load_inpaint_predictor(models).book is None
    translate(models, "inpaint", image, mask, steps=3, size=64, resample=1)


@pytest.mark.skipif(not (Path(__file__).parents[1] / "checkpoints" / "palette" / INPAINT_PREDICTOR_FILE).is_file(),
                    reason="no committed inpainting predictor")
def test_committed_inpaint_predictor_is_small_fp16_and_loads():
    from safetensors.torch import load_file
    path = Path(__file__).parents[1] / "checkpoints" / "palette" / INPAINT_PREDICTOR_FILE
    assert path.stat().st_size < 2_000_000
    tensors = load_file(str(path))
    assert all(t.dtype == torch.float16 for t in tensors.values())
    predictor = CodePredictor.load(path)
    assert predictor.w1.shape[1] == predictor.mean.shape[0] + 4 * 64   # code + inpaint_features
    guess = predictor.guess(torch.zeros(2, predictor.mean.shape[0]), torch.zeros(2, 4 * 64))
    assert guess.shape == (2, predictor.mean.shape[0]) and bool(torch.isfinite(guess).all())


def test_default_method_is_diffae_where_its_models_are(models, tiny_checkpoints, tmp_path):
    import shutil
    assert default_method(models, "colorize") == default_method(models, "inpaint") == "diffae"
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root, ignore=lambda d, names: [n for n in names if n.startswith("colour_codes")])
    from core.models.modelset import ModelSet
    bare = ModelSet(root, "cpu")
    assert default_method(bare, "colorize") == "palette" and default_method(bare, "inpaint") == "diffae"


def test_sdedit_defaults_are_the_measured_ones(models):
    from core.translate import DEFAULT_STRENGTH, SDEDIT_GUIDANCE
    _, params = translate(models, "sdedit", _pil(32), prompt="red apple", size=32, steps=2)
    assert params["strength"] == DEFAULT_STRENGTH == 0.7 and params["guidance"] == SDEDIT_GUIDANCE == 3.0
    _, params = translate(models, "sdedit", _pil(32), prompt="red apple", size=32, steps=2, method="text")
    assert params["strength"] == 0.55 and params["guidance"] == SDEDIT_GUIDANCE
    _, params = translate(models, "sdedit", _pil(32), size=32, steps=2)
    assert params["guidance"] == 1.0   # no prompt: unguided


def test_sdedit_semantic_keeps_the_input_at_strength_zero_and_draws_its_code(models):
    """SDEdit through the decoder: strength 0 is the input exactly; above 0 the decoder draws the
    input's own code (given explicitly, the same image), and another code (zeros) changes it."""
    decoder = models.get("diffae")
    x = _image(7, size=32)
    assert torch.equal(sdedit_semantic(decoder, x, 0.0, None, [0], FAST), x)
    own = sdedit_semantic(decoder, x, 0.6, None, [0], FAST)
    code = diffae.semantic_code(decoder, x)
    assert torch.equal(sdedit_semantic(decoder, x, 0.6, code, [0], FAST), own)
    assert not torch.allclose(sdedit_semantic(decoder, x, 0.6, torch.zeros_like(code), [0], FAST), own, atol=1e-4)
    assert not torch.allclose(own, x, atol=1e-3)
    x64 = _image(8, size=64)
    out = sdedit_semantic(decoder, x64, 0.4, None, [0, 1], FAST, sr_models=[models.get("sr64")],
                          sr_settings=[StageSettings(steps=2, guidance=1.0)])
    assert out.shape == (2, 3, 64, 64)
    assert torch.equal(sdedit_semantic(decoder, x64, 0.0, None, [0], FAST, sr_models=[models.get("sr64")]), x64)


def test_sdedit_through_translate_uses_the_decoder_and_the_prompts_code(models):
    _, params = translate(models, "sdedit", _pil(32), size=32, steps=2)
    assert params["method"] == "diffae" and params["guidance"] == 1.0
    prompted, params = translate(models, "sdedit", _pil(32), prompt="red apple", size=32, steps=2, strength=0.8)
    plain, _ = translate(models, "sdedit", _pil(32), size=32, steps=2, strength=0.8)
    assert params["method"] == "diffae" and params["guidance"] == 3.0
    assert not np.array_equal(np.asarray(prompted), np.asarray(plain))   # the prompt's code replaced the input's
    text, params = translate(models, "sdedit", _pil(32), size=32, steps=2, strength=0.8, method="text")
    assert params["method"] == "text" and not np.array_equal(np.asarray(text), np.asarray(plain))
    with pytest.raises(ValueError, match="method must be one of diffae, text"):
        translate(models, "sdedit", _pil(32), method="repaint")


def test_smooth_fill_continues_the_border_and_keeps_the_rest():
    x = torch.full((1, 3, 16, 16), -1.0)
    x[..., :, :8] = 0.5                      # left half one colour, right half another
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    out = smooth_fill(x, mask)
    keep = (mask < 0.5).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    assert out[0, 0, 8, 4] > out[0, 0, 8, 11]   # the fill goes from the left colour to the right one
    assert out[0, 0, 8, 4] > mean_fill(x, mask)[0, 0, 8, 4]


def test_visible_code_snaps_to_the_code_book(models):
    decoder, book = models.get("diffae"), load_code_book(models)
    x = _image(9, size=32, batch=2)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    free = visible_code(decoder, x, mask.expand(2, -1, -1, -1))
    snapped = visible_code(decoder, x, mask.expand(2, -1, -1, -1), book)
    assert torch.allclose(book.snap(free), snapped)
    nearest = (torch.nn.functional.normalize(free, dim=1) @ torch.nn.functional.normalize(book.colour, dim=1).T)
    assert torch.allclose(book.snap(free, k=1), book.colour[nearest.argmax(1)])
