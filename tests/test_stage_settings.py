"""How a stage samples: the step spacing it asks for, inference mode around the network, and
outputs callers may still change in place."""
import pytest
import torch

from core.cascade import generate
from core.diffusion.samplers import STAGE_SPACING
from core.models.modelset import ModelSet
from core.pipeline import (
    BASE_DEFAULTS,
    SR_DEFAULTS,
    SR_STAGE_DEFAULTS,
    StageSettings,
    generate_text,
    stage_spacing,
)


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    return ModelSet(tiny_checkpoints, "cpu")


@pytest.mark.parametrize("sampler,spacing,first", [
    ("dpmpp-2m", None, 999.0), ("dpmpp-2m", "leading", 800.0), ("dpmpp-2m", "trailing", 999.0),
    ("dpmpp-2m", "linspace", 999.0), ("ddim", None, 750.0), ("ddim", "trailing", 999.0), ("heun", None, 750.0)])
def test_spacing_sets_the_grid(models, sampler, spacing, first):
    """Unset, the grid is the sampler's STAGE_SPACING entry: trailing for DPM-Solver++, else leading."""
    seen = []
    settings = StageSettings(sampler=sampler, steps=4, spacing=spacing)
    generate_text(models.get("text_base"), models.text_encoder(), ["cat face"], "", [0], settings,
                  callback=seen.append)
    assert len(seen) == 4 and seen[0]["t"] == first
    assert stage_spacing(settings) == (spacing or STAGE_SPACING.get(sampler, "leading"))


def test_bad_spacing_is_a_clear_error():
    with pytest.raises(ValueError, match="spacing must be one of"):
        StageSettings(spacing="uniform")


def test_networks_run_in_inference_mode_and_outputs_stay_editable(models):
    modes = []
    hook = models.get("text_base").net.register_forward_pre_hook(
        lambda module, inputs: modes.append(torch.is_inference_mode_enabled()))
    try:
        result = generate(models, prompt="cat face", size=64, base=StageSettings(steps=2),
                          sr=(StageSettings(steps=1, guidance=1.0),) * 2, base_model="pixel")
    finally:
        hook.remove()
    assert modes == [True, True]
    x = result.final
    assert not torch.is_inference(x)
    x.mul_(0.5)          # a caller may edit the images in place (an inference tensor would refuse)


def test_cascade_defaults_give_each_sr_stage_its_own_steps(models):
    seen = []
    generate(models, prompt="cat face", callback=seen.append, base_model="pixel")
    calls = {r: sum(1 for info in seen if info["stage"] == r) for r in (32, 64, 128)}
    assert calls == {32: BASE_DEFAULTS.steps, 64: SR_STAGE_DEFAULTS[0].steps, 128: SR_STAGE_DEFAULTS[1].steps}
    assert SR_STAGE_DEFAULTS[0] == SR_DEFAULTS   # `upscale`'s default is the 64 px stage's


@pytest.mark.parametrize("extra,expected", [([], None), (["--sr-steps", "3"], [3, 3])])
def test_cli_sr_steps_default_per_stage_or_one_for_both(tiny_checkpoints, tmp_path, extra, expected):
    from core.cli.main import main
    from core.images import read_parameters
    out = tmp_path / "o"
    assert main(["generate", "--prompt", "cat face", "--steps", "2", *extra, "--checkpoints", str(tiny_checkpoints),
                 "--out", str(out)]) == 0
    sr = read_parameters(out / "000.png")["sr"]
    assert [s["steps"] for s in sr] == (expected or [s.steps for s in SR_STAGE_DEFAULTS])
    assert [s["sampler"] for s in sr] == [s.sampler for s in SR_STAGE_DEFAULTS]
