"""The "How it works" panels (core.mechanics) with tiny random models: each panel from Python, from
the command line, and through the tab's functions (demos/how_it_works.py), and bad inputs
answered with clear errors."""
import inspect
import shutil

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from core import mechanics
from core.cli.main import main as cli
from core.diffusion import samplers
from core.diffusion.schedules import make_schedule
from core.images import read_parameters, tensor_to_pil
from core.mechanics import Condition
from core.metrics import mean_pairwise_distance
from core.models.modelset import ModelSet
from core.pipeline import StageSettings, generate_text

TEXT = Condition(model="text_base", prompt="grinning face")
CLASS = Condition(model="class_base", label="cat-face")


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    return ModelSet(tiny_checkpoints, "cpu")


@pytest.fixture(scope="module")
def checkpoints_with_directions(tiny_checkpoints, tmp_path_factory):
    """The tiny checkpoints plus h-space directions for both base models, fitted on random images."""
    from core import hspace
    root = tmp_path_factory.mktemp("with-hspace") / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    ms = ModelSet(root, "cpu")
    g = torch.Generator().manual_seed(0)
    pictures = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    labels = {name: (torch.arange(8), torch.tensor([0, 1] * 4)) for name in ("dark-skin", "woman", "smiling")}
    for name in ("text_base", "class_base"):
        model, cond = mechanics.model_and_cond(ms, Condition(model=name))
        hspace.fit_directions(model, cond, pictures, labels, anchors=3).save(root / name)
    return root


def picture(tmp_path, name="in.png", size=(40, 30), mode="RGBA"):
    path = tmp_path / name
    Image.new(mode, size, (200, 40, 40, 200) if mode == "RGBA" else (200, 40, 40)).save(path)
    return str(path)


# ---- forward process ---------------------------------------------------------------------------
def test_forward_process_rows_and_curves():
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    rows = mechanics.forward_process(x, [0, 500, 999], seed=3)
    assert rows.shape == (2, 3, 3, 32, 32)
    assert (rows[:, 0] - x).abs().max() < 0.05            # t = 0 is nearly the image on both schedules
    assert not torch.allclose(rows[0, 1], rows[1, 1])       # at t = 500 the cosine schedule keeps more signal
    linear, cosine = make_schedule("linear"), make_schedule("cosine")
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(rows[1, 1], cosine.q_sample(x, 500, noise).clamp(-1, 1))
    assert torch.allclose(rows[0, 2], linear.q_sample(x, 999, noise).clamp(-1, 1))
    curves = mechanics.schedule_curves(points=11)
    for name in ("linear", "cosine"):
        ab = [r["alpha_bar"] for r in curves if r["schedule"] == name]
        assert len(ab) == 11 and all(a > b for a, b in zip(ab, ab[1:]))
    mid = {r["schedule"]: r["log_snr"] for r in curves if r["t"] == 500}
    assert mid["cosine"] > mid["linear"]


@pytest.mark.parametrize("ts, message", [([1000], "between 0 and 999"), ([-1], "between 0 and 999"),
                                         ([], "from 1 to 16"), (["a"], "t must be a number")])
def test_forward_process_bad_times(ts, message):
    with pytest.raises(ValueError, match=message):
        mechanics.forward_process(torch.zeros(1, 3, 8, 8), ts)


# ---- samplers at equal cost ----------------------------------------------------------------------
@pytest.mark.parametrize("name", samplers.SAMPLERS)
@pytest.mark.parametrize("budget", [1, 4, 7])
def test_nfe_is_what_the_sampler_spends(name, budget):
    calls = []

    def denoiser(x, t):
        calls.append(1)
        return torch.zeros_like(x)

    steps = mechanics.steps_for_nfe(name, budget)
    samplers.sample(name, denoiser, torch.randn(1, 2), make_schedule("cosine"), steps,
                    generator=torch.Generator().manual_seed(0))
    assert len(calls) == mechanics.nfe(name, steps) <= max(budget, 1)
    assert mechanics.nfe(name, steps + 1) > budget   # the most steps that fit


