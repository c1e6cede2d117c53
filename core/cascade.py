"""The cascade: a 32 px base (semantic or pixel) -> SR 64 -> SR 128 on the models of a ModelSet,
the SR stages alone (`upscale_chain`, `super_resolve`), and image variations through them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch

from core.bases import BASES, cascade_base, default_base
from core.checks import check_int
from core.data.emoji import DataSourceMissing
from core.diffae import fresh_noise_guidance
from core.models.modelset import ModelSet
from core.models.networks import DiffusionModel
from core.models.text_encoders import fit_prompts
from core.models.tone_painter import TONE_PAINTER_FOLDER
from core.pipeline import (
    SR_STAGE_DEFAULTS,
    Callback,
    CascadeResult,
    StageSettings,
    check_classifier_scale,
    model_defaults,
    upscale,
)
from core.reading import check_prompt_reading, nearest_prompt, readable_prompt
from core.semantic import check_code_guide_scale, decoder_sampling
from core.semantic import variations as semantic_variations
from core.tone_words import app_reading, load_tone_offsets

Size = Literal[32, 64, 128]
SIZES = (32, 64, 128)
SR_STAGES = {64: "sr64", 128: "sr128"}


def base_defaults(base_model: str, models: ModelSet | None = None, text: bool = True) -> StageSettings:
    """The default sampling of a cascade base (`core.bases`): the semantic base's prior's
    (`core.semantic.PRIOR_DEFAULTS`) or the pixel UNet's (`core.pipeline.BASE_DEFAULTS`); given `models`,
    what the checkpoint of that base for a prompt (`text`) or a label names (`core.pipeline.model_defaults`)."""
    return cascade_base(base_model).defaults(models, text)


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


def sr_defaults(models: ModelSet | None = None, size: int = 128) -> tuple[StageSettings, ...]:
    """The default settings of the 64 and 128 px SR stages: what the config of each stage up to
    `size` names (`core.pipeline.model_defaults`); SR_STAGE_DEFAULTS for the others or without `models`."""
    names = sr_names(size) if models is not None else []
    return tuple(model_defaults(models.get(name), fallback) if name in names else fallback
                 for name, fallback in zip(SR_STAGES.values(), SR_STAGE_DEFAULTS))


def stage_settings(sr_models: Sequence[DiffusionModel], faithful: bool = False) -> list[StageSettings]:
    """Each SR model's settings in the cascade (what its config names, `core.pipeline.model_defaults`;
    SR_STAGE_DEFAULTS by its resolution where it names none). `faithful`:
    for an input that reproduces a real image (a DiffAE reconstruction from the image's own x_T),
    without noise augmentation. CDM augments the low-res input so that a stage forgives what a base
    got wrong; a reconstruction has nothing to forgive (43 dB at 32 px), and the augmentation only
    hides detail from the stage. Measured on 32 held-out emoji (`python -m core evaluate-diffae`):
    the reconstruction at 64 px 29.82 dB against the real emoji with augmentation 50, 30.27 dB
    without (the real 32 px emoji through SR 64: 30.24 and 30.71 dB)."""
    settings = [model_defaults(model, SR_STAGE_DEFAULTS[list(SR_STAGES).index(model.resolution)])
                for model in sr_models]
    return [replace(s, aug_level=0) for s in settings] if faithful else settings


def upscale_chain(sr_models: Sequence[DiffusionModel], x: torch.Tensor, seeds: Sequence[int],
                  sr: Sequence[StageSettings] | None = None,
                  callback: Callback | None = None) -> dict[int, torch.Tensor]:
    """Images x [B, 3, r, r] through each SR model in turn, each with its settings (default: the
    cascade's, SR_STAGE_DEFAULTS, at its resolution) and as stage i + 1 of the chain (its own noise
    streams); {resolution: images}, the input's included. `callback` gets every stage's progress
    with its resolution as "stage"."""
    if sr is None:
        sr = stage_settings(sr_models)
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


def upscale_factor(size: int, input_side: int, factor: int | None = None) -> int:
    """The factor of an upscale to `size` px: the one given, else from the input's longer side (an
    input of at most 32 px taken to 128 gets both SR stages, 32 -> 64 -> 128, as the cascade runs
    them; a larger one the stage into `size` alone)."""
    if size not in SR_STAGES:
        raise ValueError(f"output size must be 64 or 128, got {size!r}")
    if factor is None:
        factor = 4 if size == 128 and input_side <= 32 else 2
    if size == 64 and factor == 4:
        raise ValueError("factor 4 needs size 128 (the cascade starts at 32)")
    return factor


def upscale_settings(models: ModelSet, factor: int, size: int, *, sampler: str | None = None,
                     steps: int | None = None, aug_level: int | None = None) -> list[StageSettings]:
    """The settings of each SR stage of a `factor`x upscale to `size` px: each stage's own (what its
    config names, `stage_settings`: sr64 and sr128 differ), with `sampler`, `steps` and the noise
    level `aug_level` replaced in every stage where given."""
    stages = [models.get(name) for name in upscale_stages(factor, size)]
    changes = {k: v for k, v in (("sampler", sampler), ("steps", steps), ("aug_level", aug_level)) if v is not None}
    return [replace(s, **changes) for s in stage_settings(stages)]


def super_resolve(models: ModelSet, low: torch.Tensor, factor: int, seeds: Sequence[int],
                  settings: StageSettings | Sequence[StageSettings] | None = None,
                  callback: Callback | None = None) -> torch.Tensor:
    """A `factor`x diffusion upscale of low-res images [B, 3, r, r] (r = 32 or 64): 2x the stage
    into 2r, 4x both (32 -> 64 -> 128). `settings`: one per stage (`upscale_settings`), one for
    every stage, or None: each stage's own (`stage_settings`)."""
    names = upscale_stages(factor, low.shape[-1] * factor)
    models_ = [models.get(name) for name in names]
    if settings is None:
        settings = stage_settings(models_)
    elif isinstance(settings, StageSettings):
        settings = [settings] * len(models_)
    if len(settings) != len(models_):
        raise ValueError(f"got {len(settings)} SR settings for the {len(models_)} stages of a {factor}x upscale")
    return upscale_chain(models_, low, seeds, list(settings), callback)[low.shape[-1] * factor]


