"""Tab: class-conditional generation (a label embedding; classifier-free guidance on the label,
or classifier guidance of the unconditional model with the noise-aware classifier).

Run alone: `python app.py --tab class_conditional [app.py flags]`.
"""
from __future__ import annotations

import gradio as gr

from core.bases import CASCADE_BASES
from core.capabilities import CLASS_CONDITIONAL
from core.images import image_grid, tensor_to_pil
from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space
from demos.adapter import base_inputs, checkbox, choice, handler, result_gallery, slider
from demos.common import Models, RequestFiles, gpu, preview

TITLE = "Class-conditional"
STAGE_LABELS = {32: "class base 32×32", 64: "super-resolution 64×64", 128: "super-resolution 128×128"}
PREFERRED_EXAMPLES = ["cat-face", "hand-fingers-open", "face-smiling", "person-activity", "food-fruit", "heart"]
GUIDANCE_METHODS = {"cfg": "Classifier-free (CFG)", "classifier": "Classifier (noise-aware classifier)"}


def make_fns(models: Models):
    """The tab's functions (generate, list classes), bound to the shared models."""

    def classes() -> list[str]:
        """The class labels (emoji subgroups) the class-conditional model knows."""
        for name in ("class_base", "prior"):
            if not models.unavailable([name]):
                return list(models.set.get(name).config.classes)
        return []

    def prepare(values: dict) -> dict:
        """Classifier guidance steers the base alone (the guidance slider is not used); the decoder's
        guidance is the semantic base's only (the form always sends one)."""
        if values["guidance_method"] == "classifier":
            values["guidance"] = None
        if values["base_model"] != "semantic":
            values["decoder_guidance"] = None
        return values

    def finish(result, values: dict, files: RequestFiles) -> tuple:
        """The grid of the samples, their PNGs and the parameters."""
        return (files.image(image_grid(tensor_to_pil(result.final))),
                result_gallery(files, result, f"{values['label']}-{values['size']}px"), result.parameters)

    class_conditional = gpu(handler(
        CLASS_CONDITIONAL, models, outputs=3, labels=STAGE_LABELS, prepare=prepare, finish=finish,
        show=lambda info, files: {0: files.image(preview(info["x0"], limit=None))},
        summary="Sample a grid of emoji of one class (an emoji subgroup, see /classes), streaming the grid of "
                "predicted x0.",
        returns="the grid of predicted x0 (live) then of the samples, the PNGs (with their parameters) and the "
                "parameters."))
    return class_conditional, classes


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab); the inputs are the spec's parameters."""
    C = CLASS_CONDITIONAL  # noqa: N806 - short: every input below reads it
    start = common.base_sampling(models, text=False)   # the sampler and steps of the base the tab starts with
    run, list_classes = make_fns(models)
    widest = {"size": 128, "guidance_method": "classifier"}
    every = {base: C.needs({**widest, "base_model": base}) for base in CASCADE_BASES}
    status = models.status_markdown(
        list(dict.fromkeys(name for names in every.values() for name in names)),   # what any call may need
        "This tab cannot generate until one base is present." if not list_classes()
        else "What needs a missing model (classifier guidance: `code_classifier` on the semantic base, "
             "`noisy_classifier` on the pixel one; final sizes above 32: the SR "
             "models) shows an error.")
    if status:
        gr.Markdown(status)
    gr.Markdown("Generation conditioned on a class label (an emoji subgroup) instead of text. The **semantic** "
                "base samples DiffAE's semantic code for the label with a diffusion prior and decodes it; the "
                "**pixel** base is one label-conditioned UNet (the committed one is the DiffAE decoder, fed a "
                "semantic code that a generator distilled from the prior draws for the label in one step, picking "
                "one of the label's emoji; its "
                "default guidance is 1). **Classifier-free guidance** compares the "
                "prediction for the label with the one for the null label (Ho & Salimans 2021). **Classifier "
                "guidance** (Dhariwal & Nichol 2021) runs the base unconditionally and steers it with the gradient "
                "of a separate classifier trained on noisy inputs, log p(label | noisy input): on the semantic base "
                "a small classifier of the prior's noisy codes steers the prior, where the emoji is decided; on the "
                "pixel base a classifier of noisy images steers the UNet, which cannot change the committed pixel "
                "base's emoji (the code drawn before the first step decides it). The *How it works* tab compares "
                "classifier-free, classifier and CLIP guidance of the prior over a range of scales. Sizes above 32 "
                "add the super-resolution "
                "stages.")
    names = list_classes()
    choices = common.class_labels(names)
    examples = [c for c in PREFERRED_EXAMPLES if c in names] or names[:3]
    with gr.Row():
        with gr.Column(scale=2):
            label = gr.Dropdown(choices, value=examples[0] if examples else None, label=C["label"].label,
                                filterable=True, allow_custom_value=not names)
            method = choice(C["guidance_method"], labels=GUIDANCE_METHODS, radio=True, info="")
            with gr.Row():
                guidance = slider(C["guidance"], start.guidance, info="1 = no guidance")
                scale = slider(C["classifier_scale"], info="0 = unconditional", visible=False)
                steps = slider(C["steps"], start.steps, info="")
            with gr.Row():
                sampler = choice(C["sampler"], start.sampler, info="")
                size = choice(C["size"], radio=True, info="")   # as every tab that draws
            with gr.Row(equal_height=True):
                seed, _ = common.seed_input(C["seed"].default)
                num = slider(C["num_images"], info="", scale=3)
            thresholding = checkbox(C["dynamic_thresholding"], info="")
            base_model, decoder_steps, decoder_guidance = base_inputs(C, models)
            common.follow_base_defaults(models, False, base_model, sampler, steps, guidance)
            button = gr.Button("Generate", variant="primary")
            if examples:
                gr.Examples([[c] for c in examples], inputs=[label], label="Example classes", cache_examples=False)
        with gr.Column(scale=3):
            grid = gr.Image(label="Samples", format="png", interactive=False, height=320,
                            elem_classes=[common.PIXELATED, common.STAGE])
            gallery = gr.Gallery(label="Samples (PNG with parameters)", columns=4, height="auto", format="png",
                                 object_fit="contain", elem_classes=[common.PIXELATED, common.RESULTS])
            with gr.Accordion("Parameters", open=False):
                parameters = gr.JSON(label="Parameters")
    method.change(lambda m: (gr.update(visible=m == "cfg"), gr.update(visible=m == "classifier")), inputs=method,
                  outputs=[guidance, scale], queue=False, api_visibility="private")
    common.run_on(button.click, run, inputs=[label, guidance, sampler, steps, seed, num, size, thresholding, method,
                                             scale, base_model, decoder_steps, decoder_guidance],
                  outputs=[grid, gallery, parameters], api_name="class_conditional",
                  show_progress_on=[gallery])  # the bar covers the gallery; the live grid stays visible
    gr.api(list_classes, api_name="classes", queue=False)

