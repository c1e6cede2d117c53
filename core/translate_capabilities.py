"""The image-to-image capabilities as specs (`core.capabilities.Capability`): one per task of
`core.translate.translate` (SDEdit, colorize, inpaint, ILVR), from which the `translate` command's
options and the Image to image tab's inputs are both built. Apart from `core.capabilities` so that
text to image and its command never import the translation code."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from core.bases import PIXEL_MODELS
from core.capabilities import MAX_SEED, Capability, Param
from core.cascade import SIZES, sr_names
from core.diffusion.samplers import SAMPLERS
from core.ilvr import DEFAULT_FACTOR, ILVR_DEFAULTS
from core.models.modelset import ModelSet
from core.pipeline import Callback
from core.translate import (
    COLORIZE_GUIDANCE,
    COLORIZE_METHODS,
    DEFAULT_STRENGTH,
    METHODS,
    PALETTE_DEFAULTS,
    REPAINT_JUMP,
    REPAINT_RESAMPLE,
    SDEDIT_GUIDANCE,
    SDEDIT_METHODS,
    SDEDIT_STRENGTHS,
    SEMANTIC_STEPS,
    TRANSLATE_DEFAULTS,
    translate,
)

# -------------------------------------------------------------------------------
# One spec per task of `core.translate.translate` (sdedit, colorize, inpaint, ilvr): the parameters of
# its tab's endpoint in their order (the image, the editor and the mask are the tab's uploads), then
# those only the command line has. A parameter two tasks share is one `Param` (the `translate` command
# has one option for it); a task may narrow its choices and give the form another `start` or label.

def _translate_needs(task: str) -> Callable[[Mapping, str, Sequence[str]], list[str]]:
    """The models a `task` call needs, from checked values whose method (and ILVR base) is chosen:
    the DiffAE decoder (sdedit with a prompt: and the prior; colorize: the colour guess in palette/),
    Palette, or a pixel base and its text encoder; the SR stages up to the size (Palette: 64 px, none)."""
    def needs(values: Mapping, text_encoder: str = "clip", available: Sequence[str] = ()) -> list[str]:
        method, size = values.get("method"), values.get("size") or 128
        if task == "ilvr":
            model = values.get("model") or ("class_base" if values.get("label") else "text_base")
            return [model, *([text_encoder] if model == "text_base" else []), *sr_names(size)]
        if method == "palette":
            return ["palette"]
        if method == "diffae":
            if task == "sdedit":
                return ["diffae", *(["prior", text_encoder] if values.get("prompt") else []), *sr_names(size)]
            return ["diffae", *(["palette"] if task == "colorize" else []), *sr_names(size)]
        return ["text_base", text_encoder, *sr_names(size)]   # sdedit "text", inpaint "repaint"
    return needs


def _translate_run(task: str) -> Callable:
    """`core.translate.translate` of `task` on the PIL `image` (and `mask`) with checked values: what
    they leave at None is decided there (the method, strength, steps, sampler, guidance, size)."""
    def run(models: ModelSet, values: Mapping, image, mask=None, callback: Callback | None = None):
        kwargs = {k: v for k, v in values.items() if k not in ("image", "editor", "mask")}
        if "prompt" in kwargs:
            kwargs["prompt"] = kwargs["prompt"] or None   # an empty prompt is none
        return translate(models, task, image, mask=mask, callback=callback, **kwargs)
    return run


TRANSLATE_METHODS = tuple(dict.fromkeys([*METHODS, *SDEDIT_METHODS]))   # palette, repaint, diffae, text
_IMAGE = Param("image", str, "", flag=None, label="Image (any size, mode and format)",
               help="any image (any mode; non-square is padded with white)")
_PROMPT = Param("prompt", str, "", label="Prompt (optional)",
                help="sdedit / repaint / ilvr: text guidance (none = unguided)")
_NEGATIVE = Param("negative_prompt", str, "", ui=False, help="what the text guidance steers away from")
_STRENGTH = Param("strength", float, None, 0, 1, step=0.05, label="Strength", start=DEFAULT_STRENGTH,
                  help="sdedit: how much is redrawn, 0 (the input) .. 1 (ignores the input); default "
                       f"{SDEDIT_STRENGTHS['diffae']} with the diffae method (the design kept, details redrawn; "
                       f"a prompt turns it into that emoji), {SDEDIT_STRENGTHS['text']} with the text method")
_GUIDANCE = Param("guidance", float, None, 0, 15, step=0.1, label="Guidance scale", start=SDEDIT_GUIDANCE,
                  help=f"sdedit / repaint with a prompt (default {SDEDIT_GUIDANCE:g}; sdedit diffae: the prior's); "
                       "diffae colorize / inpaint: the decoder's guidance on the semantic code (colorize: "
                       f"default {COLORIZE_GUIDANCE:g}; inpaint: default its checkpoint's)")
_SAMPLER = Param("sampler", str, None, choices=tuple(SAMPLERS), label="Sampler", start=TRANSLATE_DEFAULTS.sampler,
                 help=f"sampler (default {TRANSLATE_DEFAULTS.sampler}; Palette: its checkpoint's; "
                      "diffae colorize / inpaint, repaint, ilvr: ddpm only)")
_STEPS = Param("steps", int, None, 1, 100, step=1, label="Steps", start=TRANSLATE_DEFAULTS.steps,
               help=f"sampling steps (default {TRANSLATE_DEFAULTS.steps}; diffae colorize / inpaint "
                    f"{SEMANTIC_STEPS}; Palette: its checkpoint's; ilvr {ILVR_DEFAULTS.steps})")
_SEED = Param("seed", int, 0, 0, MAX_SEED, label="Seed", help="the seed of the noise")
_SIZE = Param("size", int, None, choices=SIZES, label="Output size", start=128,
              help="sdedit / repaint / diffae / ilvr: the output size (default 128); Palette tasks: 64")
_METHOD = Param("method", str, None, choices=TRANSLATE_METHODS, label="Method",
                help="colorize: diffae (the default: the DiffAE decoder draws the emoji under the grey image's "
                     "luma, + SR) or palette (64x64); inpaint: diffae (the default: RePaint with the DiffAE "
                     "decoder and the code of the visible pixels, + SR), palette (64x64) or repaint (text base); "
                     "sdedit: diffae (the default: the DiffAE decoder redraws the input's own code, or the "
                     "prompt's code from the prior) or text (the text base)")
_REPAINT = (Param("jump", int, REPAINT_JUMP, 1, None, ui=False, help="repaint / diffae inpainting: jump length"),
            Param("resample", int, REPAINT_RESAMPLE, 1, 20, ui=False,
                  help="repaint / diffae inpainting: resamplings per jump"))

SDEDIT = Capability("sdedit", (
    _IMAGE, replace(_PROMPT, help="the emoji to turn the image into (optional)"), _STRENGTH, _GUIDANCE, _SAMPLER,
    _STEPS, _SEED, _SIZE, replace(_METHOD, choices=SDEDIT_METHODS), _NEGATIVE,
), _translate_needs("sdedit"), _translate_run("sdedit"), text=True)

COLORIZE = Capability("colorize", (
    replace(_IMAGE, label="Image (its grayscale is used)"),
    replace(_SAMPLER, label="Sampler (palette)", start=PALETTE_DEFAULTS.sampler),
    replace(_STEPS, start=SEMANTIC_STEPS), _SEED, replace(_METHOD, choices=COLORIZE_METHODS),
    replace(_SIZE, label="Output size (diffae)"),
    replace(_GUIDANCE, ui=False),
), _translate_needs("colorize"), _translate_run("colorize"), text=False)

INPAINT = Capability("inpaint", (
    Param("editor", dict, None, flag=None, label="Image: draw over the region to fill",
          help="the image and the brush strokes over the region to fill"),
    Param("mask", str, None, label="Mask image (optional; white or opaque = fill)",
          help="inpaint: mask image, white (or opaque) = the region to fill"),
    replace(_METHOD, choices=METHODS), replace(_PROMPT, label="Prompt (repaint only, optional)"),
    replace(_SAMPLER, label="Sampler (palette)", start=PALETTE_DEFAULTS.sampler),
    replace(_STEPS, start=SEMANTIC_STEPS), _SEED, replace(_SIZE, label="Output size (repaint, diffae)"),
    replace(_GUIDANCE, ui=False), _NEGATIVE, *_REPAINT,
), _translate_needs("inpaint"), _translate_run("inpaint"), text=False)

ILVR = Capability("ilvr", (
    replace(_IMAGE, label="Reference (any size, mode and format)"),
    Param("factor", int, DEFAULT_FACTOR, choices=(1, 2, 4, 8, 16, 32), label="Factor N",
          help="ilvr: the low-pass factor N at 32x32: the sample keeps the reference downsampled by N"),
    _SEED,
    Param("model", str, None, choices=PIXEL_MODELS, label="Base model", start="text_base",
          help="ilvr: the base, text_base (default) or class_base (the default with --label)"),
    replace(_PROMPT, label="Prompt (text base, optional)"),
    Param("label", str, None, label="Class (class base, optional)",
          help="ilvr with --model class_base: guide with this class (default: unconditional)"),
    # the tab starts at 32 px: its strip samples every N at once
    replace(_SIZE, start=32), replace(_STEPS, label="Steps (DDPM)", start=ILVR_DEFAULTS.steps),
    replace(_SAMPLER, ui=False), replace(_GUIDANCE, ui=False), _NEGATIVE,
), _translate_needs("ilvr"), _translate_run("ilvr"), text=True)

TRANSLATE_SPECS = {c.name: c for c in (SDEDIT, COLORIZE, INPAINT, ILVR)}


def _translate_options() -> tuple[Param, ...]:
    """The `translate` command's options: each parameter of a task spec once. Two tasks' parameters of
    one name must be one option: the same type, default, range, flag and help; the method and the
    prompt, whose choices or help a task narrows, are offered as `_METHOD` and `_PROMPT` (all the methods:
    the task's spec refuses the others, naming the parameter)."""
    shared = {"method": _METHOD, "prompt": _PROMPT}
    options: dict[str, Param] = {}
    for spec in TRANSLATE_SPECS.values():
        for p in spec.params:
            first = options.setdefault(p.name, shared.get(p.name, p))
            if p.name in shared:
                assert set(p.choices or ()) <= set(first.choices or ()), p.name
            else:
                assert (first.type, first.default, first.low, first.high, first.choices, first.option, first.help) \
                    == (p.type, p.default, p.low, p.high, p.choices, p.option, p.help), f"translate option {p.name}"
    return tuple(options.values())


TRANSLATE_OPTIONS = _translate_options()



CAPABILITIES = TRANSLATE_SPECS