def _check_common(num: int, size: int, sr: Sequence[StageSettings]) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    check_int("num", num, 1, 16)
    if len(sr) != 2:
        raise ValueError("sr needs the settings of both SR stages (64 and 128)")


def _join(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def _read_prompt(encoder, prompt: str, prompt_reading: str, note: str | None):
    """What a base is conditioned on for `prompt`: (prompt to draw, read_as, note). "nearest": the name
    of the known emoji the prompt is read as (`core.reading.nearest_prompt`; any prompt with a word to
    go by), what the prior and the text base were trained on; "as-typed": the prompt itself."""
    drawn_prompt, read_as = prompt, None
    if prompt_reading != "nearest":
        return drawn_prompt, read_as, note
    try:
        drawn_prompt, reading, drawn = nearest_prompt(encoder, prompt)
    except DataSourceMissing as e:   # no emoji data set to read against: the prompt as typed
        return prompt, None, _join(note, f"the prompt is drawn as typed (no emoji to read it against: {e})")
    if drawn is not None:
        read_as = {"emoji": drawn.emoji, "name": drawn.name, "score": round(reading.nearest[0].score, 3),
                   "confident": reading.confident}
        note = _join(note, readable_prompt(encoder, prompt)[1])
        if drawn_prompt != prompt:
            note = _join(note, f"read as {read_as['emoji']} {read_as['name']}: drawn from {drawn_prompt!r} "
                               "(prompt reading 'as-typed' draws the prompt itself)")
    return drawn_prompt, read_as, note


def _semantic_prompt(models: ModelSet, prompt: str | None, prompt_reading: str, note: str | None):
    """What the semantic base's prior is conditioned on for `prompt`: (prior prompt, code shift,
    tone, painted, read_as, note). The prompt as `_read_prompt` reads it; then a tone on a design never
    drawn with one: the design, its code moved by the tone's offset (`core.tone_words`), then its
    skin repainted in the tone by the tone painter where there is one (`core.models.tone_painter`,
    painted True); then words the encoder cannot read left out (`core.reading.readable_prompt`)."""
    if prompt is None:
        return None, None, None, False, None, note
    text_encoder = models.get(models.get("prior").config.text_encoder)
    prior_prompt, read_as, note = _read_prompt(text_encoder, prompt, prompt_reading, note)
    # a tone on a design never drawn with one: the design, its code moved by the tone's offset
    # (core.tone_words), then its skin repainted where there is a tone painter
    offsets = load_tone_offsets(Path(models.root) / "diffae")
    prior_prompt, code_shift, tone = app_reading(offsets, prior_prompt)
    painted = tone is not None and TONE_PAINTER_FOLDER in models.available()
    if painted:
        note = _join(note, f"{prior_prompt!r} is never drawn with a skin tone: drawn, moved to the {tone} tone (its "
                           "offset in the code), then its skin repainted in that tone (the tone painter)")
    elif tone is not None:
        note = _join(note, f"{prior_prompt!r} is never drawn with a skin tone: drawn, then moved to the {tone} "
                           "tone (its offset in the code)")
    # words the encoder cannot read would pull the prompt elsewhere (core.reading)
    prior_prompt, read_note = readable_prompt(text_encoder, prior_prompt)
    return prior_prompt, code_shift, tone, painted, read_as, _join(note, read_note)


def generate(models: ModelSet, *, prompt: str | None = None, negative_prompt: str = "",
             label: str | None = None, num: int = 1, seed: int = 0, size: int = 128,
             base: StageSettings | None = None, sr: Sequence[StageSettings] | None = None,
             callback: Callback | None = None, base_model: str | None = None,
             decoder_steps: int | None = None, classifier_scale: float | None = None,
             decoder_guidance: float | None = None, clip_scale: float | None = None,
             prompt_reading: str | None = None) -> CascadeResult:
    """Text (`prompt`) or class (`label`) generation through the cascade, stopping at `size`.

    `prompt_reading` (a prompt): "nearest" conditions the prior, or the pixel text base, on the name
    of the known emoji the prompt is read as when it has a word to go by (`core.reading.nearest_prompt`:
    "a cat" -> "cat"; the parameters' `read_as` and `prior_prompt` say so), else on the prompt;
    "as-typed" always on the prompt; None: `core.reading.DEFAULT_PROMPT_READING`.

    `base_model` picks the 32 px base: "pixel" (the text or class UNet) or "semantic" (the prior over
    DiffAE's z_sem, then the DiffAE decoder with `decoder_steps` steps and classifier-free guidance
    `decoder_guidance` on z_sem, None: the decoder checkpoint's); None: `default_base`.
    `base` sets the pixel base's sampling, or the prior's (sampler, steps, guidance) for the
    semantic one; None: that base's defaults (`base_defaults`). `sr`: the settings of the 64 and
    128 px stages (None: their checkpoints', `sr_defaults`); `decoder_steps` None: the decoder's.

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
    prompt_reading = check_prompt_reading(prompt_reading)
    _check_common(num, size, sr if sr is not None else SR_STAGE_DEFAULTS)
    base_model = cascade_base(base_model or default_base(models.available(), prompt is not None)).name
    if clip_scale is not None and base_model != "semantic":
        raise ValueError("CLIP guidance steers the semantic base's prior, and its models are missing")
    if classifier_scale is not None:
        classifier_scale = (check_code_guide_scale(classifier_scale) if base_model == "semantic"
                            else check_classifier_scale(classifier_scale))
    if decoder_guidance is not None and base_model != "semantic":
        raise ValueError("decoder guidance is the semantic base's (the DiffAE decoder's); the pixel base has none")
    guided_prior = base_model == "semantic" and (classifier_scale is not None or clip_scale is not None)
    if base is None and guided_prior:   # the unconditional prior, steered by the gradient alone
        base = replace(base_defaults("semantic", models), guidance=0.0)
    base = base if base is not None else base_defaults(base_model, models, prompt is not None)
    if classifier_scale is not None and base_model == "pixel":
        base = replace(base, guidance=1.0)
    seeds = [seed + i for i in range(num)]
    note = None
    if prompt is not None:   # the text encoder reads a bounded context: use (and store) what it reads
        encoder = (models.get(models.get("prior").config.text_encoder) if base_model == "semantic"
                   else models.text_encoder())
        prompt, negative_prompt, note = fit_prompts(encoder, prompt, negative_prompt)

    tone, painted, read_as, options, base_prompt = None, False, None, {}, prompt
    if base_model == "semantic":
        prior_prompt, code_shift, tone, painted, read_as, note = _semantic_prompt(models, prompt, prompt_reading, note)
        base_prompt = prior_prompt
        options = dict(decoder_steps=decoder_steps, decoder_guidance=decoder_guidance, clip_scale=clip_scale,
                       code_shift=code_shift)
    elif prompt is not None:   # the pixel text base draws what it was trained on too (core.reading)
        base_prompt, read_as, note = _read_prompt(models.text_encoder(), prompt, prompt_reading, note)
    x = BASES[base_model].sample(models, seeds, base, prompt=base_prompt,
                                 label=label, negative_prompt=negative_prompt, callback=_staged(callback, 32),
                                 classifier_scale=classifier_scale, **options)
    if painted:   # the design's skin repainted in the asked tone (core.models.tone_painter)
        x = models.get(TONE_PAINTER_FOLDER).paint(x, tone)
    sr = sr if sr is not None else sr_defaults(models, size)
    stages = upscale_chain(sr_models(models, size), x, seeds, sr, callback)
    parameters = {"prompt": prompt, "negative_prompt": negative_prompt, "label": label, "seeds": seeds,
                  "size": size, "base_model": base_model, "base": vars(base),
                  "sr": [vars(s) for s in sr[: len(stages) - 1]]}
    if base_model == "semantic":
        parameters["decoder_steps"] = decoder_sampling(models.get("diffae"), "steps") if decoder_steps is None \
            else decoder_steps
        parameters["decoder_guidance"] = fresh_noise_guidance(models.get("diffae"), decoder_guidance)
    if prompt is not None:
        parameters["prompt_reading"] = prompt_reading
    if read_as is not None:   # the known emoji the prompt was read as, whose name the prior drew
        parameters["read_as"] = read_as
    if tone is not None or (read_as is not None and base_prompt != prompt):
        parameters["prior_prompt"] = base_prompt
    if tone is not None:   # a tone asked on a design never drawn with one: the design, moved (and repainted)
        parameters["tone_offset"] = tone
    if painted:
        parameters["tone_painted"] = tone
    if classifier_scale is not None:
        parameters["classifier_scale"] = classifier_scale
    if clip_scale is not None:
        parameters["clip_scale"] = clip_scale
    if note:
        parameters["note"] = note
    return CascadeResult(stages, parameters)


def variations(models: ModelSet, image: torch.Tensor, *, num: int = 4, seed: int = 0, size: int = 128,
               prompt: str | None = None, mix: float = 0.0, guidance: float | None = None,
               steps: int | None = None, decoder_steps: int | None = None,
               sr: Sequence[StageSettings] | None = None,
               callback: Callback | None = None, decoder_guidance: float | None = None) -> CascadeResult:
    """Variations of one image [1, 3, H, W] in [-1, 1] (any size: taken at the DiffAE's
    resolution): its semantic code decoded with fresh noise, optionally moved towards a prompt
    (`mix`; the prompt's code drawn by the prior with `guidance` and `steps`), then through the
    SR stages up to `size`. `decoder_guidance`: the decoder's guidance on z_sem (None: its checkpoint's);
    guidance, steps, decoder_steps and sr left out are the checkpoints' (the prior's, the decoder's, `sr_defaults`)."""
    _check_common(num, size, sr if sr is not None else SR_STAGE_DEFAULTS)
    decoder = models.get("diffae")
    decoder_steps = decoder_sampling(decoder, "steps") if decoder_steps is None else decoder_steps
    sr = sr if sr is not None else sr_defaults(models, size)
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
