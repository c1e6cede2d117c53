"""Tab: text to image through the cascade (base 32 -> SR 64 -> SR 128); the 32 px base is the
semantic one (prior over DiffAE's code -> DiffAE decoder) or the pixel UNet.

Run alone: `python app.py --tab text_to_image [app.py flags]`.
"""
from __future__ import annotations

import gradio as gr
from PIL import Image

from core.cascade import SIZES, generate, sr_names
from core.data.emoji import load_dataset
from core.diffusion.samplers import SAMPLERS
from core.images import tensor_to_pil
from core.pipeline import BASE_DEFAULTS, SR_DEFAULTS, SR_STAGE_DEFAULTS, StageSettings
from core.reading import DEFAULT_PROMPT_READING, read_prompt
from core.semantic import CLIP_SCALE, DECODER_STEPS, MAX_CODE_GUIDE_SCALE
from demos import (
    common,  # first: imports `spaces` before torch on a ZeroGPU Space
    deepfloyd_if,
)
from demos.common import Models, RequestFiles, as_int, gpu, preview, stream, user_errors

TITLE = "Text to image"
STAGE_LABELS = {32: "32×32 base", 64: "64×64 SR", 128: "128×128 SR"}
EXAMPLES = ["woman dancing, dark skin tone", "an emoji of a red apple", "thumbs up", "grinning face with big eyes",
            "an emoji of a cat face", "man with a beard", "heart",
            # everyday phrasings the semantic base draws right (scripts/everyday_prompts.py: both seeds hit, and by eye)
            "a cat", "rocket", "bananas", "a penguin", "a panda", "an angry face", "an umbrella in the rain"]


PROMPT_READING_CHOICES = [("the nearest known emoji", "nearest"), ("as typed", "as-typed")]


def drawn_markdown(parameters: dict | None) -> str:
    """What the semantic base drew for the prompt: the known emoji it was read as, or the prompt as
    typed ("" for a result of the pixel base or none)."""
    if not isinstance(parameters, dict) or "prompt_reading" not in parameters:
        return ""
    read_as = parameters.get("read_as")
    if read_as is not None:
        return (f"**Drawn as** {read_as['emoji']} **{read_as['name']}**: the prompt was read as this emoji "
                f"(score {read_as['score']:.2f}) and the prior drew its name, "
                f"`{parameters.get('prior_prompt', parameters.get('prompt'))}`; choose *Prompt reading: as typed* "
                "to draw the prompt itself.")
    if parameters["prompt_reading"] == "nearest":
        return ("**Drawn as typed**: the prompt is not read confidently as any emoji the models know, so the "
                "prior drew the prompt itself.")
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


