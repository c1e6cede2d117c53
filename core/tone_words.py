"""A skin tone asked in a prompt, drawn on any design, as arithmetic on the semantic code.

The prior learnt skin tones from the designs Unicode draws with them; asked for a tone on a design
never drawn with one ("troll, dark skin tone"), it draws the design and drops the tone. The DiffAE's
code space holds the tone apart from the design: for every training design drawn both ways, the
code of its tone-T emoji minus the code of its default (yellow) one is about the same vector. Their
mean over the designs, the tone's offset, moves any code to that tone (DiffAE's attribute
manipulation, Preechakul et al. 2022, sec. 4.2, with the offset measured per tone instead of a
fitted direction).

The offset darkens or lightens the figure as a whole; where a design's skin is not the default
yellow (a green zombie, a blue genie) it barely changes. Where the checkpoints hold a tone painter
(`core.models.tone_painter`), the cascade then repaints the draft's skin in the tone as well.

Measured (`python scripts/tone_study.py --sets untoned --size 128 --methods ...`: one sample per
prompt through the SR stages to 128 px, the semantic base at its defaults; the skin-tone classifier
of `core.evaluation.classifiers` reads the tone, the judge says whether the design is among the 5
real emoji nearest to the sample and whether it is an emoji at all), on the 15 People & Body designs
never drawn with a tone (genie, troll, skier, ...), each asked in all five tones (75 prompts):

| drawn from | tone asked: exact / within one | design kept | accepted as an emoji |
| --- | --- | --- | --- |
| the design + 1 offset (before the painter) | 0.29 / 0.47 | 0.93 | 0.51 |
| the design, repainted (the first painter) | 0.35 / 0.35 | 0.89 | 0.47 |
| the design + 1 offset, repainted by the first painter (yellow inputs only) | 0.59 / 0.75 | 0.80 | 0.31 |
| **the design + 1 offset, repainted by the painter that re-tones (the app)** | **0.61 / 0.79** | **0.75** | **0.29** |

The two are complementary: the offset tones the yellow people (bunny ears, wrestlers: 3-4 of 5
each), the painter the zombies (5 of 5, none with the offset alone) and the genie's face; neither
reaches the troll or the masked fencer. The price is the design kept less often and a draft the
judge takes for an emoji less often (repainted skin at the edges of soft drafts). At 32 px, before
the painter (`--size 32`), the whole prompt scored 0.21 / 0.27 exact / within one, the design alone
0.03 / 0.03, 1.5 offsets 0.39 / 0.53 with the design kept 0.72: one offset (`OFFSET_SCALE`) is
kept. On 40 held-out names of toned emoji the whole prompt already draws the asked tone (0.78
exact, 0.97 within one) and an offset on top overshoots (0.38 / 0.65), so designs drawn with
tones keep the whole prompt.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from core.data.emoji import TONES, design_of, design_of_name
from core.diffae import semantic_code
from core.models.checkpoints import CheckpointError

TONE_OFFSETS_FILE = "tone_offsets.safetensors"
OFFSET_SCALE = 1.0   # how far along its tone's offset the code of an untoned design moves (module doc)

# "dark skin tone", "medium-dark skin", "medium light skin tone", "dark-skinned", with the
# punctuation or "with" that joins it to the rest of the prompt
_TONE = "|".join(t.replace("-", "[- ]?") for t in sorted(TONES, key=len, reverse=True))
_TONE_PHRASE = re.compile(rf"(?:\s*[:,;]\s*|\s+with\s+|\s+in\s+|\s+)?\b({_TONE})[- ]skin"
                          rf"(?:ned|\s+tones?|\s+colou?r)?\b", re.IGNORECASE)


def split_tone(prompt: str) -> tuple[str, str | None]:
    """(the prompt without its skin-tone words, the tone it asks: one of `TONES`, or None). A prompt
    asking two tones ("handshake: light skin tone, dark skin tone") is left whole: None."""
    found = [m for m in _TONE_PHRASE.finditer(prompt)]
    tones = {re.sub(r"[- ]", "-", m.group(1).lower()) for m in found}
    if len(tones) != 1:
        return prompt, None
    rest = _TONE_PHRASE.sub("", prompt).strip(" ,:;")
    if not rest:   # the tone alone: nothing else to draw
        return prompt, None
    return rest, tones.pop()


_ARTICLES = re.compile(r"^(?:an?|the|one)\s+|\s+emoji$", re.IGNORECASE)


def prompt_design(text: str) -> str:
    """The design a prompt (without its tone words) names, as `design_of` writes designs: "a man
    genie" -> "genie"."""
    return design_of_name(_ARTICLES.sub("", text.strip()).strip())


