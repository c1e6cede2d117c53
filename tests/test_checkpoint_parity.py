"""Every committed checkpoint loads and runs as it did when its fingerprint was written (the
fingerprints of `tests/data/checkpoint_fingerprints.json` were written by the code before models
became backbone + conditioner parts, so this is also the parity test of that change), and configs
of the old flat layout are read through the converter into the same model."""
import json
import math
from dataclasses import replace

import pytest
import torch

from core.models.checkpoints import DEFAULT_CHECKPOINTS, read_folder, save_folder
from core.models.loading import load_model
from core.models.networks import CONFIG_VERSION, DiffusionModel, ModelConfig, upgrade_config
from tests.checkpoint_fingerprints import FILE, all_fingerprints

pytestmark = pytest.mark.skipif(not (DEFAULT_CHECKPOINTS / "diffae").is_dir(), reason="no committed checkpoints")


def test_every_committed_checkpoint_matches_its_fingerprint():
    want = json.loads(FILE.read_text())
    torch.set_num_threads(1)
    got = all_fingerprints()
    assert set(got) == set(want)
    for key in want:
        for stat in ("sum", "abs_sum"):
            assert math.isclose(got[key][stat], want[key][stat], rel_tol=1e-6, abs_tol=1e-6), (key, stat)
        assert got[key]["sample"] == pytest.approx(want[key]["sample"], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("name", ["text_base", "class_base", "sr64", "palette", "diffae"])
def test_a_flat_config_and_its_upgrade_build_the_same_model(name, tmp_path):
    """The committed configs, rewritten into the old flat layout by hand (every kind-specific field
    at the top, the weights under their old names), load into the same model."""
    config, state = read_folder(DEFAULT_CHECKPOINTS / name)
    new = upgrade_config(config)
    assert new["version"] == CONFIG_VERSION and upgrade_config(new) is new
    flat = {"kind": new["kind"], "resolution": new["resolution"], "unet": new["backbone"]["config"],
            "prediction": new["prediction"], "schedule": new["schedule"], "residual_scale": new["residual_scale"],
            **{k: v for k, v in new["conditioner"].items() if k not in ("type", "tasks")},
            "guidance": new["sampling"].get("guidance")}
    if new["conditioner"]["type"] == "pooled_text_code":
        flat["text_conditioning"] = "pooled"
    if new["conditioner"]["type"] == "label_code":
        flat["label_conditioning"] = "code"
    old_names = {k.removeprefix("conditioner."): v for k, v in state.items()}
    # the flat layout's only sampling default was the guidance; the rest came in with `sampling`
    flat_sampling = {k: v for k, v in new["sampling"].items() if k == "guidance"}
    assert upgrade_config(flat) == {**new, "sampling": flat_sampling}
    save_folder(tmp_path / name, flat, old_names, "# card\n")
    a, b = load_model(tmp_path / name), load_model(DEFAULT_CHECKPOINTS / name)
    assert a.config == replace(b.config, sampling=flat_sampling)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_configs_that_cannot_be_read_are_named():
    unet = {"in_channels": 3}
    with pytest.raises(ValueError, match="unknown model kind 'teleporter'"):
        upgrade_config({"kind": "teleporter", "unet": unet})
    with pytest.raises(ValueError, match="unknown config keys: \\['colour'\\]"):
        upgrade_config({"kind": "sr", "unet": unet, "low_resolution": 32, "colour": 1})
    with pytest.raises(ValueError, match="unknown conditioner type 'telepathy'"):
        ModelConfig(kind="sr", resolution=64, backbone={"type": "unet", "config": unet},
                    conditioner={"type": "telepathy"})
    with pytest.raises(ValueError, match="config version 3"):
        ModelConfig.from_dict({"kind": "sr", "resolution": 64, "backbone": {"type": "unet", "config": unet},
                               "conditioner": {"type": "low_res_concat", "low_resolution": 32}, "version": 3})
    with pytest.raises(ValueError, match="needs a cross_attention_unet backbone"):
        DiffusionModel(ModelConfig(kind="text_base", resolution=32, backbone={"type": "unet", "config": unet},
                                   conditioner={"type": "text_tokens", "text_encoder": "clip"}))
