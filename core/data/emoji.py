"""The embedded data set: Noto Color Emoji artwork with Unicode names and CLDR keywords.

Sources (Debian packages, never committed; the README says how to install them):

- images:   ``NotoColorEmoji.ttf``          (``fonts-noto-color-emoji``)
- names, groups, subgroups: ``emoji-test.txt``  (``unicode-data``), fully-qualified entries only
- keywords: CLDR ``annotations/en.xml`` and ``annotationsDerived/en.xml``
  (``unicode-cldr-core``); the derived file covers skin-tone and ZWJ sequences.

A missing source raises :class:`DataSourceMissing` (a ``FileNotFoundError``) whose message
names the file and the ``apt-get install -y <package>`` that provides it.

Labels parsed from each entry (see :class:`EmojiRecord`):

- ``subgroup`` is the class label (``classes`` = sorted unique subgroups).
- Skin tone comes from the Fitzpatrick modifier code points U+1F3FB..U+1F3FF, in code point
  order, kept as ``skin_tones`` (one entry per modifier, so "people holding hands: medium
  skin tone" has two). ``skin_tone`` is ``"none"`` without modifiers, the tone when all
  modifiers agree, and ``"mixed"`` when they differ ("handshake: light skin tone, dark skin
  tone"). ``"none"`` means the default (yellow) artwork.
- Gender is only given to entries of the group "People & Body"; everything else is
  ``"none"`` (so "man's shoe", "women's room", "baby chick" carry no gender). The lowercased
  name is split into words (a possessive such as "woman's" is one word and not a gender word):
  man / men / boy / boys / prince / merman / santa -> man; woman / women / girl / girls /
  princess / mermaid / mrs -> woman. Both kinds present -> ``"mixed"`` ("kiss: woman, man",
  "family: man, woman, boy"); only one kind -> that gender ("man feeding baby" -> man). With
  no gendered word, the entry is ``"person"`` when a word is person / people / adult / child /
  baby / mx or its subgroup depicts people (person, person-gesture, person-role,
  person-fantasy, person-activity, person-sport, person-resting, family), else ``"none"``
  (hands, body parts, speaking head...).

Held-out split: an entry is held out when
``int(sha1("-".join(f"{c:04X}" for c in codepoints)).hexdigest(), 16) % 10 == 0`` (about 10%),
over the code points exactly as ``emoji-test.txt`` lists them (with any U+FE0F).

Rendering: Pillow ``ImageFont.truetype(font, 109)`` (the font's only bitmap strike, 136x128),
drawn with ``embedded_color=True`` on a transparent canvas, cropped to the alpha bounding box,
scaled down only if wider or taller than 128 (never the case for this font, so the artwork
keeps its native pixels and relative size), composited centred on a white 128x128 RGB image.
A glyph that draws nothing (no glyph in the font, an empty or tofu render) is dropped and
counted.

Cache: :func:`build_dataset` writes ``images.npy`` (uint8 [N,128,128,3]), ``records.json``
(list of dicts, all fields plus ``heldout``) and ``meta.json`` (format version, Pillow version,
sha256 of each source file, counts) into ``$EMOJI_CACHE_DIR`` or
``~/.cache/diffusion-hub/emoji``. Each file is written to a temporary file and moved into
place with ``os.replace``; ``meta.json`` is removed first and written last, so the cache is
valid only when every file of one build is in place. A changed source file, Pillow version
or format version changes the fingerprint and triggers a rebuild.

Command line: ``python -m core data [--cache-dir DIR] [--force]`` builds the cache and prints
counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

# --------------------------------------------------------------------------- sources

FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST_PATH = Path("/usr/share/unicode/emoji/emoji-test.txt")
CLDR_ANNOTATIONS_PATH = Path("/usr/share/unicode/cldr/common/annotations/en.xml")
CLDR_DERIVED_PATH = Path("/usr/share/unicode/cldr/common/annotationsDerived/en.xml")

FONT_PACKAGE = "fonts-noto-color-emoji"
EMOJI_TEST_PACKAGE = "unicode-data"
CLDR_PACKAGE = "unicode-cldr-core"

FONT_SIZE = 109  # the only bitmap strike of NotoColorEmoji.ttf (136x128 pixels)
IMAGE_SIZE = 128
RESOLUTIONS = (32, 64, 128)
FORMAT_VERSION = 1  # bump when the cache layout or the rendering/labelling rules change

TONES = ("light", "medium-light", "medium", "medium-dark", "dark")   # the five skin-tone modifiers, light to dark
SKIN_TONE_BY_CODEPOINT = dict(zip(range(0x1F3FB, 0x1F400), TONES))
SKIN_TONES = ("none", *TONES, "mixed")   # a record's skin tone: none, one of TONES, or mixed
GENDERS = ("none", "man", "woman", "person", "mixed")

_MAN_WORDS = frozenset({"man", "men", "boy", "boys", "prince", "merman", "santa"})
_WOMAN_WORDS = frozenset({"woman", "women", "girl", "girls", "princess", "mermaid", "mrs"})
_PERSON_WORDS = frozenset({"person", "people", "adult", "child", "baby", "mx"})
_PERSON_SUBGROUPS = frozenset({
    "person", "person-gesture", "person-role", "person-fantasy", "person-activity",
    "person-sport", "person-resting", "family",
})
_PEOPLE_GROUP = "People & Body"


class DataSourceMissing(FileNotFoundError):
    """A source file of the data set is missing; the message says which Debian package has it."""

    def __init__(self, path: str | os.PathLike, package: str):
        self.path = str(path)
        self.package = package
        super().__init__(
            f"data source missing: {self.path} (from the Debian package {package}); "
            f"install it with: apt-get install -y {package}"
        )


def _require(path: str | os.PathLike, package: str) -> Path:
    """Return ``path`` as a Path, or raise :class:`DataSourceMissing` naming ``package``."""
    path = Path(path)
    if not path.is_file():
        raise DataSourceMissing(path, package)
    return path


def source_files() -> dict[str, tuple[Path, str]]:
    """The source files the data set is built from: ``{role: (path, debian_package)}``."""
    return {
        "font": (FONT_PATH, FONT_PACKAGE),
        "emoji_test": (EMOJI_TEST_PATH, EMOJI_TEST_PACKAGE),
        "cldr_annotations": (CLDR_ANNOTATIONS_PATH, CLDR_PACKAGE),
        "cldr_derived": (CLDR_DERIVED_PATH, CLDR_PACKAGE),
    }


def check_sources() -> None:
    """Raise :class:`DataSourceMissing` for the first missing source file."""
    for path, package in source_files().values():
        _require(path, package)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_fingerprint() -> dict:
    """What the cache depends on: format version, Pillow version, render size, source hashes."""
    check_sources()
    return {
        "format_version": FORMAT_VERSION,
        "pillow": PIL.__version__,
        "font_size": FONT_SIZE,
        "image_size": IMAGE_SIZE,
        "sources": {role: {"path": str(path), "sha256": _sha256(path)}
                    for role, (path, _) in source_files().items()},
    }


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class EmojiRecord:
    """One fully-qualified emoji of ``emoji-test.txt`` with its labels.

    ``name`` is as the file writes it without the "E15.0 " version prefix (which is kept in
    ``version``); ``subgroup`` is the class label; see the module docstring for the
    ``skin_tone`` / ``skin_tones`` / ``gender`` rules; ``keywords`` are the CLDR English
    keywords (or, for the few emoji newer than the CLDR files, words of the name).
    """

    emoji: str
    codepoints: tuple[int, ...]
    name: str
    group: str
    subgroup: str
    version: str
    skin_tone: str
    skin_tones: tuple[str, ...]
    gender: str
    keywords: tuple[str, ...] = ()

    @property
    def heldout(self) -> bool:
        """Whether the fixed split holds this emoji out (see :func:`is_heldout`)."""
        return is_heldout(self.codepoints)

    def to_dict(self) -> dict:
        """A JSON-ready dict of all fields plus ``heldout``."""
        d = dataclasses.asdict(self)
        d["codepoints"] = list(self.codepoints)
        d["skin_tones"] = list(self.skin_tones)
        d["keywords"] = list(self.keywords)
        d["heldout"] = self.heldout
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EmojiRecord:
        """Inverse of :meth:`to_dict` (``heldout`` is recomputed, not read)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("codepoints", "skin_tones", "keywords"):
            kw[k] = tuple(kw[k])
        return cls(**kw)


