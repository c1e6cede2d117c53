"""What a training task is: for one kind of model, the network it builds, the batches and loss it
trains on, how it is exported, the sample grid it draws now and then, and the options it reads.

`DiffusionTask` is the loss every diffusion kind shares: draw x0 and a condition, noise it to a
random t on the model's schedule (uniform, or EDM's log-normal: `t_sampling`), and regress v (or
eps / x0) with the min-SNR weight (Hang et al. 2023), floored at `snr_floor`.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from core.data.emoji import load_dataset
from core.models.checkpoints import save_model
from core.training.config import T_SAMPLINGS, DiffusionSettings, TaskSettings, TrainConfig


def draw_timesteps(schedule, n: int, gen: torch.Generator, sampling: str = "uniform") -> torch.Tensor:
    """n training timesteps. uniform: t ~ U{0..T-1} (DDPM). lognormal: EDM's noise distribution
    (Karras et al. 2022, Sec. 5), ln sigma ~ N(-1.2, 1.2^2), taken to the step whose sigma is
    nearest in log (sigma = sqrt((1 - ab) / ab)): most draws land at mid noise, few at the ends."""
    if sampling == "uniform":
        return torch.randint(schedule.T, (n,), generator=gen)
    if sampling == "lognormal":
        sigma = (-1.2 + 1.2 * torch.randn(n, generator=gen, dtype=torch.float64)).exp()
        return schedule.sigma_to_t(sigma).round().long()
    raise ValueError(f"t sampling must be one of {T_SAMPLINGS}, got {sampling!r}")


class Task:
    """One kind of model. Subclasses set `name` and `folder` (the checkpoint folder), `settings`
    (the dataclass of the settings only this kind reads, `cfg.task`: others given for this kind are
    refused), `defaults` (this kind's recipe: values, by flat name, that differ from the
    dataclasses') and `gpu_profile` (what `python -m core train all --profile gpu` changes for it)."""
    name: str
    folder: str
    settings: type[TaskSettings] = TaskSettings
    defaults: dict = {}
    gpu_profile: dict = {}

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.data = load_dataset()
        self.train_idx = torch.as_tensor(self.data.indices("train"))

    def autocast(self, device: torch.device):
        """bf16 autocast for the forward pass, as `cfg.run.precision` says (auto: on CUDA only)."""
        precision = self.cfg.run.precision
        enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def build(self) -> torch.nn.Module: ...

    def warm_start(self, model, log) -> None:
        """Anything a fresh run does to the built network before its first step (not on resume
        nor with --init-from); nothing by default."""
    def loss(self, model, gen: torch.Generator, device) -> torch.Tensor: ...
    def export(self, model, folder: Path, card: str) -> None: ...
    def sample_grid(self, model, path: Path, device) -> None: ...

    def quality(self, model) -> str:
        """Measured quality for the model card ('' for the standard pointer to the evaluations)."""
        return ""


class DiffusionTask(Task):
    """Shared by the diffusion kinds: draw x0 and cond, noise, weighted v-loss. Emoji are drawn
    uniformly, or with `weights` when a kind sets them."""
    settings = DiffusionSettings
    prediction = "v"

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.weights = None   # uniform over the training emoji (`PixelBaseTask`: by design size)

    def draw(self, gen: torch.Generator, n: int) -> torch.Tensor:
        if self.weights is None:
            return self.train_idx[torch.randint(len(self.train_idx), (n,), generator=gen)]
        return self.train_idx[torch.multinomial(self.weights, n, replacement=True, generator=gen)]

    def x0_and_cond(self, gen, device) -> tuple[torch.Tensor, dict]: ...

    def loss(self, model, gen, device):
        x0, cond = self.x0_and_cond(gen, device)
        schedule = self.schedule
        b = x0.shape[0]
        t = draw_timesteps(schedule, b, gen, self.cfg.task.t_sampling)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = t.to(device)
        x_t = schedule.q_sample(x0, t, noise)
        if self.cfg.run.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with self.autocast(device):
            out = model(x_t, t.float(), cond)
        ab = schedule.alpha_bar(t).to(device, torch.float32).view(b, 1, 1, 1)
        snr = ab / (1 - ab)
        # min-SNR-gamma weighting (Hang et al. 2023), floored at snr_floor: the weight of the x0 error
        # is clamp(SNR, floor, gamma), so the v-error weight is that / (SNR + 1) and the eps one / SNR
        x0_weight = snr.clamp(min=self.cfg.task.snr_floor, max=self.cfg.task.min_snr_gamma)
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


class Budget:
    """`core.optim.fit`'s stop test: True once `minutes` have passed since it was made (None: never);
    `stopped` says whether it ended a loop."""

    def __init__(self, minutes: float | None = None):
        self.minutes, self.start, self.stopped = minutes, time.time(), False

    def __call__(self, step: int) -> bool:
        if self.minutes is not None and time.time() - self.start > 60 * self.minutes:
            self.stopped = True
        return self.stopped


def claim_run(run: Path | None, settings: dict) -> None:
    """Make the run folder of a small-network task and record its settings in config.json; a folder
    that already holds a run of other settings is refused (its state would resume the wrong run)."""
    if run is None:
        return
    run.mkdir(parents=True, exist_ok=True)
    path = run / "config.json"
    text = json.dumps(settings, indent=1, default=list) + "\n"
    if path.is_file() and any(run.glob("*.pt")) and json.loads(path.read_text()) != json.loads(text):
        raise ValueError(f"run folder {run} holds a run with other settings: give another --run, or delete it")
    path.write_text(text)


class FitTask:
    """A network trained by the small networks' loop (`core.optim.fit`), not a diffusion model:
    `name`, `settings` (the dataclass of its recipe, whose fields steps, batch, lr and seed the
    `train` flags of those names set), `options` (the other `train` flags it reads: any other is
    refused), `smoke` (the settings of a tiny run) and `run`, which trains (resuming from the run
    folder's state files) and writes its checkpoint folder(s)."""
    name: str
    settings: type
    options: frozenset[str] = frozenset()
    smoke: dict = {}

    def run(self, settings, run: Path | None, export: Path | None, options: dict, budget: Budget,
            log: Callable[[str], None]) -> dict: ...
