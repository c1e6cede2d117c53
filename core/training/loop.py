"""Training for every model the hub ships, one entry point, built on `accelerate`:

    python -m core.training.loop KIND --run runs/KIND [--steps N] [--budget-minutes M] [--export checkpoints/KIND]
    accelerate launch -m core.training.loop KIND ...            # one GPU, many GPUs, many machines

KIND is one of clip, text_base, class_base, sr64, sr128, palette, diffae, noisy_classifier (the
noise-aware classifier of classifier guidance, core.models.noisy_classifier). A run folder holds `state.pt`
(model, EMA, optimiser, step, RNG; loaded with weights_only=True) and `samples/step_*.png`;
running the same command again resumes where it stopped. `--export` writes the EMA weights as
a checkpoint folder (config.json + fp16 safetensors + model card).

Recipe (diffusion kinds): cosine schedule, v-prediction, min-SNR-gamma loss weighting
(Hang et al. 2023, gamma=5: w = min(SNR, 5) / (SNR + 1) for v), which down-weights the
many easy low-noise steps and converges several times faster than the uniform loss (DiffAE
floors it at 1, `snr_floor`, so the noisiest steps, where z_sem matters, still count); AdamW
with linear warm-up; gradient clipping at 1; EMA 0.999; condition dropout 10% (the empty
prompt or the null label) so one network gives the conditional and unconditional halves of
classifier-free guidance; bf16 autocast on GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from core.models.checkpoints import DEFAULT_CHECKPOINTS, save_folder, save_model
from core.models.ema import EMA
from core.models.networks import DiffusionModel, ModelConfig, count_parameters, image_unet_config, text_unet_config

TRAIN_KINDS = ("clip", "text_base", "class_base", "sr64", "sr128", "palette", "diffae", "noisy_classifier", "prior")


@dataclass
class TrainConfig:
    kind: str
    run: str
    steps: int = 10_000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    min_snr_gamma: float = 5.0
    snr_floor: float = 0.0         # x0-space loss weight clamp(SNR, snr_floor, min_snr_gamma); 0: plain min-SNR
    cond_dropout: float = 0.1
    sr_aug_max: int = 250          # SR: training noise-augmentation levels t_aug ~ U{0..sr_aug_max}
    residual_scale: float | None = None  # SR, palette: diffuse this * (image - baseline); None/0: the image itself
    crop: int | None = None        # SR, palette: train on random crops of this size (the UNet is convolutional)
    resolution: int | None = None  # diffae: its image size (default 64)
    channels: tuple[int, ...] = (32, 64, 128)
    width: int | None = None       # prior: width of its MLP (default 384)
    depth: int | None = None       # prior: number of its residual blocks (default 4)
    seed: int = 0
    save_every: int = 500
    sample_every: int = 1000
    budget_minutes: float | None = None
    checkpoints: str = str(DEFAULT_CHECKPOINTS)   # where a text_base finds its CLIP
    threads: int | None = None
    smoke: bool = False
    precision: str = "auto"        # auto: bf16 autocast on CUDA, fp32 on CPU (this CPU: AVX2, no bf16); bf16; fp32
    compile: bool = False          # torch.compile the training network (Module.compile: weights keep their names)
    channels_last: bool = False    # NHWC memory format for the convolutions
    init_from: str | None = None   # a checkpoint folder of this kind: start from its weights (model and EMA)
    balance: float = 0.0           # text_base, class_base: draw emoji with weight (design size) ** -balance


def default_config(kind: str, run: str, smoke: bool = False, **overrides) -> TrainConfig:
    if kind not in TRAIN_KINDS:
        raise ValueError(f"kind must be one of {TRAIN_KINDS}, got {kind!r}")
    per_kind = {
        "clip": dict(batch=128, lr=5e-4, steps=3000),
        # balance 0.5: People & Body is ~60% of the emoji but mostly tone and gender variants of a
        # few hundred designs; weight (design size) ** -0.5 gives the other ~1,200 designs ~2x the draws
        "text_base": dict(channels=(32, 64, 128), balance=0.5),
        "class_base": dict(channels=(32, 64, 128), balance=0.5),
        # residual scale 4: the residual over bilinear upsampling has std 0.13 (32->64) and 0.10
        # (64->128) on the training emoji, about 0.5 and 0.4 once scaled (the images: 0.63)
        "sr64": dict(channels=(32, 64, 128), crop=32, residual_scale=4.0),
        "sr128": dict(channels=(32, 64, 128), crop=32, residual_scale=4.0),
        # residual scale 2 over the task's baseline (grayscale / mean-colour fill): the residuals
        # have std 0.33 (colorize) and 0.30 (inpaint; 0.55 inside the mask) on the training emoji
        "palette": dict(channels=(32, 64, 128), residual_scale=2.0),
        # floor 1 ("truncated SNR", Salimans & Ho 2022): min-SNR alone gives the noisiest steps,
        # where only z_sem can tell the decoder what the image is, almost no weight (SNR / (SNR + 1))
        "diffae": dict(channels=(32, 64, 128), snr_floor=1.0),
        # a 0.3 M-parameter conv net on x_t (core.models.noisy_classifier): bigger batches, a higher rate
        "noisy_classifier": dict(channels=(32, 64, 128, 128), batch=64, lr=2e-3, warmup=100, steps=5000,
                                 sample_every=1000),
        # a vector model over the DiffAE's z_sem: big batches are cheap (~0.05 s/step on one core)
        "prior": dict(batch=256, lr=1e-3, steps=20_000, save_every=1000, sample_every=5000),
    }[kind]
    cfg = TrainConfig(kind=kind, run=run, **per_kind)
    if smoke:
        cfg = replace(cfg, steps=4, batch=4, channels=(16, 32), save_every=2, sample_every=4,
                      warmup=2, smoke=True)
    cfg = replace(cfg, **overrides)
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    if cfg.resolution is not None and kind != "diffae":
        raise ValueError(f"--resolution applies to diffae only, not {kind}")
    if cfg.residual_scale is not None and kind not in ("sr64", "sr128", "palette"):
        raise ValueError(f"--residual-scale applies to sr64, sr128 and palette only, not {kind}")
    if cfg.residual_scale is not None and not 0 <= cfg.residual_scale < math.inf:   # also NaN
        raise ValueError(f"--residual-scale must be a finite number >= 0, got {cfg.residual_scale!r}")
    if not 0 <= cfg.snr_floor <= cfg.min_snr_gamma:   # also NaN
        raise ValueError(f"--snr-floor must be between 0 and min_snr_gamma ({cfg.min_snr_gamma}), got {cfg.snr_floor!r}")
    if (cfg.width is not None or cfg.depth is not None) and kind != "prior":
        raise ValueError(f"--width and --depth apply to prior only, not {kind}")
    if cfg.balance and kind not in ("text_base", "class_base"):
        raise ValueError(f"--balance applies to text_base and class_base only, not {kind}")
    if not 0 <= cfg.balance <= 1:   # also NaN
        raise ValueError(f"--balance must be between 0 (uniform over emoji) and 1 (uniform over designs), got {cfg.balance!r}")
    if cfg.crop is not None and kind not in ("sr64", "sr128", "palette"):
        raise ValueError(f"--crop applies to sr64, sr128 and palette only, not {kind}")
    return cfg


# ----------------------------------------------------------------------------------------
# Tasks: what a kind trains, on what batches, with which loss, and how it is exported.


class Task:
    name: str
    folder: str  # checkpoint folder name
    cfg: "TrainConfig"

    def autocast(self, device: torch.device):
        """bf16 autocast for the forward pass, as `cfg.precision` says (auto: on CUDA only)."""
        precision = self.cfg.precision
        enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def build(self) -> torch.nn.Module: ...
    def loss(self, model, gen: torch.Generator, device) -> torch.Tensor: ...
    def export(self, model, folder: Path, card: str) -> None: ...
    def sample_grid(self, model, path: Path, device) -> None: ...

    def quality(self, model) -> str:
        """Measured quality for the model card ('' for the standard pointer to the evaluations)."""
        return ""


def _data(cfg: TrainConfig):
    from core.data.emoji import load_dataset
    return load_dataset()


class DiffusionTask(Task):
    """Shared by the three diffusion kinds: draw x0 and cond, noise, weighted v-loss."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.data = _data(cfg)
        self.train_idx = torch.as_tensor(self.data.indices("train"))
        self.weights = None
        if cfg.balance:
            from core.data.emoji import design_weights
            self.weights = design_weights([self.data.records[i] for i in self.train_idx.tolist()], cfg.balance)

    def draw(self, gen: torch.Generator, n: int) -> torch.Tensor:
        if self.weights is None:
            return self.train_idx[torch.randint(len(self.train_idx), (n,), generator=gen)]
        return self.train_idx[torch.multinomial(self.weights, n, replacement=True, generator=gen)]

    def x0_and_cond(self, gen, device) -> tuple[torch.Tensor, dict]: ...

    def loss(self, model, gen, device):
        x0, cond = self.x0_and_cond(gen, device)
        schedule = self.schedule
        b = x0.shape[0]
        t = torch.randint(schedule.T, (b,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = t.to(device)
        x_t = schedule.q_sample(x0, t, noise)
        if self.cfg.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with self.autocast(device):
            out = model(x_t, t.float(), cond)
        ab = schedule.alpha_bar(t).to(device, torch.float32).view(b, 1, 1, 1)
        snr = ab / (1 - ab)
        # min-SNR-gamma weighting (Hang et al. 2023), floored at snr_floor: the weight of the x0 error
        # is clamp(SNR, floor, gamma), so the v-error weight is that / (SNR + 1) and the eps one / SNR
        x0_weight = snr.clamp(min=self.cfg.snr_floor, max=self.cfg.min_snr_gamma)
        pred = self.prediction
        if pred == "v":     # v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022)
            target, weight = ab.sqrt() * noise - (1 - ab).sqrt() * x0, x0_weight / (snr + 1)
        elif pred == "eps":
            target, weight = noise, x0_weight / snr
        else:
            target, weight = x0, x0_weight
        per_sample = (out.float() - target).pow(2).mean(dim=(1, 2, 3))
        return (weight.view(b) * per_sample).mean()

    def export(self, model, folder, card):
        save_model(model, folder, card)

    prediction = "v"


class ClassBaseTask(DiffusionTask):
    name, folder = "class_base", "class_base"

    def build(self):
        classes = self.data.classes
        unet = image_unet_config(32, self.cfg.channels, num_class_embeds=len(classes) + 1,
                                 attention_levels=1)
        model = DiffusionModel(ModelConfig(kind="class_base", resolution=32, unet=unet, classes=list(classes)))
        self.schedule = model.schedule
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        self.labels = torch.as_tensor(self.data.labels)
        return model

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.batch)
        labels = self.labels[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < self.cfg.cond_dropout
        labels[drop] = len(self.data.classes)  # the null label
        return self.images[idx].to(device), {"labels": labels.to(device)}

    def sample_grid(self, model, path, device):
        from core.pipeline import generate_class
        names = [self.data.records[i].subgroup for i in self.draw(torch.Generator().manual_seed(1), 8)]
        images = generate_class(model, names, guidance=3.0, steps=25, seeds=list(range(len(names))))
        save_grid(images, path, nrow=8)


class TextBaseTask(DiffusionTask):
    name, folder = "text_base", "text_base"

    def build(self):
        from core.models.text_encoders import ClipTextEncoder
        clip_folder = Path(self.cfg.checkpoints) / "clip"
        self.encoder = ClipTextEncoder.from_folder(clip_folder)
        unet = text_unet_config(32, self.cfg.channels, cross_attention_dim=self.encoder.width, attention_levels=1)
        model = DiffusionModel(ModelConfig(kind="text_base", resolution=32, unet=unet, text_encoder="clip"))
        self.schedule = model.schedule
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        return model

    def x0_and_cond(self, gen, device):
        from core.data.emoji import random_caption
        idx = self.draw(gen, self.cfg.batch)
        drop = torch.rand(len(idx), generator=gen) < self.cfg.cond_dropout
        prompts = ["" if d else random_caption(self.data.records[i], gen) for i, d in zip(idx.tolist(), drop.tolist())]
        self.encoder.to(device)
        emb = self.encoder.encode(prompts)
        return self.images[idx].to(device), {"tokens": emb.tokens, "mask": emb.mask}

    def sample_grid(self, model, path, device):
        from core.pipeline import generate_text
        prompts = GRID_PROMPTS
        images = generate_text(model, self.encoder, prompts, guidance=3.0, steps=25, seeds=list(range(len(prompts))))
        save_grid(images, path, nrow=len(prompts) // 2)


GRID_PROMPTS = ["woman dancing, dark skin tone", "man dancing, light skin tone", "thumbs up", "red apple",
                "grinning face", "cat face", "a blue car", "keycap: 7", "person raising hand, medium skin tone",
                "woman with headscarf", "fire", "globe showing americas"]


class SRTask(DiffusionTask):
    def __init__(self, cfg, low: int, high: int):
        super().__init__(cfg)
        self.low, self.high = low, high
        self.name = self.folder = f"sr{high}"

    def build(self):
        unet = image_unet_config(self.high, self.cfg.channels, in_channels=6, attention_levels=0,
                                 class_embed_type="timestep")
        model = DiffusionModel(ModelConfig(kind="sr", resolution=self.high, unet=unet, low_resolution=self.low,
                                           residual_scale=self.cfg.residual_scale or None))
        self.schedule = model.schedule
        all_idx = torch.arange(len(self.data.records))
        self.images_high = self.data.images_at(self.high, all_idx)
        self.images_low = self.data.images_at(self.low, all_idx)
        return model

    def x0_and_cond(self, gen, device):
        from core.pipeline import augment_low_res
        idx = self.draw(gen, self.cfg.batch)
        high = self.images_high[idx]
        low_up = F.interpolate(self.images_low[idx], size=self.high, mode="bilinear", align_corners=False)
        if self.cfg.crop:   # SR3-style patches: the same random window of both
            c = self.cfg.crop
            i, j = torch.randint(self.high - c + 1, (2,), generator=gen).tolist()
            high, low_up = high[..., i:i + c, j:j + c], low_up[..., i:i + c, j:j + c]
        aug_t = torch.randint(self.cfg.sr_aug_max + 1, (len(idx),), generator=gen)
        noise = torch.randn(low_up.shape, generator=gen)
        low_aug = augment_low_res(self.schedule, low_up, aug_t, noise)
        # Residual SR: the model diffuses what bilinear upsampling misses (edges), scaled to unit-ish
        # variance; the colours and shapes come from the clean upsampled input at sampling time.
        x0 = (high - low_up) * self.cfg.residual_scale if self.cfg.residual_scale else high
        return x0.to(device), {"low_res": low_aug.to(device), "aug_t": aug_t.float().to(device)}

    def sample_grid(self, model, path, device):
        from core.pipeline import upscale
        idx = torch.as_tensor(self.data.indices("heldout"))[:6]
        low = self.data.images_at(self.low, idx)
        high = self.data.images_at(self.high, idx)
        bicubic = F.interpolate(low, size=self.high, mode="bicubic", align_corners=False).clamp(-1, 1)
        sr = upscale(model, low, steps=25, seeds=list(range(len(idx))))
        save_grid(torch.cat([bicubic, sr, high]), path, nrow=len(idx))


class ClipTask(Task):
    name, folder = "clip", "clip"

    def __init__(self, cfg):
        self.cfg = cfg
        self.data = _data(cfg)
        self.train_idx = torch.as_tensor(self.data.indices("train"))

    def build(self):
        from core.models.clip_model import ClipConfig, CompactTokenizer, build_clip, build_vocab
        from core.data.emoji import captions_for
        captions = [c for r in self.data.records for c in captions_for(r)]
        base = ClipConfig()
        if self.cfg.smoke:
            base = ClipConfig.tiny() if hasattr(ClipConfig, "tiny") else base
        self.clip_config = replace(base, vocab=build_vocab(captions))
        self.tokenizer = CompactTokenizer(self.clip_config)
        self.images = self.data.images_at(64, torch.arange(len(self.data.records)))
        return build_clip(self.clip_config)

    def loss(self, model, gen, device):
        from core.models.clip_model import clip_loss
        from core.data.emoji import random_caption
        idx = self.train_idx[torch.randperm(len(self.train_idx), generator=gen)[: self.cfg.batch]]
        prompts = [random_caption(self.data.records[i], gen) for i in idx.tolist()]
        ids, _ = self.tokenizer(prompts)
        with self.autocast(device):
            return clip_loss(model, self.images[idx].to(device), ids.to(device))

    def export(self, model, folder, card):
        save_folder(folder, {"kind": "clip", "clip": self.clip_config.to_dict()}, model.state_dict(), card)

    def sample_grid(self, model, path, device):
        pass  # CLIP has no samples; its retrieval accuracy is printed by the evaluation script


def make_task(cfg: TrainConfig) -> Task:
    if cfg.kind == "noisy_classifier":
        from core.models.noisy_classifier import NoisyClassifierTask
        return NoisyClassifierTask(cfg)
    if cfg.kind == "palette":
        from core.translate import PaletteTask
        return PaletteTask(cfg)
    if cfg.kind == "diffae":
        from core.diffae import DiffAETask
        return DiffAETask(cfg)
    if cfg.kind == "prior":
        from core.training.prior import PriorTask
        return PriorTask(cfg)
    if cfg.kind == "clip":
        return ClipTask(cfg)
    if cfg.kind == "text_base":
        return TextBaseTask(cfg)
    if cfg.kind == "class_base":
        return ClassBaseTask(cfg)
    if cfg.kind == "sr64":
        return SRTask(cfg, 32, 64)
    return SRTask(cfg, 64, 128)


# ----------------------------------------------------------------------------------------
# The loop.


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    from torchvision.utils import save_image
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((images.float().clamp(-1, 1) + 1) / 2, str(path), nrow=nrow, padding=2, pad_value=1.0)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def model_card(task: Task, cfg: TrainConfig, model, step: int, seconds: float, device: str,
               final_loss: float | None, quality: str = "") -> str:
    skip = {"run", "checkpoints", "threads", "budget_minutes", "save_every", "sample_every"}
    if cfg.kind in ("clip", "noisy_classifier"):   # the diffusion-only settings mean nothing for them
        skip |= {"min_snr_gamma", "snr_floor", "cond_dropout", "sr_aug_max", "residual_scale", "crop"}
        skip |= {"channels"} if cfg.kind == "clip" else set()
    elif cfg.kind not in ("sr64", "sr128"):
        skip |= {"sr_aug_max"} | ({"crop", "residual_scale"} if cfg.kind != "palette" else set())
    if cfg.resolution is None:
        skip.add("resolution")
    if cfg.kind == "prior":   # an MLP over codes: no UNet channels, no SNR weighting (plain x0 MSE)
        skip |= {"channels", "min_snr_gamma", "snr_floor", "crop", "residual_scale"}
    else:
        skip |= {"width", "depth"}
    recipe = {k: v for k, v in asdict(cfg).items() if k not in skip}
    return (f"# {task.name}\n\n"
            f"Trained by `python -m core.training.loop {cfg.kind}` on the Noto Color Emoji data set "
            f"(train split; see core/data/emoji.py).\n\n"
            f"- parameters: {count_parameters(model) / 1e6:.2f} M (weights stored in fp16)\n"
            f"- steps: {step}, wall time: {seconds / 60:.1f} min on {device}\n"
            f"- final training loss (EMA of the batch loss): {final_loss if final_loss is None else round(final_loss, 4)}\n\n"
            f"## Recipe\n\n```json\n{json.dumps(recipe, indent=2)}\n```\n\n"
            f"## Measured quality\n\n{quality or 'See the evaluation script `python -m core.evaluate` and the closing notes.'}\n")


def init_from_checkpoint(model: torch.nn.Module, ema: EMA, cfg: TrainConfig) -> None:
    """Copy a checkpoint folder's weights into the network and its EMA, so a sitting continues
    from a committed model even when its run folder is gone. The folder must hold this kind with
    this architecture (its config names the kind; the tensors must match one by one)."""
    from core.models.checkpoints import CheckpointError, load_state_checked, read_folder
    folder = Path(cfg.init_from)
    config, state = read_folder(folder)
    kind, resolution = {"sr64": ("sr", 64), "sr128": ("sr", 128)}.get(cfg.kind, (cfg.kind, None))
    found = config.get("kind"), (config.get("resolution") if resolution else None)
    if found != (kind, resolution):
        raise CheckpointError(f"--init-from {folder} holds a {found[0]!r} model"
                              f"{f' at {found[1]} px' if resolution else ''}, not {cfg.kind}")
    load_state_checked(model, state, folder)
    ema.model.load_state_dict(model.state_dict())


def train(cfg: TrainConfig, export: str | os.PathLike | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Train (or resume) `cfg.kind` until `cfg.steps` or the time budget; returns a summary."""
    from accelerate import Accelerator
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(mixed_precision="no")  # autocast is applied explicitly in the losses
    device = accelerator.device
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    torch.manual_seed(cfg.seed)  # network initialisation
    task = make_task(cfg)
    model = task.build().to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + accelerator.process_index)
    step, seconds, loss_avg = 0, 0.0, None

    state_path = run / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, seconds, loss_avg = state["step"], state["seconds"], state.get("loss_avg")
        log(f"resumed {cfg.kind} from {state_path} at step {step}")
    elif cfg.init_from:
        init_from_checkpoint(model, ema, cfg)
        log(f"{cfg.kind}: starting from the weights of {cfg.init_from} (fresh optimiser, {cfg.warmup} warm-up steps)")
    ema.model.to(device)
    if cfg.compile:
        model.compile()  # in place: the state dict keeps its keys, so states resume either way
    model, optimizer = accelerator.prepare(model, optimizer)
    log(f"{cfg.kind}: {count_parameters(model) / 1e6:.2f} M parameters on {device}")

    def save_state():
        if accelerator.is_main_process:
            _atomic_torch_save({"model": accelerator.unwrap_model(model).state_dict(), "ema": ema.state_dict(),
                                "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                                "step": step, "seconds": seconds, "loss_avg": loss_avg}, state_path)

    stop_requested = []  # SIGTERM / SIGINT: finish the step, save, export, exit cleanly
    for sig in (signal.SIGTERM, signal.SIGINT):
        if threading.current_thread() is threading.main_thread():
            signal.signal(sig, lambda *_: stop_requested.append(True))
    start, sitting_start = time.time(), time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc=cfg.kind, disable=not accelerator.is_main_process,
               dynamic_ncols=True, mininterval=5)
    model.train()
    stopped_by_budget = False
    while step < cfg.steps and not stop_requested:
        if cfg.budget_minutes is not None and time.time() - sitting_start > 60 * cfg.budget_minutes:
            stopped_by_budget = True
            break
        for group in optimizer.param_groups:  # linear warm-up
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
        loss = task.loss(model, gen, device)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        ema.update(accelerator.unwrap_model(model), step)
        step += 1
        now = time.time()
        seconds += now - start
        start = now
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}", refresh=False)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_state()
        if accelerator.is_main_process and (step % cfg.sample_every == 0 or step == cfg.steps):
            task.sample_grid(ema.model, run / "samples" / f"step_{step:06d}.png", device)
            start = time.time()  # sampling time is not training time
    bar.close()
    save_state()
    summary = {"kind": cfg.kind, "step": step, "seconds": round(seconds, 1), "loss_avg": loss_avg,
               "stopped_by_budget": stopped_by_budget, "stopped_by_signal": bool(stop_requested)}
    if export and accelerator.is_main_process:
        card = model_card(task, cfg, ema.model, step, seconds, str(device), loss_avg, task.quality(ema.model))
        task.export(ema.model, Path(export), card)
        summary["export"] = str(export)
    log(json.dumps(summary))
    return summary


# One GPU (planned for an H200), about 9 minutes for everything: a time budget per model and
# batches 8-16x the CPU ones with the learning rate scaled up; bf16 autocast is on whenever the
# device is CUDA. The network sizes stay those of the CPU recipe so checkpoints stay a few MB.
# Not yet run on a GPU: these are a plan; `--smoke` checks the code path.
GPU_PROFILE: dict[str, dict] = {   # minutes: 0.75 + 2.25 + 1.25 + 1 + 1 + 0.75 + 1.25 + 0.5 = 8.75, plus start-up
    "clip": dict(batch=1024, lr=1e-3, warmup=100, budget_minutes=0.75),
    "text_base": dict(batch=512, lr=1e-3, warmup=500, budget_minutes=2.25),
    "class_base": dict(batch=512, lr=1e-3, warmup=500, budget_minutes=1.25),
    "sr64": dict(batch=256, lr=1e-3, warmup=500, crop=None, budget_minutes=1.0),
    "sr128": dict(batch=256, lr=1e-3, warmup=500, crop=64, budget_minutes=1.0),
    "palette": dict(batch=256, lr=1e-3, warmup=500, budget_minutes=0.75),
    "diffae": dict(batch=256, lr=1e-3, warmup=500, budget_minutes=1.25),
    "noisy_classifier": dict(batch=1024, lr=4e-3, warmup=100, budget_minutes=0.5),
    "prior": dict(batch=1024, lr=1e-3, warmup=200, budget_minutes=0.5),
}


def train_all(out: str, runs: str, smoke: bool = False, budget_minutes: float | None = None,
              kinds: tuple[str, ...] = TRAIN_KINDS, profile: str = "cpu", **overrides) -> list[dict]:
    """Every model, in dependency order (CLIP before the text base that reads it)."""
    if profile not in ("cpu", "gpu"):
        raise ValueError(f"profile must be cpu or gpu, got {profile!r}")
    summaries = []
    for kind in kinds:
        per_kind = dict(GPU_PROFILE[kind]) if profile == "gpu" else {}
        if profile == "gpu" and not smoke:
            per_kind["steps"] = 10**7  # the time budget ends each model
        if budget_minutes is not None:
            per_kind["budget_minutes"] = budget_minutes
        if smoke:  # a smoke run keeps its tiny batches; the rest of the profile applies
            per_kind = {k: v for k, v in per_kind.items() if k not in ("batch", "crop")}
        options = {**per_kind, **overrides}
        if kind not in ("sr64", "sr128", "palette"):   # options of some kinds only: the others ignore them
            options.pop("crop", None)
        if kind != "diffae":
            options.pop("resolution", None)
        if kind not in ("sr64", "sr128", "palette"):
            options.pop("residual_scale", None)
        if kind != "prior":
            options.pop("width", None)
            options.pop("depth", None)
        cfg = default_config(kind, str(Path(runs) / kind), smoke=smoke, checkpoints=out, **options)
        summaries.append(train(cfg, export=Path(out) / kind))
    return summaries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.loop", description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=TRAIN_KINDS + ("all",))
    p.add_argument("--run", help="run folder (state, samples); default runs/KIND")
    p.add_argument("--export", help="write the EMA weights as a checkpoint folder here (for all: the checkpoints root)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--channels", type=lambda s: tuple(int(c) for c in s.split(",")))
    p.add_argument("--crop", type=int, help="SR, palette: train on random crops of this size")
    p.add_argument("--resolution", type=int, help="diffae: image size (default 64)")
    p.add_argument("--residual-scale", type=float,
                   help="sr64/sr128/palette: diffuse this scale times the residual over the upsampled input "
                        "(SR, default 4) or the task's baseline (palette, default 2); 0: the image")
    p.add_argument("--snr-floor", type=float,
                   help="loss weight of the x0 error clamp(SNR, floor, 5) (default 1 for diffae, 0 otherwise)")
    p.add_argument("--width", type=int, help="prior: width of its MLP (default 384)")
    p.add_argument("--depth", type=int, help="prior: residual blocks (default 4)")
    p.add_argument("--init-from", help="checkpoint folder of this kind: start from its weights with a fresh optimiser "
                                       "(ignored when the run folder already has a state to resume)")
    p.add_argument("--balance", type=float,
                   help="text_base, class_base: draw emoji with weight (design size) ** -B; 0 uniform over emoji, "
                        "1 uniform over designs (default 0.5)")
    p.add_argument("--budget-minutes", type=float)
    p.add_argument("--save-every", type=int)
    p.add_argument("--sample-every", type=int)
    p.add_argument("--checkpoints", help="checkpoints root a text base reads its CLIP from")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--profile", choices=("cpu", "gpu"), default="cpu",
                   help="all: gpu = bigger batches and a minutes budget per model (about 9 minutes in all)")
    p.add_argument("--smoke", action="store_true", help="tiny models, a few steps: checks every stage runs")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="auto (default): bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format")
    a = p.parse_args(argv)
    overrides = {k: v for k, v in dict(steps=a.steps, batch=a.batch, lr=a.lr, channels=a.channels, crop=a.crop,
                                       resolution=a.resolution, width=a.width, depth=a.depth, residual_scale=a.residual_scale, snr_floor=a.snr_floor,
                                       save_every=a.save_every, sample_every=a.sample_every,
                                       threads=a.threads, seed=a.seed, precision=a.precision, compile=a.compile,
                                       channels_last=a.channels_last, init_from=a.init_from,
                                       balance=a.balance).items() if v is not None}
    try:
        if a.kind == "all":
            out = a.export or str(DEFAULT_CHECKPOINTS)
            train_all(out, a.run or "runs", smoke=a.smoke, budget_minutes=a.budget_minutes, profile=a.profile,
                      **overrides)
        else:
            if a.checkpoints:
                overrides["checkpoints"] = a.checkpoints
            cfg = default_config(a.kind, a.run or f"runs/{a.kind}", smoke=a.smoke,
                                 budget_minutes=a.budget_minutes, **overrides)
            train(cfg, export=a.export)
    except (ValueError, FileNotFoundError) as e:   # CheckpointError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
