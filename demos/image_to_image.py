"""Tab: image to image: SDEdit (the DiffAE decoder or the text base, + SR), colorization and
inpainting (the DiffAE decoder, Palette or RePaint), through core.translate.translate, and ILVR
(core.ilvr). Each task's inputs are its spec's parameters (`core.translate_capabilities.SDEDIT`, `COLORIZE`,
`INPAINT`, `ILVR`: the `translate` command's options), built by `demos.adapter`; one small handler per
task (`sdedit_fn` ...: the image, the editor's strokes and the views are the tab's own) checks its
arguments against the spec and runs it; one layout helper per sub-tab.

Run alone: `python app.py --tab image_to_image [app.py flags]`.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd
import torch
from PIL import Image, ImageChops

from core.capabilities import Capability
from core.data.masks import centred_mask, half_mask, mask_from_image
from core.ilvr import ILVR_DEFAULTS, STRIP_FACTORS, check_factor, ilvr_strip, low_pass
from core.images import pil_to_tensor, save_png, tensor_to_pil
from core.pipeline import StageSettings
from core.translate import (
    COLORIZE_METHODS,
    METHODS,
    PALETTE_DEFAULTS,
    SDEDIT_METHODS,
    SDEDIT_STRENGTHS,
    SEMANTIC_STEPS,
    default_method,
    grayscale,
)
from core.translate_capabilities import COLORIZE, ILVR, INPAINT, SDEDIT
from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space
from demos.adapter import choice, slider, textbox
from demos.common import Models, RequestFiles, gpu, image_input, preview, stream, user_errors

TITLE = "Image to image"
STAGE_LABELS = {32: "32×32 base", 64: "64×64", 128: "128×128 SR"}
PALETTE_SIZE = 64
MASK_TINT = (255, 0, 255)  # the region to fill, shown over the input
ILVR_COLUMNS = ["factor", "low_pass_rmse", "rmse_to_reference"]   # the strip's figures shown (not its diversity)
BRUSH_COLOURS = ["#ff00ff", "#00b4ff", "#000000", "#ffffff"]   # magenta first: it shows on almost every emoji
BRUSH_SIZE = 16   # px of the 128 px examples: an 8x8 block of the 64 px image the models fill
SDEDIT_METHOD_INFO = {"diffae": "DiffAE: the decoder redraws the image's own semantic code (a prompt's code "
                                "from the prior replaces it)",
                      "text": "Text model: the pixel text base, optionally prompted"}
# Strength by what it does, from the sweep of docs/image_to_image.md (32 held-out emoji)
STRENGTH_INFO = ("how much is redrawn, 0 (the input) to 1 (ignores it). DiffAE (default 0.7): the emoji keeps "
                 "its design at every strength while its details are redrawn; a prompt turns it into the prompted "
                 "emoji about 7 times in 10 from 0.7. Text model (default 0.55): from 0.6 it redraws more and "
                 "more of the emoji; faces smear even below")
SDEDIT_ABOUT = ("**SDEdit** (Meng et al. 2022): the image is noised part of the way (the strength) and denoised "
                "again. *diffae*: by the DiffAE decoder drawing the image's own semantic code (its encoder "
                "reads which emoji it is), so the design is kept while the details are redrawn; with a prompt, "
                "the prior's code for the prompt replaces it and the image turns into that emoji. *text*: by the "
                "pixel text model, optionally guided by a prompt. Sizes above 32 go through the SR models.")
COLORIZE_ABOUT = ("**Colorization**. *diffae*: the DiffAE encoder reads which emoji the grey image shows, a "
                  "small learnt predictor turns that into a colour emoji's code (moved half-way towards the "
                  "nearest training emoji's), and the DiffAE "
                  "decoder draws it while its luminance is held to the grey image's at every step (ILVR with "
                  "the luma in place of the low-pass), then the SR models; *palette*: Palette (Saharia et al. "
                  "2022), one 64×64 model conditioned on the grayscale image. Measured on held-out emoji in "
                  "docs/image_to_image.md.")
INPAINT_ABOUT = ("**Inpainting**: paint over the region to fill (in any colour: pick one that shows on your "
                 "image), upload a mask (white or opaque = fill) or take one of the mask buttons. *diffae*: "
                 "RePaint (Lugmayr et al. 2022) with the DiffAE decoder drawing the emoji its encoder reads "
                 "in the visible pixels (the hole filled smoothly from its border, then a small learnt "
                 "predictor guesses the whole emoji's code, moved half-way towards the nearest training "
                 "emoji's), then the SR models; *palette*: the Palette model (64×64), trained "
                 "with masks; *repaint*: RePaint with the text model, which never saw a mask, optionally "
                 "guided by a prompt. The pixels outside the mask are kept exactly.")
ILVR_ABOUT = ("**ILVR** (Choi et al. 2021): after every denoising step, the low frequencies of the sample are "
              "replaced by those of the reference, noised to the same step: the result keeps the reference "
              "downsampled by N (its colours and layout) and the model draws the rest. No training; any base "
              "model. Small N keeps more of the reference, large N leaves more to the model. N is counted at "
              "32×32 (the base); larger sizes add the SR stages.")
METHOD_INFO = {"diffae": "DiffAE: draws the emoji its encoder reads in the input",
               "palette": "Palette: a 64×64 model trained for the task",
               "repaint": "RePaint with the text model (optionally prompted)"}


def example_masks() -> dict[str, str]:
    """Mask PNGs for the examples and the mask buttons (white = fill), written once beside the
    example images: the middle (a 32×32 hole of a 64×64 image) and the left half."""
    folder = common.EXAMPLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    middle = centred_mask(64, 32)
    paths = {}
    for name, mask in (("middle", middle), ("left half", half_mask(64, "left"))):
        path = folder / f"mask-{name.replace(' ', '-')}.png"
        if not path.is_file():
            save_png(mask_image(mask), path, {"example": f"mask: {name}"})
        paths[name] = str(path)
    return paths


# ---- helpers ---------------------------------------------------------------------------------------
def editor_input(**kwargs) -> gr.ImageEditor:
    """gr.ImageEditor (PIL, RGBA: drawn layers keep their alpha = the mask)."""
    return gr.ImageEditor(type="pil", image_mode="RGBA", format="png", **kwargs)


def drawn_mask(layers, size: tuple[int, int]) -> Image.Image | None:
    """The union of the editor's drawn layers as an L image at `size` (255 = fill): whatever was
    painted, in any colour, is opaque in its layer. None when there are no layers."""
    mask = None
    for layer in layers or []:
        if layer is None:
            continue
        layer = layer if isinstance(layer, Image.Image) else common.open_upload(layer, "a drawn layer")
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size, Image.Resampling.NEAREST)
        mask = alpha if mask is None else ImageChops.lighter(mask, alpha)
    return mask


def working_mask(drawn: Image.Image | None, uploaded: str | None, size: int) -> torch.Tensor:
    """The binary [1, 1, size, size] mask (1 = fill): the drawn strokes and the uploaded mask
    image together. ValueError when neither marks anything."""
    masks = []
    if drawn is not None:
        masks.append(mask_from_image(drawn, size))
    if uploaded:
        masks.append(mask_from_image(common.open_upload(uploaded, "the uploaded mask"), size))
    if not masks:
        raise ValueError("no mask: draw over the region to fill with the brush, or upload a mask image "
                         "(white or opaque = fill)")
    mask = torch.stack(masks).amax(0)
    if not bool(mask.any()):
        raise ValueError("the mask is empty: draw over the region to fill with the brush, or upload a mask image "
                         "(white or opaque = fill)")
    return mask


def as_image(tensor: torch.Tensor) -> Image.Image:
    return tensor_to_pil(tensor)[0]


def mask_overlay(image: Image.Image, mask: torch.Tensor) -> Image.Image:
    """The input with the region to fill tinted."""
    m = Image.fromarray((mask[0, 0].numpy() * 255).astype("uint8"), "L").resize(image.size, Image.Resampling.NEAREST)
    tint = Image.blend(image, Image.new("RGB", image.size, MASK_TINT), 0.6)
    return Image.composite(tint, image, m)


def mask_image(mask: torch.Tensor) -> Image.Image:
    """A binary mask tensor as an L image (255 = fill), which mask_from_image maps back exactly."""
    return Image.fromarray((mask[0, 0].numpy() * 255).astype("uint8"), "L")


def _source_name(path) -> str:
    return Path(path).name if path else "image"


# ---- the functions -----------------------------------------------------------------------------
def _streamed(files: RequestFiles, view: str, progress, work, cleared: int = 1):
    """work(callback) on a worker, yielding (view, preview, None * cleared) at first, then
    (skip, preview, skip * cleared) now and then (a bar per stage), and finally returning what
    work returned."""
    return (yield from stream(work, 2 + cleared, progress, STAGE_LABELS,
                              lambda info: {0: view, 1: files.image(preview(info["x0"]))}))


def _run(models: Models, files: RequestFiles, view: str, progress, spec: Capability, values: dict,
         image: Image.Image, mask: Image.Image | None = None):
    """`spec.run` (`core.translate.translate`) of checked `values` through `_streamed`, finally
    returning (image, parameters)."""
    return (yield from _streamed(files, view, progress,
                                 lambda callback: spec.run(models.set, values, image, mask, callback)))


def _finish(files: RequestFiles, result, name: str, extra: dict):
    """The result saved as a PNG with its parameters (and `extra`), its note shown: (path, parameters)."""
    image, params = result
    common.show_note(params.get("note"))
    params = {**params, **extra}
    return files.results([image], [params], [name])[0], params


def _open_input(image: str | None, what: str = "an image") -> Image.Image:
    if not image:
        raise ValueError(f"upload {what} or pick an example first")
    return common.open_upload(image)


def _require(models: Models, spec: Capability, values: dict) -> None:
    """The models a call of `spec` with checked `values` needs, loaded (else a named error)."""
    models.require(spec.needs(values, models.text_encoder_name(), models.names))


def sdedit_fn(models: Models):
    """The SDEdit handler, bound to the shared models."""

    @gpu
    def sdedit(image: str, prompt: str, strength: float, guidance: float, sampler: str, steps: int, seed: int,
               size: int, method: str | None = None, progress=gr.Progress()):
        """SDEdit: noise the image to `strength`, then denoise it: with the DiffAE decoder drawing the
        image's own semantic code (or, with a prompt, the prior's code for the prompt), or with the
        text base (guided by the prompt, if any); then the SR stages up to `size`.

        Args:
            image: any image (any mode; non-square is padded with white).
            prompt: optional: the emoji to turn the image into ("" = keep the image's own design).
            strength: 0 (returns the input) .. 1 (ignores the input: a new image of the code or prompt).
            guidance: classifier-free guidance scale with a prompt (1 = none): the prior's (diffae) or
                the text base's (text).
            sampler: one of ddpm, ddim, euler, heun, euler-maruyama, dpmpp-2m.
            steps: sampling steps of the full chain (fewer are run at lower strength).
            seed: the seed of the noise.
            size: output size, 32, 64 or 128.
            method: "diffae" or "text" (None: diffae where its models are there).
        Returns:
            the input at the output size, the result (a PNG with its parameters), the parameters.
        """
        with user_errors():
            source = _open_input(image)
            values = SDEDIT.check({"image": str(image), "prompt": prompt or "", "strength": strength,
                                   "guidance": guidance, "sampler": sampler, "steps": steps, "seed": seed,
                                   "size": size, "method": method or default_method(models.set, "sdedit")})
            size, seed, method = values["size"] or 128, values["seed"], values["method"]
            _require(models, SDEDIT, values)
            files = RequestFiles()
            view = files.image(as_image(pil_to_tensor(source, size=size)))
            result = yield from _run(models, files, view, progress, SDEDIT, values, source)
            path, params = _finish(files, result, f"{Path(image).stem}-sdedit-{method}-{size}px-seed{seed}",
                                   {"image": _source_name(image)})
            yield view, path, params

    return sdedit


def colorize_fn(models: Models):
    """The colorization handler, bound to the shared models."""

    @gpu
    def colorize(image: str, sampler: str, steps: int, seed: int, method: str = "palette", size: int = PALETTE_SIZE,
                 progress=gr.Progress()):
        """Colorize the grayscale of an image: with the DiffAE decoder (the emoji its encoder reads
        in the grey image, drawn under the grey image's luma, then the SR stages) or with Palette (64×64).

        Args:
            image: any image; its luma (BT.601) is the input.
            sampler: Palette only: one of ddpm, ddim, euler, heun, euler-maruyama, dpmpp-2m (DiffAE: DDPM).
            steps: sampling steps.
            seed: the seed of the noise.
            method: "diffae" or "palette" (the default for callers that do not say).
            size: DiffAE: 32, 64 or 128; Palette: 64.
        Returns:
            the grayscale input at the output size, the colorized image (a PNG with its parameters), the parameters.
        """
        with user_errors():
            source = _open_input(image)
            values = COLORIZE.check({"image": str(image), "sampler": sampler, "steps": steps, "seed": seed,
                                     "method": method, "size": size})
            size, seed, method = values["size"] or PALETTE_SIZE, values["seed"], values["method"]
            if method != "palette":
                values["sampler"] = None   # the DiffAE method samples with DDPM steps
            # palette/ holds the code book and the colour code predictor the diffae method needs
            _require(models, COLORIZE, values)
            files = RequestFiles()
            view = files.image(as_image(grayscale(pil_to_tensor(source, size=size))))
            result = yield from _run(models, files, view, progress, COLORIZE, values, source)
            path, params = _finish(files, result, f"{Path(image).stem}-colorize-{method}-{size}px-seed{seed}",
                                   {"image": _source_name(image)})
            yield view, path, params

    return colorize


def inpaint_fn(models: Models):
    """The inpainting handler, bound to the shared models."""

    @gpu
    def inpaint(editor: dict | None, mask: str | None, method: str, prompt: str, sampler: str, steps: int,
                seed: int, size: int, progress=gr.Progress()):
        """Fill a masked region of an image; the pixels outside the mask are kept exactly.

        Args:
            editor: {"background": image, "layers": [drawn layers], "composite": ...}: the image, and
                the brush strokes (anything painted = fill). Through the API, layers may be [].
            mask: optional mask image (white or opaque = fill), combined with the strokes.
            method: "diffae" (RePaint with the DiffAE decoder and the code of the visible pixels, + SR),
                "palette" (the Palette model, 64×64) or "repaint" (RePaint with the text base + SR).
            prompt: RePaint only: optional text guidance ("" = unguided).
            sampler: Palette only: one of ddpm, ddim, euler, heun, euler-maruyama, dpmpp-2m (the others are DDPM).
            steps: sampling steps.
            seed: the seed of the noise.
            size: output size: 64 for Palette; 32, 64 or 128 for RePaint and DiffAE.
        Returns:
            the input with the region to fill tinted, the result (a PNG with its parameters), the parameters.
        """
        with user_errors():
            background = (editor or {}).get("background")
            if background is None:
                raise ValueError("upload an image (into the editor) or pick an example first")
            values = INPAINT.check({"mask": mask or None, "method": method, "sampler": sampler, "steps": steps,
                                    "seed": seed, "size": size,
                                    "prompt": (prompt or "").strip() if method == "repaint" else ""})
            size, seed = values["size"] or 128, values["seed"]
            if method != "palette":
                values["sampler"] = None   # RePaint samples with DDPM steps
            _require(models, INPAINT, values)
            source = background if isinstance(background, Image.Image) else common.open_upload(background)
            m = working_mask(drawn_mask(editor.get("layers"), source.size), mask, size)
            files = RequestFiles()
            view = files.image(mask_overlay(as_image(pil_to_tensor(source, size=size)), m))
            result = yield from _run(models, files, view, progress, INPAINT, values, source, mask_image(m))
            extra = {"mask": _source_name(mask)} if mask else {}
            path, params = _finish(files, result, f"inpaint-{method}-{size}px-seed{seed}", extra)
            yield view, path, params

    return inpaint


def _ilvr_outputs(files: RequestFiles, strip, image: str, factor: int, factors: list[int], params: dict,
                  size: int, seed: int):
    """The ILVR sample at N and the strip as PNGs with their parameters, and the strip's figures."""
    stem = Path(image).stem
    sample = tensor_to_pil(strip.samples[0, factors.index(factor)][None])[0]
    path = files.results([sample], [params], [f"{stem}-ilvr-N{factor}-{size}px-seed{seed}"])[0]
    strip_path = files.results([strip.image()], [{**strip.parameters, "figures": strip.rows}],
                               [f"{stem}-ilvr-strip-{size}px-seed{seed}"])[0]
    return path, strip_path, pd.DataFrame(strip.rows, columns=ILVR_COLUMNS)


def ilvr_fn(models: Models):
    """The ILVR handler, bound to the shared models."""

    @gpu
    def ilvr(image: str, factor: int, seed: int, model: str, prompt: str, label: str | None, size: int, steps: int,
             progress=gr.Progress()):
        """ILVR (Choi et al. 2021): generate with a base model whose low frequencies are those of a
        reference image, at N and, in one batch, at the strip's other N (2, 4, 8, 16).

        Args:
            image: the reference (any size or mode).
            factor: N at 32x32: 1, 2, 4, 8, 16 or 32; the sample keeps the reference downsampled by N.
            seed: the seed of the noise (the same for every N of the strip).
            model: "text_base" or "class_base".
            prompt: text base: optional text guidance ("" = unguided).
            label: class base: optional class ("" = unconditional).
            size: output size, 32, 64 or 128 (above 32 through the SR stages).
            steps: DDPM steps of the base.
        Returns:
            the reference's low-pass phi_N at the output size, the sample at N (a PNG with its
            parameters), the strip (top: phi_N of the reference, bottom: the samples; N grows to the
            right), its figures, and the parameters.
        """
        with user_errors():
            source = _open_input(image, "a reference image")
            values = ILVR.check({"image": str(image), "factor": factor, "seed": seed, "model": model or "text_base",
                                 "prompt": (prompt or "").strip() if model == "text_base" else "",
                                 "label": (label or None) if model == "class_base" else None,
                                 "size": size, "steps": steps})
            model, prompt, label, seed = values["model"], values["prompt"], values["label"], values["seed"]
            size, steps = values["size"] or 128, values["steps"] or ILVR_DEFAULTS.steps
            factor = check_factor(values["factor"], 32)
            _require(models, ILVR, values)
            files = RequestFiles()
            reference = pil_to_tensor(source, size=32)
            view = files.image(as_image(low_pass(reference, factor)).resize((size, size), Image.Resampling.BICUBIC))
            factors = sorted({*STRIP_FACTORS, factor})
            settings = StageSettings(sampler=ILVR_DEFAULTS.sampler, steps=steps,
                                     guidance=ILVR_DEFAULTS.guidance if (prompt or label) else 1.0)
            strip = yield from _streamed(files, view, progress, lambda callback: ilvr_strip(
                models.set, source, factors, [seed], model, prompt or None, label, size, settings, callback=callback),
                cleared=3)
            params = {"command": "translate", "task": "ilvr", "image": _source_name(image), "factor": factor,
                      "seed": seed, "model": model, "prompt": prompt or None, "label": label, "size": size,
                      "sampler": settings.sampler, "steps": steps, "guidance": settings.guidance}
            path, strip_path, table = _ilvr_outputs(files, strip, image, factor, factors, params, size, seed)
            yield view, path, strip_path, table, params

    return ilvr


def make_fns(models: Models):
    """The tab's functions (sdedit, colorize, inpaint, ilvr), bound to the shared models."""
    return sdedit_fn(models), colorize_fn(models), inpaint_fn(models), ilvr_fn(models)


# ---- the layout ------------------------------------------------------------------------------------
def _outputs(input_label: str):
    with gr.Row():
        view = gr.Image(label=input_label, format="png", interactive=False, height=256,
                        elem_classes=[common.PIXELATED, common.STAGE])
        result = gr.Image(label="Result (PNG with parameters)", format="png", interactive=False, height=256,
                          elem_classes=[common.PIXELATED, common.STAGE])
    with gr.Accordion("Parameters", open=False):
        parameters = gr.JSON(label="Parameters")
    return view, result, parameters


def _steps_and_sampler(spec: Capability, sampler_info: str, diffae_default: bool):
    """The sampler (Palette's) and the steps, which start at the default method's."""
    steps_value = SEMANTIC_STEPS if diffae_default else PALETTE_DEFAULTS.steps
    with gr.Row():
        sampler = choice(spec["sampler"], info=sampler_info)
        steps = slider(spec["steps"], steps_value, info="")
    return sampler, steps


def _sdedit_tab(models: Models, fn, examples: list[str]) -> None:
    gr.Markdown(SDEDIT_ABOUT)
    S = SDEDIT  # noqa: N806 - short: every input below reads it
    sdedit_default = default_method(models.set, "sdedit")
    default_strength = SDEDIT_STRENGTHS[sdedit_default]
    with gr.Row():
        with gr.Column(scale=2):
            image = image_input(label=S["image"].label, sources=["upload", "clipboard"], height=220)
            prompt = textbox(S["prompt"], placeholder="e.g. an emoji of a red apple")
            with gr.Row():
                strength = slider(S["strength"], default_strength, info=STRENGTH_INFO)
                guidance = slider(S["guidance"], info="with a prompt; 1 = none")
            method = choice(S["method"], sdedit_default, radio=True,
                            labels={m: SDEDIT_METHOD_INFO[m].split(":")[0] for m in SDEDIT_METHODS},
                            info="; ".join(SDEDIT_METHOD_INFO.values()))
            with gr.Row():
                sampler = choice(S["sampler"], info="")
                steps = slider(S["steps"], info="")
            with gr.Row(equal_height=True):
                seed, _ = common.seed_input(S["seed"].default)
                size = choice(S["size"], radio=True, info="", scale=3)
            button = gr.Button("Edit", variant="primary")
        with gr.Column(scale=3):
            view, result, parameters = _outputs("Input at the output size")
    # the full width: a table of image, prompt and strength does not fit in the settings' column
    gr.Examples([[p, "", default_strength] for p in examples[:4]] + [[examples[1], "an emoji of a red apple", 0.8]],
                inputs=[image, prompt, strength], label="Examples", cache_examples=False)
    method.change(lambda m: gr.Slider(value=SDEDIT_STRENGTHS[m]), inputs=method, outputs=strength, queue=False,
                  api_visibility="private")
    common.run_on([button.click, prompt.submit], fn,
                  inputs=[image, prompt, strength, guidance, sampler, steps, seed, size, method],
                  outputs=[view, result, parameters], api_name="sdedit", show_progress_on=[view])


def _colorize_tab(models: Models, fn, examples: list[str]) -> None:
    gr.Markdown(COLORIZE_ABOUT)
    C = COLORIZE  # noqa: N806 - short: every input below reads it
    colorize_default = default_method(models.set, "colorize")
    with gr.Row():
        with gr.Column(scale=2):
            image = image_input(label=C["image"].label, sources=["upload", "clipboard"], height=220)
            with gr.Row():
                method = choice(C["method"], colorize_default, radio=True,
                                labels={m: METHOD_INFO[m].split(":")[0] for m in COLORIZE_METHODS},
                                info=METHOD_INFO["diffae"] + "; " + METHOD_INFO["palette"])
                size = choice(C["size"], 128 if colorize_default == "diffae" else PALETTE_SIZE, radio=True, info="",
                              visible=colorize_default == "diffae")
            sampler, steps = _steps_and_sampler(C, "DiffAE always uses DDPM steps", colorize_default == "diffae")
            seed, _ = common.seed_input(C["seed"].default)
            button = gr.Button("Colorize", variant="primary")
            gr.Examples([[p] for p in examples], inputs=[image], label="Examples", cache_examples=False)
        with gr.Column(scale=3):
            view, result, parameters = _outputs("Grayscale input")
    method.change(lambda m: (gr.Radio(visible=m == "diffae", value=128 if m == "diffae" else PALETTE_SIZE),
                             gr.Slider(value=SEMANTIC_STEPS if m == "diffae" else PALETTE_DEFAULTS.steps)),
                  inputs=method, outputs=[size, steps], queue=False, api_visibility="private")
    common.run_on(button.click, fn, inputs=[image, sampler, steps, seed, method, size],
                  outputs=[view, result, parameters], api_name="colorize", show_progress_on=[view])


def _inpaint_tab(models: Models, fn, examples: list[str]) -> None:
    gr.Markdown(INPAINT_ABOUT)
    I = INPAINT  # noqa: N806, E741 - short: every input below reads it
    inpaint_default = default_method(models.set, "inpaint")
    masks = example_masks()
    with gr.Row():
        with gr.Column(scale=2):
            editor = editor_input(label=I["editor"].label, sources=["upload", "clipboard"],
                                  brush=gr.Brush(default_size=BRUSH_SIZE, colors=BRUSH_COLOURS,
                                                 default_color=BRUSH_COLOURS[0], color_mode="defaults"),
                                  layers=False, transforms=(), height=320)
            mask = image_input(label=I["mask"].label, sources=["upload", "clipboard"], height=140)
            with gr.Row():
                mask_buttons = {name: gr.Button(f"Mask the {name}", size="sm") for name in masks}
            with gr.Row():
                method = choice(I["method"], inpaint_default, radio=True,
                                info="; ".join(METHOD_INFO[m] for m in METHODS))
                # Palette draws 64×64 only: the sizes are offered with the others alone
                size = choice(I["size"], 128 if inpaint_default == "diffae" else PALETTE_SIZE, radio=True, info="",
                              visible=inpaint_default != "palette")
            prompt = textbox(I["prompt"])
            sampler, steps = _steps_and_sampler(I, "RePaint always uses DDPM steps", inpaint_default == "diffae")
            seed, _ = common.seed_input(I["seed"].default)
            button = gr.Button("Inpaint", variant="primary")
            gr.Examples([[examples[0], masks["middle"]], [examples[1], masks["middle"]],
                         [examples[2], masks["left half"]], [examples[3], masks["middle"]]],
                        inputs=[editor, mask], label="Examples (image and mask)", cache_examples=False)
        with gr.Column(scale=3):
            view, result, parameters = _outputs("Input with the region to fill")
    method.change(lambda m: (gr.Radio(visible=m != "palette", value=PALETTE_SIZE if m == "palette" else 128),
                             gr.Slider(value=PALETTE_DEFAULTS.steps if m == "palette" else SEMANTIC_STEPS)),
                  inputs=method, outputs=[size, steps], queue=False, api_visibility="private")
    for name, mask_button in mask_buttons.items():
        mask_button.click(lambda path=masks[name]: path, outputs=mask, queue=False, api_visibility="private")
    common.run_on(button.click, fn, inputs=[editor, mask, method, prompt, sampler, steps, seed, size],
                  outputs=[view, result, parameters], api_name="inpaint", show_progress_on=[view])


def _ilvr_outputs_layout():
    with gr.Row():
        view = gr.Image(label="Reference low-pass φ_N (what is kept)", format="png", interactive=False,
                        height=256, elem_classes=[common.PIXELATED, common.STAGE])
        result = gr.Image(label="ILVR sample at N (PNG with parameters)", format="png",
                          interactive=False, height=256, elem_classes=[common.PIXELATED, common.STAGE])
    strip = gr.Image(label="Strip: top φ_N(reference), below it the sample, at N = "
                           + ", ".join(map(str, STRIP_FACTORS)) + " (and yours; N under every frame)",
                     format="png", interactive=False, height=300, elem_classes=[common.PIXELATED, common.STAGE])
    figures = common.table_output("How close to the reference, per N (RMS on [0, 1]; low_pass_rmse "
                                  "compares φ_N of both at 32×32)", ILVR_COLUMNS)
    with gr.Accordion("Parameters", open=False):
        parameters = gr.JSON(label="Parameters")
    return view, result, strip, figures, parameters


def _ilvr_tab(models: Models, fn, examples: list[str]) -> None:
    gr.Markdown(ILVR_ABOUT)
    L = ILVR  # noqa: N806 - short: every input below reads it
    classes = [] if models.unavailable(["class_base"]) else models.set.classes()
    with gr.Row():
        with gr.Column(scale=2):
            image = image_input(label=L["image"].label, sources=["upload", "clipboard"], height=220)
            with gr.Row():
                factor = choice(L["factor"], radio=True, info="the reference is kept at 32/N × 32/N")
                size = choice(L["size"], radio=True, info="")
            with gr.Row():
                model = choice(L["model"], radio=True, labels={"text_base": "Text base", "class_base": "Class base"},
                               info="")
                steps = slider(L["steps"], info="")
            prompt = textbox(L["prompt"])
            # the classes of the class base's checkpoint ("" = unconditional)
            label = gr.Dropdown([("(none: unconditional)", ""), *common.class_labels(classes)], value="",
                                label=L["label"].label, filterable=True)
            seed, _ = common.seed_input(L["seed"].default)
            button = gr.Button("Generate", variant="primary")
            gr.Examples([[p] for p in examples], inputs=[image], label="Examples", cache_examples=False)
        with gr.Column(scale=3):
            outputs = _ilvr_outputs_layout()
    common.run_on(button.click, fn, inputs=[image, factor, seed, model, prompt, label, size, steps],
                  outputs=list(outputs), api_name="ilvr", show_progress_on=[outputs[0]])


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab)."""
    status = models.status_markdown(
        ["text_base", models.text_encoder_name(), "class_base", "sr64", "sr128", "palette", "diffae", "prior"],
        "SDEdit through the DiffAE decoder needs `diffae` (and `prior` for a prompt), the text-base SDEdit, "
        "RePaint and ILVR need the text base (ILVR: or the class base), and sizes above 32 need the SR models; "
        "colorization and Palette inpainting need `palette`. What needs a missing model shows an error; the rest "
        "works.")
    if status:
        gr.Markdown(status)
    sdedit, colorize, inpaint, ilvr = make_fns(models)
    examples = common.example_images()
    for title, tab, fn in (("SDEdit", _sdedit_tab, sdedit), ("Colorize", _colorize_tab, colorize),
                           ("Inpaint", _inpaint_tab, inpaint), ("ILVR", _ilvr_tab, ilvr)):
        with gr.Tab(title):
            tab(models, fn, examples)
