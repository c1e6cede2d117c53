"""Tab: how diffusion works, on the project's own models: the forward process, samplers at equal
cost, a guidance sweep, classifier against classifier-free guidance, a sampling trajectory,
likelihood in bits per dimension, and h-space editing beside the DiffAE edit. Layout and wiring
only; the work is in core.mechanics, core.evaluation.guidance_comparison, core.diffusion.likelihood and core.hspace.

Run alone: `python app.py --tab how_it_works [app.py flags]`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

from core import diffae, hspace, mechanics
from core.bases import PIXEL_MODELS
from core.diffusion.likelihood import METHODS
from core.diffusion.samplers import SAMPLERS
from core.evaluation import guidance_comparison
from core.images import grid_image, pil_to_tensor, save_png, tensor_to_pil
from core.mechanics import Condition
from core.models.text_encoders import fit_prompts
from demos import common  # first: imports `spaces` before torch on a ZeroGPU Space
from demos.common import Job, Models, RequestFiles, as_int, follow, gpu, image_input, user_errors, wait_for

TITLE = "How it works"
PIXEL_BASE_LABELS = dict(zip(PIXEL_MODELS, ("Text base (prompt)", "Class base (label)")))   # core.bases.PixelBase
HSPACE_ATTRIBUTES = ("dark-skin", "woman", "smiling")   # the DiffAE attributes (core.diffae.ATTRIBUTE_RULES)
DIFFAE_STRENGTH = 1.0   # one class gap, the unit of the h-space strength too
MAX_STEPS = 100
# the columns of each panel's table, shown (empty) before the first run
FORWARD_COLUMNS = ["schedule", "t", "alpha_bar", "log SNR"]
SAMPLER_COLUMNS = ["sampler", "nfe_budget", "steps", "nfe", "seconds_per_image", "clip_score"]
GUIDANCE_COLUMNS = ["guidance", "clip_score", "diversity_clip", "diversity_pixels", "seconds_per_image"]
TRAJECTORY_COLUMNS = ["step", "t"]
LIKELIHOOD_COLUMNS = ["image", "bits/dim", "± std. error"]   # the error with 2 probes or more
COMPARISON_COLUMNS = ["guidance", "scale", "recognisability", "diversity", "diversity_pixels", "seconds_per_image"]


def _numbers(text: str, what: str, kind=float) -> list:
    try:
        values = [kind(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"give at least one value for {what}")
    return values


def _seeds(seed, count) -> list[int]:
    seed, count = as_int(seed, "seed"), as_int(count, "number of samples", 1, mechanics.MAX_SEEDS)
    return [seed + i for i in range(count)]


def _steps(steps) -> int:
    return as_int(steps, "steps", 1, MAX_STEPS)


def reference_images() -> dict[str, str]:
    """Files of the likelihood panel's references: an emoji, a photo (Gradio's own example, when
    installed), uniform noise and 1/f (photo-like) noise at 32x32; written once."""
    refs = {"emoji (cat face)": common.example_images()[0]}
    try:
        from gradio.media import get_image
        refs["photo (cheetah)"] = get_image("cheetah1.jpg")
    except (ImportError, ValueError, OSError):
        pass
    for name, make in (("uniform noise", mechanics.uniform_noise), ("1/f noise (photo-like)", mechanics.pink_noise)):
        # made at the base models' 32x32: resized, noise would be averaged into something else
        path = common.EXAMPLE_DIR / f"{name.split(' (')[0].replace(' ', '-').replace('/', '')}-32px.png"
        if not path.is_file():
            common.EXAMPLE_DIR.mkdir(parents=True, exist_ok=True)
            save_png(tensor_to_pil(make(32, seed=0))[0], path, {"example": name})
        refs[name] = str(path)
    return refs


def _condition(models: Models, model: str, prompt: str, label: str | None) -> Condition:
    """The condition of a sampling panel (the prompt as the text encoder reads it, with a note
    when it was cut)."""
    models.require([model])
    cond = Condition(model=model, prompt=prompt or "", label=label or None)
    if model == "text_base" and not cond.unconditional:   # the prompt the text encoder reads
        prompt, _, note = fit_prompts(models.set.text_encoder(), cond.prompt)
        common.show_note(note)
        cond = dataclasses.replace(cond, prompt=prompt)
    return cond


def _load(path: str | None, size: int) -> torch.Tensor:
    """An uploaded image as a tensor at `size`."""
    if not path:
        raise ValueError("upload an image or pick an example first")
    return pil_to_tensor(common.open_upload(path), size=size)


def _run(work, outputs: int, progress):
    """`result = yield from _run(work, outputs, progress)`: work(report) on a Job, where
    report(text) shows `text` on the progress bar; cancelling the request stops it."""
    job = Job(lambda callback: work(lambda text: callback({"desc": text})))
    return (yield from follow(job, outputs, lambda info: progress(None, desc=info["desc"])))


def _diffae_edit(models: Models, image: str, attribute: str, strength: float, steps: int):
    """The DiffAE edit of the same image and attribute, or why there is none."""
    if "diffae" in models.errors:
        return None, f"No DiffAE edit: the diffae model is unavailable ({models.errors['diffae']})."
    try:
        directions = diffae.Directions.load(models.root / "diffae")
        directions.index(attribute)
    except ValueError as e:
        return None, f"No DiffAE edit: {common.public(str(e))}"
    model = models.get("diffae")
    x = _load(image, model.resolution).to(next(model.parameters()).device)
    return diffae.edit(model, directions, x, attribute, strength, steps), ""


def _make_forward_process(models: Models):
    """The forward process handler, bound to the shared models."""

    @gpu
    def forward_process(image: str, times: str, seed: int):
        """x_t ~ q(x_t | x0) of an image at several t, on the linear and the cosine schedule.

        Args:
            image: any image, taken at 32x32 (the base models' resolution).
            times: comma-separated t between 0 and 999, e.g. "0, 250, 500, 750, 999".
            seed: the seed of the noise (the same noise in every cell).
        Returns:
            the grid (rows: linear, cosine; columns: t), and a table of alpha_bar_t and log SNR at each t.
        """
        with user_errors():
            ts = mechanics.check_times(_numbers(times, "times"))
            rows = mechanics.forward_process(_load(image, 32), ts, as_int(seed, "seed"))
            files = RequestFiles()
            curves = {(r["schedule"], r["t"]): r for r in mechanics.schedule_curves(points=1000)}
            table = pd.DataFrame([{"schedule": s, "t": t, "alpha_bar": round(curves[(s, round(t))]["alpha_bar"], 4),
                                   "log SNR": round(curves[(s, round(t))]["log_snr"], 3)}
                                  for s in ("linear", "cosine") for t in ts], columns=FORWARD_COLUMNS)
            return files.image(grid_image(list(rows))), table
    return forward_process


def _make_samplers(models: Models):
    """The samplers handler, bound to the shared models."""

    @gpu
    def samplers(model: str, prompt: str, label: str | None, sampler_names: list[str], budgets: str, seed: int,
                 num_samples: int, guidance: float, thresholding: bool, progress=gr.Progress()):
        """Every chosen sampler at the same numbers of network evaluations (NFE), on the same seeds.

        Args:
            model: text_base (uses the prompt) or class_base (uses the label).
            prompt: the prompt for text_base.
            label: the class for class_base.
            sampler_names: samplers to compare (ddpm, ddim, euler, heun, euler-maruyama, dpmpp-2m).
            budgets: comma-separated NFE budgets, e.g. "10, 20" (Heun spends 2 per step).
            seed: sample i uses seed + i.
            num_samples: samples per setting.
            guidance: classifier-free guidance scale.
            thresholding: Imagen's dynamic thresholding.
        Returns:
            the grid (a line per sampler: budgets left to right, seeds within each), the table
            (steps, NFE, seconds per image, CLIP score) and the parameters.
        """
        with user_errors():
            models.require(["clip"])
            cond, budgets = _condition(models, model, prompt, label), _numbers(budgets, "NFE budgets", int)
            seeds = _seeds(seed, num_samples)
            result = yield from _run(lambda report: mechanics.compare_samplers(
                models.set, cond, list(sampler_names or []), budgets, seeds, float(guidance), bool(thresholding),
                progress=report), 3, progress)
            files = RequestFiles()
            path = files.results([result.grid()], [result.parameters], ["samplers"])[0]
            yield path, pd.DataFrame(result.rows, columns=SAMPLER_COLUMNS), result.parameters
    return samplers


def _make_guidance_sweep(models: Models):
    """The guidance sweep handler, bound to the shared models."""

    @gpu
    def guidance_sweep(model: str, prompt: str, label: str | None, scales: str, seed: int, num_samples: int,
                       sampler: str, steps: int, thresholding: bool, progress=gr.Progress()):
        """The same seeds at several guidance scales: fidelity (CLIP score) against diversity.

        Args:
            model: text_base (uses the prompt) or class_base (uses the label).
            prompt: the prompt for text_base.
            label: the class for class_base.
            scales: comma-separated guidance scales, e.g. "1, 3, 7.5".
            seed: sample i uses seed + i.
            num_samples: samples per scale (2 or more: diversity compares them).
            sampler: the sampler.
            steps: sampling steps.
            thresholding: Imagen's dynamic thresholding.
        Returns:
            the grid (a line per scale), the table, the fidelity curve, the diversity curve and the parameters.
        """
        with user_errors():
            models.require(["clip"])
            cond, scales, seeds, steps = (_condition(models, model, prompt, label), _numbers(scales, "guidance scales"),
                                          _seeds(seed, num_samples), _steps(steps))
            result = yield from _run(lambda report: mechanics.guidance_sweep(
                models.set, cond, scales, seeds, sampler, steps, bool(thresholding), progress=report), 5, progress)
            files = RequestFiles()
            path = files.results([result.grid()], [result.parameters], ["guidance-sweep"])[0]
            table = pd.DataFrame(result.rows, columns=GUIDANCE_COLUMNS)
            diversity = pd.concat([pd.DataFrame({"guidance": table["guidance"], "distance": table[c], "space": name})
                                   for c, name in (("diversity_clip", "CLIP embedding"),
                                                   ("diversity_pixels", "pixels (RMS)"))])
            yield path, table, table[["guidance", "clip_score"]], diversity, result.parameters
    return guidance_sweep


def _make_compare_guidance(models: Models):
    """The compare guidance handler, bound to the shared models."""

    @gpu
    def compare_guidance(label: str | None, cfg_scales: str, classifier_scales: str, seed: int, num_samples: int,
                         steps: int, clip_scales: str = ", ".join(f"{s:g}" for s in guidance_comparison.CLIP_SCALES),
                         progress=gr.Progress()):
        """The semantic prior unguided and under three guidances, each over a range of scales, on the same
        seeds: classifier-free guidance (on the label, and on names of the label's emoji), classifier
        guidance (the noise-aware classifier of the prior's codes, on the unconditional prior) and CLIP
        guidance (the noise-aware code-text matcher, towards the same names). Recognisability: the share of
        samples the judge (checkpoints/judge) accepts as an emoji of the label; diversity: mean pairwise
        distance of the samples' judge features (also in pixels).

        Args:
            label: the class.
            cfg_scales: comma-separated classifier-free guidance scales, e.g. "1, 3" (1 = the conditional
                prior, 0 = unconditional); used on the label and on the text.
            classifier_scales: comma-separated classifier-guidance scales, e.g. "3, 10" (0 = unconditional).
            seed: sample i uses seed + i.
            num_samples: samples per setting (2 or more: diversity compares them).
            steps: the prior's DDIM steps.
            clip_scales: comma-separated CLIP-guidance scales, e.g. "3, 10" (0 = unconditional).
        Returns:
            the labelled grid (a line per setting), the plot, the table, the parameters and a caption
            saying what the figures show.
        """
        with user_errors():
            models.require(["prior", "diffae", "clip", "code_classifier", "code_matcher"])
            if not label:
                raise ValueError("choose a class label")
            cfg, classifier, clip = (_numbers(cfg_scales, "classifier-free guidance scales"),
                                     _numbers(classifier_scales, "classifier-guidance scales"),
                                     _numbers(clip_scales, "CLIP-guidance scales"))
            seeds, steps = _seeds(seed, num_samples), _steps(steps)
            result = yield from _run(lambda report: guidance_comparison.compare_guidance(
                models.set, [label], cfg, classifier, clip, seeds, steps=steps, progress=report), 5, progress)
            files = RequestFiles()
            stored = {**result.parameters, "rows": result.rows}
            grid, plot = files.results([guidance_comparison.labelled_grid(result, zoom=4),
                                        guidance_comparison.tradeoff_plot(result.rows)], [stored, stored],
                                       ["guidance-comparison", "guidance-comparison-plot"])
            table = pd.DataFrame(result.rows, columns=COMPARISON_COLUMNS)
            caption = (f"{guidance_comparison.summary(result.rows)} ({len(seeds)} samples per setting of "
                       f"{label!r}: a few samples, so each share moves in steps of {1 / len(seeds):.0%}; "
                       "`docs/guidance_prior.md` has the same comparison over 8 labels.)")
            yield grid, plot, table, result.parameters, caption
    return compare_guidance


def _make_trajectory(models: Models):
    """The trajectory handler, bound to the shared models."""

    @gpu
    def trajectory(model: str, prompt: str, label: str | None, seed: int, sampler: str, steps: int,
                   guidance: float, frames: int, progress=gr.Progress()):
        """x_t and the predicted x0 at evenly spaced steps of one sampling run.

        Args:
            model: text_base (uses the prompt) or class_base (uses the label).
            prompt: the prompt for text_base.
            label: the class for class_base.
            seed: the seed.
            sampler: the sampler.
            steps: sampling steps.
            guidance: classifier-free guidance scale.
            frames: how many steps to show (2-16).
        Returns:
            the strip (top: x_t, bottom: predicted x0; the final sample last), the table of steps and t, the parameters.
        """
        with user_errors():
            cond, seed, steps, frames = (_condition(models, model, prompt, label), as_int(seed, "seed"), _steps(steps),
                                         as_int(frames, "frames"))
            progress(None, desc=f"sampling {steps} steps")
            result = yield from wait_for(lambda: mechanics.trajectory(models.set, cond, seed, sampler, steps,
                                                                      float(guidance), frames), 3)
            files = RequestFiles()
            path = files.results([result.strip()], [result.parameters], ["trajectory"])[0]
            table = pd.DataFrame({"step": result.steps + ["final"],
                                  "t": [f"{t:g}" for t in result.times] + ["the sample (no noise left)"]},
                                 columns=TRAJECTORY_COLUMNS)
            yield path, table, result.parameters
    return trajectory


def _make_likelihood(models: Models):
    """The likelihood handler, bound to the shared models."""

    @gpu
    def likelihood(image: str | None, model: str, prompt: str, label: str | None, method: str, steps: int,
                   probes: int, references: bool, progress=gr.Progress()):
        """Bits per dimension of an image under a base model (lower = more likely), optionally beside
        reference images: an emoji, a photo, uniform noise and 1/f noise.

        Args:
            image: any image (taken at 32x32, 8 bits per channel); may be empty when references is on.
            model: text_base or class_base.
            prompt: condition the text base on it ("" = unconditional).
            label: condition the class base on it (none = unconditional).
            method: "ode" (probability-flow ODE, Hutchinson trace) or "vlb" (variational bound).
            steps: ODE steps (2 network evaluations each) or bound terms.
            probes: Hutchinson probes / bound draws per image (more: smaller standard error).
            references: also score the reference images.
        Returns:
            the table (image, bits/dim, standard error) and the parameters.
        """
        with user_errors():
            cond = _condition(models, model, prompt, label)
            resolution = models.get(model).resolution
            named = {Path(image).name: image} if image else {}
            if references:
                named.update(reference_images())
            if not named:
                raise ValueError("upload an image or tick the reference images")
            probes, steps = as_int(probes, "probes"), _steps(steps)
            progress(None, desc=f"{method}: {len(named)} image(s)")
            x = torch.cat([_load(p, resolution) for p in named.values()])
            result = yield from wait_for(lambda: mechanics.likelihood(models.set, cond, x, method, steps, probes), 2)
            rows = [{"image": name, "bits/dim": round(r["bits_per_dim"], 3), "± std. error": round(r["stderr"], 3)}
                    for name, r in zip(named, result.rows())]
            parameters = {"panel": "likelihood", "condition": cond.describe(), "method": result.method,
                          "steps": result.steps, "probes": result.probes, "nfe_per_probe": result.nfe}
            columns = LIKELIHOOD_COLUMNS if probes > 1 else LIKELIHOOD_COLUMNS[:2]   # one probe: no error to show
            yield pd.DataFrame(rows, columns=columns), parameters
    return likelihood


def _make_hspace_edit(models: Models):
    """The hspace edit handler, bound to the shared models."""

    @gpu
    def hspace_edit(image: str, model: str, attribute: str, strength: float, steps: int, interval: float,
                    diffae_strength: float, progress=gr.Progress()):
        """Edit an image in h-space (the UNet bottleneck) of a base model, beside the DiffAE edit.

        Args:
            image: any image, taken at the base model's resolution.
            model: text_base or class_base (run unconditionally).
            attribute: dark-skin, woman or smiling.
            strength: in class-mean differences of h; + towards the attribute, - away; 0 = reconstruction.
            steps: DDIM steps of the inversion and of the reverse run.
            interval: the fraction of the reverse process, from t = T, during which h is shifted.
            diffae_strength: the DiffAE edit's strength, in class gaps of DiffAE's semantic code (-3..3).
        Returns:
            the input, the DDIM reconstruction, the h-space edit, the DiffAE edit (or nothing), a
            note, and the parameters.
        """
        with user_errors():
            models.require([model])
            steps = _steps(steps)
            base = models.get(model)
            x = _load(image, base.resolution)
            diffae_strength = diffae.check_strength(diffae_strength)
            progress(None, desc="inverting and editing, then the DiffAE edit")

            def both():
                edited = mechanics.hspace_edit(models.set, model, x, attribute, strength, steps, float(interval))
                return edited, _diffae_edit(models, image, attribute, diffae_strength, steps)

            result, (d_image, note) = yield from wait_for(both, 6)
            files = RequestFiles()
            params = {"panel": "hspace", "image": Path(image).name, "model": model, "attribute": attribute,
                      "strength": float(strength), "steps": steps, "interval": float(interval),
                      "edited_steps": result.edited_steps, "diffae_strength": diffae_strength}
            edited = files.results(tensor_to_pil(result.edited.cpu()), [params],
                                   [f"{Path(image).stem}-hspace-{attribute}{float(strength):+g}"])[0]
            outputs = [files.image(tensor_to_pil(x)[0]), files.image(tensor_to_pil(result.reconstruction.cpu())[0]),
                       edited, files.image(tensor_to_pil(d_image.cpu())[0]) if d_image is not None else None]
            yield (*outputs, note, params)
    return hspace_edit


def make_fns(models: Models):
    """The tab's functions, bound to the shared models."""
    makers = (_make_forward_process, _make_samplers, _make_guidance_sweep, _make_trajectory, _make_likelihood,
              _make_hspace_edit, _make_compare_guidance)
    return tuple(make(models) for make in makers)


def _hspace_status(models: Models) -> str:
    """A note for the h-space panel about what is missing ('' when both parts can run)."""
    notes = []
    for name in PIXEL_BASE_LABELS:
        if name in models.errors:
            continue
        try:
            hspace.HDirections.load(models.root / name)
        except ValueError as e:  # CheckpointError
            notes.append(f"- {name}: {common.public(str(e))}")
    if "diffae" in models.errors:
        notes.append("- the DiffAE edit shown beside it needs the `diffae` model, which is unavailable (it may not "
                     "be trained yet): only the h-space edit is shown.")
    return ("ℹ️ **Not available here:**\n" + "\n".join(notes)) if notes else ""


def _forward_panel(fn, examples: list[str], pixel: dict) -> None:
    """The forward process: an image noised at several t on both schedules, and the curves."""
    with gr.Tab("Forward process"):
        gr.Markdown("q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I): the image fades into noise. The cosine schedule "
                    "(bottom row) keeps more of the image at mid t than the linear one (top row).")
        with gr.Row():
            with gr.Column(scale=2):
                f_image = image_input(label="Image (taken at 32×32)", sources=["upload", "clipboard"], height=200)
                f_times = gr.Textbox(", ".join(str(t) for t in mechanics.FORWARD_TIMES), label="t values (0-999)")
                f_seed, _ = common.seed_input()
                f_button = gr.Button("Noise it", variant="primary")
                gr.Examples([[p] for p in examples], inputs=[f_image], cache_examples=False)
            with gr.Column(scale=3):
                f_grid = gr.Image(label="x_t (rows: linear, cosine)", **pixel)
                f_table = common.table_output("ᾱ_t and log SNR at these t", FORWARD_COLUMNS)
        curves = pd.DataFrame(mechanics.schedule_curves(points=101))
        with gr.Row():
            gr.LinePlot(curves, x="t", y="alpha_bar", color="schedule", title="ᾱ_t (signal power)", height=260)
            gr.LinePlot(curves, x="t", y="log_snr", color="schedule", title="log SNR_t = log(ᾱ_t / (1 − ᾱ_t))",
                        height=260)
        common.run_on(f_button.click, fn, inputs=[f_image, f_times, f_seed], outputs=[f_grid, f_table],
                      api_name="forward_process")


def _samplers_panel(fn, condition: tuple, labelled: dict) -> None:
    """Samplers at equal cost: each sampler at the same NFE budgets."""
    model, prompt, label = condition
    with gr.Tab("Samplers at equal cost"):
        gr.Markdown("The same seeds through each sampler at the same number of network evaluations (NFE). Heun "
                    "spends two per step, so it gets about half the steps; a guided evaluation runs both halves "
                    "in one batch. CLIP score uses the project's own CLIP: compare rows with each other only.")
        with gr.Row():
            s_samplers = gr.CheckboxGroup(list(SAMPLERS), value=list(SAMPLERS), label="Samplers")
            s_budgets = gr.Textbox(", ".join(map(str, mechanics.NFE_BUDGETS)), label="NFE budgets",
                                   info="comma-separated, e.g. 10, 20")
        with gr.Row(equal_height=True):
            s_seed, _ = common.seed_input()
            s_num = gr.Slider(1, 8, value=2, step=1, precision=0, label="Samples")
            s_guidance = gr.Slider(0, 15, value=3.0, step=0.1, label="Guidance scale")
            s_threshold = gr.Checkbox(True, label="Dynamic thresholding")
        s_button = gr.Button("Compare", variant="primary")
        with gr.Row():
            s_grid = gr.Image(label="A line per sampler (budgets left to right)", **labelled)
            s_table = common.table_output("Cost and quality", SAMPLER_COLUMNS)
        s_params = gr.JSON(label="Parameters", visible=False)
        common.run_on(s_button.click, fn,
                      inputs=[model, prompt, label, s_samplers, s_budgets, s_seed, s_num, s_guidance, s_threshold],
                      outputs=[s_grid, s_table, s_params], api_name="compare_samplers")


def _guidance_panel(fn, condition: tuple, labelled: dict) -> None:
    """The guidance sweep: fidelity against diversity over guidance scales."""
    model, prompt, label = condition
    with gr.Tab("Guidance sweep"):
        gr.Markdown("The same seeds at several guidance scales. The table gives, per scale, the mean CLIP score of "
                    "the samples to the prompt (the project's small CLIP) and their diversity: the mean pairwise "
                    "distance in CLIP space and in pixels. Guidance draws the samples together (the CLIP-space "
                    "distance falls from scale 1 to 3), but on these models the CLIP score does not rise with it: "
                    "for \"cat face\" on the pixel base it falls from 73.5 at scale 1 to 70.8 at 3 and 70.0 at 7.5 "
                    "(`python -m core mechanics guidance --prompt \"cat face\"`), so it does not measure the gain in "
                    "fidelity a person sees; the How it works panel *Classifier vs classifier-free guidance* measures "
                    "that with the judge. High scales saturate colours, which can push the pixel distance back up.")
        with gr.Row(equal_height=True):
            g_scales = gr.Textbox(", ".join(f"{s:g}" for s in mechanics.GUIDANCE_SCALES), label="Guidance scales")
            g_seed, _ = common.seed_input()
            g_num = gr.Slider(2, 8, value=len(mechanics.GUIDANCE_SEEDS), step=1, precision=0, label="Samples")
            g_sampler = gr.Dropdown(list(SAMPLERS), value="ddim", label="Sampler")
            g_steps = gr.Slider(1, MAX_STEPS, value=mechanics.GUIDANCE_STEPS, step=1, precision=0, label="Steps")
            g_threshold = gr.Checkbox(True, label="Dynamic thresholding")
        g_button = gr.Button("Sweep", variant="primary")
        with gr.Row():
            g_grid = gr.Image(label="A line per guidance scale", **labelled)
            g_table = common.table_output("Fidelity and diversity", GUIDANCE_COLUMNS)
        with gr.Row():
            g_fidelity = gr.LinePlot(x="guidance", y="clip_score", title="Fidelity: CLIP score", height=240)
            g_diversity = gr.LinePlot(x="guidance", y="distance", color="space",
                                      title="Diversity: mean pairwise distance", height=240)
        g_params = gr.JSON(label="Parameters", visible=False)
        common.run_on(g_button.click, fn,
                      inputs=[model, prompt, label, g_scales, g_seed, g_num, g_sampler, g_steps, g_threshold],
                      outputs=[g_grid, g_table, g_fidelity, g_diversity, g_params], api_name="guidance_sweep")


def _comparison_panel(fn, label: gr.Dropdown) -> None:
    """Classifier, classifier-free and CLIP guidance of the prior."""
    with gr.Tab("Classifier vs classifier-free guidance"):
        gr.Markdown("One model, the semantic prior (it picks the emoji as a semantic code; the DiffAE decoder draws "
                    "it), steered four ways towards the class chosen above. **Classifier-free guidance** (Ho & "
                    "Salimans 2021) mixes the prior's prediction for the label (or for names of the label's emoji) "
                    "with its unconditional one. **Classifier guidance** (Dhariwal & Nichol 2021) runs the prior "
                    "unconditionally and adds the gradient of log p(label | z_t) from a small classifier trained on "
                    "noisy codes (`code_classifier`). **CLIP guidance** (GLIDE) does the same with the similarity of "
                    "the noisy code to the name's text embedding (`code_matcher`, trained contrastively on noisy "
                    "codes). The grid's rows are labelled with method and scale (32 px samples shown 4x); the first "
                    "row is the unguided prior; the bar under each sample is the judge's verdict (green: "
                    "recognised, red: not; like every judge it misses some emoji a person would name). "
                    "Recognisability: the share of samples the quality evaluation's judge "
                    "(`checkpoints/judge`, trained on real emoji, neither guiding model) accepts as an emoji of the "
                    "label; diversity: mean pairwise distance between the samples in the judge's features. GLIDE "
                    "found classifier-free guidance better than CLIP guidance; the caption under the plot says "
                    "whether that holds here.")
        with gr.Row(equal_height=True):
            c_cfg = gr.Textbox(", ".join(f"{s:g}" for s in guidance_comparison.CFG_SCALES),
                               label="Classifier-free guidance scales",
                               info="1 = the conditional prior, 0 = unconditional")
            c_clf = gr.Textbox(", ".join(f"{s:g}" for s in guidance_comparison.CLASSIFIER_SCALES),
                               label="Classifier-guidance scales", info="0 = unconditional")
            c_clip = gr.Textbox(", ".join(f"{s:g}" for s in guidance_comparison.CLIP_SCALES),
                                label="CLIP-guidance scales", info="0 = unconditional")
            c_seed, _ = common.seed_input()
            c_num = gr.Slider(2, 8, value=3, step=1, precision=0, label="Samples")
            c_steps = gr.Slider(1, MAX_STEPS, value=guidance_comparison.STEPS, step=1, precision=0,
                                label="Prior steps")
        c_button = gr.Button("Compare", variant="primary")
        c_grid = gr.Image(label="A line per setting (method and scale at its left)", format="png", interactive=False,
                          elem_classes=[common.PIXELATED])
        with gr.Row():
            c_plot = gr.Image(label="Recognisability against diversity (each point: one scale)", format="png",
                              interactive=False)
            c_table = common.table_output("Per setting", COMPARISON_COLUMNS)
        c_caption = gr.Markdown()
        c_params = gr.JSON(label="Parameters", visible=False)
        common.run_on(c_button.click, fn, inputs=[label, c_cfg, c_clf, c_seed, c_num, c_steps, c_clip],
                      outputs=[c_grid, c_plot, c_table, c_params, c_caption], api_name="guidance_comparison")


def _trajectory_panel(fn, condition: tuple, labelled: dict) -> None:
    """One sampling run's x_t and predicted x0."""
    model, prompt, label = condition
    with gr.Tab("Trajectory"):
        gr.Markdown("One sampling run: the noisy x_t each step starts from (top) and the clean image the model "
                    "predicts from it (bottom). The prediction settles long before the noise is gone.")
        with gr.Row(equal_height=True):
            t_seed, _ = common.seed_input()
            t_sampler = gr.Dropdown(list(SAMPLERS), value="ddim", label="Sampler")
            t_steps = gr.Slider(2, MAX_STEPS, value=20, step=1, precision=0, label="Steps")
            t_guidance = gr.Slider(0, 15, value=3.0, step=0.1, label="Guidance scale")
            t_frames = gr.Slider(2, 16, value=6, step=1, precision=0, label="Frames")
        t_button = gr.Button("Sample", variant="primary")
        with gr.Row():
            t_strip = gr.Image(label="x_t (top) and predicted x0 (bottom)", **labelled)
            t_table = common.table_output("Steps shown", TRAJECTORY_COLUMNS)
        t_params = gr.JSON(label="Parameters", visible=False)
        common.run_on(t_button.click, fn,
                      inputs=[model, prompt, label, t_seed, t_sampler, t_steps, t_guidance, t_frames],
                      outputs=[t_strip, t_table, t_params], api_name="trajectory")


def _likelihood_panel(fn, condition: tuple, examples: list[str]) -> None:
    """Bits per dimension of an image and of the references."""
    model, prompt, label = condition
    with gr.Tab("Likelihood"):
        gr.Markdown("How many bits per colour value the model needs to encode an 8-bit image (lower = more likely), "
                    "from the probability-flow ODE (Hutchinson trace estimator) or the variational bound (an upper "
                    "bound, looser). Real emoji should score best, noise worst; 8 bits/dim is what storing the "
                    "raw values costs.")
        with gr.Row():
            with gr.Column(scale=2):
                l_image = image_input(label="Image (taken at 32×32)", sources=["upload", "clipboard"], height=200)
                references = [p for p in reference_images().values() if p not in examples]   # the cat is both
                gr.Examples([[p] for p in examples + references], inputs=[l_image], cache_examples=False)
            with gr.Column(scale=3):
                with gr.Row():
                    l_method = gr.Radio(list(METHODS), value="ode", label="Method")
                    l_steps = gr.Slider(2, MAX_STEPS, value=20, step=1, precision=0, label="Steps")
                    l_probes = gr.Slider(1, 8, value=1, step=1, precision=0, label="Probes")
                l_refs = gr.Checkbox(True, label="Also score the references (emoji, photo, uniform noise, 1/f noise)")
                l_button = gr.Button("Score", variant="primary")
                l_table = common.table_output("Bits per dimension", LIKELIHOOD_COLUMNS)
        l_params = gr.JSON(label="Parameters", visible=False)
        common.run_on(l_button.click, fn,
                      inputs=[l_image, model, prompt, label, l_method, l_steps, l_probes, l_refs],
                      outputs=[l_table, l_params], api_name="likelihood")


def _hspace_panel(fn, models: Models, model: gr.Radio, pixel: dict) -> None:
    """h-space editing beside the DiffAE edit."""
    with gr.Tab("h-space editing"):
        note = _hspace_status(models)
        if note:
            gr.Markdown(note)
        gr.Markdown("Kwon et al. (2023) found a semantic space in the UNet's bottleneck. The image is DDIM-inverted "
                    "to x_T; on the way back, during the first part of the reverse process, the bottleneck "
                    "activation h moves along a direction (the mean h of emoji with the attribute minus the mean "
                    "without). Beside it: the DiffAE edit of the same image, which moves a learned semantic code.")
        with gr.Row():
            with gr.Column(scale=2):
                h_image = image_input(label="Image", sources=["upload", "clipboard"], height=200)
                gr.Examples([[p] for p in common.people_first_examples()], inputs=[h_image], cache_examples=False)
                h_attribute = gr.Dropdown(list(HSPACE_ATTRIBUTES), value=HSPACE_ATTRIBUTES[0], label="Attribute")
                h_strength = gr.Slider(-hspace.MAX_STRENGTH, hspace.MAX_STRENGTH, value=1.0, step=0.25,
                                       label="h-space strength", info="class-mean differences; 0 = reconstruction")
                with gr.Row():
                    h_steps = gr.Slider(2, MAX_STEPS, value=hspace.DEFAULT_STEPS, step=1, precision=0,
                                        label="DDIM steps")
                    h_interval = gr.Slider(0.05, 1.0, value=hspace.DEFAULT_INTERVAL, step=0.05, label="Edited fraction",
                                           info="of the reverse process, from t = T")
                    h_diffae = gr.Slider(-diffae.MAX_STRENGTH, diffae.MAX_STRENGTH, value=DIFFAE_STRENGTH, step=0.05,
                                         label="DiffAE strength", info="class gaps of its semantic code")
                h_button = gr.Button("Edit", variant="primary")
            with gr.Column(scale=3):
                with gr.Row():
                    h_input = gr.Image(label="Input", **pixel)
                    h_recon = gr.Image(label="DDIM reconstruction", **pixel)
                with gr.Row():
                    h_edit = gr.Image(label="h-space edit", **pixel)
                    h_diffae_out = gr.Image(label="DiffAE edit", **pixel)
                h_note = gr.Markdown()
        h_params = gr.JSON(label="Parameters", visible=False)
        common.run_on(h_button.click, fn,
                      inputs=[h_image, model, h_attribute, h_strength, h_steps, h_interval, h_diffae],
                      outputs=[h_input, h_recon, h_edit, h_diffae_out, h_note, h_params], api_name="hspace_edit")


def build(models: Models) -> None:
    """The tab's layout and wiring (inside the caller's gr.Tab)."""
    fwd_fn, samplers_fn, guidance_fn, trajectory_fn, likelihood_fn, hspace_fn, compare_fn = make_fns(models)
    status = models.status_markdown(["text_base", "class_base", "clip", "noisy_classifier"],
                                    "Panels that need a missing model show an error; the forward process works.")
    if status:
        gr.Markdown(status)
    gr.Markdown("The mechanics of diffusion, side by side on the same small models: how images are noised, how the "
                "samplers and guidance trade cost and quality, what the model predicts along the way, how likely "
                "it finds an image, and a semantic direction inside the UNet.")
    examples = common.example_images(transparent=False)
    classes = [] if "class_base" in models.errors else models.set.classes()
    pixel = dict(format="png", interactive=False, height=260, elem_classes=[common.PIXELATED, common.STAGE])
    labelled = dict(format="png", interactive=False, elem_classes=[common.PIXELATED, common.TRUE_SIZE])  # own size
    with gr.Accordion("Model and condition (the condition is for the sampling panels and the likelihood; h-space "
                      "editing runs the model unconditionally)", open=True):
        with gr.Row():
            model = gr.Radio([(v, k) for k, v in PIXEL_BASE_LABELS.items()], value=PIXEL_MODELS[0], label="Base model")
            prompt = gr.Textbox("grinning face", label="Prompt (text base)")
            label = gr.Dropdown(common.class_labels(classes), value="face-smiling" if "face-smiling" in classes
                                else (classes[0] if classes else None), label="Class (class base)", filterable=True)

    _forward_panel(fwd_fn, examples, pixel)
    _samplers_panel(samplers_fn, (model, prompt, label), labelled)
    _guidance_panel(guidance_fn, (model, prompt, label), labelled)
    _comparison_panel(compare_fn, label)
    _trajectory_panel(trajectory_fn, (model, prompt, label), labelled)
    _likelihood_panel(likelihood_fn, (model, prompt, label), examples)
    _hspace_panel(hspace_fn, models, model, pixel)

