"""DeepFloyd IF through our samplers and guidance: stage I (text -> 64x64) and stage II
(64 -> 256), both conditioned on one set of T5 embeddings, as in `IFPipeline` +
`IFSuperResolutionPipeline` of diffusers, whose folder layout this loads (`unet/`,
`scheduler/`, `text_encoder/`, `tokenizer/`; stage II also `image_noising_scheduler/`) from a
local folder or a Hub repo id.

What IF adds to our cascade, and where it happens here:
- prompts are lower-cased and stripped (IF's caption preprocessing without bs4/ftfy), encoded
  once by T5 (77 tokens), and the full padded states condition both UNets (IF uses no mask);
- the UNets output [eps, v] (6 channels): `LearnedVariance` splits them, guidance and
  thresholding see eps only, and `sample_ddpm` uses v (learned range); other samplers ignore it;
- classifier-free guidance (`cfg_denoiser`) and Imagen's dynamic thresholding at the percentile
  of the settings, p = 0.95 capped at s = 1.5 (stage I) and 1.0 (stage II), the values of IF's
  scheduler configs (dynamic_thresholding_ratio, sample_max_value);
- stage II: the stage-I image upsampled bilinearly (align_corners=True, as diffusers), diffused to
  the noise level with the `image_noising_scheduler`'s q(x_t | x_0), concatenated to x_t, and
  the level passed to the UNet as `class_labels`.
One generator per seed is continued through both stages (diffusers' IF example passes one
generator to both pipelines), drawing in diffusers' order: x_T, then (stage II) the
augmentation noise, then the DDPM step noise. Generators live on the CPU, so a seed gives the
same noise on any device. Samplers run in float32; only the networks run in `dtype`.

Memory and speed (GPU): dtype float16/bfloat16 (fp16 weight files are fetched then; T5 keeps
its `wo` layers in float32, as transformers does for IF's own pipeline), `offload=True` keeps
every model on the CPU and moves each to the GPU only while it runs, `t5_8bit=True` loads T5 in
8-bit through bitsandbytes (GPU only; it then stays on the GPU), `compile=True` wraps the UNets
in `torch.compile`. IF is never run on the CPU unless asked for by name (device="cpu").
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from core import cancel
from core.bases import IF_I_DEFAULTS, IF_II_DEFAULTS  # IF's own sampling settings (its base's)
from core.checks import check_seeds
from core.diffusion.guidance import cfg_denoiser, dynamic_threshold_denoiser
from core.diffusion.parameterization import LearnedVariance, eps_denoiser
from core.diffusion.rng import BatchGenerator
from core.diffusion.samplers import sample
from core.diffusion.schedules import NoiseSchedule, linear_betas, make_schedule
from core.models.checkpoints import CheckpointError
from core.models.text_encoders import T5TextEncoder, _env_true, _hub_cache_dir, fit_prompts, resolve_folder
from core.pipeline import Callback, CascadeResult, StageSettings

IF_STAGE_I = "DeepFloyd/IF-I-XL-v1.0"
IF_STAGE_II = "DeepFloyd/IF-II-L-v1.0"
LICENCE_NOTE = (f"DeepFloyd IF is released under the DeepFloyd IF License Agreement (research, non-commercial). Its "
                f"Hub repos are gated: accept the licence at https://huggingface.co/{IF_STAGE_I} and "
                f"https://huggingface.co/{IF_STAGE_II} while logged in, then give this machine a read token "
                "as the HF_TOKEN environment variable (a Space secret on Hugging Face).")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
NO_GPU = ("no CUDA GPU here: DeepFloyd IF needs one (T5-XXL + IF-I-XL + IF-II-L weigh about 20 GB in fp16; "
          "offload needs less GPU memory); device cpu (--device cpu; app: --deepfloyd-device cpu) runs it on the "
          "CPU anyway, very slowly")

_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
_VARIANCES = ("learned_range", "fixed_small", "fixed_large")


# ---- where the weights are ----------------------------------------------------------------------
def _weight_patterns(component: str, stem: str, variant: str | None) -> list[str]:
    """Hub file patterns of one component's safetensors (single or sharded), for one variant."""
    if variant is None:
        return [f"{component}/{stem}.safetensors", f"{component}/{stem}-*.safetensors",
                f"{component}/{stem}.safetensors.index.json"]
    return [f"{component}/{stem}.{variant}.safetensors", f"{component}/{stem}.{variant}-*.safetensors",
            f"{component}/{stem}.safetensors.index.{variant}.json"]


