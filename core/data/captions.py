"""Captions as people write them, for fine-tuning the text-conditioned models on everyday prompts.

`core.data.emoji.captions_for` phrases an emoji's Unicode name and joins its CLDR keywords ("woman
dancing, dark skin tone", "an emoji of a red apple", "fruit | apple | red"). People type otherwise:
"an apple", "a burger", "a blue car", "face with sunglasses". :func:`everyday_captions` adds, per
emoji:

- templates of its base name: "a X" / "an X", "a picture of a X", "X emoji";
- each CLDR keyword alone and with its article ("burger", "a burger" for the hamburger);
- the colour measured from its own pixels (:func:`colour_of`) before the base name and before each
  keyword ("a blue sport utility vehicle", "a blue recreational", "a red car");
- the base name with one word dropped, for names of three words or more ("face with sunglasses",
  "smiling with sunglasses");

skin-tone qualifiers stay as the name has them ("a woman dancing, dark skin tone").
"""
from __future__ import annotations

import numpy as np

from core.data.emoji import EmojiRecord, _article

# hue bins (degrees, upper bounds) of the colour words
_HUES = ((15, "red"), (37, "orange"), (60, "yellow"), (165, "green"), (255, "blue"), (290, "purple"), (335, "pink"),
         (360, "red"))
_SHARE = 0.4   # a colour names an emoji when at least this share of its drawn pixels has it


def colour_of(image: np.ndarray) -> str | None:
    """The colour word of an emoji drawn on white (uint8 [H, W, 3]): the hue bin (or "black" /
    "brown") that holds at least 40% of the pixels that are not background; None when no colour
    does (a many-coloured or grey emoji)."""
    px = image.reshape(-1, 3).astype(np.float32) / 255.0
    px = px[(px < 0.94).any(1)]   # not the white background
    if len(px) < 8:
        return None
    px = px[:: max(1, len(px) // 512)].astype(np.float64)   # at most ~512 pixels: enough for a share
    # HSV as colorsys.rgb_to_hsv computes it, for all pixels at once
    v, lo = px.max(1), px.min(1)
    s = np.where(v > 0, (v - lo) / np.maximum(v, 1e-12), 0.0)
    span = np.maximum(v - lo, 1e-12)
    r, g, b = ((v - px[:, i]) / span for i in range(3))
    h = np.where(px[:, 0] == v, b - g, np.where(px[:, 1] == v, 2.0 + r - b, 4.0 + g - r))
    h = np.where(v == lo, 0.0, (h / 6.0) % 1.0) * 360
    words = np.full(len(px), "", dtype=object)
    for top, name in reversed(_HUES):   # the first bin whose upper bound the hue is under
        words[h < top] = name
    words[(15 <= h) & (h < 37) & (v < 0.6)] = "brown"
    words[s < 0.25] = ""   # grey / white: no colour word
    words[v < 0.2] = "black"
    counts: dict[str, int] = {}
    for word in words[words != ""]:
        counts[word] = counts.get(word, 0) + 1
    if not counts:
        return None
    word, n = max(counts.items(), key=lambda kv: kv[1])
    return word if n >= _SHARE * len(px) else None


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)}{phrase}"


def everyday_captions(record: EmojiRecord, colour: str | None = None) -> list[str]:
    """Phrasings of ``record`` as people type them (see the module), lowercased, distinct, in
    order; ``colour`` a colour word of its pixels (:func:`colour_of`) or None."""
    name = record.name.lower()
    base, _, qual = name.partition(": ")
    tail = f", {qual}" if qual else ""
    out = [f"{_with_article(base)}{tail}", f"a picture of {_with_article(base)}{tail}", f"{base} emoji{tail}"]
    keywords = [k.lower() for k in record.keywords if k.lower() != base]
    for k in keywords:
        out += [k, _with_article(k)]
    if colour and colour not in base.split():
        out.append(_with_article(f"{colour} {base}") + tail)
        out += [_with_article(f"{colour} {k}") for k in keywords if colour not in k.split()]
    words = base.split()
    if len(words) >= 3:
        out += [" ".join(words[:i] + words[i + 1:]) + tail for i in range(len(words))]
    return list(dict.fromkeys(c for c in out if c.strip()))
