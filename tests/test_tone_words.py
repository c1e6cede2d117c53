"""A skin tone asked in a prompt: the words found, the offsets fitted from designs drawn both ways,
applied only to designs never drawn with a tone, and carried through the cascade to the decoder."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from core.data.emoji import TONES
from core.models.checkpoints import CheckpointError
from core.tone_words import (
    OFFSET_SCALE,
    TONE_OFFSETS_FILE,
    ToneOffsets,
    app_reading,
    load_tone_offsets,
    prompt_design,
    split_tone,
)


@pytest.mark.parametrize("prompt, rest, tone", [
    ("troll, dark skin tone", "troll", "dark"),
    ("woman dancing: medium-dark skin tone", "woman dancing", "medium-dark"),
    ("dark-skinned skier", "skier", "dark"),
    ("a skier with medium light skin", "a skier", "medium-light"),
    ("Medium-Light Skin Tone zombie", "zombie", "medium-light"),
    ("handshake: light skin tone, dark skin tone", "handshake: light skin tone, dark skin tone", None),
    ("dark skin tone", "dark skin tone", None),
    ("a dark blue car", "a dark blue car", None),
])
def test_split_tone_finds_one_asked_tone(prompt, rest, tone):
    assert split_tone(prompt) == (rest, tone)


def test_prompt_design_is_the_name_without_articles_and_gender():
    assert prompt_design("a man genie") == "genie" and prompt_design("Troll emoji") == "troll"


def _record(name, tone, gender="person"):
    return SimpleNamespace(name=name if tone == "none" else f"{name}: {tone} skin tone", skin_tone=tone, gender=gender)


def _offsets():
    """Two designs drawn in every tone, with codes whose tone part is planted: z = design + tone."""
    g = torch.Generator().manual_seed(0)
    tone_vec = {t: torch.randn(8, generator=g) for t in ("none", *TONES)}
    tone_vec["none"] = torch.zeros(8)
    records, codes = [], []
    for design in ("person running", "person bowing"):
        base = torch.randn(8, generator=g)
        for t in ("none", *TONES):
            records.append(_record(design, t))
            codes.append(base + tone_vec[t])
    records.append(_record("troll", "none"))
    codes.append(torch.randn(8, generator=g))
    return ToneOffsets.fit(torch.stack(codes), records), tone_vec


def test_offsets_are_the_mean_tone_difference_within_a_design():
    offsets, tone_vec = _offsets()
    assert offsets.counts.tolist() == [2] * 5
    for t in TONES:
        assert torch.allclose(offsets.shift(t), tone_vec[t], atol=1e-6)
    assert torch.allclose(offsets.shift("dark", 2.0), 2 * tone_vec["dark"], atol=1e-6)
    assert offsets.toned_designs == {"running", "bowing"}
    with pytest.raises(ValueError, match="skin tone must be one of"):
        offsets.shift("purple")


def test_the_offset_goes_only_to_designs_never_drawn_with_a_tone():
    offsets, tone_vec = _offsets()
    prompt, shift, tone = offsets.apply_to("troll, dark skin tone")
    assert (prompt, tone) == ("troll", "dark") and torch.equal(shift, offsets.shift("dark", OFFSET_SCALE))
    # the prior draws these itself
    assert offsets.apply_to("man running: dark skin tone") == ("man running: dark skin tone", None, None)
    assert offsets.apply_to("a troll") == ("a troll", None, None)
    assert app_reading(None, "troll, dark skin tone") == ("troll, dark skin tone", None, None)


def test_offsets_round_trip_and_a_bad_file_is_named(tmp_path):
    offsets, _ = _offsets()
    offsets.save(tmp_path)
    back = load_tone_offsets(tmp_path)
    assert torch.equal(back.offsets, offsets.offsets) and back.toned_designs == offsets.toned_designs
    assert load_tone_offsets(tmp_path / "none") is None
    (tmp_path / TONE_OFFSETS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=TONE_OFFSETS_FILE):
        load_tone_offsets(tmp_path)


def test_the_cascade_moves_the_code_of_a_tone_asked_on_an_untoned_design(tiny_checkpoints, tmp_path):
    from core.cascade import generate
    from core.models.modelset import ModelSet
    # the prompt as typed: the tiny untrained text encoder reads any prompt as some emoji (the committed
    # one's reading keeps these tones: tests/test_reading.py)
    root = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoints, root)
    dim = ModelSet(root, "cpu").get("diffae").config.semantic_dim
    prompt = "troll, dark skin tone"
    plain = generate(ModelSet(root, "cpu"), prompt=prompt, num=1, size=32, decoder_steps=2, prompt_reading="as-typed")
    assert "tone_offset" not in plain.parameters   # no offsets stored: the prompt as it is

    offsets = ToneOffsets(torch.zeros(5, dim), torch.ones(5, dtype=torch.long), frozenset({"running"}))
    offsets.offsets[TONES.index("dark")] = 3.0
    offsets.save(root / "diffae")
    moved = generate(ModelSet(root, "cpu"), prompt=prompt, num=1, size=32, decoder_steps=2, prompt_reading="as-typed")
    assert moved.parameters["tone_offset"] == "dark"
    assert not torch.allclose(moved.final, plain.final)
    assert moved.parameters["prior_prompt"] == "troll" and "never drawn with a skin tone" in moved.parameters["note"]
    # a design drawn with tones keeps the whole prompt; a tone whose offset is zero draws the design alone
    kept = generate(ModelSet(root, "cpu"), prompt="man running: dark skin tone", num=1, size=32,
                    decoder_steps=2, prompt_reading="as-typed")
    assert "tone_offset" not in kept.parameters
    zero = generate(ModelSet(root, "cpu"), prompt="troll, light skin tone", num=1, size=32, decoder_steps=2,
                    prompt_reading="as-typed")
    design = generate(ModelSet(tiny_checkpoints, "cpu"), prompt="troll", num=1, size=32, decoder_steps=2,
                      prompt_reading="as-typed")
    assert zero.parameters["tone_offset"] == "light" and torch.equal(zero.final, design.final)