def skin_tones_of(codepoints: Sequence[int]) -> tuple[str, ...]:
    """The skin-tone modifiers in ``codepoints``, in order (one entry per modifier)."""
    return tuple(SKIN_TONE_BY_CODEPOINT[c] for c in codepoints if c in SKIN_TONE_BY_CODEPOINT)


def skin_tone_of(codepoints: Sequence[int]) -> str:
    """``"none"`` without modifiers, the tone when all modifiers agree, else ``"mixed"``."""
    tones = set(skin_tones_of(codepoints))
    if not tones:
        return "none"
    return tones.pop() if len(tones) == 1 else "mixed"


def _name_words(name: str) -> list[str]:
    # "woman’s" stays one word (a possessive is not a gender word); "Mrs." -> "mrs".
    return re.findall(r"[a-z]+(?:['’][a-z]+)?", name.lower())


def gender_of(name: str, group: str, subgroup: str) -> str:
    """man / woman / person / mixed / none, from the name's words (rule in the module doc)."""
    if group != _PEOPLE_GROUP:
        return "none"
    words = set(_name_words(name))
    man, woman = bool(words & _MAN_WORDS), bool(words & _WOMAN_WORDS)
    if man and woman:
        return "mixed"
    if man:
        return "man"
    if woman:
        return "woman"
    if words & _PERSON_WORDS or subgroup in _PERSON_SUBGROUPS:
        return "person"
    return "none"