def test_compare_samplers(models):
    result = mechanics.compare_samplers(models, TEXT, ["ddim", "heun", "ddpm"], [2, 3], seeds=[0, 1])
    assert [(r["sampler"], r["nfe_budget"]) for r in result.rows] == [
        ("ddim", 2), ("ddim", 3), ("heun", 2), ("heun", 3), ("ddpm", 2), ("ddpm", 3)]
    heun = [r for r in result.rows if r["sampler"] == "heun"]
    assert [(r["steps"], r["nfe"]) for r in heun] == [(1, 1), (2, 3)]
    for r in result.rows:
        assert r["nfe"] <= r["nfe_budget"] and r["seconds_per_image"] >= 0 and 0 <= r["clip_score"] <= 100
    assert all(x.shape == (2, 3, 32, 32) for x in result.images)
    # a line per sampler, named on its left: 2 budgets x 2 seeds across, 3 samplers down (32 px cells
    # shown at 64, 2 px padding), the budgets on top; each cell is its own image
    grid = result.grid()
    left = grid.width - 2 - 4 * 66
    assert grid.height == 18 + 2 + 3 * 66 and left > 20
    heun_budget3_seed1 = grid.crop((left + 2 + 3 * 66, 18 + 2 + 66, left + 2 + 3 * 66 + 64, 18 + 2 + 66 + 64))
    expected = tensor_to_pil(result.images[3][1:2])[0].resize((64, 64), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(heun_budget3_seed1), np.asarray(expected))
    assert np.asarray(grid.crop((0, 18, left, grid.height))).min() < 128   # the names are written
    # the same images as the text-to-image base stage with the same settings and seeds
    same = generate_text(models.get("text_base"), models.text_encoder(), ["grinning face"], "", [0, 1],
                         StageSettings(sampler="ddim", steps=2, guidance=3.0))
    assert torch.allclose(result.images[0], same)


def test_guidance_sweep(models):
    result = mechanics.guidance_sweep(models, CLASS, scales=[1.0, 4.0], seeds=[0, 1, 2], steps=2)
    assert [r["guidance"] for r in result.rows] == [1.0, 4.0]
    for r in result.rows:
        assert r["diversity_clip"] > 0 and r["diversity_pixels"] > 0 and 0 <= r["clip_score"] <= 100
    grid = result.grid()   # a line per scale, named on its left, a column per seed
    assert grid.height == 18 + 2 + 2 * 66 and grid.width > 2 + 3 * 66
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == 5.0


@pytest.mark.parametrize("call, message", [
    (lambda m: mechanics.guidance_sweep(m, TEXT, seeds=[0]), "from 2 to 16 seeds"),
    (lambda m: mechanics.compare_samplers(m, Condition(prompt="  ")), "prompt is empty"),
    (lambda m: mechanics.compare_samplers(m, Condition(model="class_base")), "choose a class label"),
    (lambda m: mechanics.compare_samplers(m, TEXT, ["plms"]), "sampler must be one of"),
    (lambda m: mechanics.compare_samplers(m, TEXT, budgets=[0]), "NFE budget must be an integer from 1 to 200"),
    (lambda m: mechanics.compare_samplers(m, TEXT, seeds=[-1]), "non-negative integers"),
    (lambda m: mechanics.guidance_sweep(m, TEXT, scales=[float("inf")], seeds=[0, 1]),
     "guidance scale must be a finite"),
    (lambda m: mechanics.trajectory(m, Condition(model="class_base", label="unicorn")), "unknown class 'unicorn'"),
    (lambda m: mechanics.trajectory(m, TEXT, frames=1), "frames must be an integer from 2 to 16"),
    (lambda m: Condition(model="sr64"), "model must be one of text_base, class_base"),
])
def test_bad_sampling_inputs_are_clear_errors(models, call, message):
    with pytest.raises(ValueError, match=message):
        call(models)


