"""h-space editing (core.hspace) with tiny random UNets: the hook, strength 0 = the plain DDIM
inversion + reconstruction, directions pointing from the negatives to the positives (synthetic
labelled images), the file round trip, and clear errors."""
import threading
from types import SimpleNamespace

import pytest
import torch

from core import hspace
from core.diffusion.samplers import ddim_invert, sample_ddim
from core.models.checkpoints import CheckpointError, save_model
from tests.tiny import tiny_model

STEPS = 4


@pytest.fixture(scope="module")
def model():
    return tiny_model("class_base")


def images(n, seed=0, level=0.0):
    """n images around a grey level, with some structure (so h depends on more than the mean)."""
    g = torch.Generator().manual_seed(seed)
    return (level + 0.3 * torch.randn(n, 3, 32, 32, generator=g)).clamp(-1, 1)


def plain_reconstruction(model, x):
    labels = model.null_cond(x.shape[0])

    def eps(x_t, t):
        return model.eps(x_t, t, labels)

    x_T = ddim_invert(eps, x, model.schedule, STEPS)
    return x_T, sample_ddim(eps, x_T, model.schedule, STEPS).clamp(-1, 1)


def test_the_hook_shifts_h_on_this_thread_only(model):
    x, cond = images(2), model.null_cond(1)
    h = hspace.bottleneck(model, x, 300, cond)
    assert h.shape == (2, 16, 16, 16)
    with hspace.mid_block_hook(model, lambda out: out + 1.5):
        assert torch.allclose(hspace.bottleneck(model, x, 300, cond), h + 1.5)
        other = []
        thread = threading.Thread(target=lambda: other.append(hspace.bottleneck(model, x, 300, cond)))
        thread.start()
        thread.join()
        assert torch.equal(other[0], h)     # another request on the shared model is untouched
    assert torch.equal(hspace.bottleneck(model, x, 300, cond), h)   # removed on exit


def test_strength_zero_is_the_plain_inversion_and_reconstruction(model):
    x = images(2, seed=1)
    x_T, reconstruction = plain_reconstruction(model, x)
    direction = torch.randn(16, 16, 16)
    result = hspace.edit(model, model.null_cond(1), x, lambda t: direction, 0.0, steps=STEPS)
    assert torch.allclose(result.x_T, x_T, atol=1e-6)
    assert torch.allclose(result.reconstruction, reconstruction, atol=1e-5)
    assert torch.equal(result.edited, result.reconstruction) and result.edited_steps == 0
    # a zero direction at full strength takes the edit path ([plain; edited] in one batch): same image
    zero = hspace.edit(model, model.null_cond(1), x, lambda t: torch.zeros(16, 16, 16), 3.0, steps=STEPS)
    assert torch.allclose(zero.edited, reconstruction, atol=1e-5)


def test_the_edit_shifts_only_the_early_steps(model):
    x = images(1, seed=2)
    direction = torch.randn(16, 16, 16)
    seen = []

    def record(info):
        seen.append((info["t"], info["shifted"]))

    result = hspace.edit(model, model.null_cond(1), x, lambda t: direction, 2.0, steps=STEPS, interval=0.5,
                         callback=record)
    # the reconstruction's 4 steps, then the edit's: DDIM's leading grid is 750, 500, 250, 0 and
    # t_edit = 0.5 * 999, so h is shifted at t = 750 and 500 only
    assert [t for t, _ in seen] == [750.0, 500.0, 250.0, 0.0] * 2
    assert [t for t, shifted in seen if shifted] == [750.0, 500.0] and result.edited_steps == 2
    plus = hspace.edit(model, model.null_cond(1), x, lambda t: direction, 2.0, steps=STEPS).edited
    minus = hspace.edit(model, model.null_cond(1), x, lambda t: direction, -2.0, steps=STEPS).edited
    assert not torch.allclose(plus, result.reconstruction, atol=1e-3)
    assert not torch.allclose(plus, minus, atol=1e-3)
    everywhere = hspace.edit(model, model.null_cond(1), x, lambda t: direction, 2.0, steps=STEPS, interval=1.0)
    assert everywhere.edited_steps == STEPS


def synthetic_dataset():
    """People emoji whose images are dark for dark skin tones and light for light ones; the labels
    come from the same rule as the DiffAE attributes (core.diffae.attribute_labels)."""
    tones = ["dark", "medium-dark", "light", "medium-light"] * 6
    records = [SimpleNamespace(group="People & Body", skin_tone=tone, gender="person", subgroup="person",
                               name=f"person: {tone} skin tone") for tone in tones]
    level = torch.tensor([-0.6 if t in ("dark", "medium-dark") else 0.6 for t in tones])
    pictures = torch.cat([images(1, seed=i, level=float(v)) for i, v in enumerate(level)])

    class Data:
        def __init__(self):
            self.records = records

        def indices(self, split):
            return torch.arange(len(records))

        def images_at(self, resolution, idx):
            return pictures[idx]

    return Data(), pictures, level < 0


