"""The set of trained models under one checkpoints root (a folder or Hub repo id), each loaded on
first use and then shared read-only, on the device and CPU threads chosen here."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from core.models.checkpoints import CheckpointError, resolve_checkpoints
from core.models.loading import load_model
from core.models.names import class_names
from core.models.networks import DiffusionModel


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
                model = load_model(folder, self.device)   # its class from its config's kind
                if isinstance(model, DiffusionModel) and self.device.type == "cpu":
                    model.to(memory_format=torch.channels_last)   # oneDNN's NHWC convolutions: 6-13% less CPU time
                self._models[name] = model
            return self._models[name]

    def load_all(self) -> None:
        for name in self.available():
            self.get(name)

    def clip_embedder(self):
        """The project's CLIP with its image tower (`core.models.clip_model.ClipEmbedder`, open_clip), for
        CLIP scores and FD_CLIP; loaded once. The text encoder of `get("clip")` has no image tower."""
        with self._lock:
            if "clip embedder" not in self._models:
                from core.models.clip_model import ClipEmbedder  # deferred: open_clip
                self._models["clip embedder"] = ClipEmbedder.from_folder(Path(self.root) / "clip", self.device)
            return self._models["clip embedder"]

    def text_encoder(self):
        name = self.get("text_base").config.text_encoder or "clip"
        return self.get(name)

    def classes(self) -> list[str]:
        """The class base's labels, from its config alone (the model is not loaded for this)."""
        return class_names(self.root)
