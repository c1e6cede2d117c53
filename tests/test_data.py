"""The emoji data set: parsing, labels, split, captions, rendering, cache (core/data/emoji.py).

Parsing and rendering run on the real Debian source files. The full cache is built once per
session into a temporary folder (about 10-20 s on 2 CPU cores).
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import emoji as data
from core.data.emoji import (
    DataSourceMissing,
    EmojiDataset,
    build_dataset,
    cache_is_valid,
    captions_for,
    is_heldout,
    load_dataset,
    load_font,
    load_keywords,
    parse_emoji_test,
    random_caption,
    render_emoji,
    write_cache,
)


@pytest.fixture(scope="module")
def records():
    return parse_emoji_test()


@pytest.fixture(scope="module")
def by_name(records):
    return {r.name: r for r in records}


@pytest.fixture(scope="module")
def font():
    return load_font()


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The full data set built once into a temporary cache: (cache_dir, summary, dataset)."""
    cache = tmp_path_factory.mktemp("emoji-cache")
    summary = build_dataset(cache)
    return cache, summary, load_dataset(cache)


# ----------------------------------------------------------------------------- parsing

def test_counts(records):
    assert 3500 <= len(records) <= 4000  # 3,655 fully-qualified in Emoji 15.0
    assert len({r.group for r in records}) == 9
    assert 90 <= len({r.subgroup for r in records}) <= 110
    assert "Component" not in {r.group for r in records}
    assert len({r.codepoints for r in records}) == len(records)
    for r in records:
        assert r.emoji == "".join(map(chr, r.codepoints))
        assert not r.name.startswith("E") or not r.name[1].isdigit(), r.name  # version stripped


@pytest.mark.parametrize("name, subgroup, tone, tones, gender", [
    ("woman dancing: medium-dark skin tone", "person-activity", "medium-dark", ("medium-dark",), "woman"),
    ("thumbs up: dark skin tone", "hand-fingers-closed", "dark", ("dark",), "none"),
    ("man", "person", "none", (), "man"),
    ("grinning face", "face-smiling", "none", (), "none"),
    ("people holding hands: medium skin tone", "family", "medium", ("medium", "medium"), "person"),
    ("kiss: woman, man, light skin tone, dark skin tone", "family", "mixed", ("light", "dark"), "mixed"),
    ("handshake: light skin tone, dark skin tone", "hands", "mixed", ("light", "dark"), "none"),
    ("family: woman, girl", "family", "none", (), "woman"),
    ("men holding hands", "family", "none", (), "man"),
    ("man feeding baby: light skin tone", "person-role", "light", ("light",), "man"),
    ("older person", "person", "none", (), "person"),
    ("construction worker", "person-role", "none", (), "person"),
    ("man’s shoe", "clothing", "none", (), "none"),
    ("women’s room", "transport-sign", "none", (), "none"),
])
def test_labels(by_name, name, subgroup, tone, tones, gender):
    r = by_name[name]
    assert (r.subgroup, r.skin_tone, r.skin_tones, r.gender) == (subgroup, tone, tones, gender)


def test_record_fields(by_name):
    r = by_name["woman dancing: medium-dark skin tone"]
    assert r.emoji == "\U0001F483\U0001F3FE" and r.codepoints == (0x1F483, 0x1F3FE)
    assert r.group == "People & Body" and r.version == "1.0"  # "E1.0 woman dancing: ..."
    assert by_name["shaking face"].version == "15.0"


def test_keywords(by_name):
    assert {"face", "grin", "grinning face"} <= set(by_name["grinning face"].keywords)
    # skin-tone sequences get theirs from annotationsDerived/en.xml
    assert {"dance", "woman", "medium-dark skin tone"} <= set(by_name["woman dancing: medium-dark skin tone"].keywords)
    # newer than the CLDR files: words of the name
    assert "shaking face" in by_name["shaking face"].keywords
    assert all(r.keywords for r in by_name.values())
    assert load_keywords()["\u2764"]  # cp values carry no U+FE0F


# ----------------------------------------------------------------------------- split

def test_split_is_fixed(records):
    assert is_heldout((0x1F468,))  # man
    assert is_heldout((0x1F9D1, 0x1F3FB, 0x200D, 0x1F9B2))  # person: light skin tone, bald
    assert not is_heldout((0x1F600,))  # grinning face
    assert not is_heldout((0x1F483, 0x1F3FE))  # woman dancing: medium-dark skin tone
    first = [r.heldout for r in records]
    assert first == [is_heldout(r.codepoints) for r in records]
    assert 0.08 <= sum(first) / len(first) <= 0.12


