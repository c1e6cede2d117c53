"""DeepFloyd IF through our core, on tiny random IF-shaped models built here (as diffusers' own IF
tests build them: small UNet2DConditionModels with the IF options, a tiny T5, and the
sentencepiece tokenizer that tests/test_text_encoders.py trains). Nothing is downloaded.

Parity: diffusers' IFPipeline + IFSuperResolutionPipeline and our cascade load the same folders
and run the same settings (3 + 2 steps, guidance 7 / 4, noise level 250, seeds 3 and 4, a
negative prompt). Max |ours - diffusers| seen here, stage I / stage II:
  ddpm (IF's own: learned variance)   3.6e-5 / 1.1e-4; on diffusers' float32 alpha_bar 8.4e-6 / 2.4e-5
  dpmpp-2m (variance ignored)         1.7e-5 / 8.4e-5; on diffusers' float32 alpha_bar 1.7e-5 / 7.1e-5
Where the differences come from:
- diffusers computes its schedules in float32, ours are float64 (core.diffusion.schedules). On the cosine
  schedule 1 - alpha_bar at t = 0 is 4.1e-5, and diffusers' float32 value is off by 5e-4
  relative; it enters the last step's x0 and the lower end (log beta~) of the learned variance.
  Putting diffusers' float32 alpha_bar into our stages removes this part.
- float32 rounding: our thresholding is a wrapper (x0 -> eps -> x0 again in the sampler) where
  diffusers thresholds x0 in place, and the coefficients are rounded differently. One model step
  agrees to ~4e-7 (test_stage_2_alone_matches_to_float32_rounding), but these random UNets,
  with guidance 7, multiply a difference by ~3 per step, so the steps are kept few.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.deepfloyd import IF_I_DEFAULTS, IF_II_DEFAULTS, DeepFloydIF, DeepFloydSet, availability, schedule_from_config
from core.diffusion.rng import BatchGenerator
from core.diffusion.schedules import NoiseSchedule
from core.models.checkpoints import CheckpointError
from core.models.text_encoders import load_t5_tokenizer
from tests.test_text_encoders import t5_dirs  # noqa: F401 - the tiny T5 + trained sentencepiece fixture

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore:You have disabled the safety checker")
PROMPT, NEGATIVE = "  Red Apple on a table ", "blurry"
SEEDS = [3, 4]
STEPS = (3, 2)  # stage I, stage II
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001, beta_end=0.02,
                 thresholding=True, dynamic_thresholding_ratio=0.95, prediction_type="epsilon",
                 variance_type="learned_range")


def tiny_unet(stage: int, seed: int):
    """diffusers' IF test UNets (tests/pipelines/deepfloyd_if), at 16 (stage I) and 32 (stage II)."""
    from diffusers import UNet2DConditionModel
    common = dict(block_out_channels=[32, 64],
                  down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
                  mid_block_type="UNetMidBlock2DSimpleCrossAttn",
                  up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"], out_channels=6,
                  cross_attention_dim=32, encoder_hid_dim=32, attention_head_dim=8, addition_embed_type="text",
                  addition_embed_type_num_heads=2, cross_attention_norm="group_norm",
                  resnet_time_scale_shift="scale_shift", act_fn="gelu")
    torch.manual_seed(seed)
    if stage == 1:
        return UNet2DConditionModel(sample_size=16, layers_per_block=1, in_channels=3, **common)
    return UNet2DConditionModel(sample_size=32, layers_per_block=[1, 2], in_channels=6, class_embed_type="timestep",
                                mid_block_scale_factor=1.414, time_embedding_act_fn="gelu", time_embedding_dim=32,
                                **common)