def _allow_patterns(stage: int, variant: str | None, with_text_encoder: bool) -> list[str]:
    patterns = ["model_index.json", "scheduler/*.json", "unet/config.json",
                *_weight_patterns("unet", "diffusion_pytorch_model", variant)]
    if stage == 2:
        patterns.append("image_noising_scheduler/*.json")
    if with_text_encoder:
        patterns += ["tokenizer/*", "text_encoder/config.json", *_weight_patterns("text_encoder", "model", variant)]
    return patterns


def _is_local(location: str | os.PathLike) -> bool:
    return os.path.isdir(os.path.expanduser(os.fspath(location)))


def resolve(location: str | os.PathLike, what: str, allow_patterns: list[str] | None = None) -> Path:
    """A local folder as is, or a Hub repo id downloaded (only `allow_patterns`) or found in the
    local Hub cache (HF_HUB_OFFLINE=1); CheckpointError saying why not, gated repos included."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return Path(resolve_folder(location, what, allow_patterns))
    except FileNotFoundError as e:
        cause = e.__cause__
        if isinstance(cause, GatedRepoError):
            raise CheckpointError(f"{what}: the Hub repo {location!r} is gated and this machine may not read it: "
                                  f"accept its licence at https://huggingface.co/{location} and set HF_TOKEN to a "
                                  "token of that account") from e
        if isinstance(cause, RepositoryNotFoundError):
            raise CheckpointError(f"{what}: no Hub repo {location!r} (or it is private and HF_TOKEN cannot read "
                                  "it)") from e
        raise CheckpointError(str(e)) from e
    except ValueError as e:
        raise CheckpointError(str(e)) from e


def _component_variant(folder: Path, component: str, stem: str, variant: str | None) -> str | None:
    """`variant` when its safetensors are in folder/component, else None when the plain ones are;
    CheckpointError naming the files otherwise."""
    names = os.listdir(folder / component) if (folder / component).is_dir() else []
    for v in ([variant] if variant else []) + [None]:
        prefix = stem if v is None else f"{stem}.{v}"
        if any(n == f"{prefix}.safetensors" or (n.startswith(f"{prefix}-") and n.endswith(".safetensors"))
               for n in names):
            return v
    wanted = f"{stem}.{variant}.safetensors or {stem}.safetensors" if variant else f"{stem}.safetensors"
    hint = "; a float16/bfloat16 dtype fetches the fp16 files from the Hub, float32 the others" if variant else ""
    raise CheckpointError(f"{folder / component}: no weights ({wanted}; only safetensors are loaded{hint})")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e


# ---- the scheduler config as our schedule ---------------------------------------------------------
def schedule_from_config(config: dict, where: str) -> NoiseSchedule:
    """A diffusers scheduler config's betas as our float64 NoiseSchedule."""
    T = int(config.get("num_train_timesteps", 1000))
    if config.get("trained_betas") is not None:
        return NoiseSchedule(torch.tensor(config["trained_betas"], dtype=torch.float64))
    if config.get("rescale_betas_zero_snr"):
        raise CheckpointError(f"{where}: rescale_betas_zero_snr is not supported")
    name = config.get("beta_schedule", "linear")
    if name == "squaredcos_cap_v2":
        return make_schedule("cosine", T)
    if name == "linear":
        return NoiseSchedule(linear_betas(T, config.get("beta_start", 1e-4), config.get("beta_end", 0.02)))
    raise CheckpointError(f"{where}: beta_schedule {name!r} is not supported (linear or squaredcos_cap_v2)")


@dataclass
class IFStage:
    """One IF UNet with its sampling schedule, read from the scheduler config."""
    unet: torch.nn.Module
    forward: object             # the unet, or torch.compile(unet)
    schedule: NoiseSchedule
    prediction: str             # eps | v | x0
    variance: str               # learned_range | fixed_small | fixed_large (DDPM only)
    spacing: str                # the scheduler's timestep_spacing
    noising: NoiseSchedule | None  # stage II: the image_noising_scheduler's schedule
    resolution: int
    dtype: torch.dtype

    @property
    def channels(self) -> int:
        """Image channels: 3 (stage II's UNet takes 6, x_t and the upsampled image)."""
        return self.unet.config.in_channels // (2 if self.noising is not None else 1)


