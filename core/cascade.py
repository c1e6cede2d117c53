"""The set of trained models (loaded once, read-only) and the cascade base -> SR 64 -> SR 128."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence, get_args

import torch

from core.models.checkpoints import CheckpointError, load_model, resolve_checkpoints
from core.pipeline import (BASE_DEFAULTS, SR_STAGE_DEFAULTS, Callback, StageSettings, check_classifier_scale,
                           generate_class, generate_text, upscale)
from core.semantic import DECODER_STEPS, generate_semantic
from core.semantic import variations as semantic_variations

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
                    from core.models.text_encoders import ClipTextEncoder
                    self._models[name] = ClipTextEncoder.from_folder(folder).to(self.device)
                elif name == "noisy_classifier":
                    from core.models.noisy_classifier import load_noisy_classifier
                    self._models[name] = load_noisy_classifier(folder, self.device)
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
        """The project's CLIP with its image tower (`core.models.clip_model.ClipEmbedder`, open_clip), for
        CLIP scores and FD_CLIP; loaded once. The text encoder of `get("clip")` has no image tower."""
        with self._lock:
            if "clip embedder" not in self._models:
                from core.models.clip_model import ClipEmbedder
                self._models["clip embedder"] = ClipEmbedder.from_folder(Path(self.root) / "clip", self.device)
            return self._models["clip embedder"]

    def text_encoder(self):
        name = self.get("text_base").config.text_encoder or "clip"
        return self.get(name)

    def classes(self) -> list[str]:
        """The class base's labels, from its config alone (the model is not loaded for this)."""
        from core.models.names import class_names
        return class_names(self.root)


@dataclass
class CascadeResult:
    """Images in [-1, 1] per resolution reached, and the parameters that made them."""
    stages: dict[int, torch.Tensor]
    parameters: dict = field(default_factory=dict)

    @property
    def final(self) -> torch.Tensor:
        return self.stages[max(self.stages)]


Base = Literal["pixel", "semantic"]
BASES: tuple[str, ...] = get_args(Base)


def default_base(models: ModelSet) -> str:
    """The semantic base when its models are there (it draws recognisable emoji far more often:
    checkpoints/prior/README.md), else the pixel base."""
    have = set(models.available())
    return "semantic" if {"prior", "diffae"} <= have else "pixel"


def _staged(callback: Callback | None, resolution: int):
    if callback is None:
        return None
    return lambda info: callback({**info, "stage": resolution})


def upscale_chain(models: ModelSet, x: torch.Tensor, seeds: Sequence[int], size: int,
                  sr: Sequence[StageSettings] = SR_STAGE_DEFAULTS,
                  callback: Callback | None = None) -> dict[int, torch.Tensor]:
    """32 px images through SR 64 and SR 128, stopping at `size`; {resolution: images}."""
    stages = {32: x}
    for i, (resolution, name) in enumerate(SR_STAGES.items()):
        if resolution > size:
            break
        x = upscale(models.get(name), x, seeds, sr[i], callback=_staged(callback, resolution), stage=i + 1)
        stages[resolution] = x
    return stages


def _check_common(num: int, size: int, sr: Sequence[StageSettings]) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= 16:
        raise ValueError(f"num must be between 1 and 16, got {num!r}")
    if len(sr) != 2:
        raise ValueError("sr needs the settings of both SR stages (64 and 128)")