@dataclass
class ToneOffsets:
    """Per tone (`TONES`, light to dark), the mean code of a design's tone-T emoji minus its default
    emoji's code, over the training designs drawn both ways, how many designs that was, and every
    design the data draws with a tone (whose prompts the prior already draws in the asked tone)."""
    offsets: torch.Tensor   # [5, D] raw z_sem units
    counts: torch.Tensor    # [5]
    toned_designs: frozenset[str]

    @classmethod
    def fit(cls, codes: torch.Tensor, records: Sequence, all_records: Sequence | None = None) -> ToneOffsets:
        """From the codes [N, D] of `records` (a design being an emoji up to tone and gender:
        `core.data.emoji.design_of`; the gender is kept, so a man is compared with a man). The toned
        designs are read from `all_records` (default `records`): every split, as a design the prior
        learnt with tones may be held out from its own training only as one tone."""
        if len(codes) != len(records):
            raise ValueError(f"got {len(codes)} codes for {len(records)} records")
        by_design: dict[tuple[str, str], dict[str, torch.Tensor]] = defaultdict(dict)
        for z, r in zip(codes, records):
            by_design[(design_of(r), r.gender)][r.skin_tone] = z
        offsets, counts = [], []
        for tone in TONES:
            diffs = [v[tone] - v["none"] for v in by_design.values() if tone in v and "none" in v]
            if not diffs:
                raise ValueError(f"no design is drawn both with the {tone} skin tone and without one")
            offsets.append(torch.stack(diffs).float().mean(0))
            counts.append(len(diffs))
        toned = frozenset(design_of(r) for r in (all_records or records) if r.skin_tone != "none")
        return cls(torch.stack(offsets), torch.tensor(counts), toned)

    def shift(self, tone: str, scale: float = 1.0) -> torch.Tensor:
        """[D]: what a code moves by to take on `tone`."""
        if tone not in TONES:
            raise ValueError(f"skin tone must be one of {', '.join(TONES)}; got {tone!r}")
        return float(scale) * self.offsets[TONES.index(tone)]

    def apply_to(self, prompt: str) -> tuple[str, torch.Tensor | None, str | None]:
        """(what the prior reads, the shift its codes take, the tone that stands for). A prompt asking
        one tone on a design never drawn with one: the prompt without its tone words (the design
        alone draws cleanly; with the tone words the prior lands between emoji) and `OFFSET_SCALE`
        times the tone's offset. Any other prompt: itself, None, None."""
        rest, tone = split_tone(prompt)
        if tone is None or prompt_design(rest) in self.toned_designs:
            return prompt, None, None
        return rest, self.shift(tone, OFFSET_SCALE), tone

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{TONE_OFFSETS_FILE}.tmp"
        save_file({"offsets": self.offsets.float().contiguous(), "counts": self.counts.long()}, str(tmp),
                  metadata={"tones": ",".join(TONES), "toned_designs": json.dumps(sorted(self.toned_designs))})
        os.replace(tmp, folder / TONE_OFFSETS_FILE)
        return folder / TONE_OFFSETS_FILE

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ToneOffsets:
        path = Path(folder) / TONE_OFFSETS_FILE
        try:
            t = load_file(str(path))
            offsets, counts = t["offsets"], t["counts"]
            with safe_open(str(path), "pt") as f:
                toned = frozenset(json.loads(f.metadata()["toned_designs"]))
        except Exception as e:   # missing file, safetensors' own errors, missing keys, bad JSON
            raise CheckpointError(f"tone offsets {path} cannot be read: {e}; write them with "
                                  "`python -m core diffae-directions`") from e
        if offsets.ndim != 2 or offsets.shape[0] != len(TONES) or counts.shape != (len(TONES),):
            raise CheckpointError(f"tone offsets {path}: expected [{len(TONES)}, D], got {tuple(offsets.shape)}")
        return cls(offsets, counts, toned)


def app_reading(offsets: ToneOffsets | None, prompt: str) -> tuple[str, torch.Tensor | None, str | None]:
    """`offsets.apply_to(prompt)`, or the prompt as it is where there are no offsets."""
    return (prompt, None, None) if offsets is None else offsets.apply_to(prompt)


def fit_tone_offsets(model, dataset) -> ToneOffsets:
    """The tone offsets of a DiffAE's codes of the training split (z_sem only, no inversion)."""
    idx = dataset.indices("train")
    codes = semantic_code(model, dataset.images_at(model.resolution, idx)).cpu()
    return ToneOffsets.fit(codes, [dataset.records[i] for i in idx.tolist()], dataset.records)


def load_tone_offsets(folder: str | os.PathLike) -> ToneOffsets | None:
    """The tone offsets stored in a DiffAE checkpoint folder, or None where there are none (a checkpoint
    from before them: prompts are then drawn as they are)."""
    if not (Path(folder) / TONE_OFFSETS_FILE).is_file():
        return None
    return ToneOffsets.load(folder)
