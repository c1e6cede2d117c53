"""Tab: diffusion super-resolution (SR3 with CDM noise augmentation) beside bicubic.

Run alone: `python app.py --tab super_resolution [app.py flags]`.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from core.capabilities import OWN, UPSCALE, upscale_stage_settings
from core.images import pil_to_tensor, resize_tensor, tensor_to_pil
from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space
from demos.adapter import choice, slider
from demos.common import Models, RequestFiles, gpu, image_input, preview, stream, user_errors

TITLE = "Super-resolution"
STAGE_LABELS = {64: "super-resolution 32 → 64", 128: "super-resolution 64 → 128"}


def make_fn(models: Models):
    """The tab's function, bound to the shared models."""

    @gpu
    def upscale(image: str, factor: int, size: int, sampler: str, steps: int, noise: int, seed: int,
                progress=gr.Progress()):
        """Upscale an image 2x or 4x with the super-resolution diffusion models, beside bicubic.

        Args:
            image: any image (any mode; non-square is padded with white); it is first reduced to
                size / factor, the resolution the models upscale from.
            factor: 2 (one SR stage) or 4 (32 -> 64 -> 128).
            size: output size, 64 or 128 (4x needs 128).
            sampler: "own" (each stage's own, from its checkpoint) or one of ddpm, ddim, euler, heun,
                euler-maruyama, dpmpp-2m for every stage.
            steps: sampling steps of every stage; 0: each stage's own.
            noise: noise-augmentation level (0-999) of the low-res input (CDM) in every stage; -1: each
                stage's own.
            seed: the seed of the sampler's noise.
        Returns:
            the low-res input, its bicubic upscale, the diffusion upscale (a PNG with its
            parameters) and the parameters.
        """
        with user_errors():
            if not image:
                raise ValueError("upload an image or pick an example first")
            values = UPSCALE.check({"image": str(image), "factor": factor, "size": size, "sampler": sampler,
                                    "steps": steps, "noise": noise, "seed": seed})
            values["factor"] = values["factor"] or 4   # the form always sends one; 4x: 32 -> 128
            names = UPSCALE.needs(values)
            models.require(names)
            low = pil_to_tensor(common.open_upload(image), size=values["size"] // values["factor"])
            files = RequestFiles()
            low_image = files.image(tensor_to_pil(low)[0])
            bicubic = files.image(tensor_to_pil(resize_tensor(low, values["size"], "bicubic"))[0])
            result = yield from stream(
                lambda callback: UPSCALE.run(models.set, values, low, Path(image).name, callback), 4, progress,
                STAGE_LABELS, lambda info: {0: low_image, 1: bicubic, 2: files.image(preview(info["x0"]))},
                {models.get(name).resolution: st.steps
                 for name, st in zip(names, upscale_stage_settings(models.set, values))})
            name = f"{Path(image).stem}-sr{values['factor']}x-{values['size']}px-seed{values['seed']}"
            path = files.results(tensor_to_pil(result.final), [result.parameters], [name])[0]
            yield low_image, bicubic, path, result.parameters

    return upscale


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab); the inputs are the spec's parameters."""
    U = UPSCALE  # noqa: N806 - short: every input below reads it
    missing = models.unavailable(["sr64", "sr128"])
    status = models.status_markdown(["sr64", "sr128"], "This tab cannot upscale until they are present."
                                    if len(missing) == 2 else "Upscales that need it show an error.")
    if status:
        gr.Markdown(status)
    gr.Markdown("The image is reduced to 32 (or 64) pixels; the super-resolution model then denoises at the "
                "higher resolution, conditioned on the bilinearly upsampled low-res image (SR3), whose noise "
                "level is set by the augmentation slider (CDM). The trained stages diffuse only the residual: "
                "the detail that bilinear upsampling misses, added back to it at the end. Bicubic interpolation "
                "is shown for comparison.")
    with gr.Row():
        with gr.Column(scale=2):
            image = image_input(label=U["image"].label, sources=["upload", "clipboard"],
                               height=240)
            with gr.Row():
                factor = choice(U["factor"], labels={2: "2x", 4: "4x"}, radio=True, info="")
                size = choice(U["size"], radio=True, info="4x: 32 → 128")
            with gr.Row():
                sampler = choice(U["sampler"], labels={OWN: "each stage's own"}, info="")
                steps = slider(U["steps"], info="0: each stage's own (its checkpoint's)")
            with gr.Row(equal_height=True):
                noise = slider(U["noise"], info="-1: each stage's own (its checkpoint's)", scale=3)
                seed, _ = common.seed_input(U["seed"].default)
            button = gr.Button("Upscale", variant="primary")
            examples = common.example_images()
            gr.Examples([[p, 4, 128] for p in examples] + [[examples[0], 2, 128]], inputs=[image, factor, size],
                        label="Example images", cache_examples=False)
        with gr.Column(scale=3):
            with gr.Row():
                low = gr.Image(label="Input as the model sees it", format="png", interactive=False, height=240,
                               elem_classes=[common.PIXELATED, common.STAGE])
                bicubic = gr.Image(label="Bicubic", format="png", interactive=False, height=240,
                                   elem_classes=[common.PIXELATED, common.STAGE])
                result = gr.Image(label="Diffusion (PNG with parameters)", format="png", interactive=False, height=240,
                                  elem_classes=[common.PIXELATED, common.STAGE])
            with gr.Accordion("Parameters", open=False):
                parameters = gr.JSON(label="Parameters")
    common.run_on(button.click, make_fn(models), inputs=[image, factor, size, sampler, steps, noise, seed],
                  outputs=[low, bicubic, result, parameters], api_name="upscale",
                  show_progress_on=[low])  # the bar covers the (unchanging) input; the preview stays visible

