"""The bases: what draws the first, smallest picture of a prompt or a label, as objects. Each base
knows the models it needs (`needs`), its sampling defaults (read from its checkpoints' configs,
`core.pipeline.model_defaults`) and how to sample (`sample`, delegating to `core.pipeline`,
`core.semantic` or `core.deepfloyd`). `BASES` is the one registry and `default_base` the one rule
that picks a base from the models there are: the cascade (`core.cascade`), the command line and the
tabs all ask them.

- pixel: one 32 px UNet draws the pixels, the text base (`text_base` and its text encoder) for a
  prompt, the class base (`class_base`) for a label, as Imagen's base model;
- semantic: a diffusion prior draws DiffAE's semantic code, the DiffAE decoder draws the code
  (`prior`, `diffae`, and `clip` for a prompt), DALL-E 2's two stages;
- deepfloyd: DeepFloyd IF's stage I (64 px, text only), its weights from the Hub, not from the
  checkpoints folder: never picked by `default_base` (it needs a large GPU).
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from core.models.modelset import ModelSet
from core.pipeline import BASE_DEFAULTS, Callback, StageSettings, generate_class, generate_text, model_defaults
from core.semantic import PRIOR_DEFAULTS, SEMANTIC_MODELS, generate_semantic

PIXEL_MODELS = ("text_base", "class_base")   # the pixel base's checkpoints: for a prompt, for a label

# IF's own sampling settings: steps, guidance and noise level of diffusers' IFPipeline /
# IFSuperResolutionPipeline, thresholding of IF's scheduler configs (ratio 0.95, sample_max_value)
IF_I_DEFAULTS = StageSettings(sampler="ddpm", steps=100, guidance=7.0, threshold=0.95, threshold_max=1.5,
                              aug_level=0)
IF_II_DEFAULTS = StageSettings(sampler="ddpm", steps=50, guidance=4.0, threshold=0.95, threshold_max=1.0,
                               aug_level=250)


class Base(Protocol):
    """A base: draws `len(seeds)` images [B, 3, r, r] in [-1, 1] of a prompt or a label."""
    name: str
    description: str       # one line: what draws the picture (help texts, the tabs' choices)
    resolution: int
    in_cascade: bool       # its models are checkpoints of this hub (default_base may pick it)

    def needs(self, text: bool, text_encoder: str = "clip") -> list[str]:
        """The names of the models it needs for a prompt (`text`) or a label; `text_encoder`: the
        one the pixel text base's config names."""

    def defaults(self, models: ModelSet | None = None, text: bool = True) -> StageSettings:
        """Its sampling defaults: its checkpoint's config's, or the code's without `models`."""

    def sample(self, models, seeds: Sequence[int], settings: StageSettings, *, prompt: str | None = None,
               label: str | None = None, negative_prompt: str = "", callback: Callback | None = None,
               **options) -> torch.Tensor:
        """Images of `prompt` or `label`, image i from seeds[i], sampled with `settings`."""


def _text_only(base: str, text: bool) -> None:
    if not text:
        raise ValueError(f"the {base} base draws from a prompt only, not a label")


@dataclass(frozen=True)
class PixelBase:
    """One UNet on pixels: the text base for a prompt, the class base for a label."""
    name: str = "pixel"
    description: str = "a 32×32 UNet on pixels"
    resolution: int = 32
    in_cascade: bool = True

    def model(self, text: bool) -> str:
        """The checkpoint that draws a prompt (`text`) or a label."""
        return PIXEL_MODELS[0] if text else PIXEL_MODELS[1]

    def needs(self, text: bool, text_encoder: str = "clip") -> list[str]:
        return [self.model(True), text_encoder] if text else [self.model(False)]

    def defaults(self, models: ModelSet | None = None, text: bool = True) -> StageSettings:
        return BASE_DEFAULTS if models is None else model_defaults(models.get(self.model(text)))

    def sample(self, models: ModelSet, seeds: Sequence[int], settings: StageSettings, *, prompt: str | None = None,
               label: str | None = None, negative_prompt: str = "", callback: Callback | None = None,
               classifier_scale: float | None = None) -> torch.Tensor:
        """`classifier_scale` (a label): classifier guidance by the noise-aware image classifier
        (`noisy_classifier`) of the class base run unconditionally (`core.pipeline.generate_class`)."""
        if prompt is not None:
            return generate_text(models.get(self.model(True)), models.text_encoder(), [prompt], negative_prompt, seeds,
                                 settings, callback=callback)
        classifier = models.get("noisy_classifier") if classifier_scale is not None else None
        return generate_class(models.get(self.model(False)), [label], seeds, settings, callback=callback,
                              classifier=classifier, classifier_scale=classifier_scale)