def design_of(record: EmojiRecord) -> str:
    """The emoji up to skin tone and gender: the name without skin-tone qualifiers and without
    gender words ("woman dancing: dark skin tone" and "man dancing" -> "dancing"). Emoji of one
    design share their artwork apart from tone and gender."""
    return design_of_name(record.name)


def design_of_name(name: str) -> str:
    """`design_of` for a name (or a prompt written like one)."""
    base, _, qual = name.lower().partition(": ")
    gendered = _MAN_WORDS | _WOMAN_WORDS | _PERSON_WORDS
    parts = [p for p in qual.split(", ")
             if p and not p.endswith("skin tone") and not set(_name_words(p)) <= gendered]
    words = [w for w in _name_words(base) if w not in gendered]
    return " ".join(words or _name_words(base)) + (": " + ", ".join(parts) if parts else "")


def design_weights(records, power: float = 0.5) -> torch.Tensor:
    """Draw weight (size of the record's design) ** -power per record: 0 draws every emoji alike,
    1 every design alike (its tone and gender variants share its weight), 0.5 in between."""
    designs = [design_of(r) for r in records]
    counts = Counter(designs)
    return torch.tensor([counts[d] ** -power for d in designs], dtype=torch.float64)


def is_heldout(codepoints: Sequence[int]) -> bool:
    """The fixed held-out split: sha1 of "1F483-1F3FE"-style code points, mod 10 == 0."""
    key = "-".join(f"{c:04X}" for c in codepoints)
    return int(hashlib.sha1(key.encode("ascii")).hexdigest(), 16) % 10 == 0


_ENTRY = re.compile(
    r"^(?P<cps>[0-9A-Fa-f]+(?: [0-9A-Fa-f]+)*)\s*;\s*(?P<status>[a-z-]+)\s*#\s*\S+\s+"
    r"E(?P<version>\d+\.\d+)\s+(?P<name>.+?)\s*$"
)