def load_stage(folder: Path, stage: int, dtype: torch.dtype, variant: str | None, compile: bool = False) -> IFStage:
    """Stage I (stage=1) or II (stage=2) from a diffusers pipeline folder, on the CPU."""
    from diffusers import UNet2DConditionModel
    what = f"DeepFloyd IF stage {'I' * stage} {folder}"
    cfg = _read_json(folder / "unet" / "config.json")
    sched = _read_json(folder / "scheduler" / "scheduler_config.json")
    noising = None
    if stage == 2:
        noising = schedule_from_config(_read_json(folder / "image_noising_scheduler" / "scheduler_config.json"),
                                       f"{what}: image_noising_scheduler")
    channels = 3  # RGB; stage II's UNet also takes the upsampled image: 6 input channels
    if cfg.get("in_channels") != channels * stage:
        raise CheckpointError(f"{what}: its UNet takes {cfg.get('in_channels')} input channels; stage "
                              f"{'I' * stage} takes {channels * stage} (is this the other stage's repo?)")
    if stage == 2 and not cfg.get("class_embed_type"):
        raise CheckpointError(f"{what}: its UNet has no class embedding for the noise level")
    variance = sched.get("variance_type", "fixed_small")
    if variance not in _VARIANCES:
        raise CheckpointError(f"{what}: variance_type {variance!r} is not supported ({', '.join(_VARIANCES)})")
    out = cfg.get("out_channels")
    if out not in (channels, 2 * channels) or (variance == "learned_range" and out != 2 * channels):
        raise CheckpointError(f"{what}: the UNet outputs {out} channels, which does not fit variance_type {variance!r}")
    prediction = _PREDICTIONS.get(sched.get("prediction_type", "epsilon"))
    if prediction is None:
        raise CheckpointError(f"{what}: prediction_type {sched.get('prediction_type')!r} is not supported")
    if sched.get("steps_offset", 0):
        raise CheckpointError(f"{what}: steps_offset {sched['steps_offset']} is not supported")
    spacing = sched.get("timestep_spacing", "leading")
    if spacing not in ("leading", "trailing", "linspace"):
        raise CheckpointError(f"{what}: timestep_spacing {spacing!r} is not supported")
    unet_variant = _component_variant(folder, "unet", "diffusion_pytorch_model", variant)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype,
                                                    variant=unet_variant, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{what}: cannot load the UNet: {e}") from e
    unet.eval().requires_grad_(False)
    return IFStage(unet=unet, forward=torch.compile(unet) if compile else unet,
                   schedule=schedule_from_config(sched, f"{what}: scheduler"), prediction=prediction,
                   variance=variance, spacing=spacing,
                   noising=noising, resolution=int(cfg.get("sample_size", 64)), dtype=dtype)


