"""Tab: text to image through the cascade (base 32 -> SR 64 -> SR 128); the 32 px base is the
semantic one (prior over DiffAE's code -> DiffAE decoder) or the pixel UNet.

Run alone: `python app.py --tab text_to_image [app.py flags]`.
"""
from __future__ import annotations

import gradio as gr
from PIL import Image

from core.bases import CASCADE_BASES
from core.capabilities import TEXT_TO_IMAGE
from core.data.emoji import load_dataset
from core.images import tensor_to_pil
from core.reading import read_prompt
from core.semantic import CLIP_SCALE
from demos import (
    common,  # first: imports `spaces` before torch on a ZeroGPU Space
    deepfloyd_if,
)
from demos.adapter import base_inputs, checkbox, choice, handler, result_gallery, slider, textbox
from demos.common import Models, RequestFiles, gpu, preview, user_errors

TITLE = "Text to image"
STAGE_LABELS = {32: "32×32 base", 64: "64×64 SR", 128: "128×128 SR"}
EXAMPLES = ["woman dancing, dark skin tone", "an emoji of a red apple", "thumbs up", "grinning face with big eyes",
            "an emoji of a cat face", "man with a beard", "heart",
            # everyday phrasings the semantic base draws right (scripts/everyday_prompts.py: both seeds hit, and by eye)
            "a cat", "rocket", "bananas", "a penguin", "a panda", "an angry face", "an umbrella in the rain"]


PROMPT_READING_CHOICES = [("the nearest known emoji", "nearest"), ("as typed", "as-typed")]


def drawn_markdown(parameters: dict | None) -> str:
    """What the base drew for the prompt: the known emoji it was read as, or the prompt as typed ("" for
    no result)."""
    if not isinstance(parameters, dict) or "prompt_reading" not in parameters:
        return ""
    read_as = parameters.get("read_as")
    if read_as is not None:
        loose = "" if read_as.get("confident", True) else ", a loose reading: the models may not know it"
        return (f"**Drawn as** {read_as['emoji']} **{read_as['name']}**: the prompt was read as this emoji "
                f"(score {read_as['score']:.2f}{loose}) and the base drew its name, "
                f"`{parameters.get('prior_prompt', parameters.get('prompt'))}`; choose *Prompt reading: as typed* "
                "to draw the prompt itself.")
    if parameters["prompt_reading"] == "nearest":
        return ("**Drawn as typed**: the prompt has no word the text encoder knows to go by, so the base drew "
                "the prompt itself.")
    return "**Drawn as typed** (*Prompt reading: as typed*)."


def reading_markdown(reading, parameters: dict | None = None) -> str:
    """The prompt's reading in words: what was drawn (`drawn_markdown`), the nearest emoji with their
    similarity, and the words the text encoder does not know."""
    names = ", ".join(f"{n.emoji} {n.name} ({n.similarity:.2f})" for n in reading.nearest)
    drawn = drawn_markdown(parameters)
    text = (drawn + "\n\n" if drawn else "") + ("**Read as** (the known emoji nearest to the prompt, by the cosine "
                                                f"similarity of their nearest phrasing): {names}")
    if reading.unknown:
        text += ("\n\n⚠️ **Not understood**: " + ", ".join(f"`{w}`" for w in reading.unknown)
                 + f" (outside the text encoder's vocabulary; the prompt was read as `{reading.read}`: "
                   "a plural as its singular, other unknown words left out)")
    return text


def make_read_fn(models: Models):
    """The reading of a prompt, shown next to the result."""

    def read(prompt: str, parameters: dict | None = None):
        """How the text encoder reads a prompt: the training emoji nearest to it (core.reading), the
        words outside its vocabulary, and, given a result's parameters, which emoji was drawn.

        Args:
            prompt: the prompt, as typed.
            parameters: the parameters of the result of /text_to_image (optional): with them the words
                begin with the emoji the semantic base drew the prompt as (its `read_as`).
        Returns:
            the nearest emoji (pictures with their names and similarity) and the same in words.
        """
        with user_errors():
            if not isinstance(prompt, str) or not prompt.strip() or models.unavailable(["clip"]):
                return [], ""
            data = load_dataset()
            reading = read_prompt(models.get("clip"), prompt, data)
            files = RequestFiles()
            pictures = [(files.image(Image.fromarray(data.images[n.index])), f"{n.emoji} {n.name} ({n.similarity:.2f})")
                        for n in reading.nearest]
            return pictures, reading_markdown(reading, parameters)

    return read


