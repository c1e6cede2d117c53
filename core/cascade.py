"""The cascade: a 32 px base (semantic or pixel) -> SR 64 -> SR 128 on the models of a ModelSet,
the SR stages alone (`upscale_chain`, `super_resolve`), and image variations through them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

import torch

from core.checks import check_int
from core.diffae import fresh_noise_guidance
from core.models.modelset import ModelSet
from core.models.networks import DiffusionModel
from core.models.text_encoders import fit_prompts
from core.pipeline import (
    BASE_DEFAULTS,
    SR_DEFAULTS,
    SR_STAGE_DEFAULTS,
    Callback,
    StageSettings,
    check_classifier_scale,
    generate_class,
    generate_text,
    model_defaults,
    upscale,
)
from core.reading import readable_prompt
from core.semantic import DECODER_STEPS, PRIOR_DEFAULTS, check_code_guide_scale, generate_semantic
from core.semantic import variations as semantic_variations

Size = Literal[32, 64, 128]
SIZES = (32, 64, 128)
SR_STAGES = {64: "sr64", 128: "sr128"}


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


def base_defaults(base_model: str, models: ModelSet | None = None, text: bool = True) -> StageSettings:
    """The default sampling of a 32 px base: the semantic base's prior's (`core.semantic.PRIOR_DEFAULTS`)
    or the pixel UNet's (`core.pipeline.BASE_DEFAULTS`); given `models`, with the guidance the pixel
    base of a prompt (`text`: text_base) or a label (class_base) names (`core.pipeline.model_defaults`)."""
    if base_model not in BASES:
        raise ValueError(f"base must be one of {', '.join(BASES)}; got {base_model!r}")
    if base_model == "semantic":
        return PRIOR_DEFAULTS
    return BASE_DEFAULTS if models is None else model_defaults(models.get("text_base" if text else "class_base"))


def _staged(callback: Callback | None, resolution: int):
    if callback is None:
        return None
    return lambda info: callback({**info, "stage": resolution})


def sr_names(size: int, start: int = 32) -> list[str]:
    """The SR stages that take `start` px images up to `size` px, in order."""
    return [name for resolution, name in SR_STAGES.items() if start < resolution <= size]


def sr_models(models: ModelSet, size: int, start: int = 32) -> list[DiffusionModel]:
    """The SR models that take `start` px images up to `size` px, in order."""
    return [models.get(name) for name in sr_names(size, start)]


def upscale_chain(sr_models: Sequence[DiffusionModel], x: torch.Tensor, seeds: Sequence[int],
                  sr: Sequence[StageSettings] | None = None,
                  callback: Callback | None = None) -> dict[int, torch.Tensor]:
    """Images x [B, 3, r, r] through each SR model in turn, each with its settings (default: the
    cascade's, SR_STAGE_DEFAULTS, at its resolution) and as stage i + 1 of the chain (its own noise
    streams); {resolution: images}, the input's included. `callback` gets every stage's progress
    with its resolution as "stage"."""
    if sr is None:
        sr = [SR_STAGE_DEFAULTS[list(SR_STAGES).index(model.resolution)] for model in sr_models]
    if len(sr) < len(sr_models):
        raise ValueError(f"got {len(sr)} SR settings for {len(sr_models)} SR stages")
    stages = {x.shape[-1]: x}
    for i, (model, settings) in enumerate(zip(sr_models, sr)):
        x = upscale(model, x, seeds, settings, callback=_staged(callback, model.resolution), stage=i + 1)
        stages[model.resolution] = x
    return stages


def upscale_stages(factor: int, size: int) -> list[str]:
    """The SR stages of a `factor`x upscale to `size` px: 2x is the stage into `size`, 4x both
    (32 -> 64 -> 128)."""
    if factor not in (2, 4):
        raise ValueError(f"factor must be 2 or 4, got {factor!r}")
    if size not in SR_STAGES:
        raise ValueError(f"output size must be 64 or 128, got {size!r}")
    if factor == 4 and size != 128:
        raise ValueError("4x needs output size 128: the cascade starts at 32, so 4x is 32 → 128")
    return sr_names(size, size // factor)


def super_resolve(models: ModelSet, low: torch.Tensor, factor: int, seeds: Sequence[int],
                  settings: StageSettings = SR_DEFAULTS, callback: Callback | None = None) -> torch.Tensor:
    """A `factor`x diffusion upscale of low-res images [B, 3, r, r] (r = 32 or 64), every stage
    with `settings`."""
    names = upscale_stages(factor, low.shape[-1] * factor)
    models_ = [models.get(name) for name in names]
    return upscale_chain(models_, low, seeds, [settings] * len(models_), callback)[low.shape[-1] * factor]


def _check_common(num: int, size: int, sr: Sequence[StageSettings]) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    check_int("num", num, 1, 16)
    if len(sr) != 2:
        raise ValueError("sr needs the settings of both SR stages (64 and 128)")


def generate(models: ModelSet, *, prompt: str | None = None, negative_prompt: str = "",
             label: str | None = None, num: int = 1, seed: int = 0, size: int = 128,
             base: StageSettings | None = None, sr: Sequence[StageSettings] = SR_STAGE_DEFAULTS,
             callback: Callback | None = None, base_model: Base | None = None,
             decoder_steps: int = DECODER_STEPS, classifier_scale: float | None = None,
             decoder_guidance: float | None = None, clip_scale: float | None = None) -> CascadeResult:
    """Text (`prompt`) or class (`label`) generation through the cascade, stopping at `size`.

    `base_model` picks the 32 px base: "pixel" (the text or class UNet) or "semantic" (the prior over
    DiffAE's z_sem, then the DiffAE decoder with `decoder_steps` steps and classifier-free guidance
    `decoder_guidance` on z_sem, None: the decoder checkpoint's); None: `default_base`.
    `base` sets the pixel base's sampling, or the prior's (sampler, steps, guidance) for the
    semantic one; None: that base's defaults (`base_defaults`).

    Classifier guidance (Dhariwal & Nichol 2021), `classifier_scale` with a label: on the semantic base,
    the prior's sampling is steered by the noise-aware classifier of its codes (`code_classifier`,
    `core.semantic.code_guide`); on the pixel base, the class UNet by the noise-aware classifier of
    images (`noisy_classifier`), run unconditionally (`base.guidance` not used, recorded as 1).
    CLIP guidance (GLIDE), `clip_scale` with a prompt, semantic base only: the prior steered by the
    code-text matcher (`code_matcher`). On the semantic base, when `base` is None, the prior then runs
    unconditionally (its guidance 0) so the gradient alone steers; a `base` with guidance 1 or more
    guides the conditional prior as well."""
    if (prompt is None) == (label is None):
        raise ValueError("give exactly one of prompt or label")
    if classifier_scale is not None and clip_scale is not None:
        raise ValueError("classifier guidance (a label) and CLIP guidance (a prompt) are alternatives; give one")
    if classifier_scale is not None and label is None:
        raise ValueError("classifier guidance steers towards a class: give a label, not a prompt")
    if clip_scale is not None:
        if prompt is None:
            raise ValueError("CLIP guidance steers towards a text: give a prompt, not a label")
        if base_model == "pixel":
            raise ValueError("CLIP guidance steers the semantic base's prior: use base semantic (or no base)")
        clip_scale = check_code_guide_scale(clip_scale, "CLIP scale")
    if prompt is not None and not prompt.strip():
        raise ValueError("prompt is empty; describe the emoji to generate")
    _check_common(num, size, sr)
    base_model = base_model or default_base(models)
    if clip_scale is not None and base_model != "semantic":
        raise ValueError("CLIP guidance steers the semantic base's prior, and its models are missing")
    if classifier_scale is not None:
        classifier_scale = (check_code_guide_scale(classifier_scale) if base_model == "semantic"
                            else check_classifier_scale(classifier_scale))
    if decoder_guidance is not None and base_model != "semantic":
        raise ValueError("decoder guidance is the semantic base's (the DiffAE decoder's); the pixel base has none")
    guided_prior = base_model == "semantic" and (classifier_scale is not None or clip_scale is not None)
    if base is None and guided_prior:   # the unconditional prior, steered by the gradient alone
        base = replace(PRIOR_DEFAULTS, guidance=0.0)
    base = base if base is not None else base_defaults(base_model, models, prompt is not None)   # checks base_model
    if classifier_scale is not None and base_model == "pixel":
        base = replace(base, guidance=1.0)
    seeds = [seed + i for i in range(num)]
    note = None
    if prompt is not None:   # the text encoder reads a bounded context: use (and store) what it reads
        encoder = (models.get(models.get("prior").config.text_encoder) if base_model == "semantic"
                   else models.text_encoder())
        prompt, negative_prompt, note = fit_prompts(encoder, prompt, negative_prompt)

    if base_model == "semantic":
        text_encoder = models.get(models.get("prior").config.text_encoder) if prompt is not None else None
        read = prompt
        if prompt is not None:   # words the encoder cannot read would pull the prompt elsewhere (core.reading)
            read, read_note = readable_prompt(text_encoder, prompt)
            note = "; ".join(n for n in (note, read_note) if n) or None
        x = generate_semantic(models.get("prior"), models.get("diffae"), text_encoder, prompt=read, label=label,
                              negative_prompt=negative_prompt, seeds=seeds, guidance=base.guidance, steps=base.steps,
                              sampler=base.sampler, decoder_steps=decoder_steps, callback=_staged(callback, 32),
                              decoder_guidance=decoder_guidance,
                              classifier=models.get("code_classifier") if classifier_scale is not None else None,
                              classifier_scale=classifier_scale or 0.0,
                              matcher=models.get("code_matcher") if clip_scale is not None else None,
                              clip_scale=clip_scale or 0.0)
    elif prompt is not None:
        x = generate_text(models.get("text_base"), models.text_encoder(), [prompt], negative_prompt, seeds, base,
                          callback=_staged(callback, 32))
    else:
        classifier = models.get("noisy_classifier") if classifier_scale is not None else None
        x = generate_class(models.get("class_base"), [label], seeds, base, callback=_staged(callback, 32),
                           classifier=classifier, classifier_scale=classifier_scale)
    stages = upscale_chain(sr_models(models, size), x, seeds, sr, callback)
    parameters = {"prompt": prompt, "negative_prompt": negative_prompt, "label": label, "seeds": seeds,
                  "size": size, "base_model": base_model, "base": vars(base),
                  "sr": [vars(s) for s in sr[: len(stages) - 1]]}
    if base_model == "semantic":
        parameters["decoder_steps"] = decoder_steps
        parameters["decoder_guidance"] = fresh_noise_guidance(models.get("diffae"), decoder_guidance)
    if classifier_scale is not None:
        parameters["classifier_scale"] = classifier_scale
    if clip_scale is not None:
        parameters["clip_scale"] = clip_scale
    if note:
        parameters["note"] = note
    return CascadeResult(stages, parameters)


def variations(models: ModelSet, image: torch.Tensor, *, num: int = 4, seed: int = 0, size: int = 128,
               prompt: str | None = None, mix: float = 0.0, guidance: float = PRIOR_DEFAULTS.guidance,
               steps: int = PRIOR_DEFAULTS.steps, decoder_steps: int = DECODER_STEPS,
               sr: Sequence[StageSettings] = SR_STAGE_DEFAULTS,
               callback: Callback | None = None, decoder_guidance: float | None = None) -> CascadeResult:
    """Variations of one image [1, 3, H, W] in [-1, 1] (any size: taken at the DiffAE's
    resolution): its semantic code decoded with fresh noise, optionally moved towards a prompt
    (`mix`; the prompt's code drawn by the prior with `guidance` and `steps`), then through the
    SR stages up to `size`. `decoder_guidance`: the decoder's guidance on z_sem (None: its checkpoint's)."""
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
        prompt, _, note = fit_prompts(text_encoder, prompt)
    x = semantic_variations(decoder, image, seeds, prior=prior, text_encoder=text_encoder, prompt=prompt, mix=mix,
                            guidance=guidance, steps=steps, decoder_steps=decoder_steps, callback=_staged(callback, 32),
                            decoder_guidance=decoder_guidance)
    stages = upscale_chain(sr_models(models, size), x, seeds, sr, callback)
    parameters = {"command": "variations", "prompt": prompt if guided else None, "mix": mix if guided else 0.0,
                  "seeds": seeds, "size": size, "decoder_steps": decoder_steps,
                  "decoder_guidance": fresh_noise_guidance(decoder, decoder_guidance),
                  "sr": [vars(s) for s in sr[: len(stages) - 1]]}
    if note:
        parameters["note"] = note
    return CascadeResult(stages, parameters)