@pytest.fixture(scope="module")
def if_folders(t5_dirs, tmp_path_factory):  # noqa: F811 - the imported fixture
    """Stage I and II saved by diffusers' own save_pretrained, the tokenizer as IF ships it
    (tokenizer/spiece.model only)."""
    from diffusers import DDPMScheduler, IFPipeline, IFSuperResolutionPipeline
    from transformers import T5EncoderModel
    root = tmp_path_factory.mktemp("deepfloyd")
    spiece = t5_dirs["spiece"] / "tokenizer"
    tokenizer = load_t5_tokenizer(str(spiece))
    text_encoder = T5EncoderModel.from_pretrained(t5_dirs["spiece"] / "text_encoder")
    none = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=tiny_unet(1, 1),
               scheduler=DDPMScheduler(**SCHEDULER, sample_max_value=1.5), **none).save_pretrained(root / "IF-I")
    IFSuperResolutionPipeline(tokenizer=None, text_encoder=None, unet=tiny_unet(2, 2),
                              scheduler=DDPMScheduler(**SCHEDULER, sample_max_value=1.0),
                              image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000,
                                                                    beta_schedule="squaredcos_cap_v2"),
                              **none).save_pretrained(root / "IF-II")
    shutil.rmtree(root / "IF-I" / "tokenizer")
    shutil.copytree(spiece, root / "IF-I" / "tokenizer")
    return {"I": root / "IF-I", "II": root / "IF-II", "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def ours(if_folders):
    return DeepFloydIF.from_pretrained(if_folders["I"], if_folders["II"], device="cpu")


def diffusers_pipelines(if_folders, scheduler: str = "ddpm"):
    from diffusers import DPMSolverMultistepScheduler, IFPipeline, IFSuperResolutionPipeline
    none = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    # the tokenizer object: transformers 5 cannot read a bare spiece.model without protobuf
    p1 = IFPipeline.from_pretrained(if_folders["I"], tokenizer=if_folders["tokenizer"], **none)
    p2 = IFSuperResolutionPipeline.from_pretrained(if_folders["II"], tokenizer=None, text_encoder=None, **none)
    for p in (p1, p2):
        p.set_progress_bar_config(disable=True)
        if scheduler == "dpmpp-2m":
            p.scheduler = DPMSolverMultistepScheduler.from_config(p.scheduler.config)
    return p1, p2


def diffusers_cascade(p1, p2, steps=STEPS, guidance=(7.0, 4.0), noise_level=250):
    """diffusers' documented IF usage: T5 once, one generator per image through both stages."""
    prompt_embeds, negative_embeds = p1.encode_prompt(PROMPT, negative_prompt=NEGATIVE, clean_caption=False,
                                                      num_images_per_prompt=len(SEEDS))
    generator = [torch.Generator().manual_seed(s) for s in SEEDS]
    kw = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, generator=generator,
              output_type="pt")
    stage_1 = p1(num_inference_steps=steps[0], guidance_scale=guidance[0], **kw).images
    stage_2 = p2(image=stage_1, num_inference_steps=steps[1], guidance_scale=guidance[1], noise_level=noise_level,
                 **kw).images
    return stage_1, stage_2


def float32_schedules(model: DeepFloydIF, p1, p2) -> None:
    """Our stages on diffusers' float32 alpha_bar (the one difference that does not vanish)."""
    def from_alphas_cumprod(scheduler) -> NoiseSchedule:
        ab = scheduler.alphas_cumprod.double()
        return NoiseSchedule(1 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]]))
    model.stage_1.schedule = from_alphas_cumprod(p1.scheduler)
    model.stage_2.schedule = from_alphas_cumprod(p2.scheduler)
    model.stage_2.noising = from_alphas_cumprod(p2.image_noising_scheduler)


def our_cascade(model, sampler="ddpm", steps=STEPS):
    return model.generate(PROMPT, NEGATIVE, num=len(SEEDS), seed=SEEDS[0],
                          stage_1=replace(IF_I_DEFAULTS, sampler=sampler, steps=steps[0]),
                          stage_2=replace(IF_II_DEFAULTS, sampler=sampler, steps=steps[1]))


# ---- parity ---------------------------------------------------------------------------------------
# max |ours - diffusers| per stage: (as shipped, float64 schedules), (on diffusers' float32 alpha_bar)
BOUNDS = {"ddpm": ((1e-4, 5e-4), (2e-5, 1e-4)), "dpmpp-2m": ((1e-4, 5e-4), (1e-4, 4e-4))}


