"""Checkpoint folders: exact round trip, clear errors, and the Hub path through a local cache."""
import json

import pytest
import torch
from safetensors.torch import save_file

from core.models.checkpoints import CheckpointError, model_folder, read_folder, resolve_checkpoints, save_model
from core.models.loading import load_model
from tests.tiny import tiny_model


@pytest.mark.parametrize("kind", ["text_base", "class_base", "sr"])
def test_round_trip_is_exact(tmp_path, kind):
    model = tiny_model(kind)
    # fp16 storage: round the weights to fp16 first so the round trip must be bit exact
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    save_model(model, tmp_path / "m", "# card\n")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    _, tensors = read_folder(tmp_path / "m")
    x = torch.randn(2, 3, model.resolution, model.resolution)
    t = torch.tensor([10.0, 500.0])
    cond = {"class_base": {"labels": torch.tensor([0, 3])},
            "text_base": {"tokens": torch.randn(2, 5, 16), "mask": torch.ones(2, 5, dtype=torch.bool)},
            "sr": {"low_res": torch.randn(2, 3, 64, 64), "aug_t": torch.tensor([0.0, 100.0])}}[kind]
    assert torch.equal(model.eps(x, t, cond), loaded.eps(x, t, cond))


def test_weights_are_fp16_safetensors(tmp_path):
    save_model(tiny_model("class_base"), tmp_path / "m", "card")
    from safetensors import safe_open
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float16}


def test_missing_files_are_named(tmp_path):
    save_model(tiny_model("class_base"), tmp_path / "m", "card")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_model(tmp_path / "m")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_wrong_shape_and_unknown_kind(tmp_path):
    save_model(tiny_model("class_base"), tmp_path / "m", "card")
    folder = tmp_path / "m"
    _, tensors = read_folder(folder)
    key = "net.conv_in.weight"
    tensors[key] = torch.zeros(1, 2, 3, 3)
    save_file({k: v.half() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"wrong shapes.*conv_in"):
        load_model(folder)
    config = json.loads((folder / "config.json").read_text())
    config["kind"] = "teleporter"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown model kind 'teleporter'"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(folder)


def test_corrupt_weights(tmp_path):
    save_model(tiny_model("class_base"), tmp_path / "m", "card")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_model(tmp_path / "m")


def test_save_replaces_atomically(tmp_path):
    a, b = tiny_model("class_base", seed=1), tiny_model("class_base", seed=2)
    save_model(a, tmp_path / "m", "a")
    save_model(b, tmp_path / "m", "b")
    assert (tmp_path / "m" / "README.md").read_text() == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folders left


def test_hub_repo_id_from_local_cache(tmp_path, monkeypatch):
    """A repo placed in the Hub cache layout loads by id with HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--emoji--hub-checkpoints" / "snapshots" / ("a" * 40)
    save_model(tiny_model("class_base"), snapshot / "class_base", "card")
    (cache / "models--emoji--hub-checkpoints" / "refs").mkdir(parents=True)
    (cache / "models--emoji--hub-checkpoints" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    root = resolve_checkpoints("emoji/hub-checkpoints")
    assert root == snapshot
    model = load_model(model_folder("emoji/hub-checkpoints", "class_base"))
    assert model.kind == "class_base"
    with pytest.raises(CheckpointError, match="not in the local Hub cache"):
        resolve_checkpoints("emoji/not-there")
    with pytest.raises(CheckpointError, match="is missing"):
        model_folder("emoji/hub-checkpoints", "sr64")


def test_not_a_folder_nor_repo_id(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        resolve_checkpoints(str(tmp_path / "a" / "b" / "c"))


def test_the_small_models_configs_share_one_json_form():
    """PriorConfig, NoisyClassifierConfig and CodeGuideConfig read and write config.json through
    one base (JsonConfig): plain JSON out (tuples as lists, containers copied), the same config
    back, and a key the config has no field for named."""
    from core.models.code_guidance import CodeGuideConfig
    from core.models.noisy_classifier import NoisyClassifierConfig
    from core.models.prior import PriorConfig
    configs = [PriorConfig(classes=["a", "b"], sampling={"steps": 5}), NoisyClassifierConfig(classes=["a", "b"]),
               CodeGuideConfig(kind="code_matcher")]
    for config in configs:
        d = config.to_dict()
        assert json.loads(json.dumps(d)) == d and type(config).from_dict(d) == config
        d["schedule"]["T"] = 7   # a copy: the config keeps its own
        assert config.schedule["T"] == 1000
    assert configs[1].to_dict()["channels"] == list(configs[1].channels)
    with pytest.raises(ValueError, match=r"unknown prior config keys: \['colour'\]"):
        PriorConfig.from_dict({"kind": "prior", "colour": 1})
    with pytest.raises(ValueError, match=r"unknown config keys: \['colour'\]"):
        NoisyClassifierConfig.from_dict({"classes": ["a"], "colour": 1})