def prepare(values: dict) -> dict:
    """What the form's values mean for the core function: the decoder's guidance only on the semantic
    base (the form always sends one); CLIP guidance (a scale above 0) only there, and then it alone
    steers the prior (the guidance slider is not used)."""
    if values["base_model"] != "semantic":
        values["decoder_guidance"] = None
    if values["clip_scale"] is None:
        values["clip_scale"] = 0.0
    if values["clip_scale"] != 0:
        if values["base_model"] != "semantic":
            raise ValueError("CLIP guidance steers the semantic base's prior: choose the semantic base")
        values["guidance"] = None   # the prior's default for a gradient-steered run: unconditional
    return values


def finish(result, values: dict, files: RequestFiles) -> tuple:
    """The first image of each stage (None past the size), the result PNGs and the parameters."""
    stages = {r: files.image(tensor_to_pil(x[:1])[0]) for r, x in result.stages.items()}
    return (*(stages.get(r) for r in STAGE_LABELS), result_gallery(files, result, f"emoji-{values['size']}px"),
            result.parameters)


def make_fn(models: Models):
    """The tab's function (`core.capabilities.TEXT_TO_IMAGE` through `demos.adapter.handler`), bound
    to the shared models; its arguments are the spec's, in the endpoint's order."""
    return gpu(handler(
        TEXT_TO_IMAGE, models, outputs=5, labels=STAGE_LABELS, prepare=prepare, finish=finish,
        show=lambda info, files: {list(STAGE_LABELS).index(info["stage"]): files.image(preview(info["x0"]))},
        summary="Generate emoji from a text prompt through the cascade, streaming the predicted x0 of the stage "
                "being sampled.",
        returns="the first image at 32, 64 and 128 (None past `size`), the final PNGs (with their parameters) "
                "and the parameters."))


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab); the inputs are the spec's parameters."""
    T = TEXT_TO_IMAGE  # noqa: N806 - short: every input below reads it
    start = common.base_sampling(models, text=True)   # the sampler and steps of the base the tab starts with
    encoder = models.text_encoder_name()
    missing_base = all(models.unavailable(models.base_needs(base, text=True)) for base in CASCADE_BASES)
    every = {base: T.needs({"base_model": base, "size": 128, "clip_scale": 1.0}, encoder) for base in CASCADE_BASES}
    status = models.status_markdown(
        sorted({name for names in every.values() for name in names}),   # what any call may need
        "This tab cannot generate until they are present." if missing_base
        else "Final sizes that need them show an error; smaller sizes work.")
    if status:
        gr.Markdown(status)
    emoji_state = "⚠️ some models are unavailable (above)" if status else "✅ loaded"
    gr.Markdown(f"🙂 **Emoji models (embedded)**: {emoji_state}; small models trained here on the Noto Color "
                "Emoji art")
    deepfloyd_if.build_status(models)
    gr.Markdown("A 32×32 emoji is drawn from the prompt with classifier-free guidance, by one of two bases: "
                "**semantic** (a diffusion prior turns the text into DiffAE's semantic code, the DiffAE decoder "
                "draws that code, as DALL-E 2's prior and decoder) or **pixel** (a text-conditioned UNet). Two "
                "super-resolution models then upsample it to 64 and 128 (a cascade, as in Imagen). "
                "Each stage's predicted image is shown as it denoises.")
    with gr.Row():
        with gr.Column(scale=2):
            prompt = textbox(T["prompt"], placeholder="e.g. woman dancing, dark skin tone", lines=2)
            negative = textbox(T["negative_prompt"], placeholder="optional: what to avoid")
            with gr.Row():
                guidance = slider(T["guidance"], start.guidance, info="1 = no guidance")
                steps = slider(T["steps"], start.steps, info="")
            with gr.Row():
                sampler = choice(T["sampler"], start.sampler, info="")
                size = choice(T["size"], radio=True, info="")
            with gr.Row(equal_height=True):
                seed, _ = common.seed_input(T["seed"].default)
                num = slider(T["num_images"], info="", scale=3)
            thresholding = checkbox(T["dynamic_thresholding"],
                                    info="keeps high guidance from saturating the image; static clipping "
                                         "unless the cap below is raised (Imagen's dynamic thresholding)")
            base_model, decoder_steps, decoder_guidance = base_inputs(T, models)
            common.follow_base_defaults(models, True, base_model, sampler, steps, guidance)
            clip_scale = slider(T["clip_scale"],
                                info=f"0 = none; above 0 the unconditional prior is steered by a noise-aware "
                                     f"code-text matcher instead of classifier-free guidance ({CLIP_SCALE:g} "
                                     "is the default of `--clip-scale`)")
            prompt_reading = choice(T["prompt_reading"], labels={v: k for k, v in PROMPT_READING_CHOICES}, radio=True,
                                    info="the nearest known emoji: a prompt is drawn from the name of the emoji the "
                                         "models know that it is read as (shown under the results); as typed: the "
                                         "prompt itself")
            with gr.Accordion("Advanced: per-stage settings", open=False):
                gr.Markdown("Guidance applies to the base stage: the super-resolution stages are conditioned "
                            "on the low-resolution image only (as in Cascaded Diffusion Models), so they have "
                            "steps and a noise-augmentation level instead.")
                with gr.Row():
                    threshold = slider(T["threshold"], info="")
                    threshold_max = slider(T["threshold_max"], info="1 = static clipping; above 1 = dynamic "
                                                                    "thresholding")
                    eta = slider(T["eta"], info="0 = deterministic")
                with gr.Row():
                    sr64_steps = slider(T["sr64_steps"], info="")
                    sr64_noise = slider(T["sr64_noise"], info="")
                with gr.Row():
                    sr128_steps = slider(T["sr128_steps"], info="")
                    sr128_noise = slider(T["sr128_noise"], info="")
            button = gr.Button("Generate", variant="primary")
            gr.Examples([[p] for p in EXAMPLES], inputs=[prompt], label="Example prompts", cache_examples=False)
            if models.deepfloyd is not None:
                if_settings, if_button = deepfloyd_if.build_settings(models)
        with gr.Column(scale=3):
            with gr.Row():
                stage_images = [gr.Image(label=label, format="png", interactive=False, height=180,
                                         elem_classes=[common.PIXELATED, common.STAGE])
                                for label in STAGE_LABELS.values()]
            if models.deepfloyd is not None:
                if_images = deepfloyd_if.build_outputs(models)
            gallery = gr.Gallery(label="Results (PNG with parameters)", columns=4, height="auto", format="png",
                                 object_fit="contain", elem_classes=[common.PIXELATED, common.RESULTS])
            read_pictures = gr.Gallery(label="How the prompt was read: the nearest emoji the models know",
                                       columns=5, height=150, format="png", object_fit="contain",
                                       allow_preview=False)
            read_words = gr.Markdown()
            with gr.Accordion("Parameters", open=False):
                parameters = gr.JSON(label="Parameters")
    inputs = [prompt, negative, guidance, sampler, steps, seed, num, size, thresholding, threshold, eta, sr64_steps,
              sr64_noise, sr128_steps, sr128_noise, threshold_max, base_model, decoder_steps, decoder_guidance,
              clip_scale, prompt_reading]
    run = common.run_on([button.click, prompt.submit], make_fn(models), inputs=inputs,
                        outputs=[*stage_images, gallery, parameters], api_name="text_to_image",
                        show_progress_on=[gallery])  # the bar covers the gallery; the stages' previews stay visible
    # after the images: the reading is quick, and the first pictures the page shows are the results
    run.success(make_read_fn(models), inputs=[prompt, parameters], outputs=[read_pictures, read_words],
                api_name="read_prompt")
    if models.deepfloyd is not None:
        deepfloyd_if.wire(models, if_button, [prompt, negative, seed, num], if_settings, if_images, gallery, parameters)

