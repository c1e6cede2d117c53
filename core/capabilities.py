"""Capabilities as specs: what one thing the hub does takes (typed parameters with their default,
range or choices, and help), which models it needs (from the bases, `core.bases`) and the core
function that does it. The command line builds its options from a spec (`core.cli.spec_options`)
and the tabs their sliders and dropdowns (`demos.adapter`), so the two cannot disagree on a
default or a range, and `Capability.check` refuses a value outside them, naming the parameter.

A parameter whose default is None is decided when it runs, from the models: the sampler, steps and
guidance of the base that runs (its checkpoint's config, `core.bases.Base.defaults`), the decoder's
steps and guidance, the base itself (`core.bases.default_base`). Its `start` is what a form shows
before anything is chosen.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.bases import BASES, CASCADE_BASES, default_base
from core.cascade import (
    SIZES,
    base_defaults,
    generate,
    sr_defaults,
    sr_names,
    upscale_chain,
    upscale_settings,
    upscale_stages,
)
from core.diffae import MAX_DECODER_GUIDANCE
from core.diffusion.samplers import SAMPLERS
from core.models.modelset import ModelSet
from core.pipeline import (
    BASE_DEFAULTS,
    MAX_CLASSIFIER_SCALE,
    SR_STAGE_DEFAULTS,
    Callback,
    CascadeResult,
    StageSettings,
)
from core.reading import DEFAULT_PROMPT_READING, PROMPT_READINGS
from core.semantic import CLIP_SCALE, CODE_CLASSIFIER_SCALE, DECODER_STEPS, MAX_CODE_GUIDE_SCALE, decoder_sampling

MAX_SEED = 2**32 - 1   # seeds from 0 to 2^32 - 1 (the command line's and the app's)


@dataclass(frozen=True)
class Param:
    """One parameter of a capability. `type` is int, float, bool or str; `low`/`high` bound a
    number, `choices` list the values a choice may take. `default` None: decided when it runs (the
    help says by what), shown as `start` in a form. `flag`: its command-line option ("" for
    --NAME with dashes, None for none); `ui`: whether the tab shows it; `label` and `step` are the
    tab's."""
    name: str
    type: type
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    help: str = ""
    label: str = ""
    step: float | None = None
    flag: str | None = ""
    ui: bool = True
    start: Any = None

    @property
    def option(self) -> str | None:
        """The command-line option, e.g. --negative-prompt (None: not on the command line)."""
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        """A command-line value: `text` as this parameter's type, inside its range (argparse checks
        the choices); ValueError saying what is wrong."""
        if self.type is int:
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a whole number") from None
        elif self.type is float:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{text} is not a finite number")
        else:
            value = self.type(text)
        self._check_range(value)
        return value

    def check(self, value) -> Any:
        """`value` as this parameter's type, inside its range or choices; None stays None (the default
        decides). ValueError naming the parameter otherwise."""
        if value is None:
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise ValueError(f"{self.name} must be text, got {type(value).__name__}")
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
                raise ValueError(f"{self.name} must be a whole number, got {value!r}")
            value = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{self.name} must be a finite number, got {value!r}")
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
        self._check_range(value)
        return value

    def _check_range(self, value) -> None:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{self.name} {_shown(value)} is not from {_shown(self.low)} to {_shown(self.high)}")