def parse_emoji_test(path: str | os.PathLike = EMOJI_TEST_PATH,
                     keywords: dict[str, tuple[str, ...]] | None = None) -> list[EmojiRecord]:
    """Parse ``emoji-test.txt`` into records, fully-qualified entries only, in file order.

    ``keywords`` maps an emoji without U+FE0F to its CLDR keywords; by default it is read
    with :func:`load_keywords`. Emoji with no CLDR entry get the words of their name.
    """
    path = _require(path, EMOJI_TEST_PACKAGE)
    if keywords is None:
        keywords = load_keywords()
    records: list[EmojiRecord] = []
    group = subgroup = ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
                continue
            if line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
                continue
            m = _ENTRY.match(line)
            if not m or m["status"] != "fully-qualified":
                continue
            cps = tuple(int(c, 16) for c in m["cps"].split())
            emoji = "".join(map(chr, cps))
            name = m["name"]
            kws = keywords.get(emoji.replace("\ufe0f", "")) or _fallback_keywords(name)
            records.append(EmojiRecord(
                emoji=emoji, codepoints=cps, name=name, group=group, subgroup=subgroup,
                version=m["version"], skin_tone=skin_tone_of(cps), skin_tones=skin_tones_of(cps),
                gender=gender_of(name, group, subgroup), keywords=kws,
            ))
    return records


def _fallback_keywords(name: str) -> tuple[str, ...]:
    """Keywords for an emoji newer than the CLDR files: the base name, its words, qualifiers."""
    base, _, qual = name.lower().partition(": ")
    parts = [base, *base.split(), *(q for q in qual.split(", ") if q)]
    return tuple(sorted(set(parts)))


def load_keywords(paths: Iterable[str | os.PathLike] = (CLDR_ANNOTATIONS_PATH, CLDR_DERIVED_PATH),
                  ) -> dict[str, tuple[str, ...]]:
    """CLDR English keywords: ``{emoji without U+FE0F: (keyword, ...)}``.

    The first file that has an emoji wins (``annotations`` before ``annotationsDerived``);
    the ``type="tts"`` entries (spoken names) are skipped.
    """
    out: dict[str, tuple[str, ...]] = {}
    for p in paths:
        p = _require(p, CLDR_PACKAGE)
        for a in ET.parse(p).getroot().iter("annotation"):
            if a.get("type") == "tts" or not a.text:
                continue
            cp = a.get("cp", "").replace("\ufe0f", "")
            if cp and cp not in out:
                out[cp] = tuple(k.strip() for k in a.text.split("|") if k.strip())
    return out


# --------------------------------------------------------------------------- captions

def _is_skin_tone(part: str) -> bool:
    return part.endswith("skin tone")


def _attribute_phrase(part: str) -> str | None:
    """Qualifiers that read as "with ...": skin tones, hair styles, beard, bald."""
    if _is_skin_tone(part) or part.endswith(" hair"):
        return part
    return {"beard": "a beard", "bald": "a bald head"}.get(part)


def _article(phrase: str) -> str:
    """'a ' / 'an ' / '' (plural-looking heads such as "people holding hands", "eyes")."""
    head = re.split(r" (?:with|in|on|of|holding|and|for|from) ", phrase)[0]
    first, last = head.split()[0], head.split()[-1]
    if first in {"people", "men", "women"} or (
            last.endswith("s") and not last.endswith(("ss", "us", "is"))):
        return ""
    if phrase[0] in "aeiou" and not phrase.startswith(("uni", "one", "eu", "use")):
        return "an "
    return "a "


def captions_for(record: EmojiRecord) -> list[str]:
    """Several lowercased phrasings of the record's name and keywords, distinct, in order.

    For "woman dancing: medium-dark skin tone": "woman dancing, medium-dark skin tone",
    "an emoji of a woman dancing with medium-dark skin tone", "woman dancing: medium-dark
    skin tone", "woman dancing emoji, medium-dark skin tone", "woman dancing" (the base name
    only when the qualifier is nothing but skin tones), and the keywords joined by " | ".
    """
    name = record.name.lower()
    base, _, qual = name.partition(": ")
    parts = [p for p in qual.split(", ") if p]
    captions = []
    if qual:
        captions.append(f"{base}, {qual}")
    if base == "flag" and qual:
        captions.append(f"an emoji of the flag of {qual}")
    elif parts and all(_attribute_phrase(p) for p in parts):
        captions.append(f"an emoji of {_article(base)}{base} with "
                        + " and ".join(_attribute_phrase(p) for p in parts))
    elif qual:
        captions.append(f"an emoji of {_article(base)}{base} ({qual})")
    else:
        captions.append(f"an emoji of {_article(base)}{base}")
    captions.append(name)
    captions.append(f"{base} emoji, {qual}" if qual else f"{base} emoji")
    if parts and all(_is_skin_tone(p) for p in parts):
        captions.append(base)
    if record.keywords:
        captions.append(" | ".join(k.lower() for k in record.keywords))
    return list(dict.fromkeys(captions))


