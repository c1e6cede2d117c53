"""A capability spec (core.capabilities) is the one place its parameters are defined: the
command line's options and the tab's inputs built from it agree on defaults, ranges and
choices, and a value outside a range is refused everywhere with an error naming the parameter."""
import argparse

import gradio as gr
import pytest

from core.bases import BASES, CASCADE_BASES, default_base
from core.capabilities import CAPABILITIES as GENERATION
from core.capabilities import CLASS_CONDITIONAL, TEXT_TO_IMAGE, UPSCALE
from core.cli import spec_values
from core.cli.main import build_parser, main
from core.translate import PALETTE_DEFAULTS, SDEDIT_STRENGTHS, SEMANTIC_STEPS, TRANSLATE_DEFAULTS, default_method
from core.translate_capabilities import ILVR, SDEDIT, TRANSLATE_SPECS
from demos import class_conditional, common, image_to_image, super_resolution, text_to_image
from demos.common import MAX_SEED, Models

CAPABILITIES = {**GENERATION, **TRANSLATE_SPECS}

TABS = {"text_to_image": text_to_image, "class_conditional": class_conditional, "upscale": super_resolution,
        **dict.fromkeys(TRANSLATE_SPECS, image_to_image)}
COMMANDS = {"text_to_image": "generate", "class_conditional": "generate", "upscale": "upscale",
            **dict.fromkeys(TRANSLATE_SPECS, "translate")}
MINIMAL = {"text_to_image": ["--prompt", "x"], "class_conditional": ["--label", "cat-face"],
           "upscale": ["--image", "x.png"], **{task: ["--task", task, "--image", "x.png"] for task in TRANSLATE_SPECS}}
UPLOADS = ("prompt", "label", "image", "editor", "mask")   # given on every command line, or the tab's own


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    return Models.load(tiny_checkpoints, "cpu")


def command_parser(command: str = "generate") -> argparse.ArgumentParser:
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def generate_parser() -> argparse.ArgumentParser:
    return command_parser("generate")


def tab_inputs(models, name: str) -> list:
    """The input components of the tab's endpoint `name`, in the endpoint's order."""
    with gr.Blocks() as demo:
        TABS[name].build(models)
    fn = next(f for f in demo.fns.values() if f.api_name == name)
    return fn.inputs


def cli_values(name: str, args: list[str]) -> dict:
    """What the command line resolves for a capability: the options given, the spec's defaults."""
    spec = CAPABILITIES[name]
    parsed = command_parser(COMMANDS[name]).parse_args([*MINIMAL[name], *args, "--out", "o"])
    given = spec_values(parsed, spec.params)
    if name == "class_conditional":
        given["guidance_method"] = "classifier" if parsed.classifier_scale is not None else "cfg"
    return spec.check(given)


def cli_refusal(name: str, args: list[str], capsys) -> str:
    """The error the command line gives for `args`: the parser's (a range it checks, exit status 2)
    or the spec's (ValueError, which `python -m core` prints as one line); '' when none."""
    try:
        cli_values(name, args)
    except SystemExit:
        return capsys.readouterr().err
    except ValueError as e:
        return str(e)
    return ""


@pytest.mark.parametrize("name", ["text_to_image", "class_conditional", "upscale", *TRANSLATE_SPECS])
def test_the_command_line_and_the_tab_agree(models, name, capsys):
    spec = CAPABILITIES[name]
    inputs = tab_inputs(models, name)
    shown = [p for p in spec.params if p.ui]
    assert len(inputs) == len(shown)
    actions = {a.dest: a for a in command_parser(COMMANDS[name])._actions}
    resolved = cli_values(name, [])
    for param, component in zip(shown, inputs):
        if param.name in UPLOADS:
            continue   # given on every command line; the tab lists the checkpoint's classes; uploads
        assert component.label == param.label, param.name
        if param.default is not None:
            assert component.value == param.default, param.name
        if isinstance(component, gr.Slider):
            assert (component.minimum, component.maximum) == (param.low, param.high), param.name
        elif isinstance(component, gr.Number):   # the seed box
            assert (component.minimum, component.maximum) == (param.low, param.high) == (0, MAX_SEED)
        elif isinstance(component, (gr.Radio, gr.Dropdown)):
            assert [c[1] for c in component.choices] == list(param.choices), param.name
        action = actions.get(param.name)
        if action is None:
            assert param.option is None, param.name
            continue
        if param.default is not None and param.name != "guidance_method":
            assert resolved[param.name] == component.value, param.name   # the same default on both
        if param.choices is not None and name in TRANSLATE_SPECS:   # one option for every task: the task's refuses
            for other in set(action.choices) - set(param.choices):   # the others, naming the parameter
                assert f"{param.name} must be one of" in cli_refusal(name, [param.option, str(other)], capsys)
            assert set(param.choices) <= set(action.choices), param.name
        elif param.choices is not None:
            assert list(action.choices) == list(param.choices), param.name
        if param.low is not None:   # the ends of the range are taken, one step past them refused
            step = 1 if param.type is int else 0.01
            for end in (param.low, param.high):
                assert cli_values(name, [param.option, str(end)])[param.name] == end, param.name
            for outside in (param.low - step, param.high + step):
                refusal = cli_refusal(name, [param.option, str(outside)], capsys)
                assert f"{param.name} {outside:.12g} is not from" in refusal, refusal
    if name == "upscale":
        assert inputs[shown.index(UPSCALE["factor"])].value == UPSCALE["factor"].start == 4
        return
    start = {p.name: c.value for p, c in zip(shown, inputs)}
    if name in TRANSLATE_SPECS:   # what translate decides at run time, the form starts at (its default method's)
        method = start.get("method")
        assert method in (None, default_method(models.set, name))
        steps = {"sdedit": TRANSLATE_DEFAULTS.steps, "ilvr": ILVR["steps"].start}.get(name) or \
            (SEMANTIC_STEPS if method == "diffae" else PALETTE_DEFAULTS.steps)
        assert start["steps"] == steps
        if name == "sdedit":
            assert start["strength"] == SDEDIT_STRENGTHS[method] and start["guidance"] == SDEDIT["guidance"].start
        return
    # the inputs decided at run time start at the defaults of the base the tab starts with
    base = BASES[models.default_base(spec.text)].defaults(models.set, spec.text)
    assert (start["sampler"], start["steps"], start["guidance"]) == (base.sampler, base.steps, base.guidance)
    assert start["base_model"] == default_base(models.names, spec.text) in CASCADE_BASES