# ---- trajectory ----------------------------------------------------------------------------------
def test_trajectory(models):
    result = mechanics.trajectory(models, TEXT, seed=4, sampler="dpmpp-2m", steps=5, frames=3)
    assert result.steps == [0, 2, 4] and result.x_t.shape == result.x0.shape == (3, 3, 32, 32)
    assert result.times[0] > result.times[1] > result.times[2]
    strip = result.strip()   # 3 frames + the final sample, 2 rows (x_t, predicted x0), cells at 2x, t on top
    assert strip.height == 18 + 2 + 2 * (64 + 2) and strip.width > 2 + 4 * (64 + 2)
    same = generate_text(models.get("text_base"), models.text_encoder(), ["grinning face"], "", [4],
                         StageSettings(sampler="dpmpp-2m", steps=5, guidance=3.0))
    assert torch.allclose(result.final, same)


# ---- likelihood ----------------------------------------------------------------------------------
@pytest.mark.parametrize("condition", [Condition(model="text_base"), TEXT, Condition(model="class_base"), CLASS])
@pytest.mark.parametrize("method", ["ode", "vlb"])
def test_likelihood_under_each_base(models, condition, method):
    x = torch.cat([mechanics.uniform_noise(32), mechanics.pink_noise(32)])
    result = mechanics.likelihood(models, condition, x, method, steps=2, probes=2)
    assert result.bits_per_dim.shape == (2,) and torch.isfinite(result.bits_per_dim).all()
    assert (result.bits_per_dim > 0).all() and (result.stderr >= 0).all()


def test_likelihood_bad_inputs(models):
    with pytest.raises(ValueError, match=r"images must be \[B, 3, 32, 32\]"):
        mechanics.likelihood(models, TEXT, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="method must be one of ode, vlb"):
        mechanics.likelihood(models, TEXT, torch.zeros(1, 3, 32, 32), method="exact")


def test_reference_images_are_what_they_say():
    noise = mechanics.uniform_noise(32, seed=1)
    levels = ((noise + 1) * 127.5).round()
    assert torch.allclose((noise + 1) * 127.5, levels, atol=1e-4) and len(levels.unique()) > 200
    pink = mechanics.pink_noise(32, seed=1)
    assert pink.shape == (1, 3, 32, 32) and pink.min() >= -1 and pink.max() <= 1
    # 1/f: neighbouring pixels are strongly correlated, unlike uniform noise
    corr = torch.corrcoef(torch.stack([pink[0, :, :, :-1].flatten(), pink[0, :, :, 1:].flatten()]))[0, 1]
    assert corr > 0.5


# ---- h-space through the model set ---------------------------------------------------------------
def test_hspace_edit_through_the_model_set(checkpoints_with_directions):
    ms = ModelSet(checkpoints_with_directions, "cpu")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    result = mechanics.hspace_edit(ms, "text_base", x, "woman", 2.0, steps=3, interval=1.0)
    assert result.edited.shape == (1, 3, 32, 32) and result.edited_steps == 3
    assert not torch.allclose(result.edited, result.reconstruction)
    zero = mechanics.hspace_edit(ms, "class_base", x, "woman", 0.0, steps=3)
    assert torch.equal(zero.edited, zero.reconstruction)
    with pytest.raises(ValueError, match="unknown attribute 'wings'"):
        mechanics.hspace_edit(ms, "text_base", x, "wings", 1.0)


def test_hspace_without_directions_names_the_command(models):
    with pytest.raises(ValueError, match="hspace-directions --model text_base"):
        mechanics.hspace_edit(models, "text_base", torch.zeros(1, 3, 32, 32), "woman", 1.0)


