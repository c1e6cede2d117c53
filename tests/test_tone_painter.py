"""The tone painter (`core.models.tone_painter`): what it learns from, that it trains and resumes as a
registered task, that the cascade repaints a design never drawn with a tone through it, and that the
committed painter darkens skin with the tone and leaves what is not skin alone."""
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.cli.main import main
from core.data.emoji import TONES, load_dataset
from core.models.checkpoints import DEFAULT_CHECKPOINTS, CheckpointError
from core.models.loading import load_model
from core.models.tone_painter import TONE_PAINTER_FOLDER, TonePainter, TonePainterConfig, load_tone_painter
from core.tone_words import ToneOffsets
from core.training.tone_painter import (
    OFFSET_COLUMN,
    PainterBatches,
    TonePainterSettings,
    draft_sets,
    no_skin_indices,
    recolour_skin,
    skin_mask,
    tone_pairs,
    tone_sets,
    train_tone_painter,
)

COMMITTED = DEFAULT_CHECKPOINTS / TONE_PAINTER_FOLDER
TINY = TonePainterSettings(steps=3, batch=8, width=8, warmup=1, draft_share=0.0)


@pytest.fixture(scope="module")
def data():
    return load_dataset()


def test_pairs_are_one_design_and_gender_without_a_tone_and_in_the_tone(data):
    default, toned, tone = tone_pairs(data)
    assert len(default) == len(toned) == len(tone) > 1000
    heldout = set(data.indices("heldout").tolist())
    for d, t, k in zip(default.tolist()[:200], toned.tolist()[:200], tone.tolist()[:200]):
        a, b = data.records[d], data.records[t]
        assert a.skin_tone == "none" and b.skin_tone == TONES[k] and a.gender == b.gender
        assert d not in heldout and t not in heldout
    woman = data.index_of("woman dancing")
    dark = data.index_of("woman dancing: dark skin tone")
    assert any(d == woman and t == dark for d, t in zip(default.tolist(), toned.tolist()))
    # the designs Unicode draws without a tone are never a pair: they are what the painter is measured on
    troll = data.index_of("troll")
    assert troll not in default.tolist()
    assert all(data.records[i].group not in ("People & Body", "Smileys & Emotion")
               for i in no_skin_indices(data).tolist())


def test_skin_mask_and_recolouring_touch_only_the_skin():
    default = torch.full((2, 3, 32, 32), -1.0)
    default[:, :, 8:16, 8:16] = torch.tensor([0.9, 0.6, -0.6])[:, None, None]   # a yellow patch
    toned = default.clone()
    toned[:, :, 8:16, 8:16] = torch.tensor([-0.2, -0.5, -0.7])[:, None, None]   # the same patch, brown
    mask = skin_mask(default, toned)
    assert mask[:, :, 8:16, 8:16].eq(1).all() and mask.sum() == 2 * 64
    recoloured = recolour_skin(default, mask, torch.Generator().manual_seed(0))
    assert torch.equal(recoloured * (1 - mask), default * (1 - mask))   # outside the skin: the same pixels
    assert not torch.allclose(recoloured[:, :, 8:16, 8:16], default[:, :, 8:16, 8:16], atol=0.05)
    again = recolour_skin(default, mask, torch.Generator().manual_seed(0))
    assert torch.equal(recoloured, again)


def test_sets_hold_a_design_and_gender_by_tone(data):
    sets = tone_sets(data)
    assert sets.shape[1] == 1 + len(TONES) and len(sets) > 200
    for row in sets[:50].tolist():
        default = data.records[row[0]]
        assert default.skin_tone == "none"
        for k, i in enumerate(row[1:]):
            if i >= 0:
                assert data.records[i].skin_tone == TONES[k] and data.records[i].gender == default.gender
    # every pair of tone_pairs is a (default, tone) of one set
    assert int((sets[:, 1:] >= 0).sum()) == len(tone_pairs(data)[0])


