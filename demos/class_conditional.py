"""Tab: class-conditional generation (a label embedding, classifier-free guidance on the label).

Run alone: `python -m demos.class_conditional [app.py flags]`.
"""
from __future__ import annotations

from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space

import gradio as gr

from core.cascade import SIZES, generate
from core.images import tensor_to_pil
from core.pipeline import BASE_DEFAULTS, SR_STAGE_DEFAULTS, StageSettings
from core.samplers import SAMPLERS
from demos.common import (Job, Models, RequestFiles, StageProgress, as_int, gpu, preview, sr_stages,
                          user_errors)

TITLE = "Class-conditional"
STAGE_LABELS = {32: "class base 32×32", 64: "super-resolution 64×64", 128: "super-resolution 128×128"}
PREFERRED_EXAMPLES = ["cat-face", "hand-fingers-open", "face-smiling", "person-activity", "food-fruit", "heart"]


def make_fns(models: Models):
    """The tab's functions (generate, list classes), bound to the shared models."""

    def classes() -> list[str]:
        """The class labels (emoji subgroups) the class-conditional model knows."""
        if models.unavailable(["class_base"]):
            return []
        return models.set.classes()

    @gpu
    def class_conditional(label: str, guidance: float, sampler: str, steps: int, seed: int, num_images: int,
                          size: int, dynamic_thresholding: bool, progress=gr.Progress()):
        """Sample a grid of emoji of one class (an emoji subgroup, see /classes).

        Args:
            label: the class, e.g. "cat-face".
            guidance: classifier-free guidance scale on the label (1 = none).
            sampler: one of ddpm, ddim, euler, heun, euler-maruyama, dpmpp-2m (the base stage; the
                SR stages sample with DDIM, core.pipeline.SR_STAGE_DEFAULTS).
            steps: sampling steps of the class-conditional base stage.
            seed: sample i uses seed + i.
            num_images: how many samples (1-16).
            size: final size 32, 64 or 128 (64 and 128 go through the super-resolution stages).
            dynamic_thresholding: static clipping of the base stage's x0 to [-1, 1] (the default
                thresholding; see core.pipeline.StageSettings).
        Returns:
            the grid of predicted x0 (live) then of the samples, the PNGs (with their parameters)
            and the parameters.
        """
        with user_errors():
            size, seed, num = as_int(size, "size"), as_int(seed, "seed"), as_int(num_images, "number of images")
            models.require(["class_base", *sr_stages(size)])
            if not label:
                raise ValueError("choose a class")
            base = StageSettings(sampler=sampler, steps=as_int(steps, "steps"), guidance=float(guidance),
                                 threshold=BASE_DEFAULTS.threshold if dynamic_thresholding else None)
            sr = SR_STAGE_DEFAULTS  # DDIM: fewer steps than the base's sampler needs there
            job = Job(lambda callback: generate(models.set, label=label, num=num, seed=seed, size=size,
                                                base=base, sr=sr, callback=callback))
            steps = {32: base.steps, 64: sr[0].steps, 128: sr[1].steps}
            bar = StageProgress(progress, {r: steps[r] for r in SIZES if r <= size}, STAGE_LABELS)
            files, first = RequestFiles(), True
            for info in job:
                if bar.update(info):
                    keep = None if first else gr.skip()  # the first update also clears the last run
                    yield files.image(preview(info["x0"], limit=None)), keep, keep
                    first = False
            result = job.result
            images = tensor_to_pil(result.final)
            seeds = result.parameters["seeds"]
            parameters = [{**result.parameters, "seed": s, "command": "generate"} for s in seeds]
            paths = files.results(images, parameters, [f"{label}-{size}px-seed{s}" for s in seeds])
            yield (files.image(common.grid(images)), [(p, f"seed {s}") for p, s in zip(paths, seeds)],
                   result.parameters)

    return class_conditional, classes


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab)."""
    run, list_classes = make_fns(models)
    status = models.status_markdown(
        ["class_base", "sr64", "sr128"],
        "This tab cannot generate until it is present." if models.unavailable(["class_base"])
        else "Final sizes that need them show an error; size 32 works.")
    if status:
        gr.Markdown(status)
    gr.Markdown("One model, conditioned on a class label (an emoji subgroup) instead of text; guidance "
                "compares it with the null label. Sizes above 32 add the super-resolution stages.")
    names = list_classes()
    choices = common.class_labels(names)
    with gr.Row():
        with gr.Column(scale=2):
            label = gr.Dropdown(choices, value=names[0] if names else None, label="Class (emoji subgroup)",
                                filterable=True, allow_custom_value=not names)
            with gr.Row():
                guidance = gr.Slider(0, 15, value=BASE_DEFAULTS.guidance, step=0.1, label="Guidance scale",
                                     info="1 = no guidance")
                steps = gr.Slider(1, 100, value=BASE_DEFAULTS.steps, step=1, precision=0, label="Steps")
            with gr.Row():
                sampler = gr.Dropdown(list(SAMPLERS), value=BASE_DEFAULTS.sampler, label="Sampler")
                size = gr.Radio(list(SIZES), value=32, label="Final size")
            with gr.Row(equal_height=True):
                seed, _ = common.seed_input()
                num = gr.Slider(1, 16, value=8, step=1, precision=0, label="Number of samples", scale=3)
            thresholding = gr.Checkbox(value=True, label="Clip x0 to [-1, 1] (thresholding)")
            button = gr.Button("Generate", variant="primary")
            examples = [c for c in PREFERRED_EXAMPLES if c in names] or names[:3]
            if examples:
                gr.Examples([[c] for c in examples], inputs=[label], label="Example classes", cache_examples=False)
        with gr.Column(scale=3):
            grid = gr.Image(label="Samples", format="png", interactive=False, height=320,
                            elem_classes=[common.PIXELATED, common.STAGE])
            gallery = gr.Gallery(label="Samples (PNG with parameters)", columns=4, height="auto", format="png",
                                 object_fit="contain", elem_classes=[common.PIXELATED])
            with gr.Accordion("Parameters", open=False):
                parameters = gr.JSON(label="Parameters")
    button.click(run, inputs=[label, guidance, sampler, steps, seed, num, size, thresholding],
                 outputs=[grid, gallery, parameters], api_name="class_conditional", concurrency_id="device",
                 show_progress_on=[gallery])  # the bar covers the gallery; the live grid stays visible
    gr.api(list_classes, api_name="classes", queue=False)


if __name__ == "__main__":
    import sys

    from app import main
    sys.exit(main(tab_modules=[sys.modules[__name__]]))