# ----------------------------------------------------------------------------- captions

def test_captions(by_name):
    r = by_name["woman dancing: medium-dark skin tone"]
    caps = captions_for(r)
    assert len(caps) == len(set(caps)) >= 4
    for expected in ("woman dancing, medium-dark skin tone",
                     "an emoji of a woman dancing with medium-dark skin tone",
                     "woman dancing", "dance | dancing | medium-dark skin tone | woman"):
        assert expected in caps
    for name in ("grinning face", "flag: Venezuela", "man", "kiss: woman, man, light skin tone, dark skin tone",
                 "person: light skin tone, bald", "keycap: #"):
        caps = captions_for(by_name[name])
        assert len(set(caps)) >= 3, caps
        assert name.lower() in caps
        assert all(c == c.lower() for c in caps)
    assert "an emoji of the flag of venezuela" in captions_for(by_name["flag: Venezuela"])


def test_random_caption(by_name):
    r = by_name["woman dancing: medium-dark skin tone"]
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    draws = [random_caption(r, g1) for _ in range(40)]
    assert draws == [random_caption(r, g2) for _ in range(40)]
    assert set(draws) <= set(captions_for(r)) and len(set(draws)) > 2


# ----------------------------------------------------------------------------- rendering

def _is_white(a):
    return bool((a == 255).all())


@pytest.mark.parametrize("text", ["\U0001F600", "\U0001F483\U0001F3FE", "\U0001F1FB\U0001F1EA",
                                  "\U0001F468\u200D\U0001F469\u200D\U0001F466", "#\uFE0F\u20E3"])
def test_render(font, text):
    img = render_emoji(font, text)
    assert img.size == (128, 128) and img.mode == "RGB"
    a = np.asarray(img)
    assert _is_white(a[0, 0]) and _is_white(a[0, -1]) and _is_white(a[-1, 0]) and _is_white(a[-1, -1])
    assert not _is_white(a[54:74, 54:74])  # something drawn in the centre
    # not clipped: the whole border is white
    assert _is_white(a[0]) and _is_white(a[-1]) and _is_white(a[:, 0]) and _is_white(a[:, -1])
    # centred: the drawn box has equal margins to within a pixel
    ys, xs = np.nonzero((a != 255).any(-1))
    assert abs(ys.min() - (127 - ys.max())) <= 1 and abs(xs.min() - (127 - xs.max())) <= 1


def test_blank_glyph_is_dropped(font):
    assert render_emoji(font, "\U0010FFFD") is None  # no glyph in the font
    assert render_emoji(font, "a") is None  # the emoji font has no letters


# ----------------------------------------------------------------------------- missing sources