def _shown(x: float) -> str:
    """A bound as people write it: 4294967295, 0.5, 15."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Capability:
    """A capability: its name (the tab's endpoint), its parameters in the endpoint's order (those
    with `ui`), the models a call needs (`needs(values, text_encoder, available)`: the base is the
    one `values` name, else the default among the `available` models) and the core function
    (`run(models, values, callback)`)."""
    name: str
    params: tuple[Param, ...]
    needs: Callable[[Mapping, str, Sequence[str]], list[str]]
    run: Callable[..., CascadeResult]
    text: bool = True   # drawn from a prompt (else a label)
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(p.name for p in self.params))

    def __getitem__(self, name: str) -> Param:
        return self.params[self.names.index(name)]

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def check(self, values: Mapping) -> dict:
        """Every parameter's value, checked (`Param.check`), the default where none is given;
        ValueError naming an unknown parameter or a value out of range."""
        unknown = [k for k in values if k not in self.names]
        if unknown:
            raise ValueError(f"{self.name} takes no parameter {unknown[0]!r} (it takes {', '.join(self.names)})")
        checked = {}
        for p in self.params:
            value = values.get(p.name, p.default)
            if value is None and p.type is str and p.default is not None:
                value = ""   # a cleared text box is empty text
            if value is None and p.default is not None:
                raise ValueError(f"{p.name} is empty; give a value")
            checked[p.name] = p.check(value)
        return checked


# ---- the parameters the generation capabilities share --------------------------------------------

def _base_params(text: bool, num_default: int, num_high: int) -> tuple[Param, ...]:
    """guidance, sampler, steps, seed, num_images, size, dynamic_thresholding: the first stage's."""
    return (
        Param("guidance", float, None, 0, 15, step=0.1, label="Guidance scale" + ("" if text else " (CFG)"),
              help="classifier-free guidance scale of the base (1 = none; default: the base checkpoint's)"),
        Param("sampler", str, None, choices=tuple(SAMPLERS), label="Sampler",
              help="sampler of the base (default: the base checkpoint's)"),
        Param("steps", int, None, 1, 100, step=1, label="Steps (base)" if text else "Steps",
              help="steps of the base (default: the base checkpoint's)"),
        Param("seed", int, 0, 0, MAX_SEED, label="Seed", help="image i uses seed + i"),
        Param("num_images", int, num_default, 1, num_high, step=1, flag="--num",
              label="Number of images" if text else "Number of samples", help="how many images"),
        Param("size", int, 128, choices=SIZES, label="Final size", help="final size (where the cascade stops)"),
        Param("dynamic_thresholding", bool, True, flag="--no-threshold",
              label="Thresholding of x0" if text else "Clip x0 to [-1, 1] (thresholding, pixel base)",
              help="thresholding of the base's predicted x0: static clipping unless the cap is raised"),
    )


def _decoder_params() -> tuple[Param, ...]:
    """base_model, decoder_steps, decoder_guidance: the choice of base and the semantic base's decoder."""
    return (
        Param("base_model", str, None, choices=CASCADE_BASES, flag="--base", label="Base model (32×32)",
              help="the 32 px base: " + "; ".join(f"{n}: {BASES[n].description}" for n in CASCADE_BASES)
                   + " (default: semantic when its models are there)"),
        Param("decoder_steps", int, None, 1, 100, step=1, label="Decoder steps (semantic)", start=DECODER_STEPS,
              help="semantic base: steps of the DiffAE decoder (default: its checkpoint's)"),
        Param("decoder_guidance", float, None, 0, MAX_DECODER_GUIDANCE, step=0.1,
              label="Decoder guidance (semantic)", start=1.0,
              help="semantic base: classifier-free guidance of the DiffAE decoder on the semantic code "
                   "(1 = none; default: its checkpoint's)"),
    )


def _sr_params() -> tuple[Param, ...]:
    """--sr-steps and --sr-noise: both SR stages at once, on the command line."""
    return (Param("sr_steps", int, None, 1, 100, ui=False, help="steps of each SR stage (default: its checkpoint's)"),
            Param("sr_noise", int, None, 0, 999, ui=False,
                  help="noise-augmentation level of each SR stage's input (0-999; default: its checkpoint's)"))


def _stage_settings(models: ModelSet, values: Mapping, base_model: str, text: bool, gradient: bool) -> StageSettings:
    """The base's StageSettings: what `values` give, the base's defaults for what they leave out (the
    prior unconditional, guidance 0, when a gradient alone steers it: classifier or CLIP guidance)."""
    defaults = base_defaults(base_model, models, text)
    if gradient and base_model == "semantic":
        defaults = replace(defaults, guidance=0.0)
    sampler = values["sampler"] or defaults.sampler
    return StageSettings(sampler=sampler, steps=values["steps"] or defaults.steps,
                         guidance=defaults.guidance if values["guidance"] is None else values["guidance"],
                         eta=values.get("eta", 0.0) if sampler == "ddim" else 0.0,
                         threshold=values.get("threshold", BASE_DEFAULTS.threshold)
                         if values["dynamic_thresholding"] else None,
                         threshold_max=values.get("threshold_max", BASE_DEFAULTS.threshold_max))


def _sr_settings(models: ModelSet, values: Mapping) -> tuple[StageSettings, ...]:
    """The SR stages' settings: each checkpoint's, with the steps and noise level `values` give
    (per stage, sr64_steps, ..., else both stages, sr_steps, sr_noise)."""
    def given(key, stage):
        v = values.get(f"sr{stage}_{key}")
        return values.get(f"sr_{key}") if v is None else v
    out = []
    for stage, d in zip((64, 128), sr_defaults(models, values["size"])):
        steps, noise = given("steps", stage), given("noise", stage)
        out.append(replace(d, steps=d.steps if steps is None else steps, aug_level=d.aug_level if noise is None
                           else noise))
    return tuple(out)


def planned_steps(models: ModelSet, values: Mapping, text: bool) -> dict[int, int]:
    """{resolution: steps} of each stage checked `values` run, up to their size: at 32 px the
    base's (the DiffAE decoder's for the semantic base: it reports the progress), then each SR stage's."""
    base_model = values["base_model"] or default_base(models.available(), text)
    if base_model == "semantic":
        first = values["decoder_steps"] or decoder_sampling(models.get("diffae"), "steps")
    else:
        first = values["steps"] or base_defaults(base_model, models, text).steps
    sr = _sr_settings(models, values)
    return {r: n for r, n in {32: first, 64: sr[0].steps, 128: sr[1].steps}.items() if r <= values["size"]}


# ---- text to image --------------------------------------------------------------------------------

def text_to_image_needs(values: Mapping, text_encoder: str = "clip", available: Sequence[str] = ()) -> list[str]:
    """The models a text-to-image call needs: its base's (for a prompt), the SR stages up to its
    size, and the code-text matcher for CLIP guidance."""
    base = values.get("base_model") or default_base(available, True, text_encoder)
    return [*BASES[base].needs(True, text_encoder), *sr_names(values.get("size", 128)),
            *(["code_matcher"] if values.get("clip_scale") else [])]


def text_to_image(models: ModelSet, values: Mapping, callback: Callback | None = None) -> CascadeResult:
    """Text to image through the cascade (`core.cascade.generate`), from checked `values`
    (`TEXT_TO_IMAGE.check`). clip_scale 0 is no CLIP guidance."""
    base_model = values["base_model"] or default_base(models.available(), True)
    clip_scale = values["clip_scale"] or None
    return generate(models, prompt=values["prompt"], negative_prompt=values["negative_prompt"],
                    num=values["num_images"], seed=values["seed"], size=values["size"],
                    base=_stage_settings(models, values, base_model, True, clip_scale is not None),
                    sr=_sr_settings(models, values), callback=callback, base_model=values["base_model"],
                    decoder_steps=values["decoder_steps"], decoder_guidance=values["decoder_guidance"],
                    clip_scale=clip_scale, prompt_reading=values["prompt_reading"])


TEXT_TO_IMAGE = Capability("text_to_image", (
    Param("prompt", str, "", label="Prompt", help="what to draw, e.g. \"woman dancing, dark skin tone\""),
    Param("negative_prompt", str, "", label="Negative prompt", help="what to steer away from (optional)"),
    *_base_params(True, 2, 8),
    Param("threshold", float, BASE_DEFAULTS.threshold, 0.5, 1.0, step=0.005, label="Thresholding percentile (base)",
          help="percentile p of |x0| of the base's thresholding"),
    Param("eta", float, 0.0, 0, 1, step=0.05, label="DDIM eta (base)", help="DDIM's eta (0 = deterministic)"),
    # each SR stage's steps and noise level (default: its checkpoint's; the command line sets both at once)
    Param("sr64_steps", int, None, 1, 100, step=1, flag=None, label="Steps (64)", start=SR_STAGE_DEFAULTS[0].steps,
          help="steps of the 32 -> 64 stage"),
    Param("sr64_noise", int, None, 0, 999, step=1, flag=None, label="Noise augmentation (64)",
          start=SR_STAGE_DEFAULTS[0].aug_level, help="noise-augmentation level (0-999) of the 64 stage's input"),
    Param("sr128_steps", int, None, 1, 100, step=1, flag=None, label="Steps (128)", start=SR_STAGE_DEFAULTS[1].steps,
          help="steps of the 64 -> 128 stage"),
    Param("sr128_noise", int, None, 0, 999, step=1, flag=None, label="Noise augmentation (128)",
          start=SR_STAGE_DEFAULTS[1].aug_level, help="noise-augmentation level (0-999) of the 128 stage's input"),
    Param("threshold_max", float, BASE_DEFAULTS.threshold_max, 1.0, 3.0, step=0.05, label="Thresholding cap (base)",
          help="cap of the thresholding scale: 1 = static clipping; above 1 = Imagen's dynamic thresholding"),
    *_decoder_params(),
    Param("clip_scale", float, 0.0, 0, MAX_CODE_GUIDE_SCALE, step=0.5, label="CLIP guidance (semantic base)",
          help="semantic base: CLIP guidance of the unconditional prior by the noise-aware code-text matcher "
               f"(checkpoints/code_matcher) instead of classifier-free guidance; 0 = none, {CLIP_SCALE:g} is a "
               "good scale"),
    *_sr_params(),
    Param("prompt_reading", str, DEFAULT_PROMPT_READING, choices=PROMPT_READINGS, label="Prompt reading",
          help="semantic base: nearest = the prior draws the name of the known emoji the prompt is read as, "
               "whenever it has a word the text encoder knows (\"a cat\" -> cat; said as 'drawn as'); "
               "as-typed = the prior draws the prompt itself"),
), text_to_image_needs, text_to_image, text=True)


# ---- class-conditional ----------------------------------------------------------------------------

GUIDANCE_METHODS = ("cfg", "classifier")


def class_conditional_needs(values: Mapping, text_encoder: str = "clip", available: Sequence[str] = ()) -> list[str]:
    """The models a class-conditional call needs: its base's (for a label), the noise-aware
    classifier that steers it for classifier guidance, and the SR stages up to its size."""
    base = values.get("base_model") or default_base(available, False)
    guide = ["code_classifier" if base == "semantic" else "noisy_classifier"] \
        if values.get("guidance_method") == "classifier" else []
    return [*BASES[base].needs(False), *guide, *sr_names(values.get("size", 128))]


def class_conditional(models: ModelSet, values: Mapping, callback: Callback | None = None) -> CascadeResult:
    """Class-conditional generation through the cascade (`core.cascade.generate`), from checked
    `values` (`CLASS_CONDITIONAL.check`): classifier-free guidance on the label, or classifier
    guidance at classifier_scale (guidance_method "classifier"; then the base's guidance is not used)."""
    if not values["label"]:
        raise ValueError("choose a class")
    base_model = values["base_model"] or default_base(models.available(), False)
    by_classifier = values["guidance_method"] == "classifier"
    if by_classifier and values["guidance"] is not None and base_model == "pixel":
        raise ValueError("guidance (classifier-free) and classifier_scale (classifier guidance) are "
                         "alternatives on the pixel base; give one")
    return generate(models, label=values["label"], num=values["num_images"], seed=values["seed"],
                    size=values["size"], base=_stage_settings(models, values, base_model, False, by_classifier),
                    sr=_sr_settings(models, values), callback=callback, base_model=values["base_model"],
                    decoder_steps=values["decoder_steps"], decoder_guidance=values["decoder_guidance"],
                    classifier_scale=values["classifier_scale"] if by_classifier else None)


CLASS_CONDITIONAL = Capability("class_conditional", (
    Param("label", str, "", label="Class (emoji subgroup)", help="a class from `python -m core classes`"),
    *_base_params(False, 4, 16),
    Param("guidance_method", str, "cfg", choices=GUIDANCE_METHODS, flag=None, label="Guidance",
          help="cfg: classifier-free guidance on the label; classifier: classifier guidance"),
    Param("classifier_scale", float, CODE_CLASSIFIER_SCALE, 0, MAX_CLASSIFIER_SCALE, step=0.5,
          label="Classifier scale",
          help="the scale of classifier guidance (0 = unconditional samples): on the semantic base the prior "
               "steered by the noise-aware classifier of its codes (checkpoints/code_classifier), on the pixel "
               "base the class UNet by the noise-aware image classifier (checkpoints/noisy_classifier)"),
    *_decoder_params(),
    *_sr_params(),
    *(replace(TEXT_TO_IMAGE[name], ui=False) for name in ("eta", "threshold", "threshold_max")),   # command line
), class_conditional_needs, class_conditional, text=False)



# ---- upscale --------------------------------------------------------------------------------------

def upscale_needs(values: Mapping, text_encoder: str = "clip", available: Sequence[str] = ()) -> list[str]:
    """The SR stages an upscale runs: the one into `size` for 2x, both for 4x."""
    return upscale_stages(values["factor"], values["size"])


OWN = "own"   # the sampler choice "each stage's own" (steps 0 and noise -1 say the same)


def upscale_stage_settings(models: ModelSet, values: Mapping) -> list[StageSettings]:
    """The settings of each SR stage of the upscale `values` (`UPSCALE.check`, its factor given):
    each stage's own (its checkpoint's config: sr64 and sr128 differ), with the sampler, steps and
    noise level the user changed (not "own", 0 and -1) replaced in every stage."""
    return upscale_settings(models, values["factor"], values["size"],
                            sampler=None if values["sampler"] == OWN else values["sampler"],
                            steps=values["steps"] or None, aug_level=None if values["noise"] < 0 else values["noise"])


def upscale(models: ModelSet, values: Mapping, low, image_name: str, callback: Callback | None = None) -> CascadeResult:
    """A diffusion upscale of `low` [B, 3, r, r] (the image already at size / factor) through the SR
    stages of `values` (`UPSCALE.check`, its factor given), each with `upscale_stage_settings`."""
    names = upscale_stages(values["factor"], values["size"])
    settings = upscale_stage_settings(models, values)
    stages = upscale_chain([models.get(name) for name in names], low, [values["seed"]], settings, callback)
    parameters = {"command": "upscale", "image": image_name, "size": values["size"], "factor": values["factor"],
                  "steps": [s.steps for s in settings], "sampler": [s.sampler for s in settings],
                  "noise": [s.aug_level for s in settings], "seed": values["seed"]}
    return CascadeResult(stages, parameters)


UPSCALE = Capability("upscale", (
    Param("image", str, "", flag=None, label="Image (any size, mode and format)",
          help="any image (any mode; non-square is padded with white); it is first reduced to size / factor, "
               "the resolution the models upscale from"),
    Param("factor", int, None, choices=(2, 4), label="Upscale", start=4,
          help="2: one SR stage; 4: both, 32 -> 64 -> 128 (size 128 only); default: from the input, 4 for an "
               "input of at most 32 px at size 128, else 2"),
    Param("size", int, 128, choices=(64, 128), label="Output size", help="output size"),
    Param("sampler", str, OWN, choices=(OWN, *SAMPLERS), label="Sampler",
          help="sampler of every SR stage (own: each stage's own, from its checkpoint's config)"),
    Param("steps", int, 0, 0, 100, step=1, label="Steps per stage",
          help="steps of every SR stage (0: each stage's own, from its checkpoint's config)"),
    Param("noise", int, -1, -1, 999, step=1, label="Noise augmentation",
          help="noise-augmentation level (0-999) of the low-res input (CDM) in every SR stage (-1: each stage's "
               "own, from its checkpoint's config)"),
    Param("seed", int, 0, 0, MAX_SEED, label="Seed", help="the seed of the sampler's noise"),
), upscale_needs, upscale, text=False)



CAPABILITIES = {c.name: c for c in (TEXT_TO_IMAGE, CLASS_CONDITIONAL, UPSCALE)}   # image to image: its own module