def random_caption(record: EmojiRecord, generator: torch.Generator | None = None) -> str:
    """One of :func:`captions_for`, drawn uniformly with ``generator``."""
    captions = captions_for(record)
    i = int(torch.randint(len(captions), (1,), generator=generator).item())
    return captions[i]


# --------------------------------------------------------------------------- rendering

def load_font(path: str | os.PathLike = FONT_PATH, size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    """The emoji font at its bitmap size (raises :class:`DataSourceMissing` if absent)."""
    return ImageFont.truetype(str(_require(path, FONT_PACKAGE)), size)


def render_emoji(font: ImageFont.FreeTypeFont, text: str, size: int = IMAGE_SIZE) -> Image.Image | None:
    """Render ``text`` as a ``size`` x ``size`` RGB image, centred on white, not clipped.

    Draws with ``embedded_color=True`` on a transparent canvas big enough for any glyph,
    crops to the alpha bounding box, shrinks (Lanczos, keeping aspect) only if the crop is
    larger than ``size``, and composites it centred on white. Returns ``None`` when nothing
    was drawn (the font has no glyph for ``text``: an empty / tofu render).
    """
    pad = font.size
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=font, embedded_color=True)
    bbox = canvas.getchannel("A").getbbox()
    if bbox is None:
        return None
    glyph = canvas.crop(bbox)
    w, h = glyph.size
    if w > size or h > size:
        scale = size / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        glyph = glyph.resize((w, h), Image.Resampling.LANCZOS)
    out = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    out.alpha_composite(glyph, ((size - w) // 2, (size - h) // 2))
    return out.convert("RGB")


# --------------------------------------------------------------------------- cache

def default_cache_dir() -> Path:
    """``$EMOJI_CACHE_DIR`` or ``~/.cache/diffusion-hub/emoji``."""
    env = os.environ.get("EMOJI_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "diffusion-hub" / "emoji"


IMAGES_FILE, RECORDS_FILE, META_FILE = "images.npy", "records.json", "meta.json"


def read_meta(cache_dir: str | os.PathLike | None = None) -> dict | None:
    """The cache's ``meta.json``, or None if absent or unreadable."""
    path = Path(cache_dir or default_cache_dir()) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def cache_is_valid(cache_dir: str | os.PathLike | None = None,
                   fingerprint: dict | None = None) -> bool:
    """True when all cache files exist and ``meta.json`` matches the current sources."""
    cache_dir = Path(cache_dir or default_cache_dir())
    meta = read_meta(cache_dir)
    if meta is None or not (cache_dir / IMAGES_FILE).is_file() or not (cache_dir / RECORDS_FILE).is_file():
        return False
    return meta.get("fingerprint") == (fingerprint or source_fingerprint())


def _atomic_write(path: Path, write) -> None:
    """Write via ``write(fileobj)`` to a temp file next to ``path``, fsync, ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8")


def write_cache(cache_dir: str | os.PathLike, images: np.ndarray, records: Sequence[EmojiRecord],
                meta: dict) -> None:
    """Write one build into ``cache_dir`` so that an interruption leaves no valid-looking mix.

    ``meta.json`` is removed first, then ``images.npy`` and ``records.json`` are each written
    atomically, and ``meta.json`` (which marks the cache valid) is written last.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images but {len(records)} records")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cache_dir / META_FILE)
    _atomic_write(cache_dir / IMAGES_FILE, lambda f: np.save(f, np.ascontiguousarray(images)))
    _atomic_write(cache_dir / RECORDS_FILE, lambda f: f.write(_json_bytes([r.to_dict() for r in records])))
    _atomic_write(cache_dir / META_FILE, lambda f: f.write(_json_bytes(meta)))


@contextlib.contextmanager
def _build_lock(cache_dir: Path):
    """An exclusive lock on ``cache_dir/.lock`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(cache_dir / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_dataset(cache_dir: str | os.PathLike | None = None, force: bool = False,
                  progress: bool = False) -> dict:
    """Render every fully-qualified emoji once into the cache; return the build summary.

    Does nothing when the cache is already valid for the current sources (unless ``force``).
    The summary (also saved as ``meta.json``) holds the fingerprint, counts (total parsed,
    kept, dropped blank with their names, train / held-out, classes, per group, keyword
    fallbacks) and ``build_seconds``; the returned dict adds ``rebuilt`` and ``cache_dir``.
    """
    cache_dir = Path(cache_dir or default_cache_dir())
    fingerprint = source_fingerprint()  # raises DataSourceMissing before any work
    if not force and cache_is_valid(cache_dir, fingerprint):  # no lock needed (read-only ok)
        return {**read_meta(cache_dir), "rebuilt": False, "cache_dir": str(cache_dir)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache_dir):  # another process may have built it while we waited
        if not force and cache_is_valid(cache_dir, fingerprint):
            return {**read_meta(cache_dir), "rebuilt": False, "cache_dir": str(cache_dir)}
        t0 = time.perf_counter()
        print(f"Building the emoji data set cache in {cache_dir} (once: about 180 MB, under a minute; "
              "set EMOJI_CACHE_DIR to keep it elsewhere) ...", file=sys.stderr, flush=True)
        keywords = load_keywords()
        parsed = parse_emoji_test(EMOJI_TEST_PATH, keywords)
        font = load_font()
        images = np.empty((len(parsed), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        kept: list[EmojiRecord] = []
        dropped: list[str] = []
        for i, rec in enumerate(parsed):
            img = render_emoji(font, rec.emoji)
            if img is None:
                dropped.append(rec.name)
                continue
            images[len(kept)] = np.asarray(img)
            kept.append(rec)
            if progress and (i + 1) % 500 == 0:
                print(f"  rendered {i + 1}/{len(parsed)}", file=sys.stderr, flush=True)
        images = images[:len(kept)]
        heldout = sum(r.heldout for r in kept)
        meta = {
            "fingerprint": fingerprint,
            "parsed": len(parsed),
            "count": len(kept),
            "dropped_blank": len(dropped),
            "dropped_names": dropped,
            "train": len(kept) - heldout,
            "heldout": heldout,
            "classes": len({r.subgroup for r in kept}),
            "groups": dict(Counter(r.group for r in kept)),
            "keyword_fallbacks": sum(r.emoji.replace("\ufe0f", "") not in keywords for r in kept),
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        write_cache(cache_dir, images, kept, meta)
        size = sum((cache_dir / name).stat().st_size for name in (IMAGES_FILE, RECORDS_FILE, META_FILE))
        print(f"Emoji data set cache written: {cache_dir} ({size / 1e6:.0f} MB, {len(kept)} emoji, "
              f"{meta['build_seconds']:.0f} s)", file=sys.stderr, flush=True)
        return {**meta, "rebuilt": True, "cache_dir": str(cache_dir)}


# --------------------------------------------------------------------------- data set

class EmojiDataset:
    """The rendered emoji with their labels, as loaded from the cache.

    Attributes: ``images`` (uint8 numpy [N,128,128,3]), ``records`` (list of
    :class:`EmojiRecord`), ``classes`` (sorted unique subgroups), ``labels`` (int64 tensor
    [N] of class indices), ``heldout`` (bool tensor [N]), ``skin_tones`` / ``genders`` /
    ``groups`` (numpy str arrays [N]), ``meta`` (the build summary).
    """

    def __init__(self, images: np.ndarray, records: Sequence[EmojiRecord], meta: dict | None = None):
        if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N,{IMAGE_SIZE},{IMAGE_SIZE},3], got "
                             f"{images.dtype} {images.shape}")
        if len(images) != len(records):
            raise ValueError(f"{len(images)} images but {len(records)} records")
        self.images = images
        self.records = list(records)
        self.meta = meta or {}
        self.classes = sorted({r.subgroup for r in self.records})
        self._class_to_index = {c: i for i, c in enumerate(self.classes)}
        self.labels = torch.tensor([self._class_to_index[r.subgroup] for r in self.records],
                                   dtype=torch.long)
        self.heldout = torch.tensor([r.heldout for r in self.records], dtype=torch.bool)
        self.skin_tones = np.array([r.skin_tone for r in self.records])
        self.genders = np.array([r.gender for r in self.records])
        self.groups = np.array([r.group for r in self.records])
        self._by_resolution: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def class_index(self, subgroup: str) -> int:
        """The label of a subgroup; KeyError naming the known classes if unknown."""
        try:
            return self._class_to_index[subgroup]
        except KeyError:
            raise KeyError(f"unknown class {subgroup!r}; known: {', '.join(self.classes)}") from None

    def index_of(self, name_or_emoji: str) -> int:
        """The index of the record with this exact name or emoji string."""
        for i, r in enumerate(self.records):
            if name_or_emoji in (r.name, r.emoji):
                return i
        raise KeyError(f"no emoji named {name_or_emoji!r}")

    def indices(self, split: Literal["train", "heldout", "all"] = "all") -> torch.Tensor:
        """int64 indices of the split ("train" = not held out)."""
        if split == "all":
            return torch.arange(len(self))
        if split == "train":
            return torch.nonzero(~self.heldout).flatten()
        if split == "heldout":
            return torch.nonzero(self.heldout).flatten()
        raise ValueError(f"split must be 'train', 'heldout' or 'all', not {split!r}")

    def images_at(self, resolution: Literal[32, 64, 128], indices=None) -> torch.Tensor:
        """float32 [n,3,r,r] in [-1,1] at ``resolution`` (all images when ``indices`` is None).

        Downsampling is a box (area) average of the 128x128 images; each resolution is
        computed once for the whole set and kept in memory as uint8.
        """
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, not {resolution!r}")
        full = self._resized(resolution)
        x = full if indices is None else full[torch.as_tensor(indices, dtype=torch.long)]
        return x.float().div_(127.5).sub_(1.0)

    def _resized(self, resolution: int) -> torch.Tensor:
        if resolution not in self._by_resolution:
            x = torch.from_numpy(self.images).permute(0, 3, 1, 2)  # uint8 [N,3,128,128] view
            if resolution == IMAGE_SIZE:
                out = x.contiguous()
            else:
                out = torch.empty((len(x), 3, resolution, resolution), dtype=torch.uint8)
                for s in range(0, len(x), 256):
                    chunk = F.interpolate(x[s:s + 256].float(), size=(resolution, resolution), mode="area")
                    out[s:s + 256] = chunk.round_().clamp_(0, 255).to(torch.uint8)
            self._by_resolution[resolution] = out
        return self._by_resolution[resolution]


def load_dataset(cache_dir: str | os.PathLike | None = None) -> EmojiDataset:
    """Load the cached data set, building it first if it is missing or out of date.

    When the source files are absent but a complete cache exists (e.g. a machine without the
    Debian packages), the cache is used as it is; with neither, :class:`DataSourceMissing`.
    """
    cache_dir = Path(cache_dir or default_cache_dir())
    try:
        build_dataset(cache_dir)
    except DataSourceMissing:
        if read_meta(cache_dir) is None or not (cache_dir / IMAGES_FILE).is_file():
            raise
    meta = read_meta(cache_dir) or {}
    images = np.load(cache_dir / IMAGES_FILE)
    records = [EmojiRecord.from_dict(d)
               for d in json.loads((cache_dir / RECORDS_FILE).read_text(encoding="utf-8"))]
    return EmojiDataset(images, records, meta)


# --------------------------------------------------------------------------- CLI
