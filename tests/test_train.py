"""Training: a resumed run equals an uninterrupted one; the smoke run of every stage works."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.cli.main import main as cli
from core.models.loading import load_model
from core.training.config import DiffAESettings, SRSettings, TrainConfig, task_fields
from core.training.loop import train
from core.training.registry import TASK_OPTIONS, default_config
from tests import run_state_files


def _weights(run):
    return torch.load(run / "state.pt", map_location="cpu", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["class_base", "sr64"])
def test_resume_matches_uninterrupted(tmp_path, kind):
    straight = default_config(kind, str(tmp_path / "a"), smoke=True, steps=6, save_every=100, sample_every=100)
    train(straight, log=lambda s: None)
    first = default_config(kind, str(tmp_path / "b"), smoke=True, steps=3, save_every=100, sample_every=100)
    train(first, log=lambda s: None)
    resumed = default_config(kind, str(tmp_path / "b"), smoke=True, steps=6, save_every=100, sample_every=100)
    train(resumed, log=lambda s: None)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a["step"] == b["step"] == 6
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert torch.equal(a["generator"], b["generator"])
    # and it really trained: the weights moved away from a fresh start
    fresh = default_config(kind, str(tmp_path / "c"), smoke=True, steps=0)
    train(fresh, log=lambda s: None)
    c = _weights(tmp_path / "c")
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_budget_stops_and_resumes(tmp_path):
    cfg = default_config("class_base", str(tmp_path / "r"), smoke=True, steps=50, budget_minutes=0.0)
    summary = train(cfg, log=lambda s: None)
    assert summary["stopped_by_budget"] and summary["step"] == 0
    cfg = default_config("class_base", str(tmp_path / "r"), smoke=True, steps=3)
    assert train(cfg, log=lambda s: None)["step"] == 3


@pytest.mark.slow
def test_smoke_all_stages_write_checkpoints(tmp_path):
    """`python -m core train all --smoke --profile gpu`: every model, in order, exported and loadable
    (the GPU profile's code path, on tiny models)."""
    out, runs = tmp_path / "ckpt", tmp_path / "runs"
    assert cli(["train", "all", "--smoke", "--profile", "gpu", "--export", str(out), "--run", str(runs)]) == 0
    for kind in ("clip", "text_base", "class_base", "sr64", "sr128", "palette", "diffae"):
        folder = out / kind
        assert (folder / "config.json").is_file() and (folder / "README.md").is_file()
        tensors = load_file(str(folder / "model.safetensors"))
        assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
        if kind != "clip":
            assert load_model(folder).kind in ("text_base", "class_base", "sr", "palette", "diffae")
        assert "steps: 4" in (folder / "README.md").read_text()
    assert any((runs / "class_base" / "samples").glob("step_*.png"))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        default_config("teleporter", "x")


@pytest.mark.slow
def test_diffae_resolution_and_palette_crops(tmp_path):
    """`--resolution 32` gives a 32x32 DiffAE; `--crop` trains Palette on windows of its 64x64
    images (target, source and mask cut alike) and the exported model still works at 64."""
    from core.training.registry import make_task
    from core.translate import PALETTE_TASKS
    assert cli(["train", "diffae", "--smoke", "--resolution", "32", "--run", str(tmp_path / "d"),
                 "--export", str(tmp_path / "diffae")]) == 0
    assert load_model(tmp_path / "diffae").resolution == 32
    assert '"resolution": 32' in (tmp_path / "diffae" / "README.md").read_text()

    cfg = default_config("palette", str(tmp_path / "p"), smoke=True, crop=24, residual_scale=0)
    task = make_task(cfg)
    task.build()
    x0, cond = task.x0_and_cond(torch.Generator().manual_seed(0), torch.device("cpu"))
    assert x0.shape[-2:] == cond["source"].shape[-2:] == cond["mask"].shape[-2:] == (24, 24)
    inpaint = cond["task"] == PALETTE_TASKS.index("inpaint")
    # the source of an inpainting example is the target with the (cropped) mask region blanked
    assert torch.equal(cond["source"][inpaint], (x0 * (1 - cond["mask"]))[inpaint])


@pytest.mark.slow
def test_sr_trains_on_the_scaled_residual(tmp_path):
    """sr64/sr128 diffuse residual_scale * (image - bilinear(low)) by default (the exported config
    says so, and `upscale` adds it back); `--residual-scale 0` diffuses the image itself."""
    import torch.nn.functional as F

    from core.training.registry import make_task
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = make_task(default_config("sr64", str(tmp_path / "p"), smoke=True, crop=None, residual_scale=0))
    assert plain.build().config.residual_scale is None
    image, _ = plain.x0_and_cond(gen(), torch.device("cpu"))
    residual = make_task(default_config("sr64", str(tmp_path / "r"), smoke=True, crop=None))
    assert residual.build().config.residual_scale == 4.0
    x0, cond = residual.x0_and_cond(gen(), torch.device("cpu"))
    # the same draws: recover the low-res images behind the batch and check the target by hand
    idx = residual.draw(gen(), residual.cfg.optim.batch)
    low_up = F.interpolate(residual.images_low[idx], size=64, mode="bilinear", align_corners=False)
    assert torch.allclose(image, residual.images_high[idx])
    assert torch.allclose(x0, 4.0 * (image - low_up), atol=1e-6)
    with pytest.raises(ValueError, match="sr64, sr128 and palette only"):
        default_config("class_base", "x", residual_scale=4.0)
    assert cli(["train", "text_base", "--residual-scale", "2", "--run", str(tmp_path / "t")]) == 2
    for bad in ("-1", "inf", "nan"):
        with pytest.raises(ValueError, match="finite number >= 0"):
            default_config("sr64", "x", residual_scale=float(bad))


def test_snr_floor_weights_the_noisiest_steps():
    """The loss is the v-error weighted by clamp(SNR, floor, gamma) / (SNR + 1) (min-SNR, floored):
    checked by hand against a network that predicts 0, for floor 0 (plain min-SNR) and 1."""
    from core.diffusion.schedules import make_schedule
    from core.training.task import DiffusionTask

    class Fixed(DiffusionTask):
        def __init__(self, cfg):   # no data set: a fixed batch
            self.cfg, self.schedule = cfg, make_schedule("cosine", 1000)

        def x0_and_cond(self, gen, device):
            return torch.linspace(-1, 1, 8 * 3 * 4 * 4).view(8, 3, 4, 4), {}

    zero = lambda x_t, t, cond: torch.zeros_like(x_t)  # noqa: E731
    for floor in (0.0, 1.0):
        task = Fixed(default_config("class_base", "x", snr_floor=floor))
        loss = task.loss(zero, torch.Generator().manual_seed(3), torch.device("cpu"))
        gen = torch.Generator().manual_seed(3)    # the same draws by hand
        x0, _ = task.x0_and_cond(gen, "cpu")
        t = torch.randint(1000, (8,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        ab = task.schedule.alpha_bar(t).float().view(8, 1, 1, 1)
        snr = ab / (1 - ab)
        v = ab.sqrt() * noise - (1 - ab).sqrt() * x0
        weight = torch.minimum(torch.maximum(snr, torch.tensor(floor)), torch.tensor(5.0)) / (snr + 1)
        assert torch.allclose(loss, (weight * v.pow(2)).mean(dim=(1, 2, 3), keepdim=True).mean(), rtol=1e-5)
    assert default_config("diffae", "x").task.snr_floor == 1.0
    assert default_config("text_base", "x").task.snr_floor == 0.0
    for bad in (-1.0, 6.0, float("nan")):
        with pytest.raises(ValueError, match="--snr-floor"):
            default_config("diffae", "x", snr_floor=bad)


@pytest.mark.slow
def test_speed_options(tmp_path):
    """channels-last trains and exports like the default; a bad precision is named. (bf16 autocast
    is the CUDA default; on this AVX2 CPU it is ~14x slower, see scripts/bench_training.py.)"""
    cfg = default_config("class_base", str(tmp_path / "r"), smoke=True, steps=2, channels_last=True,
                         sample_every=100)
    summary = train(cfg, export=tmp_path / "out")
    assert summary["step"] == 2 and load_model(tmp_path / "out").kind == "class_base"
    with pytest.raises(ValueError, match="precision must be"):
        default_config("class_base", "x", precision="fp8")
    with pytest.raises(ValueError, match="diffae only"):
        default_config("class_base", "x", resolution=32)
    with pytest.raises(ValueError, match="palette only"):
        default_config("text_base", "x", crop=16)


@pytest.mark.slow
def test_init_from_starts_from_the_checkpoints_weights(tmp_path):
    """--init-from: model and EMA start as the checkpoint's weights, with a fresh optimiser;
    a state in the run folder still wins (resume), and a folder of another kind is refused."""
    from core.models.checkpoints import CheckpointError
    first = default_config("class_base", str(tmp_path / "a"), smoke=True, steps=3, save_every=100, sample_every=100)
    train(first, export=tmp_path / "ckpt", log=lambda s: None)
    exported = load_file(str(tmp_path / "ckpt" / "model.safetensors"))

    cont = default_config("class_base", str(tmp_path / "b"), smoke=True, steps=0, init_from=str(tmp_path / "ckpt"))
    train(cont, log=lambda s: None)
    state = _weights(tmp_path / "b")
    for k, v in exported.items():
        assert torch.equal(state["model"][k], v.float()), k
        assert torch.equal(state["ema"][k], v.float()), k
    assert state["optimizer"]["state"] == {}     # fresh optimiser

    fresh = default_config("class_base", str(tmp_path / "c"), smoke=True, steps=0)
    train(fresh, log=lambda s: None)
    assert any(not torch.equal(_weights(tmp_path / "c")["model"][k], exported[k].float()) for k in exported)

    # the run folder's own state wins over --init-from
    more = default_config("class_base", str(tmp_path / "b"), smoke=True, steps=2, init_from=str(tmp_path / "nowhere"))
    assert train(more, log=lambda s: None)["step"] == 2

    with pytest.raises(CheckpointError, match="holds a 'class_base' model.*, not sr64"):
        train(default_config("sr64", str(tmp_path / "d"), smoke=True, steps=0, init_from=str(tmp_path / "ckpt")),
              log=lambda s: None)
    with pytest.raises(CheckpointError, match="shape|missing"):   # another architecture
        train(default_config("class_base", str(tmp_path / "e"), smoke=True, steps=0, channels=(32, 64),
                             init_from=str(tmp_path / "ckpt")), log=lambda s: None)
    assert cli(["train", "class_base", "--run", str(tmp_path / "f"), "--smoke", "--steps", "0",
                 "--init-from", str(tmp_path / "missing")]) == 2


def test_balance_draws_each_design_alike():
    """--balance B draws an emoji with weight (size of its design) ** -B: at 1 every design
    (an emoji up to tone and gender) is drawn alike, so People & Body, mostly variants of few
    designs, gets far fewer draws than its ~60% of the emoji."""
    from collections import Counter

    from core.data.emoji import design_of
    from core.training.bases import ClassBaseTask
    shares = {}
    for balance in (0.0, 0.5, 1.0):
        task = ClassBaseTask(default_config("class_base", "unused", balance=balance))
        idx = task.draw(torch.Generator().manual_seed(0), 60_000).tolist()
        records = [task.data.records[i] for i in idx]
        shares[balance] = sum(r.group == "People & Body" for r in records) / len(records)
        if balance == 1.0:
            per_design = Counter(design_of(r) for r in records)
            designs = {design_of(task.data.records[i]) for i in task.train_idx.tolist()}
            expected = len(idx) / len(designs)
            # a design with many variants is drawn as often as one with a single emoji
            assert abs(per_design["dancing"] / expected - 1) < 0.3
            assert abs(sum(per_design.values()) / len(designs) / expected - 1) < 1e-9
    assert shares[0.0] > 0.5 and shares[1.0] < 0.35 and shares[0.0] > shares[0.5] > shares[1.0]
    with pytest.raises(ValueError, match="--balance applies to text_base and class_base only"):
        default_config("sr64", "x", balance=0.5)
    with pytest.raises(ValueError, match="between 0"):
        default_config("class_base", "x", balance=2.0)


def test_lognormal_t_sampling_follows_edm():
    """--t-sampling lognormal draws the training noise levels of EDM: ln sigma ~ N(-1.2, 1.2^2), so
    the median sigma is e^-1.2 and 68% of the draws lie within one standard deviation of it in
    log; uniform keeps the DDPM draws t ~ U{0..T-1} (the same numbers as before the option)."""
    from core.diffusion.schedules import make_schedule
    from core.training.task import draw_timesteps
    schedule = make_schedule("cosine", 1000)
    t = draw_timesteps(schedule, 20_000, torch.Generator().manual_seed(0), "lognormal")
    assert t.dtype == torch.long and 0 <= t.min() and t.max() <= 999
    log_sigma = schedule.sigma(t).log()
    assert abs(log_sigma.median().item() + 1.2) < 0.05
    assert abs(((log_sigma + 1.2).abs() < 1.2).double().mean().item() - 0.683) < 0.02
    uniform = draw_timesteps(schedule, 50, torch.Generator().manual_seed(1))
    assert torch.equal(uniform, torch.randint(1000, (50,), generator=torch.Generator().manual_seed(1)))
    assert default_config("text_base", "x", t_sampling="lognormal").task.t_sampling == "lognormal"
    with pytest.raises(ValueError, match="--t-sampling must be one of uniform, lognormal"):
        default_config("text_base", "x", t_sampling="beta")
    with pytest.raises(ValueError, match="--t-sampling applies to"):
        default_config("prior", "x", t_sampling="lognormal")


OLD_RUN = Path(__file__).parent / "data" / "old_diffae_run"


def _state_fingerprint(path) -> tuple[int, str]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for part in ("model", "ema"):
        for k in sorted(state[part]):
            h.update(k.encode())
            h.update(state[part][k].float().contiguous().numpy().tobytes())
    return state["step"], h.hexdigest()[:16]


def test_a_run_state_saved_before_the_settings_split_resumes_to_the_same_weights(tmp_path):
    """tests/data/old_diffae_run (read by tests/run_state_files.py): 2 steps of `train diffae --smoke
    --freeze-encoder --cond-dropout 0.1 --channels 4,8 --resolution 32 --threads 1` saved by the code
    before TrainConfig was split into its parts;
    that code, resumed to step 4, gave these weights (sha256 of model and EMA, one thread)."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(OLD_RUN / "config.json", run / "config.json")
    # the state as that code saved it (torch.save), kept in the repository as safetensors + JSON
    torch.save(run_state_files.read(OLD_RUN), run / "state.pt")
    threads = torch.get_num_threads()
    try:
        assert cli(["train", "diffae", "--smoke", "--run", str(run), "--freeze-encoder", "--cond-dropout", "0.1",
                    "--channels", "4,8", "--resolution", "32", "--steps", "4", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert _state_fingerprint(run / "state.pt") == (4, "41858be06c90bc4e")


def test_the_settings_are_in_parts_and_keep_their_flat_names():
    cfg = default_config("sr64", "runs/sr64", lr=1e-3, crop=16, freeze_encoder=False)   # diffae's, at its default
    assert (cfg.optim.lr, cfg.task.crop, cfg.run.folder, cfg.ema.decay) == (1e-3, 16, "runs/sr64", 0.999)
    assert type(cfg.task).__name__ == "SRSettings" and not hasattr(cfg.task, "freeze_encoder")
    flat = cfg.flat()
    assert flat["run"] == "runs/sr64" and flat["ema_decay"] == 0.999 and flat["crop"] == 16
    assert TrainConfig.build("sr64", SRSettings, **{k: v for k, v in flat.items() if k != "kind"}) == cfg
    assert cfg.replace(crop=8).task.crop == 8 and cfg.task.crop == 16
    with pytest.raises(ValueError, match="--freeze-encoder applies to diffae only, not sr64"):
        default_config("sr64", "x", freeze_encoder=True)
    with pytest.raises(TypeError, match="no setting 'nope'"):
        TrainConfig.build("sr64", SRSettings, nope=1)


def test_a_run_config_written_before_the_split_reads_into_the_parts():
    flat = json.loads((OLD_RUN / "config.json").read_text())
    kind = flat.pop("kind")
    reads = task_fields(DiffAESettings)
    flat = {k: v for k, v in flat.items() if k in reads or k not in TASK_OPTIONS}   # other kinds' settings
    cfg = TrainConfig.build(kind, DiffAESettings, **flat)
    assert cfg.task.freeze_encoder and cfg.task.cond_dropout == 0.1 and cfg.optim.steps == 2
    assert cfg == default_config("diffae", "runs/diffae", smoke=True, freeze_encoder=True, cond_dropout=0.1,
                                 channels=[4, 8], resolution=32, steps=2, threads=1, checkpoints="checkpoints")