@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp-2m"])
def test_cascade_matches_diffusers(if_folders, sampler):
    """ddpm: IF's own DDPMScheduler (learned-range variance, dynamic thresholding 0.95 capped at
    1.5 / 1.0, guidance 7 and 4, noise level 250). dpmpp-2m: diffusers' DPMSolverMultistepScheduler
    from IF's config, which drops the variance channels as our DPM-Solver does."""
    p1, p2 = diffusers_pipelines(if_folders, sampler)
    ref_1, ref_2 = diffusers_cascade(p1, p2)
    model = DeepFloydIF.from_pretrained(if_folders["I"], if_folders["II"], device="cpu")
    result = our_cascade(model, sampler)
    assert sorted(result.stages) == [16, 32] and result.final.shape == ref_2.shape == (2, 3, 32, 32)
    shipped = [(result.stages[16] - ref_1).abs().max().item(), (result.stages[32] - ref_2).abs().max().item()]
    float32_schedules(model, p1, p2)
    result = our_cascade(model, sampler)
    same_ab = [(result.stages[16] - ref_1).abs().max().item(), (result.stages[32] - ref_2).abs().max().item()]
    print(f"{sampler}: max |ours - diffusers| stage I, II: {shipped} (float64 schedules), {same_ab} (float32)")
    bound_shipped, bound_same = BOUNDS[sampler]
    assert shipped[0] < bound_shipped[0] and shipped[1] < bound_shipped[1], shipped
    assert same_ab[0] < bound_same[0] and same_ab[1] < bound_same[1], same_ab
    assert ref_2.std() > 0.3  # a real image, not a constant


def test_stage_2_alone_matches_to_float32_rounding(if_folders, ours):
    """The same 16x16 input, T5 states and generators into both stage IIs: with the same alpha_bar
    the two agree to rounding, which shows the upsampling, the noise augmentation (its own
    schedule, the noise drawn after x_T), class_labels, guidance and the learned variance match."""
    p1, p2 = diffusers_pipelines(if_folders)
    states = ours.encode([PROMPT, NEGATIVE])
    cond, uncond = states[:1].expand(2, -1, -1), states[1:].expand(2, -1, -1)
    low = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    generator = [torch.Generator().manual_seed(s) for s in SEEDS]
    ref = p2(image=low, prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=2, guidance_scale=4.0,
             noise_level=250, generator=generator, output_type="pt").images
    model = DeepFloydIF.from_pretrained(if_folders["I"], if_folders["II"], device="cpu")
    float32_schedules(model, p1, p2)
    got = model.sample_stage_2(low, cond, uncond, BatchGenerator(SEEDS), replace(IF_II_DEFAULTS, steps=2))
    assert (got - ref).abs().max().item() < 5e-6  # seen: 5e-7 (t = 500 with the learned variance, then t = 0)


def test_prompt_embeddings_are_ifs(if_folders, ours):
    """Lower-cased, stripped, 77 T5 states; computed once and shared by both stages."""
    p1, _ = diffusers_pipelines(if_folders)
    ref, neg = p1.encode_prompt(PROMPT, negative_prompt=NEGATIVE, clean_caption=False)
    states = ours.encode([PROMPT, NEGATIVE])
    assert states.shape == (2, 77, 32)
    assert torch.equal(states[:1], ref) and torch.equal(states[1:], neg)
    calls = []
    encode = ours.encoder.encode
    ours.encoder.encode = lambda prompts: calls.append(prompts) or encode(prompts)
    try:
        our_cascade(ours, steps=(1, 1))
    finally:
        ours.encoder.encode = encode
    assert calls == [["red apple on a table", "blurry"]]


def test_same_seed_same_images_and_stage_i_only(ours):
    a = our_cascade(ours, steps=(2, 1))
    b = ours.generate(PROMPT, NEGATIVE, num=1, seed=SEEDS[1], stage_1=replace(IF_I_DEFAULTS, steps=2),
                      stage_2=replace(IF_II_DEFAULTS, steps=1))
    assert torch.allclose(a.final[1:], b.final, atol=1e-5)  # a seed gives its image whatever the batch
    small = ours.generate(PROMPT, size=16, stage_1=replace(IF_I_DEFAULTS, steps=2))
    assert list(small.stages) == [16] and small.parameters["stage_2"] is None
    with pytest.raises(ValueError, match=r"size must be one of \[16, 32\]"):
        ours.generate(PROMPT, size=64)
    with pytest.raises(ValueError, match="prompt is empty"):
        ours.generate("   ")