def test_batches_hold_pairs_and_unchanged_no_skin_emoji(data):
    settings = TonePainterSettings(batch=16, identity_p=0.25, soften_p=0.0, draft_share=0.0, recolour_p=0.0)
    batches = PainterBatches(data, settings)
    x, tone, target, mask = batches()
    assert x.shape == target.shape == (16, 3, 32, 32) and mask.shape == (16, 1, 32, 32) and tone.shape == (16,)
    assert torch.equal(x[12:], target[12:]) and mask[12:].eq(0).all()   # no skin: the target is the input
    assert mask[:12].sum() > 0 and int(tone.max()) < len(TONES)
    # the inputs: the defaults (retone_p 0) or the same design in one of its tones (retone_p 1)
    images, sets = data.images_at(32), tone_sets(data)
    for retone, columns in ((0.0, [0]), (1.0, range(1, 1 + len(TONES)))):
        x, tone, target, _ = PainterBatches(data, replace(settings, retone_p=retone))()
        for k in range(12):
            row = next(r for r in sets.tolist() if any(torch.equal(target[k], images[i]) or torch.equal(
                target[k], images[i].flip(-1)) for i in r[1:] if i >= 0))
            assert torch.equal(target[k], images[row[1 + int(tone[k])]]) or \
                torch.equal(target[k], images[row[1 + int(tone[k])]].flip(-1))
            assert any(torch.equal(x[k], images[row[c]]) or torch.equal(x[k], images[row[c]].flip(-1))
                       for c in columns if row[c] >= 0)


def test_drafts_are_a_designs_codes_decoded_from_the_same_noise(data, tiny_checkpoints):
    from core.diffae import semantic_code
    from core.semantic import render
    decoder = load_model(tiny_checkpoints / "diffae")
    codes = semantic_code(decoder, data.images_at(32, data.indices("train"))).cpu()
    offsets = ToneOffsets.fit(codes, [data.records[i] for i in data.indices("train").tolist()], data.records)
    sets, drafts = draft_sets(decoder, data, offsets, seed=5, n=2)
    assert torch.equal(sets, tone_sets(data)[:2]) and drafts.shape == (2, OFFSET_COLUMN + len(TONES), 3, 32, 32)
    row = sets[1].tolist()   # set 1: seed 6 for every draft of it
    toned = [c for c in range(1, OFFSET_COLUMN) if row[c] >= 0]
    z = semantic_code(decoder, data.images_at(32, [row[0]] + [row[c] for c in toned])).cpu()
    torch.testing.assert_close(drafts[1, [0] + toned], render(decoder, z, [6] * len(z)))
    dark = OFFSET_COLUMN + TONES.index("dark")   # the default's code moved by the dark tone's offset
    torch.testing.assert_close(drafts[1, dark], render(decoder, z[:1] + offsets.shift("dark"), [6])[0],
                               atol=1e-3, rtol=0)   # a batch of one, not of two: rounding apart
    # half of each batch's pairs from the drafts; without drafts such settings are refused
    batches = PainterBatches(data, TonePainterSettings(batch=8, identity_p=0.0, soften_p=0.0),
                             drafts=(sets, drafts))
    _, _, target, _ = batches()
    drafted = [d for d in drafts.flatten(0, 1)]
    is_draft = [any(torch.equal(target[k], d) or torch.equal(target[k], d.flip(-1)) for d in drafted) for k in range(8)]
    assert is_draft == [False] * 4 + [True] * 4
    with pytest.raises(ValueError, match="drafts"):
        PainterBatches(data, TonePainterSettings(draft_share=0.5))
    with pytest.raises(ValueError, match="other designs"):
        PainterBatches(data, TonePainterSettings(), drafts=(sets.flip(0), drafts))


def test_paint_refuses_a_bad_tone_or_size():
    painter = TonePainter(TonePainterConfig(list(TONES), width=8)).eval()
    with pytest.raises(ValueError, match="skin tone must be one of"):
        painter.paint(torch.zeros(1, 3, 32, 32), "purple")
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        painter.paint(torch.zeros(1, 3, 64, 64), "dark")