def generate(models: ModelSet, *, prompt: str | None = None, negative_prompt: str = "",
             label: str | None = None, num: int = 1, seed: int = 0, size: int = 128,
             base: StageSettings = BASE_DEFAULTS, sr: Sequence[StageSettings] = SR_STAGE_DEFAULTS,
             callback: Callback | None = None, base_model: Base | None = None,
             decoder_steps: int = DECODER_STEPS, classifier_scale: float | None = None) -> CascadeResult:
    """Text (`prompt`) or class (`label`) generation through the cascade, stopping at `size`.

    `base_model` picks the 32 px base: "pixel" (the text or class UNet) or "semantic" (the prior over
    DiffAE's z_sem, then the DiffAE decoder with `decoder_steps` DDIM steps); None: `default_base`.
    `base` sets the pixel base's sampling, or the prior's (sampler, steps, guidance) for the
    semantic one.

    With `classifier_scale`, the pixel class base is steered by classifier guidance (the
    noise-aware classifier `noisy_classifier`, Dhariwal & Nichol 2021) instead of classifier-free
    guidance: it runs unconditionally and `base.guidance` is not used (recorded as 1)."""
    if (prompt is None) == (label is None):
        raise ValueError("give exactly one of prompt or label")
    if classifier_scale is not None:
        if label is None:
            raise ValueError("classifier guidance steers the class base: give a label, not a prompt")
        if base_model == "semantic":
            raise ValueError("classifier guidance steers the pixel class base: use base pixel (or no base)")
        classifier_scale = check_classifier_scale(classifier_scale)
        base = replace(base, guidance=1.0)
        base_model = "pixel"
    if prompt is not None and not prompt.strip():
        raise ValueError("prompt is empty; describe the emoji to generate")
    _check_common(num, size, sr)
    base_model = base_model or default_base(models)
    if base_model not in BASES:
        raise ValueError(f"base must be one of {', '.join(BASES)}; got {base_model!r}")
    seeds = [seed + i for i in range(num)]
    note = None
    if prompt is not None:   # the text encoder reads a bounded context: use (and store) what it reads
        from core.models.text_encoders import fit_prompts
        encoder = (models.get(models.get("prior").config.text_encoder) if base_model == "semantic"
                   else models.text_encoder())
        prompt, negative_prompt, note = fit_prompts(encoder, prompt, negative_prompt)

    if base_model == "semantic":
        text_encoder = models.get(models.get("prior").config.text_encoder) if prompt is not None else None
        x = generate_semantic(models.get("prior"), models.get("diffae"), text_encoder, prompt=prompt, label=label,
                              negative_prompt=negative_prompt, seeds=seeds, guidance=base.guidance, steps=base.steps,
                              sampler=base.sampler, decoder_steps=decoder_steps, callback=_staged(callback, 32))
    elif prompt is not None:
        x = generate_text(models.get("text_base"), models.text_encoder(), [prompt], negative_prompt, seeds, base,
                          callback=_staged(callback, 32))
    else:
        classifier = models.get("noisy_classifier") if classifier_scale is not None else None
        x = generate_class(models.get("class_base"), [label], seeds, base, callback=_staged(callback, 32),
                           classifier=classifier, classifier_scale=classifier_scale)
    stages = upscale_chain(models, x, seeds, size, sr, callback)
    parameters = {"prompt": prompt, "negative_prompt": negative_prompt, "label": label, "seeds": seeds,
                  "size": size, "base_model": base_model, "base": vars(base), "sr": [vars(s) for s in sr[: len(stages) - 1]]}
    if base_model == "semantic":
        parameters["decoder_steps"] = decoder_steps
    if classifier_scale is not None:
        parameters["classifier_scale"] = classifier_scale
    if note:
        parameters["note"] = note
    return CascadeResult(stages, parameters)


def variations(models: ModelSet, image: torch.Tensor, *, num: int = 4, seed: int = 0, size: int = 128,
               prompt: str | None = None, mix: float = 0.0, guidance: float = BASE_DEFAULTS.guidance,
               steps: int = BASE_DEFAULTS.steps, decoder_steps: int = DECODER_STEPS, sr: Sequence[StageSettings] = SR_STAGE_DEFAULTS,
               callback: Callback | None = None) -> CascadeResult:
    """Variations of one image [1, 3, H, W] in [-1, 1] (any size: taken at the DiffAE's
    resolution): its semantic code decoded with fresh noise, optionally moved towards a prompt
    (`mix`; the prompt's code drawn by the prior with `guidance` and `steps`), then through the
    SR stages up to `size`."""
    _check_common(num, size, sr)
    decoder = models.get("diffae")
    r = decoder.resolution
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.shape[-1] != r or image.shape[-2] != r:
        image = torch.nn.functional.interpolate(image.float(), size=(r, r), mode="area")
    seeds = [seed + i for i in range(num)]
    guided = prompt is not None and bool(prompt.strip()) and mix > 0
    prior = models.get("prior") if guided else None
    text_encoder = models.get(prior.config.text_encoder) if guided else None
    note = None
    if guided:   # the text encoder reads a bounded context: use (and store) what it reads
        from core.models.text_encoders import fit_prompts
        prompt, _, note = fit_prompts(text_encoder, prompt)
    x = semantic_variations(decoder, image, seeds, prior=prior, text_encoder=text_encoder, prompt=prompt, mix=mix,
                            guidance=guidance, steps=steps, decoder_steps=decoder_steps, callback=_staged(callback, 32))
    stages = upscale_chain(models, x, seeds, size, sr, callback)
    parameters = {"command": "variations", "prompt": prompt if guided else None, "mix": mix if guided else 0.0,
                  "seeds": seeds, "size": size, "decoder_steps": decoder_steps,
                  "sr": [vars(s) for s in sr[: len(stages) - 1]]}
    if note:
        parameters["note"] = note
    return CascadeResult(stages, parameters)