@pytest.mark.parametrize("sampler", ["ddim", "euler", "heun", "euler-maruyama"])
def test_other_samplers_run(ours, sampler):
    result = ours.generate(PROMPT, stage_1=replace(IF_I_DEFAULTS, sampler=sampler, steps=2),
                           stage_2=replace(IF_II_DEFAULTS, sampler=sampler, steps=2))
    assert result.final.shape == (1, 3, 32, 32) and torch.isfinite(result.final).all()


# ---- options -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dtypes_offload_and_compile_on_cpu(if_folders, ours, monkeypatch):
    ref = ours.generate(PROMPT, stage_1=replace(IF_I_DEFAULTS, steps=2), stage_2=replace(IF_II_DEFAULTS, steps=2))
    bf16 = DeepFloydIF.from_pretrained(if_folders["I"], if_folders["II"], device="cpu", dtype="bfloat16",
                                       offload=True)
    assert bf16.stage_1.unet.dtype == torch.bfloat16 and not bf16.offload  # offload means nothing on the CPU
    got = bf16.generate(PROMPT, stage_1=replace(IF_I_DEFAULTS, steps=2), stage_2=replace(IF_II_DEFAULTS, steps=2))
    assert got.final.dtype == torch.float32 and torch.isfinite(got.final).all()
    assert (got.final - ref.final).abs().mean() < 0.1
    # torch.compile with the eager backend: dynamo traces our call of the UNet (inductor takes minutes here)
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module: compile_(module, backend="eager"))
    compiled = DeepFloydIF.from_pretrained(if_folders["I"], None, device="cpu", compile=True)
    assert compiled.stage_1.forward is not compiled.stage_1.unet
    out = compiled.generate(PROMPT, stage_1=replace(IF_I_DEFAULTS, steps=2))
    torch.testing.assert_close(out.final, ref.stages[16], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        DeepFloydIF.from_pretrained(if_folders["I"], None, device="cpu", dtype="float8")


def test_t5_8bit_needs_bitsandbytes_and_a_gpu(if_folders):
    import importlib.util
    message = "bitsandbytes" if importlib.util.find_spec("bitsandbytes") is None else "CUDA GPU"
    with pytest.raises(ValueError, match=message):
        DeepFloydIF.from_pretrained(if_folders["I"], None, device="cpu", t5_8bit=True)
    ds = DeepFloydSet([str(if_folders["I"])], device="cpu", t5_8bit=True)
    assert not ds.available and message in ds.reason


def test_no_gpu_is_named(monkeypatch, if_folders):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CheckpointError, match="no CUDA GPU"):
        DeepFloydIF.from_pretrained(if_folders["I"], if_folders["II"])
    ok, why = availability([str(if_folders["I"])], "auto")
    assert not ok and "no CUDA GPU" in why and "cpu" in why
    assert availability([str(if_folders["I"]), str(if_folders["II"])], "cpu")[0]