# ---- devices and options ----------------------------------------------------------------------------
def if_device(device: str = "auto") -> torch.device:
    """cuda when there is one; the CPU only when asked for by name (IF is far too slow there to
    fall back to it silently)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise CheckpointError(NO_GPU if device == "auto" else "device cuda was asked for, but no CUDA GPU is available")
    return torch.device("cuda")


def parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float16 on a GPU and float32 on the CPU unless given."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")


def check_8bit(device: torch.device) -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("T5 in 8-bit needs the bitsandbytes package, which is not installed "
                         "(pip install bitsandbytes), or leave 8-bit off")
    if device.type != "cuda":
        raise ValueError("T5 in 8-bit (bitsandbytes) needs a CUDA GPU; leave 8-bit off on the CPU")


# ---- the model --------------------------------------------------------------------------------------
class DeepFloydIF:
    """T5 + IF stage I (+ stage II), loaded once and used read-only; `generate` runs the cascade."""

    def __init__(self, encoder, stage_1: IFStage, stage_2: IFStage | None, device: torch.device,
                 offload: bool = False, locations: Sequence[str] = ()):
        for name, stage in (("I", stage_1), ("II", stage_2)):
            if stage is None:
                continue
            width = stage.unet.config.encoder_hid_dim or stage.unet.config.cross_attention_dim
            if width != encoder.width:
                raise CheckpointError(f"the T5 states have width {encoder.width} "
                                      f"but the stage {name} UNet takes {width}")
        if stage_2 is not None and stage_2.resolution <= stage_1.resolution:
            raise CheckpointError(f"stage II samples {stage_2.resolution}x{stage_2.resolution}, not above stage I's "
                                  f"{stage_1.resolution}")
        self.encoder, self.stage_1, self.stage_2 = encoder, stage_1, stage_2
        self.device, self.offload = device, offload
        self.locations = list(locations)
        self._lock = threading.Lock()  # one generation at a time: offload moves the models between devices
        if not offload:
            for stage in self.stages():
                stage.unet.to(device)

    @classmethod
    def from_pretrained(cls, stage_1: str | os.PathLike = IF_STAGE_I, stage_2: str | os.PathLike | None = IF_STAGE_II,
                        *, device: str = "auto", dtype: str | torch.dtype | None = None, offload: bool = False,
                        t5_8bit: bool = False, compile: bool = False) -> DeepFloydIF:
        """Load from local folders or Hub repo ids (stage_2=None: stage I only). Only the files used
        are fetched: safetensors of the UNets, T5 and its tokenizer from stage I, the configs."""
        dev = if_device(device)
        dt = parse_dtype(dtype, dev)
        if t5_8bit:
            check_8bit(dev)
        variant = "fp16" if dt != torch.float32 else None
        folders = [resolve(stage_1, "DeepFloyd IF stage I", _allow_patterns(1, variant, True))]
        if stage_2 is not None:
            folders.append(resolve(stage_2, "DeepFloyd IF stage II", _allow_patterns(2, variant, False)))
        stages = [load_stage(f, i + 1, dt, variant, compile) for i, f in enumerate(folders)]
        t5_variant = _component_variant(folders[0], "text_encoder", "model", variant)
        t5_device = dev if (t5_8bit or not offload) else torch.device("cpu")
        try:
            encoder = T5TextEncoder.from_pretrained(folders[0], dtype=dt, device=t5_device, variant=t5_variant,
                                                    load_in_8bit=t5_8bit)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"DeepFloyd IF stage I {folders[0]}: T5: {e}") from e
        locations = [str(stage_1)] + ([str(stage_2)] if stage_2 is not None else [])
        return cls(encoder, stages[0], stages[1] if len(stages) > 1 else None, dev, offload and dev.type == "cuda",
                   locations)

    def stages(self) -> list[IFStage]:
        return [s for s in (self.stage_1, self.stage_2) if s is not None]

    @property
    def sizes(self) -> list[int]:
        return [s.resolution for s in self.stages()]

    @contextlib.contextmanager
    def _placed(self, module):
        """With offload, `module` on the GPU for the block and back on the CPU after it."""
        movable = self.offload and getattr(module, "hf_quantizer", None) is None  # 8-bit T5 stays put
        if movable:
            module.to(self.device)
        try:
            yield
        finally:
            if movable:
                module.to("cpu")
                torch.cuda.empty_cache()

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """T5 states [B, 77, D] (float32) of the prompts after IF's preprocessing."""
        with self._placed(self.encoder.model):
            return self.encoder.encode([p.lower().strip() for p in prompts]).tokens

    def _network(self, stage: IFStage):
        """The UNet as a ConditionalModel: cond = tokens, and for stage II low_res + noise_level."""
        def model(x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
            cancel.check()  # a cancelled job stops here, between network evaluations
            if "low_res" in cond:
                x = torch.cat([x, cond["low_res"]], dim=1)
            out = stage.forward(x.to(stage.dtype), t, encoder_hidden_states=cond["tokens"],
                                class_labels=cond.get("noise_level"), return_dict=False)[0]
            return out.float()
        return model

    def _sample(self, stage: IFStage, x: torch.Tensor, cond: dict, uncond: dict, gen: BatchGenerator,
                settings: StageSettings, callback: Callback | None) -> torch.Tensor:
        model = self._network(stage)
        learned = None
        if stage.unet.config.out_channels == 2 * stage.channels:
            learned = LearnedVariance(stage.channels)
            model = learned.wrap(model)
        model = eps_denoiser(model, stage.schedule, stage.prediction)
        denoiser = cfg_denoiser(model, cond, uncond, settings.guidance)
        if settings.threshold is not None:
            denoiser = dynamic_threshold_denoiser(denoiser, stage.schedule, settings.threshold, settings.threshold_max)
        variance = None
        if settings.sampler == "ddpm":
            variance = learned if stage.variance == "learned_range" else stage.variance
        with torch.no_grad(), self._placed(stage.unet):
            return sample(settings.sampler, denoiser, x, stage.schedule, settings.steps, generator=gen,
                          eta=settings.eta, spacing=stage.spacing, variance=variance, callback=callback)

    def sample_stage_1(self, states: torch.Tensor, negative_states: torch.Tensor, gen: BatchGenerator,
                       settings: StageSettings = IF_I_DEFAULTS, callback: Callback | None = None) -> torch.Tensor:
        """Stage I: text -> images [B, 3, 64, 64] (in [-1, 1] with thresholding on; like diffusers'
        output_type="pt", not clamped). `states` / `negative_states`: T5 states [B, 77, D] (from
        `encode`) of the prompt and of the negative prompt."""
        s1 = self.stage_1
        cond = {"tokens": states.to(self.device, s1.dtype)}
        uncond = {"tokens": negative_states.to(self.device, s1.dtype)}
        x = gen.randn((len(states), s1.channels, s1.resolution, s1.resolution)).to(self.device)
        return self._sample(s1, x, cond, uncond, gen, settings, callback)

    def sample_stage_2(self, low: torch.Tensor, states: torch.Tensor, negative_states: torch.Tensor,
                       gen: BatchGenerator, settings: StageSettings = IF_II_DEFAULTS,
                       callback: Callback | None = None) -> torch.Tensor:
        """Stage II: images [B, 3, h, w] in [-1, 1] (stage I's) -> [B, 3, 256, 256], conditioned on
        the upsampled images noised to `settings.aug_level` and on the T5 states."""
        s2 = self.stage_2
        if s2 is None:
            raise ValueError("this DeepFloyd IF has no stage II")
        if low.ndim != 4 or low.shape[1] != s2.channels or len(low) != len(states):
            raise ValueError(f"stage II takes images [B, {s2.channels}, h, w], one per T5 state; got "
                             f"{tuple(low.shape)} for {len(states)} states")
        size = (s2.resolution, s2.resolution)
        x = gen.randn((len(low), s2.channels, *size)).to(self.device)  # drawn first, as in diffusers
        # IFSuperResolutionPipeline: bilinear upsampling, then q(x_t | x_0) at the noise level
        up = F.interpolate(low.to(self.device, torch.float32), size, mode="bilinear", align_corners=True)
        level = torch.full((len(low),), settings.aug_level, dtype=torch.long, device=self.device)
        extra = {"low_res": s2.noising.q_sample(up, level, gen.randn(up.shape).to(self.device)), "noise_level": level}
        cond = {"tokens": states.to(self.device, s2.dtype), **extra}
        uncond = {"tokens": negative_states.to(self.device, s2.dtype), **extra}
        return self._sample(s2, x, cond, uncond, gen, settings, callback)

    def generate(self, prompt: str, negative_prompt: str = "", *, num: int = 1, seed: int = 0, size: int | None = None,
                 stage_1: StageSettings = IF_I_DEFAULTS, stage_2: StageSettings = IF_II_DEFAULTS,
                 callback: Callback | None = None) -> CascadeResult:
        """`num` images of `prompt` (image i from seed + i) through stage I and, when `size` asks
        for it (default: the last stage), stage II. Images in [-1, 1] per resolution reached."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt is empty; describe the image to generate")
        if not isinstance(negative_prompt, str):
            raise ValueError("negative_prompt must be a string")
        size = self.sizes[-1] if size is None else size
        if size not in self.sizes:
            raise ValueError(f"size must be one of {self.sizes} (the stages' resolutions), got {size!r}")
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= 16:
            raise ValueError(f"num must be between 1 and 16, got {num!r}")
        seeds = check_seeds([seed + i for i in range(num)])

        def staged(resolution):
            return None if callback is None else lambda info: callback({**info, "stage": resolution})

        prompt, negative_prompt, note = fit_prompts(self.encoder, prompt, negative_prompt)  # what T5 reads
        with self._lock:
            states = self.encode([prompt, negative_prompt])            # T5 once, for both stages
            states, negative_states = states[:1].expand(num, -1, -1), states[1:].expand(num, -1, -1)
            gen = BatchGenerator(seeds, "cpu")                           # continued through both stages
            x = self.sample_stage_1(states, negative_states, gen, stage_1, staged(self.stage_1.resolution))
            stages = {self.stage_1.resolution: x}
            if self.stage_2 is not None and size >= self.stage_2.resolution:
                x = self.sample_stage_2(x, states, negative_states, gen, stage_2, staged(self.stage_2.resolution))
                stages[self.stage_2.resolution] = x
        parameters = {"model": "deepfloyd-if", "weights": self.locations, "prompt": prompt,
                      "negative_prompt": negative_prompt, "seeds": seeds, "size": size,
                      "stage_1": asdict(stage_1), "stage_2": asdict(stage_2) if len(stages) > 1 else None,
                      **({"note": note} if note else {})}
        return CascadeResult(stages, parameters)


# ---- for a server: checked at start without downloading, loaded on first use ------------------------
def availability(locations: Sequence[str], device: str = "auto") -> tuple[bool, str]:
    """(True, where) when IF can run here, else (False, why): a CUDA GPU (or device "cpu" asked
    for), and each location a local IF folder, in the local Hub cache, or a Hub repo the token
    may read (one metadata request; none with HF_HUB_OFFLINE=1). Downloads no weights."""
    try:
        if_device(device)
    except (CheckpointError, ValueError) as e:
        return False, str(e)
    from huggingface_hub import auth_check, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    offline = _env_true("HF_HUB_OFFLINE") or constants.HF_HUB_OFFLINE
    where = []
    for location in locations:
        if _is_local(location):
            if not (Path(location).expanduser() / "unet" / "config.json").is_file():
                return False, f"{location}: not a DeepFloyd IF folder (no unet/config.json)"
            where.append(f"folder {location}")
            continue
        try:
            validate_repo_id(location)
        except ValueError:
            return False, f"{location}: no such folder, and not a Hub repo id (owner/name)"
        cached = isinstance(try_to_load_from_cache(location, "model_index.json", cache_dir=_hub_cache_dir()), str)
        if cached:
            where.append(f"{location} (local Hub cache)")
            continue
        if offline:
            return False, f"{location} is not in the local Hub cache, and HF_HUB_OFFLINE=1 forbids downloading it"
        try:
            auth_check(location)  # one metadata request: does the repo exist, may this token read it?
        except GatedRepoError:
            token = "HF_TOKEN is not set" if not _token() else "the token in HF_TOKEN may not read it"
            return False, (f"{location} is gated and {token}: accept the licence at https://huggingface.co/"
                           f"{location} and set HF_TOKEN to a token of that account")
        except RepositoryNotFoundError:
            return False, f"no Hub repo {location} (or it is private and HF_TOKEN cannot read it)"
        except HfHubHTTPError as e:
            return False, f"the Hub refused {location}: {str(e).splitlines()[0]}"
        except Exception as e:  # noqa: BLE001 - no network, a proxy, ...: say so
            return False, (f"the Hub cannot be reached to fetch {location} ({type(e).__name__}); "
                           "no copy in the local cache")
        where.append(f"Hub {location}")
    return True, ", ".join(where)


def _token() -> str | None:
    from huggingface_hub import get_token
    return get_token()


class DeepFloydSet:
    """IF as one of a server's model sets: `available` / `reason` from `availability` at start,
    the weights loaded on first `get()` (under a lock) and then shared read-only."""

    label = "DeepFloyd IF (Hub)"

    def __init__(self, locations: Sequence[str] = (IF_STAGE_I, IF_STAGE_II), device: str = "auto",
                 dtype: str | None = None, offload: bool = False, t5_8bit: bool = False, compile: bool = False):
        if not 1 <= len(locations) <= 2:
            raise ValueError(f"DeepFloyd IF takes stage I and optionally stage II, got {len(locations)} locations")
        self.locations = [str(x) for x in locations]
        self.device = device
        self.options = dict(dtype=dtype, offload=offload, t5_8bit=t5_8bit, compile=compile)
        self.available, self.reason = availability(self.locations, device)
        if self.available and t5_8bit:
            try:
                check_8bit(if_device(device))
            except ValueError as e:
                self.available, self.reason = False, str(e)
        self._model: DeepFloydIF | None = None
        self._lock = threading.Lock()

    def get(self) -> DeepFloydIF:
        if not self.available:
            raise CheckpointError(f"{self.label} is unavailable: {self.reason}")
        with self._lock:
            if self._model is None:
                stage_2 = self.locations[1] if len(self.locations) > 1 else None
                self._model = DeepFloydIF.from_pretrained(self.locations[0], stage_2, device=self.device,
                                                          **self.options)
            return self._model