# ---- the command line ----------------------------------------------------------------------------
def test_cli_every_panel(tiny_checkpoints, checkpoints_with_directions, tmp_path, capsys):
    image = picture(tmp_path)
    ck = ["--checkpoints", str(tiny_checkpoints), "--device", "cpu"]
    assert cli(["mechanics", "curves"]) == 0
    assert cli(["mechanics", "forward", "--image", image, "--t", "0,500,999", "--out", str(tmp_path / "f.png")]) == 0
    assert Image.open(tmp_path / "f.png").size == (2 + 3 * 34, 2 + 2 * 34)
    assert cli(["mechanics", "samplers", "--prompt", "cat face", "--samplers", "ddim,heun", "--nfe", "3",
                           "--seeds", "0", "--out", str(tmp_path / "s.png"), *ck]) == 0
    assert read_parameters(tmp_path / "s.png")["samplers"] == ["ddim", "heun"]
    assert cli(["mechanics", "guidance", "--model", "class_base", "--label", "cat-face", "--scales", "1,3",
                           "--seeds", "0,1", "--steps", "2", "--out", str(tmp_path / "g.png"), *ck]) == 0
    assert cli(["mechanics", "trajectory", "--prompt", "cat face", "--steps", "3", "--frames", "2",
                           "--out", str(tmp_path / "t.png"), *ck]) == 0
    assert cli(["mechanics", "likelihood", "--image", image, "--references", "--steps", "2", *ck]) == 0
    ck2 = ["--checkpoints", str(checkpoints_with_directions), "--device", "cpu"]
    assert cli(["mechanics", "hspace", "--image", image, "--attribute", "smiling", "--strength", "1", "--steps", "2",
                           "--out", str(tmp_path / "h.png"), *ck2]) == 0
    out = capsys.readouterr().out
    assert "| schedule | t | alpha_bar |" in out and "| sampler | nfe_budget |" in out
    assert "| guidance | clip_score | diversity_clip |" in out and "uniform noise" in out
    assert "h shifted on" in out
    for name in "fsgth":
        assert (tmp_path / f"{name}.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["samplers", "--prompt", "", "--out", "x.png"], "prompt is empty"),
    (["guidance", "--prompt", "cat", "--seeds", "0", "--out", "x.png"], "from 2 to 16 seeds"),
    (["likelihood", "--image", "missing.png"], "missing.png does not exist"),
    (["likelihood"], "give --image"),
    (["hspace", "--image", "IMAGE", "--attribute", "woman", "--strength", "1", "--out", "x.png"],
     "hspace-directions --model text_base"),
    (["trajectory", "--model", "class_base", "--label", "unicorn", "--out", "x.png"], "unknown class 'unicorn'"),
])
def test_cli_bad_input_is_one_line(tiny_checkpoints, tmp_path, capsys, args, message):
    args = [picture(tmp_path) if a == "IMAGE" else a for a in args]
    assert cli(["mechanics", *args, "--checkpoints", str(tiny_checkpoints), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err


# ---- the tab -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tab_fns(checkpoints_with_directions, tmp_path_factory):
    from demos import common, how_it_works
    models = common.Models.load(checkpoints_with_directions, "cpu")
    return how_it_works.make_fns(models)


def final(result):
    """A panel's answer: the last update of a streaming (generator) panel, or what it returned."""
    return list(result)[-1] if inspect.isgenerator(result) else result


def test_tab_panels(tab_fns, tmp_path):
    forward, compare, sweep, traj, likelihood, hspace_edit, guidance_comparison = tab_fns
    image = picture(tmp_path, mode="RGB")
    grid, table = forward(image, "0, 999", 1)
    assert Image.open(grid).size == (2 + 2 * 34, 2 + 2 * 34) and list(table["t"]) == [0.0, 999.0, 0.0, 999.0]
    path, table, params = final(compare("text_base", "cat face", None, ["ddim", "euler"], "2", 0, 1, 3.0, True))
    assert list(table["sampler"]) == ["ddim", "euler"] and read_parameters(path)["panel"] == "samplers"
    path, table, fidelity, diversity, params = final(sweep("class_base", "", "cat-face", "1, 2", 0, 2, "ddim", 2,
                                                          False))
    assert len(table) == 2 and len(fidelity) == 2 and len(diversity) == 4
    path, table, params = final(traj("text_base", "cat face", None, 0, "euler", 3, 2.0, 2))
    assert list(table["step"]) == [0, 2, "final"] and list(table["t"])[-1] == "the sample (no noise left)"
    assert "-1" not in list(table["t"])
    table, params = final(likelihood(image, "class_base", "", None, "ode", 2, 1, True))
    assert table["image"][0] == "in.png" and "uniform noise" in list(table["image"]) and len(table) >= 4
    assert params["nfe_per_probe"] == 4 and list(table.columns) == ["image", "bits/dim"]   # one probe: no error
    table, params = final(likelihood(image, "class_base", "", None, "ode", 2, 2, False))
    assert list(table.columns) == ["image", "bits/dim", "± std. error"] and table["± std. error"][0] >= 0
    *images, note, params = final(hspace_edit(image, "text_base", "dark-skin", 1.0, 3, 0.5, 2.0))
    assert all(Image.open(p).size == (32, 32) for p in images[:3])
    assert images[3] is not None and Image.open(images[3]).size == (32, 32) and note == ""   # the tiny DiffAE edit


@pytest.mark.parametrize("panel, args, message", [
    (0, (None, "0", 0), "upload an image"),
    (0, ("IMAGE", "0, 2000", 0), "between 0 and 999"),
    (0, ("IMAGE", "zero", 0), "comma-separated numbers"),
    (1, ("text_base", "", None, ["ddim"], "2", 0, 1, 3.0, True), "prompt is empty"),
    (1, ("text_base", "cat", None, [], "2", 0, 1, 3.0, True), "at least one sampler"),
    (2, ("text_base", "cat", None, "1", 0, 1, "ddim", 2, True), "from 2 to 16 seeds"),
    (3, ("text_base", "cat", None, 0, "ddim", 0, 3.0, 2), "steps must be from 1 to 100"),
    (4, (None, "text_base", "", None, "ode", 2, 1, False), "upload an image or tick the reference images"),
    (4, ("IMAGE", "text_base", "", None, "ode", 2, 100, False), "probes must be an integer from 1 to 64"),
    (5, ("IMAGE", "text_base", "wings", 1.0, 3, 0.5, 2.0), "unknown attribute 'wings'"),
    (5, ("IMAGE", "text_base", "woman", 9.0, 3, 0.5, 2.0), "strength must be a finite number between -5 and 5"),
    (6, ("cat-face", "1", "lots", 0, 2, 2), "classifier-guidance scales must be comma-separated numbers"),
    (6, (None, "1", "0", 0, 2, 2), "choose a class label"),
])
def test_tab_bad_inputs_are_gradio_errors(tab_fns, tmp_path, panel, args, message):
    args = [picture(tmp_path) if a == "IMAGE" else a for a in args]
    with pytest.raises(gr.Error, match=message):
        final(tab_fns[panel](*args))


def test_tab_builds_and_notes_what_is_missing(tiny_checkpoints, tmp_path):
    """Without h-space directions or DiffAE the tab still builds and says what is missing; with
    no models at all every model-backed panel answers with a gr.Error naming the model."""
    import app
    from demos import common, how_it_works
    models = common.Models.load(tiny_checkpoints, "cpu")
    note = how_it_works._hspace_status(models)
    assert "hspace-directions --model text_base" in note and "hspace-directions --model class_base" in note
    app.build_app(models, [how_it_works])
    (tmp_path / "empty").mkdir()
    empty = common.Models.load(tmp_path / "empty", "cpu")
    assert "`diffae` model, which is unavailable" in how_it_works._hspace_status(empty)
    demo = app.build_app(empty, [how_it_works])
    assert demo is not None
    forward, compare, *_ , likelihood, hspace_edit = how_it_works.make_fns(empty)
    grid, _ = forward(picture(tmp_path, mode="RGB"), "10", 0)           # needs no model
    assert Image.open(grid).size == (36, 70)
    with pytest.raises(gr.Error, match="'clip' is unavailable"):
        final(compare("text_base", "cat", None, ["ddim"], "2", 0, 1, 3.0, True))
    with pytest.raises(gr.Error, match="'class_base' is unavailable"):
        final(likelihood(None, "class_base", "", None, "ode", 2, 1, True))