@dataclass(frozen=True)
class SemanticBase:
    """A diffusion prior over DiffAE's semantic code, then the DiffAE decoder."""
    name: str = "semantic"
    description: str = "prior over DiffAE's code → DiffAE decoder"
    resolution: int = 32
    in_cascade: bool = True

    def needs(self, text: bool, text_encoder: str = "clip") -> list[str]:
        return [*SEMANTIC_MODELS, "clip"] if text else list(SEMANTIC_MODELS)   # the prior reads the prompt with clip

    def defaults(self, models: ModelSet | None = None, text: bool = True) -> StageSettings:
        return PRIOR_DEFAULTS if models is None else model_defaults(models.get("prior"), PRIOR_DEFAULTS)

    def sample(self, models: ModelSet, seeds: Sequence[int], settings: StageSettings, *, prompt: str | None = None,
               label: str | None = None, negative_prompt: str = "", callback: Callback | None = None,
               decoder_steps: int | None = None, decoder_guidance: float | None = None,
               classifier_scale: float | None = None, clip_scale: float | None = None,
               code_shift: torch.Tensor | None = None) -> torch.Tensor:
        """`settings`: the prior's sampler, steps and guidance; `decoder_steps` / `decoder_guidance`
        the decoder's (None: its checkpoint's); classifier (`code_classifier`) or CLIP guidance
        (`code_matcher`) of the prior and a code offset as in `core.semantic.generate_semantic`."""
        prior = models.get("prior")
        text_encoder = models.get(prior.config.text_encoder) if prompt is not None else None
        return generate_semantic(prior, models.get("diffae"), text_encoder, prompt=prompt, label=label,
                                 negative_prompt=negative_prompt, seeds=seeds, guidance=settings.guidance,
                                 steps=settings.steps, sampler=settings.sampler, decoder_steps=decoder_steps,
                                 callback=callback, decoder_guidance=decoder_guidance,
                                 classifier=models.get("code_classifier") if classifier_scale is not None else None,
                                 classifier_scale=classifier_scale or 0.0,
                                 matcher=models.get("code_matcher") if clip_scale is not None else None,
                                 clip_scale=clip_scale or 0.0, code_shift=code_shift)


@dataclass(frozen=True)
class DeepFloydBase:
    """DeepFloyd IF's stage I (text -> 64 px), from the Hub (`core.deepfloyd`)."""
    name: str = "deepfloyd"
    description: str = "DeepFloyd IF stage I, 64×64 from T5 (a large GPU)"
    resolution: int = 64
    in_cascade: bool = False

    def needs(self, text: bool, text_encoder: str = "clip") -> list[str]:
        _text_only("DeepFloyd IF", text)
        return []   # nothing from the checkpoints folder: `core.deepfloyd.DeepFloydSet.available` says if it runs

    def defaults(self, models=None, text: bool = True) -> StageSettings:
        _text_only("DeepFloyd IF", text)
        return IF_I_DEFAULTS

    def sample(self, models, seeds: Sequence[int], settings: StageSettings, *, prompt: str | None = None,
               label: str | None = None, negative_prompt: str = "", callback: Callback | None = None) -> torch.Tensor:
        """`models`: a `core.deepfloyd.DeepFloydIF`; `seeds` consecutive (IF draws image i from seeds[0] + i)."""
        _text_only("DeepFloyd IF", label is None)
        if list(seeds) != list(range(seeds[0], seeds[0] + len(seeds))):
            raise ValueError("DeepFloyd IF draws image i from seed + i: give consecutive seeds")
        result = models.generate(prompt, negative_prompt, num=len(seeds), seed=seeds[0],
                                 size=models.stage_1.resolution, stage_1=settings, callback=callback)
        return result.stages[models.stage_1.resolution]


# the one registry; the cascade's bases in the order `default_base` prefers them
BASES: dict[str, Base] = {b.name: b for b in (SemanticBase(), PixelBase(), DeepFloydBase())}
CASCADE_BASES: tuple[str, ...] = tuple(name for name, b in BASES.items() if b.in_cascade)


def cascade_base(name: str) -> Base:
    """The cascade base called `name`; ValueError naming the choices otherwise."""
    if name not in CASCADE_BASES:
        raise ValueError(f"base must be one of {', '.join(sorted(CASCADE_BASES))}; got {name!r}")
    return BASES[name]


def default_base(available: Collection[str], text: bool = True, text_encoder: str = "clip") -> str:
    """The first cascade base whose models are all `available` (names of loaded or present models):
    the semantic base when its models are there (it draws recognisable emoji far more often:
    checkpoints/prior/README.md), else the pixel base."""
    have = set(available)
    for name in CASCADE_BASES:
        if set(BASES[name].needs(text, text_encoder)) <= have:
            return name
    return CASCADE_BASES[-1]