def test_missing_sources(tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "emoji-test.txt"
    with pytest.raises(DataSourceMissing) as e:
        parse_emoji_test(missing)
    assert isinstance(e.value, FileNotFoundError)
    assert str(missing) in str(e.value) and "apt-get install -y unicode-data" in str(e.value)
    with pytest.raises(DataSourceMissing, match="apt-get install -y fonts-noto-color-emoji"):
        load_font(tmp_path / "NotoColorEmoji.ttf")
    with pytest.raises(DataSourceMissing, match="apt-get install -y unicode-cldr-core"):
        load_keywords([tmp_path / "en.xml"])
    monkeypatch.setattr(data, "FONT_PATH", tmp_path / "NotoColorEmoji.ttf")
    with pytest.raises(DataSourceMissing, match="fonts-noto-color-emoji"):
        build_dataset(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------- cache writes

def _leftovers(d: Path):
    return sorted(p.name for p in d.iterdir() if p.name != ".lock")


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = data.render_emoji

    def flaky(font, text, *a, **k):
        calls.append(text)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(font, text, *a, **k)

    monkeypatch.setattr(data, "render_emoji", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path)
    assert _leftovers(tmp_path) == []


def test_a_build_says_where_the_cache_goes_and_how_to_move_it(tmp_path, monkeypatch, records, capsys):
    """The first use writes about 180 MB: the build says so on stderr (place, size, EMOJI_CACHE_DIR);
    a cache already built says nothing."""
    monkeypatch.setattr(data, "parse_emoji_test", lambda *a, **k: records[:4])
    build_dataset(tmp_path / "cache")
    err = capsys.readouterr().err
    assert f"Building the emoji data set cache in {tmp_path / 'cache'}" in err and "EMOJI_CACHE_DIR" in err
    size = sum(f.stat().st_size for f in (tmp_path / "cache").iterdir())
    assert f"cache written: {tmp_path / 'cache'} ({size / 1e6:.0f} MB, 4 emoji" in err
    build_dataset(tmp_path / "cache")
    assert capsys.readouterr().err == ""


def test_write_cache_is_atomic(tmp_path, monkeypatch, records):
    recs = records[:3]
    images = np.full((3, 128, 128, 3), 255, np.uint8)
    meta = {"fingerprint": {"x": 1}, "count": 3}
    write_cache(tmp_path, images, recs, meta)
    assert _leftovers(tmp_path) == ["images.npy", "meta.json", "records.json"]
    assert cache_is_valid(tmp_path, {"x": 1}) and not cache_is_valid(tmp_path, {"x": 2})
    saved = json.loads((tmp_path / "records.json").read_text(encoding="utf-8"))
    assert saved[0]["name"] == recs[0].name and "heldout" in saved[0]
    assert data.EmojiRecord.from_dict(saved[0]) == recs[0]

    # a failure while replacing records.json: no temp file left, and the cache is not valid
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("records.json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(data.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_cache(tmp_path, images[:2], recs[:2], {"fingerprint": {"x": 1}, "count": 2})
    assert not any(n.endswith(".tmp") for n in _leftovers(tmp_path))
    assert not (tmp_path / "meta.json").exists()
    assert not cache_is_valid(tmp_path, {"x": 1})


# ----------------------------------------------------------------------------- full build

@pytest.mark.slow
def test_full_build(built, records):
    cache, summary, ds = built
    assert isinstance(ds, EmojiDataset)
    assert summary["rebuilt"] and summary["parsed"] == len(records)
    assert summary["count"] + summary["dropped_blank"] == len(records)
    assert summary["count"] == len(ds) == ds.images.shape[0] >= 3500
    assert ds.images.shape[1:] == (128, 128, 3) and ds.images.dtype == np.uint8
    assert summary["train"] + summary["heldout"] == len(ds)
    assert _leftovers(cache) == ["images.npy", "meta.json", "records.json"]
    assert cache_is_valid(cache)
    again = build_dataset(cache)
    assert not again["rebuilt"]


def test_changed_source_triggers_rebuild(built, monkeypatch):
    cache = built[0]
    fp = data.source_fingerprint()
    changed = json.loads(json.dumps(fp))
    changed["sources"]["font"]["sha256"] = "0" * 64
    monkeypatch.setattr(data, "source_fingerprint", lambda: changed)
    assert not cache_is_valid(cache)


def test_dataset_api(built):
    _, _, ds = built
    assert ds.classes == sorted(set(ds.classes)) and len(ds.classes) >= 90
    i = ds.index_of("woman dancing: medium-dark skin tone")
    assert ds.labels.dtype == torch.long and ds.labels[i] == ds.class_index("person-activity")
    assert ds.skin_tones[i] == "medium-dark" and ds.genders[i] == "woman"
    with pytest.raises(KeyError):
        ds.class_index("no such class")
    train, held, every = ds.indices("train"), ds.indices("heldout"), ds.indices("all")
    assert len(train) + len(held) == len(every) == len(ds)
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert all(ds.records[j].heldout for j in held[:20].tolist())
    for r in (32, 64, 128):
        x = ds.images_at(r, held[:4])
        assert x.shape == (4, 3, r, r) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    # area downsampling = the 4x4 box mean of the 128x128 pixels
    x32 = ds.images_at(32, [i])[0]
    box = torch.from_numpy(ds.images[i]).float().permute(2, 0, 1).reshape(3, 32, 4, 32, 4).mean((2, 4))
    assert torch.allclose((x32 + 1) * 127.5, box.round(), atol=0.51)
    assert torch.equal(ds.images_at(128, [i])[0], torch.from_numpy(ds.images[i]).permute(2, 0, 1).float() / 127.5 - 1)


def test_cache_used_without_sources(built, tmp_path, monkeypatch):
    cache = built[0]
    monkeypatch.setattr(data, "FONT_PATH", tmp_path / "NotoColorEmoji.ttf")
    assert len(load_dataset(cache)) == len(built[2])  # a complete cache still loads
    with pytest.raises(DataSourceMissing, match="fonts-noto-color-emoji"):
        load_dataset(tmp_path / "empty-cache")