def test_a_tiny_painter_trains_resumes_and_loads_as_a_checkpoint(data, tmp_path):
    whole = train_tone_painter(data, TINY, log=None)
    state = tmp_path / "state.pt"
    stop_after_one = lambda step: step >= 1   # noqa: E731
    train_tone_painter(data, TINY, log=None, state_path=state, stop=stop_after_one)
    resumed = train_tone_painter(data, TINY, log=None, state_path=state)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)
    folder = whole.save(tmp_path / "painter", "# card\n")
    loaded = load_model(folder)
    assert isinstance(loaded, TonePainter) and loaded.config.width == 8
    x = data.images_at(32, [0, 1])
    torch.testing.assert_close(loaded.paint(x, "dark"), whole.paint(x, "dark"), atol=2e-3, rtol=0)   # fp16 weights
    assert load_tone_painter(tmp_path / "no-root") is None
    (folder / "config.json").write_text('{"kind": "tone_painter", "tones": ["dark"], "width": "wide"}')
    with pytest.raises(CheckpointError):
        load_model(folder)


def test_train_tone_painter_from_the_command_line(tmp_path, capsys):
    main(["train", "tone_painter", "--smoke", "--run", str(tmp_path / "run"), "--export", str(tmp_path / "out")])
    assert isinstance(load_model(tmp_path / "out"), TonePainter)
    assert "Tone painter" in (tmp_path / "out" / "README.md").read_text()
    assert (tmp_path / "run" / "state.pt").is_file()


def test_the_cascade_repaints_a_design_never_drawn_with_a_tone(tiny_checkpoints, tmp_path):
    from core.cascade import generate
    from core.models.modelset import ModelSet
    root = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoints, root)
    dim = ModelSet(root, "cpu").get("diffae").config.semantic_dim
    # which designs are drawn with tones: the tone offsets' list (core.tone_words); zero offsets, so
    # the draft is the design's own and what the painter adds shows alone
    ToneOffsets(torch.zeros(5, dim), torch.ones(5, dtype=torch.long), frozenset({"running"})).save(root / "diffae")
    torch.manual_seed(0)
    painter = TonePainter(TonePainterConfig(list(TONES), width=8)).eval()
    painter.save(root / TONE_PAINTER_FOLDER, "# card\n")
    kwargs = dict(num=1, size=32, decoder_steps=2, prompt_reading="as-typed")
    design = generate(ModelSet(root, "cpu"), prompt="troll", **kwargs)
    toned = generate(ModelSet(root, "cpu"), prompt="troll, dark skin tone", **kwargs)
    assert toned.parameters["tone_painted"] == toned.parameters["tone_offset"] == "dark"
    assert toned.parameters["prior_prompt"] == "troll" and "tone painter" in toned.parameters["note"]
    expected = load_tone_painter(root).paint(design.final, "dark")
    torch.testing.assert_close(toned.final, expected)
    # a design drawn with tones keeps the whole prompt and is not repainted
    kept = generate(ModelSet(root, "cpu"), prompt="man running: dark skin tone", **kwargs)
    assert "tone_painted" not in kept.parameters


@pytest.mark.skipif(not (COMMITTED / "config.json").is_file(), reason="no committed tone painter")
def test_the_committed_painter_darkens_skin_with_the_tone_and_leaves_the_rest(data):
    painter = load_tone_painter(DEFAULT_CHECKPOINTS)
    zombie = data.images_at(32, [data.index_of("woman zombie")])   # green skin, never drawn with a tone
    luma = []
    for tone in TONES:
        painted = painter.paint(zombie, tone)
        skin = painter(zombie, torch.tensor([TONES.index(tone)]))[1] > 0.5
        assert skin.float().mean() > 0.05
        luma.append(float((painted.mean(1, keepdim=True))[skin].mean()))
    assert luma == sorted(luma, reverse=True) and luma[0] - luma[-1] > 0.5   # light to dark
    apple = data.images_at(32, [data.index_of("red apple"), data.index_of("automobile")])
    assert (painter.paint(apple, "dark") - apple).abs().amax() < 0.1   # no skin: left as it is
    assert Path(COMMITTED / "README.md").is_file()


def test_the_committed_painter_repaints_skin_already_in_another_tone(data):
    # what the app hands it: a design its tone's offset has moved to about the tone, a step off
    painter = load_tone_painter(DEFAULT_CHECKPOINTS)
    for name in ("thumbs up", "man farmer"):
        for source, asked in (("dark", "light"), ("light", "dark")):
            x, target = (data.images_at(32, [data.index_of(f"{name}: {t} skin tone")]) for t in (source, asked))
            assert (painter.paint(x, asked) - target).abs().mean() < (x - target).abs().mean() / 3
