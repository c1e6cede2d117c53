"""Tab: class-conditional generation (a label embedding; classifier-free guidance on the label,
or classifier guidance of the unconditional model with the noise-aware classifier).

Run alone: `python app.py --tab class_conditional [app.py flags]`.
"""
from __future__ import annotations

import gradio as gr

from core.cascade import SIZES, generate, sr_defaults, sr_names
from core.diffusion.samplers import SAMPLERS
from core.images import image_grid, tensor_to_pil
from core.pipeline import BASE_DEFAULTS, MAX_CLASSIFIER_SCALE, StageSettings
from core.semantic import CODE_CLASSIFIER_SCALE, DECODER_STEPS
from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space
from demos.common import Models, RequestFiles, as_int, gpu, preview, stream, user_errors

TITLE = "Class-conditional"
STAGE_LABELS = {32: "class base 32×32", 64: "super-resolution 64×64", 128: "super-resolution 128×128"}
PREFERRED_EXAMPLES = ["cat-face", "hand-fingers-open", "face-smiling", "person-activity", "food-fruit", "heart"]
GUIDANCE_METHODS = {"cfg": "Classifier-free (CFG)", "classifier": "Classifier (noise-aware classifier)"}
CLASSIFIER_SCALE = CODE_CLASSIFIER_SCALE   # the default scale of classifier guidance (the semantic base's)