def test_a_value_out_of_range_is_refused_naming_the_parameter(models, capsys):
    with pytest.raises(ValueError, match="steps 101 is not from 1 to 100"):
        TEXT_TO_IMAGE.check({"prompt": "x", "steps": 101})
    with pytest.raises(ValueError, match="num_images 17 is not from 1 to 16"):
        CLASS_CONDITIONAL.check({"label": "cat-face", "num_images": 17})
    with pytest.raises(ValueError, match="base_model must be one of semantic, pixel; got 'deepfloyd'"):
        TEXT_TO_IMAGE.check({"prompt": "x", "base_model": "deepfloyd"})
    with pytest.raises(ValueError, match="seed is empty"):
        TEXT_TO_IMAGE.check({"prompt": "x", "seed": None})
    with pytest.raises(SystemExit):
        generate_parser().parse_args(["--prompt", "x", "--steps", "0", "--out", "o"])
    assert "argument --steps: steps 0 is not from 1 to 100" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", "--num", "9", "--out", "o"]) == 2   # 1 to 16 for a label
    assert capsys.readouterr().err == "error: num_images 9 is not from 1 to 8\n"
    # the tab's handler checks the same, as a named error without a traceback
    with pytest.raises(gr.Error, match="Cannot do that: decoder_steps 0 is not from 1 to 100"):
        list(text_to_image.make_fn(models)("thumbs up", size=32, num_images=1, decoder_steps=0))
    with pytest.raises(gr.Error, match="Cannot do that: classifier_scale 101 is not from 0 to 100"):
        list(class_conditional.make_fns(models)[0]("cat-face", guidance_method="classifier", classifier_scale=101))
    # image to image: the translate command and the tab's handlers check the task's spec
    with pytest.raises(ValueError, match="strength 1.5 is not from 0 to 1"):
        SDEDIT.check({"strength": 1.5})
    with pytest.raises(ValueError, match="method must be one of diffae, text; got 'palette'"):
        SDEDIT.check({"method": "palette"})
    with pytest.raises(SystemExit):
        command_parser("translate").parse_args(["--task", "ilvr", "--image", "x.png", "--steps", "0", "--out", "o"])
    assert "argument --steps: steps 0 is not from 1 to 100" in capsys.readouterr().err
    assert main(["translate", "--task", "inpaint", "--image", "x.png", "--mask", "m.png", "--method", "text",
                 "--out", "o.png"]) == 2
    assert capsys.readouterr().err == "error: method must be one of palette, repaint, diffae; got 'text'\n"
    example = common.example_images()[0]
    sdedit, colorize, inpaint, ilvr = image_to_image.make_fns(models)
    with pytest.raises(gr.Error, match="Cannot do that: steps 0 is not from 1 to 100"):
        list(sdedit(example, "", 0.5, 3.0, "ddim", 0, 0, 32))
    with pytest.raises(gr.Error, match="Cannot do that: seed -1 is not from 0 to 4294967295"):
        list(colorize(example, "ddim", 2, -1))
    with pytest.raises(gr.Error, match="Cannot do that: size must be one of 32, 64, 128; got 48"):
        list(ilvr(example, 4, 0, "text_base", "", "", 48, 2))


def test_the_required_models_come_from_the_bases():
    assert TEXT_TO_IMAGE.needs({"base_model": "pixel", "size": 32}, "t5") == ["text_base", "t5"]
    assert TEXT_TO_IMAGE.needs({"base_model": "semantic", "size": 128, "clip_scale": 5.0}) == \
        ["prior", "diffae", "clip", "sr64", "sr128", "code_matcher"]
    assert CLASS_CONDITIONAL.needs({"base_model": "pixel", "size": 64, "guidance_method": "classifier"}) == \
        ["class_base", "noisy_classifier", "sr64"]
    # no base named: the default among the models there are
    assert CLASS_CONDITIONAL.needs({"size": 32}, available=["prior", "diffae"]) == ["prior", "diffae"]
    assert CLASS_CONDITIONAL.needs({"size": 32}, available=["class_base"]) == ["class_base"]
