"""The DeepFloyd IF part of the text-to-image tab: its status line, its settings and its endpoint
`/text_to_image_deepfloyd`. Whether IF can run, loading it and sampling are core.deepfloyd's.
"""
from __future__ import annotations

from dataclasses import replace

import gradio as gr

from core.deepfloyd import IF_I_DEFAULTS, IF_II_DEFAULTS, LICENCE_NOTE
from core.diffusion.samplers import SAMPLERS
from core.images import tensor_to_pil
from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space
from demos.common import Models, RequestFiles, as_int, gpu, preview, stream, user_errors

LABEL = "DeepFloyd IF (Hub)"
STAGE_LABELS = ("IF stage I (64×64)", "IF stage II (256×256)")


def available(models: Models) -> bool:
    return models.deepfloyd is not None and models.deepfloyd.available


def build_status(models: Models) -> None:
    """One short line saying whether IF can run here; why (and its licence) behind a fold."""
    ds = models.deepfloyd
    if ds is None:
        gr.Markdown(f"{LABEL}: not offered (this server was started with --deepfloyd none)")
        return
    title = f"{LABEL}: available, loaded on first use" if ds.available else f"{LABEL}: unavailable on this server"
    with gr.Accordion(title, open=False):
        gr.Markdown(f"{'Weights' if ds.available else 'Why'}: {common.public(ds.reason)}.\n\n{LICENCE_NOTE}")


def _model(models: Models):
    if models.deepfloyd is None:
        raise common.error("DeepFloyd IF is not offered by this server (it was started with --deepfloyd none)",
                           "Model unavailable")
    return models.deepfloyd.get()  # CheckpointError (unavailable, gated, missing) -> user_errors -> gr.Error


def make_fn(models: Models):
    """The endpoint's function, bound to the shared models."""

    def text_to_image_deepfloyd(prompt: str, negative_prompt: str, seed: int, num_images: int, sampler: str,
                                steps: int, guidance: float, sr_steps: int, sr_guidance: float, sr_noise: int,
                                stop_after: int, progress=gr.Progress()):
        """Generate images from a text prompt with DeepFloyd IF: stage I (64×64), then stage II (256×256).

        Args:
            prompt: what to draw.
            negative_prompt: what to steer away from ("" = the unconditional embedding).
            seed: image i uses seed + i.
            num_images: how many images (1-8).
            sampler: one of ddpm (IF's own, with its learned variance), ddim, euler, heun, euler-maruyama,
                dpmpp-2m (both stages).
            steps: sampling steps of stage I.
            guidance: classifier-free guidance scale of stage I (1 = none).
            sr_steps: sampling steps of stage II.
            sr_guidance: classifier-free guidance scale of stage II.
            sr_noise: stage II's noise-augmentation level (0-999) of the upsampled stage-I image.
            stop_after: 1 (stage I) or 2 (stage II).
        Returns:
            the first image of each stage (None past `stop_after`), the final PNGs (with their
            parameters) and the parameters.
        """
        with user_errors():
            seed, num = as_int(seed, "seed"), as_int(num_images, "number of images")
            stop = as_int(stop_after, "stop after")
            s1 = replace(IF_I_DEFAULTS, sampler=sampler, steps=as_int(steps, "steps"), guidance=float(guidance))
            s2 = replace(IF_II_DEFAULTS, sampler=sampler, steps=as_int(sr_steps, "stage II steps"),
                         guidance=float(sr_guidance), aug_level=as_int(sr_noise, "noise level"))
            progress(0, desc="loading DeepFloyd IF (the first request fetches and loads the weights)")
            model = _model(models)
            if stop > len(model.sizes):
                raise ValueError("this DeepFloyd IF has no stage II")
            sizes = model.sizes[:stop]
            files = RequestFiles()
            slots = (model.sizes + [None])[:2]
            result = yield from stream(
                lambda callback: model.generate(prompt or "", negative_prompt or "", num=num, seed=seed,
                                                size=sizes[-1], stage_1=s1, stage_2=s2, callback=callback),
                4, progress, dict(zip(model.sizes, STAGE_LABELS)),
                lambda info: {slots.index(info["stage"]): files.image(preview(info["x0"]))},
                dict(zip(sizes, (s1.steps, s2.steps))))
            common.show_note(result.parameters.get("note"))
            seeds = result.parameters["seeds"]
            parameters = [{**result.parameters, "seed": s, "command": "deepfloyd"} for s in seeds]
            paths = files.results(tensor_to_pil(result.final), parameters,
                                  [f"deepfloyd-{result.parameters['size']}px-seed{s}" for s in seeds])
            stages = {r: files.image(tensor_to_pil(x[:1])[0]) for r, x in result.stages.items()}
            yield (*(stages.get(r) for r in slots), [(p, f"seed {s}") for p, s in zip(paths, seeds)],
                   result.parameters)

    return gpu(text_to_image_deepfloyd, 300)


def build_settings(models: Models) -> tuple[list, gr.Button]:
    """IF's settings and button, in an accordion (inside the caller's column), shown only where IF
    can run (elsewhere the endpoint stays, and answers why it cannot)."""
    with gr.Accordion(f"Generate with {LABEL}", open=False, visible=available(models)):
        gr.Markdown("DeepFloyd IF's own cascade, run by this hub's samplers and guidance: T5-XXL encodes the "
                    "prompt once, stage I draws 64×64, stage II upsamples to 256×256 (prompt, seed and number "
                    "of images above).")
        with gr.Row():
            sampler = gr.Dropdown(list(SAMPLERS), value=IF_I_DEFAULTS.sampler, label="Sampler (IF)")
            stop_after = gr.Radio([("Stage I (64×64)", 1), ("Stage II (256×256)", 2)], value=2, label="Stop after")
        with gr.Row():
            steps = gr.Slider(1, 200, value=IF_I_DEFAULTS.steps, step=1, precision=0, label="Steps (stage I)")
            guidance = gr.Slider(0, 20, value=IF_I_DEFAULTS.guidance, step=0.1, label="Guidance (stage I)")
        with gr.Row():
            sr_steps = gr.Slider(1, 200, value=IF_II_DEFAULTS.steps, step=1, precision=0, label="Steps (stage II)")
            sr_guidance = gr.Slider(0, 20, value=IF_II_DEFAULTS.guidance, step=0.1, label="Guidance (stage II)")
        sr_noise = gr.Slider(0, 999, value=IF_II_DEFAULTS.aug_level, step=1, precision=0,
                             label="Noise augmentation (stage II)")
        button = gr.Button("Generate with DeepFloyd IF", variant="secondary")
    return [sampler, steps, guidance, sr_steps, sr_guidance, sr_noise, stop_after], button


def build_outputs(models: Models) -> list[gr.Image]:
    """IF's two stage images (inside the caller's column), shown only where IF can run."""
    with gr.Row(visible=available(models)):
        return [gr.Image(label=label, format="png", interactive=False, height=180, elem_classes=[common.STAGE])
                for label in STAGE_LABELS]


def wire(models: Models, button: gr.Button, shared: list, settings: list, stage_images: list, gallery, parameters):
    """`shared`: prompt, negative prompt, seed, number of images (the tab's)."""
    common.run_on(button.click, make_fn(models), inputs=[*shared, *settings],
                  outputs=[*stage_images, gallery, parameters], api_name="text_to_image_deepfloyd",
                  show_progress_on=[gallery])
