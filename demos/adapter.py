"""A tab from a capability spec (`core.capabilities`): its inputs built from the spec's parameters
(`slider`, `choice`, `checkbox`, `textbox`: range, default, label and help as the command line
has them) and its Gradio handler (`handler`), which does what every generation tab repeats: the
arguments checked against the spec (a whole number, a range, a choice: a named error), the models
the call needs (`Models.require`), the core function on a job that streams its progress and
previews (`demos.jobs.stream`), core's note as a warning, the result PNGs, and core's refusals
as a gr.Error without a traceback (`demos.errors.user_errors`)."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import gradio as gr

from core.capabilities import Capability, Param, planned_steps
from core.diffae import fresh_noise_guidance
from core.images import tensor_to_pil
from core.pipeline import CascadeResult
from core.semantic import DECODER_SAMPLER, decoder_sampling
from demos.errors import show_note, user_errors
from demos.jobs import stream
from demos.models import BASE_CHOICES, Models
from demos.outputs import RequestFiles


def _info(param: Param, info: str | None) -> str | None:
    return param.help if info is None else (info or None)


def slider(param: Param, value=None, info: str | None = None, **kwargs) -> gr.Slider:
    """A slider over the parameter's range, at `value` (default: its default, else its `start`)."""
    value = _start(param) if value is None else value
    return gr.Slider(param.low, param.high, value=value, step=param.step, label=param.label,
                     info=_info(param, info), **({"precision": 0} if param.type is int else {}), **kwargs)


def choice(param: Param, value=None, labels: Mapping | None = None, radio: bool = False, info: str | None = None,
           **kwargs) -> gr.Dropdown | gr.Radio:
    """A dropdown (or radio) of the parameter's choices, each shown by its `labels` entry if any."""
    options = [(labels.get(c, c), c) for c in param.choices] if labels else list(param.choices)
    value = _start(param) if value is None else value
    widget = gr.Radio if radio else gr.Dropdown
    return widget(options, value=value, label=param.label, info=_info(param, info), **kwargs)


def checkbox(param: Param, info: str | None = None, **kwargs) -> gr.Checkbox:
    return gr.Checkbox(value=param.default, label=param.label, info=_info(param, info), **kwargs)


def textbox(param: Param, **kwargs) -> gr.Textbox:
    return gr.Textbox(param.default, label=param.label, **kwargs)


def base_inputs(spec: Capability, models: Models) -> tuple[gr.Radio, gr.Slider, gr.Slider]:
    """The base's choice (`core.bases`), starting at the default base of the models that loaded, and
    the DiffAE decoder's steps and guidance (the semantic base's), starting at its checkpoint's."""
    decoder = None if models.unavailable(["diffae"]) else models.set.get("diffae")
    base_model = choice(spec["base_model"], models.default_base(spec.text), radio=True,
                        labels={name: label for label, name in BASE_CHOICES.items()},
                        info="semantic: a diffusion prior picks DiffAE's semantic code, its decoder draws it "
                             "(DALL-E 2's two stages); pixel: one UNet draws the pixels")
    decoder_steps = slider(spec["decoder_steps"], None if decoder is None else decoder_sampling(decoder, "steps"),
                           info=f"{DECODER_SAMPLER} steps of the DiffAE decoder; 'Steps' and 'Sampler' are the "
                                "prior's")
    decoder_guidance = slider(spec["decoder_guidance"], None if decoder is None else fresh_noise_guidance(decoder),
                              info="classifier-free guidance of the DiffAE decoder on the semantic code (DALL-E "
                                   "2's decoder): above 1 draws the code's own details more firmly; 1 = none")
    return base_model, decoder_steps, decoder_guidance


def _start(param: Param):
    return param.start if param.default is None else param.default


def result_gallery(files: RequestFiles, result: CascadeResult, stem: str) -> list[tuple[str, str]]:
    """The final images as PNGs carrying their parameters (each with its seed), for a gallery."""
    seeds = result.parameters["seeds"]
    parameters = [{**result.parameters, "seed": s, "command": "generate"} for s in seeds]
    paths = files.results(tensor_to_pil(result.final), parameters, [f"{stem}-seed{s}" for s in seeds])
    return [(p, f"seed {s}") for p, s in zip(paths, seeds)]


def _signature(spec: Capability) -> inspect.Signature:
    """The handler's arguments: the spec's parameters the tab shows, in the endpoint's order (the
    API names them so), each with its default, then Gradio's progress."""
    params = [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default)
              for p in spec.params if p.ui]
    progress = inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())
    return inspect.Signature([*params, progress])


def _docstring(spec: Capability, summary: str, returns: str) -> str:
    """The handler's docstring, which the API page shows: the summary, each argument's help, what it returns."""
    args = "\n".join(f"    {p.name}: {p.help or p.label}" for p in spec.params if p.ui)
    return f"{summary}\n\nArgs:\n{args}\nReturns:\n    {returns}\n"


def handler(spec: Capability, models: Models, *, outputs: int, labels: Mapping[int, str],
            show: Callable[[dict, RequestFiles], dict], finish: Callable[[CascadeResult, dict, RequestFiles], tuple],
            prepare: Callable[[dict], dict] | None = None, summary: str = "", returns: str = "") -> Callable:
    """The Gradio handler of `spec` on the app's models: a generator of `outputs` outputs that
    checks its arguments (`Capability.check`; `prepare(values)` first: what the tab's form means
    that the spec does not say, e.g. a value its base does not use), requires the models the call
    needs, runs `spec.run` on a job with one progress bar over the stages (`labels`) and the
    previews `show(info, files)` returns ({output index: value}), and yields `finish(result,
    values, files)`."""
    names = [p.name for p in spec.params if p.ui]

    signature = _signature(spec)

    def run(*args, **kwargs):
        with user_errors():
            bound = signature.bind(*args, **kwargs)   # Gradio passes its progress tracker last
            bound.apply_defaults()
            values = {n: bound.arguments[n] for n in names}
            values["base_model"] = values.get("base_model") or models.default_base(spec.text)
            values = spec.check(prepare(values) if prepare else values)
            models.require(spec.needs(values, models.text_encoder_name(), models.names))
            files = RequestFiles()
            result = yield from stream(lambda callback: spec.run(models.set, values, callback), outputs,
                                       bound.arguments["progress"], labels, lambda info: show(info, files),
                                       planned_steps(models.set, values, spec.text))
            show_note(result.parameters.get("note"))
            yield finish(result, values, files)

    run.__signature__ = signature
    run.__name__ = run.__qualname__ = spec.name
    run.__doc__ = _docstring(spec, summary, returns)
    return run