def test_directions_point_from_negatives_to_positives(model):
    data, pictures, dark = synthetic_dataset()
    cond = model.null_cond(1)
    directions = hspace.fit_from_dataset(model, cond, data, anchors=3)
    assert directions.names == ["dark-skin"] and directions.counts == {"dark-skin": [12, 12]}
    assert directions.directions.shape == (1, 3, 16, 16, 16)
    assert directions.times.tolist() == [0.0, 500.0, 999.0]
    # at an anchor: exactly E[h | dark] - E[h | light], with each image's seeded noise
    t = 500.0
    noise = torch.cat([torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(i)) for i in range(24)])
    h = hspace.bottleneck(model, model.schedule.q_sample(pictures, t, noise), t, cond)
    expected = h[dark].double().mean(0) - h[~dark].double().mean(0)
    assert torch.allclose(directions.at("dark-skin", 480.0), expected.float(), atol=1e-5)
    # the sign: fresh dark images project further along it than fresh light ones
    u = directions.at("dark-skin", t).flatten()
    fresh_dark, fresh_light = images(8, seed=100, level=-0.6), images(8, seed=200, level=0.6)
    proj = [hspace.bottleneck(model, model.schedule.q_sample(x, t, torch.randn_like(x)), t, cond).flatten(1) @ u
            for x in (fresh_dark, fresh_light)]
    assert proj[0].mean() > proj[1].mean()
    # and adding it to a light image's h moves that h towards the dark images' mean
    light_h = h[~dark][:1]
    mean_dark = h[dark].mean(0, keepdim=True)
    moved = light_h + directions.at("dark-skin", t)
    assert (moved - mean_dark).norm() < (light_h - mean_dark).norm()


def test_file_round_trip_and_stale_weights(model, tmp_path):
    folder = tmp_path / "class_base"
    save_model(model, folder, "# tiny\n")
    with pytest.raises(CheckpointError, match="no hspace.safetensors.*hspace-directions --model class_base"):
        hspace.HDirections.load(folder)
    data, _, _ = synthetic_dataset()
    directions = hspace.fit_from_dataset(model, model.null_cond(1), data, anchors=2)
    directions.save(folder)
    loaded = hspace.HDirections.load(folder)
    assert loaded.names == directions.names
    assert torch.equal(loaded.directions, directions.directions.half().float())   # stored in fp16
    assert loaded.counts == directions.counts
    save_model(tiny_model("class_base", seed=1), tmp_path / "other", "# other\n")
    (tmp_path / "other" / "model.safetensors").replace(folder / "model.safetensors")   # retrained weights
    with pytest.raises(CheckpointError, match="fitted for other weights"):
        hspace.HDirections.load(folder)


@pytest.mark.parametrize("kwargs, message", [
    (dict(strength=6.0), "strength must be a finite number between -5 and 5"),
    (dict(strength=float("nan")), "strength must be a finite number"),
    (dict(interval=0.0), r"interval .* must be in \(0, 1\]"),
    (dict(interval=1.5), r"interval .* must be in \(0, 1\]"),
    (dict(images=torch.zeros(1, 3, 16, 16)), r"images must be \[B, 3, 32, 32\]"),
    (dict(images="picture.png"), r"images must be \[B, 3, 32, 32\]"),
])
def test_bad_inputs_are_clear_errors(model, kwargs, message):
    args = dict(images=images(1), strength=1.0, interval=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        hspace.edit(model, model.null_cond(1), args["images"], lambda t: torch.zeros(16, 16, 16), args["strength"],
                    steps=STEPS, interval=args["interval"])


def test_wrong_model_kind_and_unknown_attribute(model):
    sr = tiny_model("sr", resolution=64, low_resolution=32)
    with pytest.raises(ValueError, match="h-space needs a text_base or class_base model"):
        hspace.bottleneck(sr, torch.zeros(1, 3, 64, 64), 10, {})
    data, _, _ = synthetic_dataset()
    directions = hspace.fit_from_dataset(model, model.null_cond(1), data, anchors=2)
    with pytest.raises(ValueError, match="unknown attribute 'wings'; valid attributes: dark-skin"):
        directions.at("wings", 10)


@pytest.mark.parametrize("name", ["text_base", "class_base"])
def test_committed_directions_match_their_weights(name):
    """A retrained base model needs its h-space directions refitted: `load` refuses stale ones."""
    from core.models.checkpoints import DEFAULT_CHECKPOINTS
    folder = DEFAULT_CHECKPOINTS / name
    if not (folder / hspace.DIRECTIONS_FILE).is_file():
        pytest.skip(f"no committed {name} h-space directions")
    directions = hspace.HDirections.load(folder)   # raises, naming the refit command, when stale
    assert directions.names == ["dark-skin", "woman", "smiling"]
    assert torch.isfinite(directions.directions).all() and directions.directions.abs().amax() > 0
