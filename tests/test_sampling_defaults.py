"""Each checkpoint's sampling defaults are data: its config.json `sampling` is what the CLI, the
Python functions and the tabs start from (`core.models.sampling.sampling_default`,
`core.pipeline.model_defaults`), and the code's constants are only the fallback of a model whose
config names none. The committed checkpoints name the values the code used before they were moved
there, so nothing a user sees changed."""
import json
from dataclasses import replace

import pytest

from core.cascade import base_defaults, sr_defaults
from core.models.checkpoints import DEFAULT_CHECKPOINTS
from core.models.prior import FALLBACK_SAMPLING, PriorConfig, prior_sampling
from core.models.sampling import sampling_default
from core.pipeline import BASE_DEFAULTS, SR_STAGE_DEFAULTS, StageSettings, model_defaults
from core.semantic import DECODER_SAMPLER, DECODER_STEPS, PRIOR_DEFAULTS, decoder_sampling
from core.translate import PALETTE_DEFAULTS
from tests.tiny import tiny_model, tiny_prior

committed = pytest.mark.skipif(not (DEFAULT_CHECKPOINTS / "prior").is_dir(), reason="no committed checkpoints")


def sampling(name: str) -> dict:
    return json.loads((DEFAULT_CHECKPOINTS / name / "config.json").read_text()).get("sampling", {})


@committed
@pytest.mark.parametrize("name,before", [
    ("text_base", BASE_DEFAULTS), ("class_base", BASE_DEFAULTS), ("sr64", SR_STAGE_DEFAULTS[0]),
    ("sr128", SR_STAGE_DEFAULTS[1]), ("palette", PALETTE_DEFAULTS), ("prior", PRIOR_DEFAULTS)])
def test_committed_configs_name_the_defaults_the_code_used(name, before):
    measured = sampling(name)
    assert {"sampler", "steps", "guidance"} <= set(measured)
    # the guidance of the pixel bases was already their config's (the scale their cards measured)
    want = before if name not in ("text_base", "class_base") else replace(before, guidance=measured["guidance"])
    assert replace(StageSettings(), **measured) == replace(StageSettings(), **{k: getattr(want, k) for k in measured})


def test_a_config_sampling_is_what_every_reader_starts_from():
    model = tiny_model("sr")
    assert model_defaults(model, SR_STAGE_DEFAULTS[0]) == SR_STAGE_DEFAULTS[0]   # names none: the fallback
    model.config.sampling = {"sampler": "heun", "steps": 3, "aug_level": 120}
    assert model_defaults(model, SR_STAGE_DEFAULTS[0]) == replace(SR_STAGE_DEFAULTS[0], sampler="heun", steps=3,
                                                                  aug_level=120)
    assert sampling_default(model, "steps", 8) == 3 and sampling_default(model, "eta", 0.5) == 0.5
    assert sampling_default(None, "steps", 8) == 8
    model.config.sampling = {"steps": 7}
    assert decoder_sampling(model, "steps") == 7 and decoder_sampling(model, "sampler") == DECODER_SAMPLER
    model.config.sampling = {}
    assert decoder_sampling(model, "steps") == DECODER_STEPS


def test_the_prior_samples_with_its_config_defaults():
    prior = tiny_prior()
    assert [prior_sampling(prior, k) for k in ("sampler", "steps", "guidance")] == \
        [FALLBACK_SAMPLING[k] for k in ("sampler", "steps", "guidance")]
    prior.config.sampling = {"steps": 4, "guidance": 2.0}
    assert prior_sampling(prior, "steps") == 4 and prior_sampling(prior, "guidance") == 2.0
    assert PriorConfig.from_dict(prior.config.to_dict()).sampling == {"steps": 4, "guidance": 2.0}


def test_the_cascade_reads_the_loaded_checkpoints(tiny_checkpoints):
    from core.models.modelset import ModelSet
    models = ModelSet(tiny_checkpoints, "cpu")
    models.get("sr64").config.sampling = {"steps": 5}
    models.get("prior").config.sampling = {"steps": 6}
    assert sr_defaults(models, 64) == (replace(SR_STAGE_DEFAULTS[0], steps=5), SR_STAGE_DEFAULTS[1])
    assert sr_defaults(None) == SR_STAGE_DEFAULTS
    assert base_defaults("semantic", models) == replace(PRIOR_DEFAULTS, steps=6)
    assert base_defaults("semantic") == PRIOR_DEFAULTS