# ---- where the weights come from -------------------------------------------------------------------
def hub_cache(cache: Path, repo_id: str, src: Path, commit: str) -> None:
    org, name = repo_id.split("/")
    repo = cache / f"models--{org}--{name}"
    shutil.copytree(src, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.fixture
def offline_cache(if_folders, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    hub_cache(cache, "tiny-org/IF-I", if_folders["I"], "a" * 40)
    hub_cache(cache, "tiny-org/IF-II", if_folders["II"], "b" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_ids_from_the_local_cache_offline(offline_cache, ours):
    ok, where = availability(["tiny-org/IF-I", "tiny-org/IF-II"], "cpu")
    assert ok and "local Hub cache" in where
    model = DeepFloydIF.from_pretrained("tiny-org/IF-I", "tiny-org/IF-II", device="cpu")
    settings = dict(stage_1=replace(IF_I_DEFAULTS, steps=2), stage_2=replace(IF_II_DEFAULTS, steps=2))
    assert torch.equal(model.generate(PROMPT, **settings).final, ours.generate(PROMPT, **settings).final)
    assert model.generate(PROMPT, **settings).parameters["weights"] == ["tiny-org/IF-I", "tiny-org/IF-II"]


def test_missing_repo_offline_is_clear(offline_cache):
    with pytest.raises(CheckpointError, match="tiny-org/IF-missing.*HF_HUB_OFFLINE=1"):
        DeepFloydIF.from_pretrained("tiny-org/IF-missing", None, device="cpu")
    ok, why = availability(["tiny-org/IF-I", "tiny-org/IF-missing"], "cpu")
    assert not ok and why == ("tiny-org/IF-missing is not in the local Hub cache, and HF_HUB_OFFLINE=1 forbids "
                              "downloading it")


def _hub_error(cls, status: int):
    import httpx2
    request = httpx2.Request("GET", "https://huggingface.co/api/models/DeepFloyd/IF-I-XL-v1.0")
    return cls(f"{status} Client Error", response=httpx2.Response(status, request=request))


def _refusing(cls, status: int):
    """A stand-in for a Hub call that always raises `_hub_error(cls, status)`."""
    def refuse(*args, **kwargs):
        raise _hub_error(cls, status)
    return refuse


def test_gated_and_unknown_repos_are_clear(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for error, message in ((GatedRepoError, "is gated.*accept its licence at https://huggingface.co/DeepFloyd/"
                                            "IF-I-XL-v1.0 and set HF_TOKEN"),
                           (RepositoryNotFoundError, "no Hub repo 'DeepFloyd/IF-I-XL-v1.0'")):
        refuse = _refusing(error, 403 if error is GatedRepoError else 404)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
        monkeypatch.setattr(huggingface_hub, "auth_check", refuse)
        with pytest.raises(CheckpointError, match=message):
            DeepFloydIF.from_pretrained(device="cpu")
        ok, why = availability(["DeepFloyd/IF-I-XL-v1.0"], "cpu")
        expected = "is gated and .*HF_TOKEN.*set HF_TOKEN" if error is GatedRepoError else "no Hub repo"
        assert not ok and re.search(expected, why), why

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(huggingface_hub, "auth_check", no_network)
    ok, why = availability(["DeepFloyd/IF-I-XL-v1.0"], "cpu")
    assert not ok and why.startswith("the Hub cannot be reached to fetch DeepFloyd/IF-I-XL-v1.0")


def test_broken_folders_are_named(if_folders, tmp_path):
    with pytest.raises(CheckpointError, match="takes 6 input channels; stage I takes 3"):
        DeepFloydIF.from_pretrained(if_folders["II"], None, device="cpu")
    with pytest.raises(CheckpointError, match="no Hub repo|not a local folder|no such folder"):
        DeepFloydIF.from_pretrained(str(tmp_path / "nowhere" / "at" / "all"), None, device="cpu")
    broken = tmp_path / "IF-I"
    shutil.copytree(if_folders["I"], broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"unet: no weights \(diffusion_pytorch_model.safetensors"):
        DeepFloydIF.from_pretrained(broken, None, device="cpu")
    assert not availability([str(tmp_path)], "cpu")[0]
    config = json.loads((if_folders["I"] / "scheduler" / "scheduler_config.json").read_text())
    with pytest.raises(CheckpointError, match="beta_schedule 'scaled_linear' is not supported"):
        schedule_from_config({**config, "beta_schedule": "scaled_linear"}, "here")


# ---- command line and app -----------------------------------------------------------------------------
def test_cli(if_folders, tmp_path, capsys):
    from PIL import Image

    from core.cli.main import main
    from core.images import read_parameters
    argv = ["deepfloyd", "--prompt", "red apple", "--stage-1", str(if_folders["I"]), "--stage-2", str(if_folders["II"]),
            "--steps", "2", "--sr-steps", "2", "--num", "2", "--seed", "5", "--device", "cpu",
            "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    for i in range(2):
        with Image.open(tmp_path / "o" / f"{i:03d}.png") as im:
            assert im.size == (32, 32)
            params = read_parameters(im)
        assert params["seed"] == 5 + i and params["command"] == "deepfloyd" and params["stage_2"]["steps"] == 2
    capsys.readouterr()
    bad = argv[:-4] + ["--device", "cpu", "--sampler", "plms", "--out", str(tmp_path / "bad")]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sampler must be one of") and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_app_lists_the_model_sets_and_runs_if(if_folders, tiny_checkpoints, tmp_path, monkeypatch):
    """In-process: the tab lists both sets with IF's licence note; IF generates through its
    endpoint's function; an unavailable IF says why while the emoji models keep working."""
    import gradio as gr

    import app
    from demos import common, deepfloyd_if, text_to_image
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    ds = DeepFloydSet([str(if_folders["I"]), str(if_folders["II"])], device="cpu")
    models = common.Models.load(tiny_checkpoints, "cpu", ds)
    demo = app.build_app(models, [text_to_image])
    markdown = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    folds = {b.label: (b.visible, b.open) for b in demo.blocks.values() if isinstance(b, gr.Accordion)}
    assert "Emoji models (embedded)" in markdown and "HF_TOKEN" in markdown
    assert folds["DeepFloyd IF (Hub): available, loaded on first use"] == (True, False)   # one line, folded
    assert folds["Generate with DeepFloyd IF (Hub)"][0] is True and if_stages_shown(demo)
    assert "text_to_image_deepfloyd" in {d.api_name for d in demo.fns.values()}
    *stages, gallery, parameters = list(deepfloyd_if.make_fn(models)(
        "red apple", "", 7, 2, "ddpm", 2, 7.0, 2, 4.0, 250, 2))[-1]
    assert [square_size(p) for p in stages] == [16, 32] and [square_size(p) for p, _ in gallery] == [32, 32]
    assert parameters["seeds"] == [7, 8] and parameters["model"] == "deepfloyd-if"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = DeepFloydSet(["tiny-org/not-cached"], device="cpu")
    models = common.Models.load(tiny_checkpoints, "cpu", missing)
    demo = app.build_app(models, [text_to_image])
    markdown = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    folds = {b.label: (b.visible, b.open) for b in demo.blocks.values() if isinstance(b, gr.Accordion)}
    assert folds["DeepFloyd IF (Hub): unavailable on this server"] == (True, False)
    assert "Why: tiny-org/not-cached is not in the local Hub cache" in markdown
    assert folds["Generate with DeepFloyd IF (Hub)"][0] is False and not if_stages_shown(demo)
    with pytest.raises(gr.Error, match="DeepFloyd IF \\(Hub\\) is unavailable: tiny-org/not-cached"):
        list(deepfloyd_if.make_fn(models)("red apple", "", 0, 1, "ddpm", 2, 7.0, 2, 4.0, 250, 2))
    *_, gallery, parameters = list(text_to_image.make_fn(models)(
        "thumbs up", "", 3.0, "ddim", 2, 0, 1, 32, True, 0.995, 0.0, 2, 50, 2, 50))[-1]
    assert len(gallery) == 1 and parameters["seeds"] == [0]


def if_stages_shown(demo) -> bool:
    """Whether the row of IF's stage images is visible."""
    import gradio as gr
    rows = [b for b in demo.blocks.values() if isinstance(b, gr.Row)
            and any(str(getattr(c, "label", "")).startswith("IF stage") for c in b.children)]
    assert len(rows) == 1
    return rows[0].visible is not False


def square_size(path) -> int:
    from PIL import Image
    with Image.open(path) as im:
        assert im.size[0] == im.size[1]
        return im.size[0]


@pytest.mark.server
def test_server_with_a_missing_if_repo_keeps_serving(tiny_checkpoints, tmp_path):
    """`python app.py` with IF pointed at a repo that is not there (offline): the app starts, says
    why in one line, IF's endpoint answers with that reason, and the emoji models keep serving."""
    from gradio_client.exceptions import AppError

    from tests.test_app import AppServer, make_client, rgb_png
    server = AppServer(["--checkpoints", tiny_checkpoints, "--deepfloyd", "tiny-org/IF-I,tiny-org/IF-II",
                        "--deepfloyd-device", "cpu"], tmp_path / "app.log",
                       env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "HF_HUB_OFFLINE": "1",
                            "HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    try:
        lines = [line for line in server.log().splitlines() if "DeepFloyd IF" in line]
        assert lines == ["* DeepFloyd IF (Hub): unavailable: tiny-org/IF-I is not in the local Hub cache, and "
                         "HF_HUB_OFFLINE=1 forbids downloading it"], server.log()
        client = make_client(server.url, tmp_path / "downloads")
        with pytest.raises(AppError, match="DeepFloyd IF \\(Hub\\) is unavailable: tiny-org/IF-I is not in"):
            client.predict(prompt="red apple", api_name="/text_to_image_deepfloyd")
        *_, gallery, parameters = client.predict(prompt="thumbs up", steps=2, size=32, num_images=1,
                                                 api_name="/text_to_image")
        rgb_png(gallery[0]["image"], 32)
        assert server.alive()
    finally:
        server.stop()
