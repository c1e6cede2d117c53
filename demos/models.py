"""The app's models, loaded once and read-only: each missing model disables only what needs it;
the bases' models and defaults as the tabs see them (`core.bases`), and the sampling defaults
they start from. The base-model inputs are built from a capability spec in `demos.adapter`."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
import torch

from core.bases import BASES, CASCADE_BASES, default_base
from core.cascade import base_defaults
from core.diffae import MAX_DECODER_GUIDANCE, fresh_noise_guidance
from core.models.modelset import ModelSet
from demos.errors import error, public

MODEL_NAMES = ("clip", "text_base", "class_base", "sr64", "sr128", "palette", "diffae", "prior", "noisy_classifier",
               "code_classifier", "code_matcher")

BASE_CHOICES = {f"{name}: {BASES[name].description}": name for name in CASCADE_BASES}   # the tabs' base choice


class Models:
    """The app's ModelSet, every model loaded at start-up, and for each model that could not be
    loaded the reason, so one missing model disables only what needs it."""

    def __init__(self, model_set: ModelSet, errors: dict[str, str], loaded: Sequence[str] = (), deepfloyd=None,
                 location: str | None = None):
        self.set = model_set
        self.errors = {name: public(why) for name, why in errors.items()}
        self.names = list(loaded)
        self.deepfloyd = deepfloyd  # a core.deepfloyd.DeepFloydSet (loads on first use), or None: not offered
        self.location = location or Path(model_set.root).name  # what the page says: never the server's path

    @classmethod
    def load(cls, checkpoints: str | os.PathLike | None = None, device: str = "auto", deepfloyd=None) -> Models:
        """Load every model under `checkpoints` (a folder or Hub repo id; None: ./checkpoints).
        An unusable `checkpoints` or device raises CheckpointError / ValueError; an unusable
        model is recorded in `errors` and the others still load. `deepfloyd`: a DeepFloydSet
        offered beside them (checked, not loaded)."""
        model_set = ModelSet(checkpoints, device)
        errors: dict[str, str] = {}
        loaded: list[str] = []
        names = list(MODEL_NAMES)
        for name in names:
            try:
                model = model_set.get(name)
            except Exception as e:  # noqa: BLE001 - any broken checkpoint must leave the others usable
                errors[name] = str(e) or type(e).__name__
                continue
            loaded.append(name)
            encoder = getattr(model.config, "text_encoder", None) if name == "text_base" else None
            if encoder and encoder not in names:
                names.append(encoder)
        given = Path(str(checkpoints)).expanduser() if checkpoints is not None else None
        location = str(checkpoints) if given is not None and not given.is_dir() else None  # a Hub repo id as given
        return cls(model_set, errors, loaded, deepfloyd, location)

    @property
    def device(self) -> torch.device:
        return self.set.device

    @property
    def root(self) -> Path:
        return Path(self.set.root)

    def text_encoder_name(self) -> str:
        if "text_base" in self.errors:
            return "clip"
        return self.set.get("text_base").config.text_encoder or "clip"

    def warm_prompt_reader(self) -> threading.Thread | None:
        """Make the semantic base's prompt reader (`core.reading.prompt_reader`) in a background
        thread, so the first request does not wait for it: the embeddings of every phrasing of every
        training emoji, two minutes of one CPU core the first time on a machine, then read back from
        the disk cache in under a second. None when the prior or its text encoder did not load."""
        if self.unavailable(["prior"]):
            return None
        encoder_name = self.set.get("prior").config.text_encoder
        if self.unavailable([encoder_name]):
            return None

        def warm() -> None:
            from core.reading import prompt_reader  # deferred: the data set module
            start = time.perf_counter()
            try:
                prompt_reader(self.set.get(encoder_name))
            except Exception as e:  # noqa: BLE001 - the tab reports it on use; the app keeps serving
                print(f"* prompt reader not ready: {e}", flush=True)
                return
            print(f"* prompt reader ready ({time.perf_counter() - start:.1f} s)", flush=True)

        thread = threading.Thread(target=warm, name="warm-prompt-reader", daemon=True)
        thread.start()
        return thread

    def unavailable(self, names: Sequence[str]) -> dict[str, str]:
        return {n: self.errors[n] for n in names if n in self.errors}

    def require(self, names: Sequence[str]) -> None:
        """gr.Error naming the first of `names` that is unavailable, and why."""
        for name, why in self.unavailable(names).items():
            raise error(f"{name!r} is unavailable, so this cannot run: {why}", "Model unavailable")

    def get(self, name: str):
        self.require([name])
        return self.set.get(name)

    def base_needs(self, base_model: str, text: bool) -> list[str]:
        """The models the cascade base `base_model` (`core.bases`) needs, for text or labels."""
        if base_model not in CASCADE_BASES:
            raise gr.Error(f"base must be one of {', '.join(sorted(CASCADE_BASES))}; got {base_model!r}",
                           title="Invalid input")
        return BASES[base_model].needs(text, self.text_encoder_name())

    def default_base(self, text: bool) -> str:
        """The base `core.bases.default_base` picks from the models that loaded."""
        return default_base(self.names, text, self.text_encoder_name())

    def status_markdown(self, names: Sequence[str], consequence: str = "") -> str:
        """A warning for the top of a tab listing its unavailable models ('' when all are there)."""
        missing = self.unavailable(names)
        if not missing:
            return ""
        lines = [f"- `{n}`: {why}" for n, why in missing.items()]
        return "⚠️ **Unavailable models** (the rest of the app works):\n" + "\n".join(lines) + (
            f"\n\n{consequence}" if consequence else "")

    def summary(self) -> str:
        loaded = ", ".join(self.names) or "none"
        text = f"models on {self.device.type} from {self.location}: loaded {loaded}"
        if self.errors:
            text += "; unavailable " + ", ".join(sorted(self.errors))
        return text


def decoder_guidance_input(models: Models) -> gr.Slider:
    """The DiffAE decoder's classifier-free guidance on the semantic code, starting at the scale its
    checkpoint names (1 for a decoder that knows no null code)."""
    start = 1.0 if models.unavailable(["diffae"]) else fresh_noise_guidance(models.set.get("diffae"))
    return gr.Slider(0, MAX_DECODER_GUIDANCE, value=start, step=0.1, label="Decoder guidance (semantic)",
                     info="classifier-free guidance of the DiffAE decoder on the semantic code (DALL-E 2's "
                          "decoder): above 1 draws the code's own details more firmly; 1 = none")


def sampling_of(models: Models, base_model: str, text: bool):
    """The default sampling (a core.pipeline.StageSettings) of a base: the semantic base's prior's,
    or the pixel UNet's with the guidance its checkpoint names (when the model is loaded)."""
    loaded = not models.unavailable(models.base_needs(base_model, text))
    return base_defaults(base_model, models.set if loaded else None, text)


def base_sampling(models: Models, text: bool):
    """The default sampling of the base a tab starts with."""
    return sampling_of(models, models.default_base(text), text)


def follow_base_defaults(models: Models, text: bool, base_model: gr.Radio, sampler: gr.Dropdown, steps: gr.Slider,
                         guidance: gr.Slider) -> None:
    """When the base changes, the sampler, steps and guidance become that base's defaults (the pixel
    UNet samples with 10 DPM-Solver++ steps at the guidance its card measured best, the semantic
    base's prior with 25 DDIM steps at guidance 3)."""
    def defaults(choice: str):
        d = sampling_of(models, choice, text)
        return gr.update(value=d.sampler), gr.update(value=d.steps), gr.update(value=d.guidance)
    base_model.change(defaults, inputs=base_model, outputs=[sampler, steps, guidance], queue=False,
                      api_visibility="private")