def make_fn(models: Models):
    """The tab's function, bound to the shared models."""

    @gpu
    def text_to_image(prompt: str, negative_prompt: str, guidance: float, sampler: str, steps: int, seed: int,
                      num_images: int, size: int, dynamic_thresholding: bool, threshold: float, eta: float,
                      sr64_steps: int, sr64_noise: int, sr128_steps: int, sr128_noise: int,
                      threshold_max: float = BASE_DEFAULTS.threshold_max, base_model: str | None = None,
                      decoder_steps: int = DECODER_STEPS, decoder_guidance: float | None = None,
                      clip_scale: float = 0.0, prompt_reading: str = DEFAULT_PROMPT_READING,
                      progress=gr.Progress()):
        """Generate emoji from a text prompt through the cascade, streaming the predicted x0.

        Args:
            prompt: what to draw, e.g. "woman dancing, dark skin tone".
            negative_prompt: what to steer away from ("" = the unconditional embedding).
            guidance: classifier-free guidance scale of the base stage (1 = none).
            sampler: one of ddpm, ddim, euler, heun, euler-maruyama, dpmpp-2m (the base stage; the
                SR stages sample with DDIM, core.pipeline.SR_STAGE_DEFAULTS).
            steps: sampling steps of the base stage.
            seed: image i uses seed + i.
            num_images: how many images (1-8).
            size: final size, 32, 64 or 128 (where the cascade stops).
            dynamic_thresholding: thresholding of the base stage's x0 (static or dynamic).
            threshold: its percentile (0.5-1).
            eta: DDIM's eta (0 = deterministic); ignored by the other samplers.
            sr64_steps: steps of the 32 -> 64 stage.
            sr64_noise: noise-augmentation level (0-999) of the 64 stage's low-res input.
            sr128_steps: steps of the 64 -> 128 stage.
            sr128_noise: noise-augmentation level (0-999) of the 128 stage's low-res input.
            threshold_max: cap of the thresholding scale s: 1 = static clipping to [-1, 1],
                larger = Imagen's dynamic thresholding.
            base_model: "semantic", "pixel" or None (the default: semantic when its models loaded, else pixel).
                With "semantic" a diffusion prior picks DiffAE's semantic code for the prompt and the
                DiffAE decoder draws it (guidance, sampler and steps are the prior's); with "pixel" the
                text-conditioned UNet draws the image.
            decoder_steps: steps of the DiffAE decoder (DPM-Solver++; semantic base).
            decoder_guidance: the DiffAE decoder's classifier-free guidance on the semantic code (semantic
                base; None: the scale its checkpoint names).
            clip_scale: CLIP guidance of the semantic base's prior (GLIDE): above 0, the prior runs
                unconditionally (`guidance` is not used) and the gradient of the noise-aware code-text
                matcher's similarity to the prompt steers it (checkpoints/code_matcher); 0 = none.
            prompt_reading: semantic base: "nearest" (the default) draws the name of the known emoji the
                prompt is read as when it is read confidently ("a blue car" -> a training emoji's name;
                the parameters' `read_as` names it), "as-typed" draws the prompt itself.
        Returns:
            the first image at 32, 64 and 128 (None past `size`), the final PNGs (with their
            parameters) and the parameters.
        """
        with user_errors():
            size, seed, num = as_int(size, "size"), as_int(seed, "seed"), as_int(num_images, "number of images")
            decoder_steps = as_int(decoder_steps, "decoder steps")
            base_model = base_model or models.default_base(text=True)
            clip_scale = None if clip_scale is None or float(clip_scale) == 0 else float(clip_scale)
            if clip_scale is not None and base_model != "semantic":
                raise ValueError("CLIP guidance steers the semantic base's prior: choose the semantic base")
            decoder_guidance = None if decoder_guidance is None or base_model != "semantic" else float(decoder_guidance)
            models.require([*models.base_needs(base_model, text=True), *sr_names(size),
                            *(["code_matcher"] if clip_scale is not None else [])])
            guidance = 0.0 if clip_scale is not None else float(guidance)   # CLIP guidance alone steers the prior
            base = StageSettings(sampler=sampler, steps=as_int(steps, "steps"), guidance=guidance,
                                 eta=float(eta) if sampler == "ddim" else 0.0,
                                 threshold=float(threshold) if dynamic_thresholding else None,
                                 threshold_max=float(threshold_max))
            sr = tuple(StageSettings(sampler=d.sampler, steps=as_int(s, "SR steps"), guidance=1.0,
                                     threshold=d.threshold, aug_level=as_int(n, "SR noise level"))
                       for d, s, n in zip(SR_STAGE_DEFAULTS, (sr64_steps, sr128_steps), (sr64_noise, sr128_noise)))
            files = RequestFiles()
            base_steps = decoder_steps if base_model == "semantic" else base.steps   # the decoder reports progress
            steps_per_stage = {32: base_steps, 64: sr[0].steps, 128: sr[1].steps}
            result = yield from stream(
                lambda callback: generate(models.set, prompt=prompt or "", negative_prompt=negative_prompt or "",
                                          num=num, seed=seed, size=size, base=base, sr=sr, callback=callback,
                                          base_model=base_model, decoder_steps=decoder_steps,
                                          decoder_guidance=decoder_guidance, clip_scale=clip_scale,
                                          prompt_reading=prompt_reading),
                5, progress, STAGE_LABELS,   # the stage being sampled gets its x0 preview
                lambda info: {list(STAGE_LABELS).index(info["stage"]): files.image(preview(info["x0"]))},
                {r: n for r, n in steps_per_stage.items() if r <= size})
            common.show_note(result.parameters.get("note"))
            images = tensor_to_pil(result.final)
            seeds = result.parameters["seeds"]
            parameters = [{**result.parameters, "seed": s, "command": "generate"} for s in seeds]
            paths = files.results(images, parameters, [f"emoji-{size}px-seed{s}" for s in seeds])
            stages = {r: files.image(tensor_to_pil(x[:1])[0]) for r, x in result.stages.items()}
            yield (*(stages.get(r) for r in STAGE_LABELS), [(p, f"seed {s}") for p, s in zip(paths, seeds)],
                   result.parameters)

    return text_to_image


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab)."""
    start = common.base_sampling(models, text=True)   # the sampler and steps of the base the tab starts with
    encoder = models.text_encoder_name()
    missing_base = (models.unavailable(["text_base", encoder])
                    and models.unavailable(models.base_needs("semantic", text=True)))
    status = models.status_markdown(
        sorted({"text_base", encoder, "prior", "diffae", "sr64", "sr128", "code_matcher"}),
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
            prompt = gr.Textbox("", label="Prompt", placeholder="e.g. woman dancing, dark skin tone", lines=2)
            negative = gr.Textbox("", label="Negative prompt", placeholder="optional: what to avoid")
            with gr.Row():
                guidance = gr.Slider(0, 15, value=start.guidance, step=0.1, label="Guidance scale",
                                     info="1 = no guidance")
                steps = gr.Slider(1, 100, value=start.steps, step=1, precision=0, label="Steps (base)")
            with gr.Row():
                sampler = gr.Dropdown(list(SAMPLERS), value=start.sampler, label="Sampler")
                size = gr.Radio(list(SIZES), value=128, label="Final size")
            with gr.Row(equal_height=True):
                seed, _ = common.seed_input()
                num = gr.Slider(1, 8, value=2, step=1, precision=0, label="Number of images", scale=3)
            thresholding = gr.Checkbox(value=True, label="Thresholding of x0",
                                       info="keeps high guidance from saturating the image; static clipping "
                                            "unless the cap below is raised (Imagen's dynamic thresholding)")
            base_model, decoder_steps, decoder_guidance = common.base_inputs(models, text=True)
            common.follow_base_defaults(models, True, base_model, sampler, steps, guidance)
            clip_scale = gr.Slider(0, MAX_CODE_GUIDE_SCALE, value=0, step=0.5, label="CLIP guidance (semantic base)",
                                   info=f"0 = none; above 0 the unconditional prior is steered by a noise-aware "
                                        f"code-text matcher instead of classifier-free guidance ({CLIP_SCALE:g} "
                                        "is the default of `--clip-scale`)")
            prompt_reading = gr.Radio(PROMPT_READING_CHOICES, value=DEFAULT_PROMPT_READING,
                                      label="Prompt reading (semantic base)",
                                      info="the nearest known emoji: a prompt read confidently as an emoji the "
                                           "models know is drawn from that emoji's name (shown under the results); "
                                           "as typed: the prompt itself")
            with gr.Accordion("Advanced: per-stage settings", open=False):
                gr.Markdown("Guidance applies to the base stage: the super-resolution stages are conditioned "
                            "on the low-resolution image only (as in Cascaded Diffusion Models), so they have "
                            "steps and a noise-augmentation level instead.")
                with gr.Row():
                    threshold = gr.Slider(0.5, 1.0, value=BASE_DEFAULTS.threshold, step=0.005,
                                          label="Thresholding percentile (base)")
                    threshold_max = gr.Slider(1.0, 3.0, value=BASE_DEFAULTS.threshold_max, step=0.05,
                                              label="Thresholding cap (base)",
                                              info="1 = static clipping; above 1 = dynamic thresholding")
                    eta = gr.Slider(0, 1, value=0.0, step=0.05, label="DDIM eta (base)", info="0 = deterministic")
                with gr.Row():
                    sr64_steps = gr.Slider(1, 100, value=SR_STAGE_DEFAULTS[0].steps, step=1, precision=0,
                                           label="Steps (64)")
                    sr64_noise = gr.Slider(0, 999, value=SR_DEFAULTS.aug_level, step=1, precision=0,
                                           label="Noise augmentation (64)")
                with gr.Row():
                    sr128_steps = gr.Slider(1, 100, value=SR_STAGE_DEFAULTS[1].steps, step=1, precision=0,
                                            label="Steps (128)")
                    sr128_noise = gr.Slider(0, 999, value=SR_DEFAULTS.aug_level, step=1, precision=0,
                                            label="Noise augmentation (128)")
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

