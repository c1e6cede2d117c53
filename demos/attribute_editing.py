"""Tab: attribute editing with the diffusion autoencoder (DiffAE): reconstruction, an edit along an
attribute direction of the semantic code, a strength sweep, interpolation between two images, and
variations (the semantic code decoded with fresh noise, optionally moved towards a prompt).

Run alone: `python app.py --tab attribute_editing [app.py flags]`.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import torch

from core import cascade, diffae
from core.images import image_grid, pil_to_tensor, tensor_to_pil
from core.metrics import psnr
from core.semantic import DECODER_STEPS
from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space
from demos.common import Models, RequestFiles, as_int, gpu, image_input, user_errors, wait_for

TITLE = "Attribute editing"
MODEL = "diffae"
MAX_STEPS = 200
EDIT_STRENGTH = 1.0   # one class gap: an average image without the attribute moves onto the average with it
SWEEP_FRAMES, SWEEP_STRENGTH = 7, 1.5
MAX_FRAMES = 16
MAX_VARIATIONS = 8


def edit_examples(examples: list[str]) -> list[tuple[str, str, float]]:
    """(image, attribute, strength) where the edit shows (looked at through the cascade at 128 px):
    skin tone on the dancers, both ways, and gender on a man."""
    by_name = {Path(p).stem: p for p in examples}
    return [(by_name["woman-dancing-light"], "dark-skin", 1.0), (by_name["woman-dancing-dark"], "dark-skin", -1.0),
            (by_name["man-light"], "woman", 1.5)]


def load_directions(models: Models) -> tuple[diffae.Directions | None, str | None]:
    """The attribute directions stored next to the diffae model, or why there are none."""
    if MODEL in models.errors:
        return None, None
    try:
        return diffae.Directions.load(models.root / MODEL), None
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        return None, common.public(str(e))


class _Editing:
    """What the tab's handlers share: the models, the attribute directions (or why there are none),
    and the steps each handler takes (its image in, its size checked, its images through the SR stages)."""

    def __init__(self, models: Models, loaded: tuple[diffae.Directions | None, str | None]):
        self.models = models
        self.directions, self.directions_error = loaded

    def model(self):
        return self.models.get(MODEL)

    def need_directions(self) -> diffae.Directions:
        self.models.require([MODEL])
        if self.directions is None:
            raise common.error(f"the attribute directions are unavailable, so this cannot run: "
                               f"{self.directions_error}", "Model unavailable")
        return self.directions

    def load(self, path: str | None, what: str = "an image") -> torch.Tensor:
        if not path:
            raise ValueError(f"upload {what} or pick an example first")
        m = self.model()
        name = "the uploaded image" if what == "an image" else f"the uploaded {what}"
        return pil_to_tensor(common.open_upload(path, name), size=m.resolution).to(next(m.parameters()).device)

    def final_size(self, size) -> int:
        size = as_int(size, "size")
        self.models.require([MODEL, *cascade.sr_names(size)])
        return size

    def at_size(self, images: torch.Tensor, size: int, seed: int = 0, faithful: bool = True) -> torch.Tensor:
        """The DiffAE's images through the SR stages up to `size`, every image with the same SR noise
        (so a sweep's frames differ by the edit alone). `faithful`: decoded from the image's own x_T,
        so as crisp as a reconstruction: the stages take them without noise augmentation
        (`core.cascade.stage_settings`); a fresh-noise decoding is a draft and gets the cascade's."""
        sr_models = cascade.sr_models(self.models.set, size, images.shape[-1])
        settings = cascade.stage_settings(sr_models, faithful=faithful)
        return cascade.upscale_chain(sr_models, images, [seed] * len(images), settings)[size]


def _check_steps(steps) -> int:
    return as_int(steps, "steps", 1, MAX_STEPS)


def _attribute_ok(attribute: str, dirs: diffae.Directions) -> str:
    dirs.index(attribute)  # ValueError naming the valid ones
    return attribute


def _one(t: torch.Tensor):
    return tensor_to_pil(t.detach().cpu())[0]


def _make_attributes(ed: _Editing):
    """The attributes handler, bound to what the handlers share."""

    def attributes() -> list[str]:
        """The attribute names of the directions file (empty when it is unavailable)."""
        return list(ed.directions.names) if ed.directions is not None else []
    return attributes


def _make_reconstruct(ed: _Editing):
    """The reconstruct handler, bound to what the handlers share."""

    @gpu
    def reconstruct(image: str, steps: int, size: int = 128, progress=gr.Progress()):
        """Encode an image (semantic code + DDIM inversion) and decode it again.

        Args:
            image: any image (any mode; non-square is padded with white), taken at the model's resolution.
            steps: DDIM steps of the encoding and of the decoding.
            size: final size: the model's (32), or 64 / 128 through the super-resolution stages.
        Returns:
            the input as the model sees it, the reconstruction (a PNG with its parameters), the parameters.
        """
        with user_errors():
            ed.models.require([MODEL])
            steps, size = _check_steps(steps), ed.final_size(size)
            x = ed.load(image)
            progress(None, desc="encoding and decoding")
            rec = yield from wait_for(lambda: diffae.reconstruct(ed.model(), x, steps), 3)
            out = yield from wait_for(lambda: ed.at_size(rec, size), 3)
            files = RequestFiles()
            params = {"command": "reconstruct", "image": Path(image).name, "steps": steps, "size": size,
                      "psnr": round(float(psnr(rec.cpu(), x.cpu(), 2.0)[0]), 2)}
            path = files.results([_one(out)], [params], [f"{Path(image).stem}-reconstruct"])[0]
            yield files.image(_one(x)), path, params
    return reconstruct


def _make_edit(ed: _Editing):
    """The edit handler, bound to what the handlers share."""

    @gpu
    def edit(image: str, attribute: str, strength: float, steps: int, fresh_noise: bool = False, seed: int = 0,
             size: int = 128, progress=gr.Progress()):
        """Move the image's semantic code along an attribute direction and decode it.

        Args:
            image: any image, taken at the model's resolution.
            attribute: a name from /attributes, e.g. "smiling".
            strength: in class gaps (-3..3): 1 moves an average image without the attribute onto the
                average one with it, for every attribute alike; + towards the attribute, - away; 0 is
                the reconstruction.
            steps: DDIM steps of the encoding and of the decoding.
            fresh_noise: decode with seeded fresh noise instead of the image's own x_T (keeps
                the semantics only).
            seed: the noise's seed (with fresh_noise; and of the super-resolution stages).
            size: final size: the model's (32), or 64 / 128 through the super-resolution stages.
        Returns:
            the input as the model sees it, the edited image (a PNG with its parameters), the parameters.
        """
        with user_errors():
            dirs = ed.need_directions()
            attribute = _attribute_ok(attribute, dirs)
            strength = diffae.check_strength(strength)
            steps, seed, size = _check_steps(steps), as_int(seed, "seed"), ed.final_size(size)
            x = ed.load(image)
            progress(None, desc="encoding and decoding")
            x_T = diffae.fresh_noise(ed.model(), [seed]) if fresh_noise else None
            out = yield from wait_for(lambda: ed.at_size(diffae.edit(ed.model(), dirs, x, attribute, strength, steps,
                                                                     x_T=x_T), size, seed, not fresh_noise), 3)
            files = RequestFiles()
            params = {"command": "edit", "image": Path(image).name, "attribute": attribute, "strength": strength,
                      "steps": steps, "seed": seed, "fresh_noise": bool(fresh_noise), "size": size}
            name = f"{Path(image).stem}-{attribute}{strength:+g}"
            path = files.results([_one(out)], [params], [name])[0]
            yield files.image(_one(x)), path, params
    return edit


def _make_edit_sweep(ed: _Editing):
    """The edit sweep handler, bound to what the handlers share."""

    @gpu
    def edit_sweep(image: str, attribute: str, max_strength: float, frames: int, steps: int, size: int = 128,
                   progress=gr.Progress()):
        """The edit at evenly spaced strengths from -max_strength to +max_strength, encoded once.

        Args:
            image: any image, taken at the model's resolution.
            attribute: a name from /attributes.
            max_strength: the largest strength, in class gaps (0 < max_strength <= 3).
            frames: how many strengths (2-16), e.g. 7 for -1.5, -1, ..., 1.5.
            steps: DDIM steps of the encoding and of the decoding.
            size: final size: the model's (32), or 64 / 128 through the super-resolution stages.
        Returns:
            the strip of edits side by side (a PNG with its parameters), each edit with its
            strength as caption, the parameters.
        """
        with user_errors():
            dirs = ed.need_directions()
            attribute = _attribute_ok(attribute, dirs)
            top = diffae.check_strength(max_strength)
            if top <= 0:
                raise ValueError(f"the sweep's largest strength must be above 0, got {top:g}")
            frames, steps, size = as_int(frames, "frames", 2, MAX_FRAMES), _check_steps(steps), ed.final_size(size)
            x = ed.load(image)
            strengths = [round(-top + 2 * top * i / (frames - 1), 6) for i in range(frames)]
            progress(None, desc=f"encoding, then decoding {frames} edits")
            edits = yield from wait_for(lambda: ed.at_size(diffae.sweep(ed.model(), dirs, x, attribute, strengths,
                                                                        steps)[:, 0], size), 3)
            images = tensor_to_pil(edits.cpu())
            files = RequestFiles()
            params = {"command": "edit_sweep", "image": Path(image).name, "attribute": attribute,
                      "strengths": strengths, "steps": steps, "size": size}
            strip = files.results([image_grid(images, columns=frames)], [params],
                                  [f"{Path(image).stem}-{attribute}-sweep"])[0]
            frames_out = [(files.image(im), f"{s:+g}") for im, s in zip(images, strengths)]
            yield strip, frames_out, params
    return edit_sweep


def _make_interpolate(ed: _Editing):
    """The interpolate handler, bound to what the handlers share."""

    @gpu
    def interpolate(image_a: str, image_b: str, frames: int, steps: int, size: int = 128, progress=gr.Progress()):
        """Interpolate from image a to image b: semantic codes linearly, stochastic codes spherically.

        Args:
            image_a: the first image (the first frame is its reconstruction).
            image_b: the second image (the last frame is its reconstruction).
            frames: how many frames (2-16), both ends included.
            steps: DDIM steps of the encoding and of the decoding.
            size: final size: the model's (32), or 64 / 128 through the super-resolution stages.
        Returns:
            the strip of frames (a PNG with its parameters), the frames, the parameters.
        """
        with user_errors():
            ed.models.require([MODEL])
            frames, steps, size = as_int(frames, "frames", 2, MAX_FRAMES), _check_steps(steps), ed.final_size(size)
            a, b = ed.load(image_a, "image a"), ed.load(image_b, "image b")
            progress(None, desc=f"encoding both, decoding {frames} frames")
            frames_out = yield from wait_for(
                lambda: ed.at_size(diffae.interpolate(ed.model(), a, b, frames, steps), size), 3)
            images = tensor_to_pil(frames_out.cpu())
            files = RequestFiles()
            params = {"command": "interpolate", "image_a": Path(image_a).name, "image_b": Path(image_b).name,
                      "frames": frames, "steps": steps, "size": size}
            strip = files.results([image_grid(images, columns=frames)], [params],
                                  [f"{Path(image_a).stem}-to-{Path(image_b).stem}"])[0]
            alphas = [i / (frames - 1) for i in range(frames)]
            yield strip, [(files.image(im), f"{al:.2f}") for im, al in zip(images, alphas)], params
    return interpolate


def make_fns(models: Models, loaded: tuple[diffae.Directions | None, str | None] | None = None):
    """The tab's functions (reconstruct, attributes, edit, edit_sweep, interpolate), bound to the
    shared models and the directions (`loaded`: what `load_directions` returned, else loaded here),
    and why the directions are unavailable (None when they are there)."""
    ed = _Editing(models, loaded or load_directions(models))
    return (_make_reconstruct(ed), _make_attributes(ed), _make_edit(ed), _make_edit_sweep(ed), _make_interpolate(ed),
            ed.directions_error)


def make_variations_fn(models: Models):
    """The variations function (DALL-E 2's image variations through DiffAE's semantic code)."""

    @gpu
    def variations(image: str, num_images: int, seed: int, size: int, prompt: str = "", mix: float = 0.0,
                   decoder_steps: int = DECODER_STEPS, decoder_guidance: float | None = None,
                   progress=gr.Progress()):
        """New images with the semantics of one image: its semantic code decoded with fresh noise,
        through the super-resolution stages; optionally moved towards a prompt first.

        Args:
            image: any image, taken at the DiffAE's resolution.
            num_images: how many variations (1-8); variation i uses seed + i.
            seed: the first seed.
            size: final size 32, 64 or 128.
            prompt: optional text; with mix > 0 the code moves towards the semantic prior's code
                for it (text-guided variation).
            mix: 0 = the image's own code ... 1 = the prompt's code.
            decoder_steps: steps of the DiffAE decoder (DPM-Solver++).
            decoder_guidance: the decoder's classifier-free guidance on the semantic code (None: the
                scale its checkpoint names).
        Returns:
            the strip of variations (a PNG with its parameters), each variation with its seed, the parameters.
        """
        with user_errors():
            num, seed, size = (as_int(num_images, "number of images", 1, MAX_VARIATIONS), as_int(seed, "seed"),
                               as_int(size, "size"))
            decoder_steps = as_int(decoder_steps, "decoder steps", 1, MAX_STEPS)
            prompt = (prompt or "").strip()
            guided = bool(prompt) and float(mix) > 0
            models.require([MODEL, *cascade.sr_names(size), *(["prior", "clip"] if guided else [])])
            if not image:
                raise ValueError("upload an image or pick an example first")
            x = pil_to_tensor(common.open_upload(image))
            progress(None, desc=f"decoding {num} variations")
            result = yield from wait_for(lambda: cascade.variations(
                models.set, x, num=num, seed=seed, size=size, prompt=prompt or None, mix=float(mix),
                decoder_steps=decoder_steps,
                decoder_guidance=None if decoder_guidance is None else float(decoder_guidance)), 3)
            images = tensor_to_pil(result.final.cpu())
            files = RequestFiles()
            params = {**result.parameters, "image": Path(image).name}
            seeds = result.parameters["seeds"]
            paths = files.results(images, [{**params, "seed": s} for s in seeds],
                                  [f"{Path(image).stem}-variation-seed{s}" for s in seeds])
            strip = files.image(image_grid(images, columns=num))
            yield strip, [(p, f"seed {s}") for p, s in zip(paths, seeds)], params

    return variations


def _edit_panel(reconstruct_fn, edit_fn, shared: tuple, names: list[str], examples: list[str], pixel: dict) -> None:
    """Reconstruct, and edit along one attribute direction."""
    image, steps, size = shared
    with gr.Tab("Edit"):
        with gr.Row():
            attribute = gr.Dropdown(names, value=names[0] if names else None, label="Attribute",
                                    info=" / ".join(diffae.ATTRIBUTE_RULES.get(n, n).split(":")[0] for n in names)
                                    or "no directions file")
            strength = gr.Slider(-diffae.MAX_STRENGTH, diffae.MAX_STRENGTH, value=EDIT_STRENGTH, step=0.05,
                                 label="Strength (class gaps)",
                                 info="1 moves an average image without the attribute onto the average one with "
                                      "it, for every attribute; - away; 0 = reconstruction")
        with gr.Row(equal_height=True):
            fresh = gr.Checkbox(False, label="Fresh noise", info="decode with new noise: keeps the semantics only")
            seed, _ = common.seed_input()
        with gr.Row():
            reconstruct_button = gr.Button("Reconstruct")
            edit_button = gr.Button("Edit", variant="primary")
        if names:
            gr.Examples([[p, a, s] for p, a, s in edit_examples(examples) if a in names],
                        inputs=[image, attribute, strength], label="Example edits", cache_examples=False)
        with gr.Row():
            view = gr.Image(label="Input as the model sees it", **pixel)
            result = gr.Image(label="Result (PNG with parameters)", **pixel)
        with gr.Accordion("Parameters", open=False):
            parameters = gr.JSON(label="Parameters")
        common.run_on(reconstruct_button.click, reconstruct_fn, inputs=[image, steps, size],
                      outputs=[view, result, parameters], api_name="reconstruct", show_progress_on=[result])
        common.run_on(edit_button.click, edit_fn, inputs=[image, attribute, strength, steps, fresh, seed, size],
                      outputs=[view, result, parameters], api_name="edit", show_progress_on=[result])


def _sweep_panel(sweep_fn, shared: tuple, names: list[str]) -> None:
    """The edit at evenly spaced strengths."""
    image, steps, size = shared
    with gr.Tab("Strength sweep"):
        with gr.Row():
            sweep_attribute = gr.Dropdown(names, value=names[0] if names else None, label="Attribute")
            max_strength = gr.Slider(0.1, diffae.MAX_STRENGTH, value=SWEEP_STRENGTH, step=0.05,
                                     label="Largest strength (class gaps)", info="the sweep runs from - to + this")
            frames = gr.Slider(2, MAX_FRAMES, value=SWEEP_FRAMES, step=1, precision=0, label="Frames")
        sweep_button = gr.Button("Sweep", variant="primary")
        strip = gr.Image(label="Sweep (PNG with parameters)", format="png", interactive=False,
                         elem_classes=[common.PIXELATED])
        gallery = gr.Gallery(label="Each strength", columns=MAX_FRAMES // 2, height="auto", format="png",
                             object_fit="contain", elem_classes=[common.PIXELATED, common.RESULTS])
        with gr.Accordion("Parameters", open=False):
            sweep_parameters = gr.JSON(label="Parameters")
        common.run_on(sweep_button.click, sweep_fn,
                      inputs=[image, sweep_attribute, max_strength, frames, steps, size],
                      outputs=[strip, gallery, sweep_parameters], api_name="edit_sweep", show_progress_on=[strip])


def _interpolate_panel(interpolate_fn, shared: tuple, examples: list[str]) -> None:
    """From the image above to a second image."""
    image, steps, size = shared
    with gr.Tab("Interpolate"):
        gr.Markdown("From the image above (a) to a second image (b): the semantic codes are interpolated "
                    "linearly, the stochastic codes spherically.")
        with gr.Row():
            image_b = image_input(label="Image b", sources=["upload", "clipboard"], height=160)
            n_frames = gr.Slider(2, MAX_FRAMES, value=SWEEP_FRAMES, step=1, precision=0, label="Frames")
        gr.Examples([[examples[0], examples[2]], [examples[1], examples[3]]], inputs=[image, image_b],
                    label="Example pairs", cache_examples=False)
        interpolate_button = gr.Button("Interpolate", variant="primary")
        interp_strip = gr.Image(label="Interpolation (PNG with parameters)", format="png", interactive=False,
                                elem_classes=[common.PIXELATED])
        interp_gallery = gr.Gallery(label="Frames", columns=MAX_FRAMES // 2, height="auto", format="png",
                                    object_fit="contain", elem_classes=[common.PIXELATED, common.RESULTS])
        with gr.Accordion("Parameters", open=False):
            interp_parameters = gr.JSON(label="Parameters")
        common.run_on(interpolate_button.click, interpolate_fn, inputs=[image, image_b, n_frames, steps, size],
                      outputs=[interp_strip, interp_gallery, interp_parameters], api_name="interpolate",
                      show_progress_on=[interp_strip])


def _variations_panel(models: Models, shared: tuple) -> None:
    """The image's semantic code decoded with fresh noise."""
    image, steps, size = shared
    with gr.Tab("Variations"):
        gr.Markdown("The image's semantic code decoded with fresh noise: the same emoji, new details "
                    "(DALL-E 2's image variations). With a prompt and a mix above 0 the code first moves "
                    "towards the semantic prior's code for the prompt.")
        with gr.Row():
            var_num = gr.Slider(1, MAX_VARIATIONS, value=4, step=1, precision=0, label="Number of variations")
            var_seed, _ = common.seed_input()
        with gr.Row():
            var_prompt = gr.Textbox("", label="Prompt (optional)", placeholder="e.g. red apple")
            var_mix = gr.Slider(0, 1, value=0.0, step=0.05, label="Mix towards the prompt",
                                info="0 = the image's own code, 1 = the prompt's")
            var_guidance = common.decoder_guidance_input(models)
        var_button = gr.Button("Make variations", variant="primary")
        var_strip = gr.Image(label="Variations (strip)", format="png", interactive=False,
                             elem_classes=[common.PIXELATED])
        var_gallery = gr.Gallery(label="Variations (PNG with parameters)", columns=MAX_VARIATIONS, height="auto",
                                 format="png", object_fit="contain", elem_classes=[common.PIXELATED, common.RESULTS])
        with gr.Accordion("Parameters", open=False):
            var_parameters = gr.JSON(label="Parameters")
        common.run_on(var_button.click, make_variations_fn(models),
                      inputs=[image, var_num, var_seed, size, var_prompt, var_mix, steps, var_guidance],
                      outputs=[var_strip, var_gallery, var_parameters], api_name="variations",
                      show_progress_on=[var_strip])


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab)."""
    loaded = load_directions(models)
    reconstruct_fn, attributes_fn, edit_fn, sweep_fn, interpolate_fn, directions_error = make_fns(models, loaded)
    status = models.status_markdown([MODEL], "This tab cannot run until it is present.")
    if not status and directions_error:
        status = ("⚠️ **Unavailable** (the rest of the app works): the attribute directions: "
                  f"{directions_error}\n\nReconstruction and interpolation work; edits need the directions.")
    if status:
        gr.Markdown(status)
    gr.Markdown("A diffusion autoencoder (DiffAE, Preechakul et al. 2022) encodes an image into a semantic code "
                "and a stochastic code (DDIM inversion); decoding both reconstructs it. Moving the semantic code "
                "along a direction fitted on labelled emoji (from the mean code of the emoji without the "
                "attribute to the mean code of those with it) edits that attribute.")
    names = attributes_fn()
    examples = common.people_first_examples()   # a person first: the default attribute is dark-skin
    resolution = models.set.get(MODEL).resolution if MODEL not in models.errors else 64
    steps_default = 20
    pixel = dict(format="png", interactive=False, height=220, elem_classes=[common.PIXELATED, common.STAGE])

    # shared by every sub-tab: the image and how it is encoded and drawn; each sub-tab has its own outputs
    with gr.Row():
        with gr.Column(scale=2):
            image = image_input(label=f"Image (taken at {resolution}×{resolution})", sources=["upload", "clipboard"],
                                height=220)
        with gr.Column(scale=3):
            steps = gr.Slider(1, MAX_STEPS, value=steps_default, step=1, precision=0, label="DDIM steps",
                              info=f"encoding and decoding each; the paper uses {diffae.DEFAULT_STEPS}+")
            size = gr.Radio([32, 64, 128], value=128, label="Final size",
                            info=f"the DiffAE draws {resolution}×{resolution}; 64 and 128 add the super-resolution "
                                 "stages (as the text tab)")
            gr.Examples([[p] for p in examples], inputs=[image], label="Example images", cache_examples=False)

    _edit_panel(reconstruct_fn, edit_fn, (image, steps, size), names, examples, pixel)
    _sweep_panel(sweep_fn, (image, steps, size), names)
    _interpolate_panel(interpolate_fn, (image, steps, size), examples)
    _variations_panel(models, (image, steps, size))
    gr.api(attributes_fn, api_name="attributes", queue=False)

