"""The set of trained models (loaded once, read-only) and the cascade base -> SR 64 -> SR 128."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch

from core.checkpoints import CheckpointError, load_model, resolve_checkpoints
from core.pipeline import (BASE_DEFAULTS, SR_STAGE_DEFAULTS, Callback, StageSettings, generate_class, generate_text,
                           upscale)

Size = Literal[32, 64, 128]
SIZES = (32, 64, 128)
SR_STAGES = {64: "sr64", 128: "sr128"}


def free_cores() -> int:
    """How many CPU threads sampling should use: the cores this process may run on that the load
    average says are idle, at least 1. On a machine shared with training jobs, threads beyond the
    idle cores wait on each other: measured here with 2 cores and another job on each, one 64 px
    SR forward took 0.12-0.14 s on 1 thread and 0.6-1.0 s on 2."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def set_cpu_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to `threads`, or to `free_cores()` unless OMP_NUM_THREADS names a
    count already; returns the count in use."""
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    torch.set_num_threads(threads or free_cores())
    return torch.get_num_threads()


def pick_device(device: str = "auto") -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but no CUDA GPU is available")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ModelSet:
    """The models under one checkpoints root (a folder or Hub repo id), each loaded on first
    use and then shared read-only: nothing is mutated per request."""

    def __init__(self, checkpoints: str | os.PathLike | None = None, device: str = "auto"):
        self.root = resolve_checkpoints(checkpoints)
        self.device = pick_device(device)
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def available(self) -> list[str]:
        return sorted(p.name for p in Path(self.root).iterdir() if (p / "config.json").is_file())

    def get(self, name: str):
        with self._lock:
            if name not in self._models:
                folder = Path(self.root) / name
                if not folder.is_dir():
                    raise CheckpointError(f"model {name!r} is not available: {folder} is missing")
                if name == "clip":
                    from core.text_encoders import ClipTextEncoder
                    self._models[name] = ClipTextEncoder.from_folder(folder).to(self.device)
                else:
                    model = load_model(folder, self.device)
                    if self.device.type == "cpu":  # oneDNN's NHWC convolutions: 6-13% less CPU time per UNet call
                        model.to(memory_format=torch.channels_last)
                    self._models[name] = model
            return self._models[name]

    def load_all(self) -> None:
        for name in self.available():
            self.get(name)

    def clip_embedder(self):
        """The project's CLIP with its image tower (`core.clip_model.ClipEmbedder`, open_clip), for
        CLIP scores and FD_CLIP; loaded once. The text encoder of `get("clip")` has no image tower."""
        with self._lock:
            if "clip embedder" not in self._models:
                from core.clip_model import ClipEmbedder
                self._models["clip embedder"] = ClipEmbedder.from_folder(Path(self.root) / "clip", self.device)
            return self._models["clip embedder"]

    def text_encoder(self):
        name = self.get("text_base").config.text_encoder or "clip"
        return self.get(name)

    def classes(self) -> list[str]:
        """The class base's labels, from its config alone (the model is not loaded for this)."""
        from core.names import class_names
        return class_names(self.root)


@dataclass
class CascadeResult:
    """Images in [-1, 1] per resolution reached, and the parameters that made them."""
    stages: dict[int, torch.Tensor]
    parameters: dict = field(default_factory=dict)

    @property
    def final(self) -> torch.Tensor:
        return self.stages[max(self.stages)]


def generate(models: ModelSet, *, prompt: str | None = None, negative_prompt: str = "",
             label: str | None = None, num: int = 1, seed: int = 0, size: int = 128,
             base: StageSettings = BASE_DEFAULTS, sr: Sequence[StageSettings] = SR_STAGE_DEFAULTS,
             callback: Callback | None = None) -> CascadeResult:
    """Text (`prompt`) or class (`label`) generation through the cascade, stopping at `size`."""
    if (prompt is None) == (label is None):
        raise ValueError("give exactly one of prompt or label")
    if prompt is not None and not prompt.strip():
        raise ValueError("prompt is empty; describe the emoji to generate")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if not isinstance(num, int) or not 1 <= num <= 16:
        raise ValueError(f"num must be between 1 and 16, got {num!r}")
    if len(sr) != 2:
        raise ValueError("sr needs the settings of both SR stages (64 and 128)")
    seeds = [seed + i for i in range(num)]

    def staged(resolution):
        if callback is None:
            return None
        return lambda info: callback({**info, "stage": resolution})

    if prompt is not None:
        x = generate_text(models.get("text_base"), models.text_encoder(), [prompt], negative_prompt, seeds, base,
                          callback=staged(32))
    else:
        x = generate_class(models.get("class_base"), [label], seeds, base, callback=staged(32))
    stages = {32: x}
    for i, (resolution, name) in enumerate(SR_STAGES.items()):
        if resolution > size:
            break
        x = upscale(models.get(name), x, seeds, sr[i], callback=staged(resolution), stage=i + 1)
        stages[resolution] = x
    parameters = {"prompt": prompt, "negative_prompt": negative_prompt, "label": label, "seeds": seeds,
                  "size": size, "base": vars(base), "sr": [vars(s) for s in sr[: len(stages) - 1]]}
    return CascadeResult(stages, parameters)