def make_fns(models: Models):
    """The tab's functions (generate, list classes), bound to the shared models."""

    def classes() -> list[str]:
        """The class labels (emoji subgroups) the class-conditional model knows."""
        for name in ("class_base", "prior"):
            if not models.unavailable([name]):
                return list(models.set.get(name).config.classes)
        return []

    @gpu
    def class_conditional(label: str, guidance: float, sampler: str, steps: int, seed: int, num_images: int,
                          size: int, dynamic_thresholding: bool, guidance_method: str = "cfg",
                          classifier_scale: float = CLASSIFIER_SCALE, base_model: str | None = None,
                          decoder_steps: int = DECODER_STEPS, decoder_guidance: float | None = None,
                          progress=gr.Progress()):
        """Sample a grid of emoji of one class (an emoji subgroup, see /classes).

        Args:
            label: the class, e.g. "cat-face".
            guidance: classifier-free guidance scale on the label (1 = none).
            sampler: one of ddpm, ddim, euler, heun, euler-maruyama, dpmpp-2m (the base stage; the
                SR stages sample with their checkpoints' defaults, core.cascade.sr_defaults).
            steps: sampling steps of the class-conditional base stage.
            seed: sample i uses seed + i.
            num_images: how many samples (1-16).
            size: final size 32, 64 or 128 (64 and 128 go through the super-resolution stages).
            dynamic_thresholding: static clipping of the base stage's x0 to [-1, 1] (the default
                thresholding; see core.pipeline.StageSettings).
            guidance_method: "cfg" (classifier-free guidance at `guidance`) or "classifier" (classifier
                guidance of the unconditional model at `classifier_scale`; `guidance` is not used): on the
                semantic base the prior steered by the noise-aware classifier of its codes (code_classifier),
                on the pixel base the class UNet by the noise-aware image classifier (noisy_classifier).
            classifier_scale: the scale of classifier guidance (0 = unconditional samples).
            base_model: "semantic", "pixel" or None (the default: semantic when its models loaded, else pixel).
                With "semantic" a diffusion prior picks DiffAE's semantic code for the label and the
                DiffAE decoder draws it; with "pixel" the class-conditional UNet draws the image (the
                committed one: the DiffAE decoder fed a code drawn for the label in one step).
            decoder_steps: steps of the DiffAE decoder (DPM-Solver++; semantic base).
            decoder_guidance: the DiffAE decoder's classifier-free guidance on the semantic code (semantic
                base; None: the scale its checkpoint names).
        Returns:
            the grid of predicted x0 (live) then of the samples, the PNGs (with their parameters)
            and the parameters.
        """
        with user_errors():
            size, seed, num = as_int(size, "size"), as_int(seed, "seed"), as_int(num_images, "number of images")
            if guidance_method not in GUIDANCE_METHODS:
                raise ValueError(f"guidance_method must be one of {', '.join(GUIDANCE_METHODS)}; "
                                 f"got {guidance_method!r}")
            by_classifier = guidance_method == "classifier"
            decoder_steps = as_int(decoder_steps, "decoder steps")
            base_model = base_model or models.default_base(text=False)
            decoder_guidance = None if decoder_guidance is None or base_model != "semantic" else float(decoder_guidance)
            guide_model = "code_classifier" if base_model == "semantic" else "noisy_classifier"
            models.require([*models.base_needs(base_model, text=False),
                            *([guide_model] if by_classifier else []), *sr_names(size)])
            if not label:
                raise ValueError("choose a class")
            # classifier guidance alone steers the unconditional prior (generate runs the pixel base unconditionally)
            guidance = 0.0 if by_classifier and base_model == "semantic" else float(guidance)
            base = StageSettings(sampler=sampler, steps=as_int(steps, "steps"), guidance=guidance,
                                 threshold=BASE_DEFAULTS.threshold if dynamic_thresholding else None)
            sr = sr_defaults(models.set, size)  # the SR checkpoints' (DDIM: fewer steps than the base's sampler)
            scale = float(classifier_scale) if by_classifier else None
            base_steps = decoder_steps if base_model == "semantic" else base.steps   # the decoder reports progress
            steps = {32: base_steps, 64: sr[0].steps, 128: sr[1].steps}
            files = RequestFiles()
            result = yield from stream(
                lambda callback: generate(models.set, label=label, num=num, seed=seed, size=size, base=base, sr=sr,
                                          callback=callback, base_model=base_model, decoder_steps=decoder_steps,
                                          decoder_guidance=decoder_guidance,
                                          classifier_scale=scale),
                3, progress, STAGE_LABELS, lambda info: {0: files.image(preview(info["x0"], limit=None))},
                {r: steps[r] for r in SIZES if r <= size})
            images = tensor_to_pil(result.final)
            seeds = result.parameters["seeds"]
            parameters = [{**result.parameters, "seed": s, "command": "generate"} for s in seeds]
            paths = files.results(images, parameters, [f"{label}-{size}px-seed{s}" for s in seeds])
            yield (files.image(image_grid(images)), [(p, f"seed {s}") for p, s in zip(paths, seeds)],
                   result.parameters)

    return class_conditional, classes


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab)."""
    start = common.base_sampling(models, text=False)   # the sampler and steps of the base the tab starts with
    run, list_classes = make_fns(models)
    status = models.status_markdown(
        ["class_base", "prior", "diffae", "sr64", "sr128", "noisy_classifier", "code_classifier"],
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
            label = gr.Dropdown(choices, value=examples[0] if examples else None, label="Class (emoji subgroup)",
                                filterable=True, allow_custom_value=not names)
            method = gr.Radio([(v, k) for k, v in GUIDANCE_METHODS.items()], value="cfg", label="Guidance")
            with gr.Row():
                guidance = gr.Slider(0, 15, value=start.guidance, step=0.1, label="Guidance scale (CFG)",
                                     info="1 = no guidance")
                scale = gr.Slider(0, MAX_CLASSIFIER_SCALE, value=CLASSIFIER_SCALE, step=0.5,
                                  label="Classifier scale", info="0 = unconditional", visible=False)
                steps = gr.Slider(1, 100, value=start.steps, step=1, precision=0, label="Steps")
            with gr.Row():
                sampler = gr.Dropdown(list(SAMPLERS), value=start.sampler, label="Sampler")
                size = gr.Radio(list(SIZES), value=128, label="Final size")   # as every tab that draws
            with gr.Row(equal_height=True):
                seed, _ = common.seed_input()
                num = gr.Slider(1, 16, value=4, step=1, precision=0, label="Number of samples", scale=3)
            thresholding = gr.Checkbox(value=True, label="Clip x0 to [-1, 1] (thresholding, pixel base)")
            base_model, decoder_steps, decoder_guidance = common.base_inputs(models, text=False)
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

