"""core.models.unet against diffusers: the same state-dict keys and the same outputs, on tiny seeded
configs of every model kind and on the committed checkpoints; configs it lacks go to diffusers."""
import inspect
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from core.models.checkpoints import read_folder, save_model
from core.models.loading import load_model
from core.models.networks import (
    DiffusionModel,
    ModelConfig,
    image_unet_config,
    text_unet_config,
    unet_backbone,
    upgrade_config,
)
from core.models.unet import IMAGE_DEFAULTS, TEXT_DEFAULTS, UNet, supports, unsupported
from tests.tiny import tiny_diffae, tiny_model

ROOT = Path(__file__).resolve().parent.parent / "checkpoints"


def inputs(kind: str, unet: dict, resolution: int, batch: int = 2, seed: int = 0) -> tuple:
    """(x, t, keyword arguments of the UNet call) for a UNet config of `kind`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, unet["in_channels"], resolution, resolution, generator=g)
    t = torch.tensor([3.0, 700.5])[:batch]
    kw = {}
    if kind == "text_base":
        width = unet["cross_attention_dim"]
        mask = torch.zeros(batch, 7, dtype=torch.bool)
        mask[0, :3], mask[1, :6] = True, True  # padded prompts: the mask must count
        kw = {"encoder_hidden_states": torch.randn(batch, 7, width, generator=g), "encoder_attention_mask": mask}
    kind_of_label = unet.get("class_embed_type")
    if kind_of_label == "timestep":
        kw["class_labels"] = torch.tensor([0.0, 250.0])[:batch]
    elif kind_of_label == "identity":
        kw["class_labels"] = torch.randn(batch, unet["block_out_channels"][0] * 4, generator=g)
    elif unet.get("num_class_embeds"):
        kw["class_labels"] = torch.tensor([1, 0])[:batch]
    return x, t, kw


def diffusers_twin(kind: str, unet: dict, state: dict) -> torch.nn.Module:
    net = (UNet2DConditionModel if kind == "text_base" else UNet2DModel)(**unet).eval()
    net.load_state_dict(state)
    return net


def assert_same_network(kind: str, unet: dict, state: dict, resolution: int) -> None:
    ref = diffusers_twin(kind, unet, state)
    own = UNet(unet, conditional=kind == "text_base").eval()
    assert list(own.state_dict()) == list(ref.state_dict())   # same keys, same order
    own.load_state_dict(state)
    x, t, kw = inputs(kind, unet, resolution)
    with torch.inference_mode():
        expected, got = ref(x, t, **kw).sample, own(x, t, **kw).sample
    assert got.shape == expected.shape
    # the same operations in the same order: equal to the bit on the CPU
    assert torch.equal(got, expected), (got - expected).abs().max()


@pytest.mark.parametrize("kind", ["text_base", "class_base", "sr", "palette", "diffae"])
def test_tiny_configs_match_diffusers(kind):
    model = tiny_diffae() if kind == "diffae" else tiny_model(kind)
    torch.manual_seed(1)
    with torch.no_grad():   # random values everywhere, not diffusers' zero init of some layers
        for p in model.net.parameters():
            p.normal_(0, 0.2)
    state = model.net.state_dict()
    assert_same_network(model.kind, model.config.unet, state, model.resolution)


@pytest.mark.parametrize("change", [
    {"layers_per_block": 2, "attention_levels": 2},
    {"use_linear_projection": True, "transformer_layers_per_block": 2},
    {"resnet_time_scale_shift": "scale_shift", "class_embed_type": "timestep"},
])
def test_more_text_configs_match_diffusers(change):
    change = dict(change)
    unet = text_unet_config(16, (8, 16, 16), cross_attention_dim=12, head_dim=4,
                            attention_levels=change.pop("attention_levels", 1),
                            layers_per_block=change.pop("layers_per_block", 1))
    unet.update(change)
    torch.manual_seed(2)
    ref = UNet2DConditionModel(**unet)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.2)
    assert_same_network("text_base", unet, ref.state_dict(), 16)


def test_odd_sizes_match_diffusers():
    """A size the downsampling does not divide: the up path resizes to the skip connections."""
    unet = text_unet_config(12, (8, 16, 16), cross_attention_dim=12, head_dim=4)
    torch.manual_seed(3)
    ref = UNet2DConditionModel(**unet)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.2)
    assert_same_network("text_base", unet, ref.state_dict(), 10)


@pytest.mark.parametrize("name", ["text_base", "class_base", "sr64", "sr128", "palette", "diffae"])
def test_committed_checkpoints_match_diffusers(name):
    if not (ROOT / name / "config.json").is_file():
        pytest.skip(f"no committed {name}")
    config, state = read_folder(ROOT / name)
    config = upgrade_config(config)
    net_state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    kind = config["kind"]
    if config["conditioner"]["type"] in ("pooled_text_code", "label_code"):
        kind = "diffae"   # a pooled text base or a code class base is the DiffAE decoder's UNet: the same inputs
    assert_same_network(kind, config["backbone"]["config"], net_state, config["resolution"])


def test_load_model_builds_core_unet_and_keeps_the_round_trip(tmp_path):
    model = tiny_model("sr")
    save_model(model, tmp_path / "m", "# card\n")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.net, UNet)
    assert isinstance(load_model(tmp_path / "m", network="diffusers").net, UNet2DModel)
    assert list(loaded.state_dict()) == list(model.state_dict())


def test_unsupported_configs_fall_back_to_diffusers(tmp_path):
    unet = image_unet_config(32, (8, 16), num_class_embeds=4, head_dim=8)
    unet["resnet_time_scale_shift"] = "spatial"   # diffusers' other block type: not in core.models.unet
    with pytest.raises(ValueError, match="resnet_time_scale_shift"):
        UNet(unet, conditional=False)
    assert not supports(False, unet)
    unet["resnet_time_scale_shift"] = "default"
    unet["downsample_type"] = "resnet"
    model = DiffusionModel(ModelConfig(kind="class_base", resolution=32, backbone=unet_backbone(unet),
                                       conditioner={"type": "label_embedding", "classes": ["a", "b", "c"]}))
    save_model(model, tmp_path / "m", "# card\n")
    assert isinstance(load_model(tmp_path / "m").net, UNet2DModel)
    assert unsupported(True, {"addition_embed_type": "text"}) is not None
    assert unsupported(False, {"down_block_types": ["CrossAttnDownBlock2D"], "up_block_types": ["UpBlock2D"],
                               "block_out_channels": [8]}) is not None


@pytest.mark.parametrize("cls,table", [(UNet2DModel, IMAGE_DEFAULTS), (UNet2DConditionModel, TEXT_DEFAULTS)])
def test_default_tables_are_diffusers_defaults(cls, table):
    """A config key left out means diffusers' default; core.models.unet must assume the same one."""
    params = inspect.signature(cls.__init__).parameters
    for key, value in table.items():
        assert key in params, key
        assert params[key].default == value, (key, params[key].default, value)
