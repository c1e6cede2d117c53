"""Training the tone painter (`core.models.tone_painter`): `python -m core train tone_painter`.

What it learns from, all from the training split at the painter's resolution:
- pairs: every design the data draws both ways (the default, yellow emoji and its tone-T emoji, the
  same gender; `tone_sets`), tone T as the target and as input the default or, `retone_p` of the
  time, the design in any of its tones (T itself included: a skin already in the asked tone is kept);
  the skin mask is where the default and the target or the input differ (`skin_mask`);
- the same pairs as the semantic base draws them (`draft_sets`, `draft_share` of the pairs): the
  DiffAE decoder's 32 px drafts of the design's codes from the same noise, softer than the renders,
  as what the painter repaints in the app is; among the inputs the draft of the default's code moved
  by tone T's offset (`core.tone_words`), as the app draws a design never drawn with a tone before
  repainting it. The offset darkens or lightens a figure by about the tone, one step off on some
  designs; shown toned skin, the painter learns to repaint it to the asked tone rather than leave it;
- its input's skin in a random colour (`recolour_skin`: the chroma rotated and scaled, the
  lightness a little changed) `recolour_p` of the time, so that a blue or green skin is repainted too;
- emoji of the other groups (no skin: objects, animals, food, symbols; not the smileys, whose yellow
  faces are skin-coloured) with a random tone as the target unchanged, so that what is not skin is
  left alone;
- both sides softened together now and then (the decoder's 32 px drafts are softer than renders).
The loss is the L1 distance of the painted image to the target plus the mask's binary cross-entropy
against the skin mask. The painter never sees the designs Unicode draws without a tone in People &
Body (genie, troll, skier ...): those are what it is measured on (`scripts/tone_study.py`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.emoji import TONES, design_of, load_dataset
from core.diffae import semantic_code
from core.models.checkpoints import DEFAULT_CHECKPOINTS, model_folder
from core.models.loading import load_model
from core.models.tone_painter import TONE_PAINTER_FOLDER, TonePainter, TonePainterConfig
from core.optim import atomic_save, fit
from core.semantic import render
from core.tone_words import OFFSET_SCALE, load_tone_offsets
from core.training.judge_images import gaussian_blur
from core.training.task import FitTask, claim_run

NOT_PLAIN = ("People & Body", "Smileys & Emotion")
MASK_THRESHOLD = 0.1   # a pixel is skin where default and toned differ by more (in [-1, 1] units)


@dataclass
class TonePainterSettings:
    steps: int = 2500
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    width: int = 24
    recolour_p: float = 0.5    # how often the input's skin is shown in a random colour
    soften_p: float = 0.3      # how often input and target are softened together
    identity_p: float = 0.25   # the share of each batch that is a no-skin emoji left unchanged
    mask_weight: float = 0.5
    draft_share: float = 0.5   # the share of the pairs taken from the decoder's drafts (`draft_sets`)
    retone_p: float = 0.5      # how often a pair's input is already toned (another tone, the same, an offset)
    seed: int = 0


def tone_pairs(data, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(default index, toned index, tone index into `TONES`) of every pair of `split`: a design and
    gender drawn both without a tone and in tone T."""
    by_design: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for i in data.indices(split).tolist():
        r = data.records[i]
        by_design[(design_of(r), r.gender)][r.skin_tone] = i
    rows = [(v["none"], v[t], TONES.index(t)) for v in by_design.values() for t in TONES if "none" in v and t in v]
    if not rows:
        raise ValueError(f"the {split} split has no design drawn both with and without a skin tone")
    return tuple(torch.tensor(c) for c in zip(*rows))


def no_skin_indices(data, split: str = "train") -> torch.Tensor:
    """Emoji of `split` with nothing on them that a tone would repaint: every group but People & Body
    and Smileys & Emotion (whose yellow faces are the colour of the default skin: a tone asked on a
    smiley repaints it, as it does a person's face)."""
    return torch.tensor([i for i in data.indices(split).tolist() if data.records[i].group not in NOT_PLAIN])


def skin_mask(default: torch.Tensor, toned: torch.Tensor) -> torch.Tensor:
    """[N, 1, r, r]: 1 where the toned emoji differs from its default (the skin the tone repaints)."""
    return ((default - toned).abs().amax(1, keepdim=True) > MASK_THRESHOLD).float()


# BT.601 luma and the two colour-difference axes; the inverse maps back to RGB
_TO_YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])
_TO_RGB = torch.linalg.inv(_TO_YUV)


def recolour_skin(x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`x` [N, 3, r, r] in [-1, 1] with the pixels under `mask` in another colour, one per image: the
    chroma (U, V) rotated by a random angle and scaled by 0.5-1.3, the luma by 0.75-1.1."""
    n = len(x)
    yuv = torch.einsum("ij,njhw->nihw", _TO_YUV, (x + 1) / 2)
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    scale = 0.5 + 0.8 * torch.rand(n, generator=generator)
    luma = 0.75 + 0.35 * torch.rand(n, generator=generator)
    cos, sin = (torch.cos(angle) * scale)[:, None, None], (torch.sin(angle) * scale)[:, None, None]
    u, v = yuv[:, 1], yuv[:, 2]
    turned = torch.stack([yuv[:, 0] * luma[:, None, None], cos * u - sin * v, sin * u + cos * v], 1)
    rgb = torch.einsum("ij,njhw->nihw", _TO_RGB, turned).clamp(0, 1) * 2 - 1
    return x + mask * (rgb - x)


def tone_sets(data, split: str = "train") -> torch.Tensor:
    """[S, 1 + 5]: per design and gender of `split` drawn both without a tone and in at least one of
    `TONES`, its emoji's indices: column 0 the default, column 1 + k tone `TONES[k]`; -1 where the
    data has no such emoji."""
    by_design: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for i in data.indices(split).tolist():
        r = data.records[i]
        by_design[(design_of(r), r.gender)][r.skin_tone] = i
    rows = [[v["none"]] + [v.get(t, -1) for t in TONES] for v in by_design.values()
            if "none" in v and any(t in v for t in TONES)]
    if not rows:
        raise ValueError(f"the {split} split has no design drawn both with and without a skin tone")
    return torch.tensor(rows)


OFFSET_COLUMN = 1 + len(TONES)   # in `draft_sets`: column OFFSET_COLUMN + k, the default moved by tone k's offset


def draft_sets(decoder, data, offsets=None, seed: int = 0, batch: int = 64,
               n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The designs of `tone_sets` (the first `n`; None: all) as the semantic base draws them (what the
    painter repaints in the app): (sets [S, 6], drafts [S, 6 or 11, 3, r, r]). Column c of a set's
    drafts is the decoder's draft of the code (`core.diffae.semantic_code` of the real render) of its
    emoji in column c (zeros where there is none); with `offsets` (`core.tone_words.ToneOffsets`),
    columns `OFFSET_COLUMN` + k: the default's code moved by tone k's offset (`OFFSET_SCALE`), as
    the app moves a design never drawn with a tone. Every draft of set s is decoded from the same
    fresh noise (seed + s), so a set's drafts line up and differ where the tone does."""
    sets = tone_sets(data)[:n]
    r = decoder.resolution
    columns = sets.shape[1] + (len(TONES) if offsets is not None else 0)
    drafts = torch.zeros(len(sets), columns, 3, r, r)
    default_codes = semantic_code(decoder, data.images_at(r, sets[:, 0])).cpu()
    for c in range(columns):
        rows = torch.arange(len(sets)) if c >= sets.shape[1] else (sets[:, c] >= 0).nonzero().flatten()
        if c < sets.shape[1]:
            codes = semantic_code(decoder, data.images_at(r, sets[rows, c])).cpu()
        else:   # the default moved along its tone's offset (core.tone_words)
            codes = default_codes + offsets.shift(TONES[c - OFFSET_COLUMN], OFFSET_SCALE).cpu()
        seeds = [seed + s for s in rows.tolist()]   # set s: the same noise for all of its drafts
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            drafts[part, c] = render(decoder, codes[start:start + batch], seeds[start:start + batch]).cpu()
    return sets, drafts


class PainterBatches:
    """Seeded batches of (input, tone index, target, skin mask) as the module doc describes."""

    def __init__(self, data, settings: TonePainterSettings, resolution: int = 32, split: str = "train",
                 drafts: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.s = settings
        self.sets = tone_sets(data, split)
        self.pairs = (self.sets[:, 1:] >= 0).nonzero()   # [P, 2]: (set row, tone index) of every pair
        self.images = data.images_at(resolution)
        self.no_skin = no_skin_indices(data, split)
        self.drafts = drafts
        self.draft_pairs = None if drafts is None else self.pairs[self.pairs[:, 0] < len(drafts[0])]
        if settings.draft_share > 0 and drafts is None:
            raise ValueError("draft_share > 0 needs the decoder's drafts of the designs (draft_sets)")
        if drafts is not None and not torch.equal(drafts[0], self.sets[:len(drafts[0])]):
            raise ValueError("the drafts are of other designs than this split's (draft_sets of another data set)")
        self.generator = torch.Generator().manual_seed(settings.seed)

    def _sources(self, rows: torch.Tensor, tones: torch.Tensor, offset_columns: bool) -> torch.Tensor:
        """The input's column per pair: the default (0), or `retone_p` of the time one of the set's
        tones (1 + k), or, where there are offset columns, for half of those the offset of the target tone."""
        g, n = self.generator, len(rows)
        present = (self.sets[rows, 1:] >= 0).float()
        toned = 1 + torch.multinomial(present, 1, generator=g).flatten()
        retone = torch.rand(n, generator=g) < self.s.retone_p
        columns = torch.where(retone, toned, torch.zeros_like(toned))
        if offset_columns:
            offset = retone & (torch.rand(n, generator=g) < 0.5)
            columns = torch.where(offset, OFFSET_COLUMN + tones, columns)
        return columns

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        g, s = self.generator, self.s
        n_id = int(round(s.batch * s.identity_p))
        n_pair = s.batch - n_id
        n_draft = int(round(n_pair * s.draft_share)) if self.drafts is not None else 0
        pick = self.pairs[torch.randint(len(self.pairs), (n_pair - n_draft,), generator=g)]
        rows, tones = pick[:, 0], pick[:, 1]
        columns = self._sources(rows, tones, offset_columns=False)
        default = self.images[self.sets[rows, 0]]
        source = self.images[self.sets[rows, columns]]
        toned = self.images[self.sets[rows, 1 + tones]]
        if n_draft:
            sets, drafts = self.drafts
            drafted = self.draft_pairs[torch.randint(len(self.draft_pairs), (n_draft,), generator=g)]
            d_rows, d_tones = drafted[:, 0], drafted[:, 1]
            d_columns = self._sources(d_rows, d_tones, offset_columns=drafts.shape[1] > OFFSET_COLUMN)
            default = torch.cat([default, drafts[d_rows, 0]])
            source = torch.cat([source, drafts[d_rows, d_columns]])
            toned = torch.cat([toned, drafts[d_rows, 1 + d_tones]])
            tones = torch.cat([tones, d_tones])
        mask = torch.maximum(skin_mask(default, toned), skin_mask(default, source))
        n_pair = len(source)
        recolour = (torch.rand(n_pair, generator=g) < s.recolour_p).float()[:, None, None, None]
        inputs = source + recolour * (recolour_skin(source, mask, g) - source)
        plain = self.images[self.no_skin[torch.randint(len(self.no_skin), (n_id,), generator=g)]]
        x = torch.cat([inputs, plain])
        target = torch.cat([toned, plain])
        mask = torch.cat([mask, torch.zeros_like(plain[:, :1])])
        tone = torch.cat([tones, torch.randint(len(TONES), (n_id,), generator=g)])
        flip = torch.rand(len(x), generator=g) < 0.5
        x, target, mask = (torch.where(flip[:, None, None, None], t.flip(-1), t) for t in (x, target, mask))
        if torch.rand((), generator=g) < s.soften_p:
            sigma = 0.4 + 0.5 * float(torch.rand((), generator=g))
            x, target = gaussian_blur(x, sigma), gaussian_blur(target, sigma)
        return x, tone, target, mask


def train_tone_painter(data, settings: TonePainterSettings | None = None, resolution: int = 32,
                       drafts: tuple[torch.Tensor, torch.Tensor] | None = None,
                       log=print, **fit_options) -> TonePainter:
    """Fit a tone painter on `data`'s training split and, for `settings.draft_share` of the pairs,
    the decoder's `drafts` of the designs (`draft_sets`); `fit_options` go to `core.optim.fit` (a state
    file, a stop test ...). Eval mode."""
    s = settings or TonePainterSettings()
    torch.manual_seed(s.seed)
    model = TonePainter(TonePainterConfig(list(TONES), width=s.width, resolution=resolution))
    batches = PainterBatches(data, s, resolution, drafts=drafts)

    def step_loss(step: int):
        x, tone, target, mask = batches()
        out, predicted = model(x, tone)
        l1 = (out - target).abs().mean()
        bce = F.binary_cross_entropy(predicted.clamp(1e-6, 1 - 1e-6), mask)
        return l1 + s.mask_weight * bce, {"l1": l1, "mask": bce}

    def report(step: int, means: dict[str, float]) -> None:
        if log:
            log(f"step {step}/{s.steps}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))

    fit(model, step_loss, s.steps, s.lr, warmup=s.warmup, weight_decay=0.0, generators={"batches": batches.generator},
        report=report, log=log, **fit_options)
    return model.eval()


def cached_drafts(checkpoints, data, run: Path | None, log) -> tuple[torch.Tensor, torch.Tensor]:
    """`draft_sets` of the DiffAE decoder under `checkpoints` (default the committed ones), with its
    tone offsets where the folder has them, read from `run/tone_drafts.pt` when a sitting before this
    one made them."""
    path = run / "tone_drafts.pt" if run is not None else None
    if path is not None and path.is_file():
        return tuple(torch.load(path, weights_only=True))
    log("drawing the designs with the DiffAE decoder (once per run)")
    folder = model_folder(checkpoints, "diffae")
    decoder = load_model(folder)
    drafts = draft_sets(decoder, data, load_tone_offsets(folder))
    if path is not None:
        atomic_save(list(drafts), path)
    return drafts


CARD = """# Tone painter

Puts a skin tone on a 32 px emoji by repainting its skin, as an emoji font does: the semantic base
draws a design Unicode never draws with a tone ("troll, dark skin tone") as the design alone, and
this network repaints its skin in the asked tone before the super-resolution stages
(`core.models.tone_painter`).

Recipe (`python -m core train tone_painter`, `core.training.tone_painter`): {recipe}.
Trained on the training split only: {pairs} pairs of a design drawn without a tone and in one of
the five tones, the target the toned emoji and the input its default or, {retone_p:.0%} of the time,
the design already toned (in another tone, the same tone, or the default's code moved by the tone's
offset as the app moves it); {draft_share:.0%} of the time as the DiffAE decoder draws the design's
codes from the same noise; the input's skin shown in a random colour {recolour_p:.0%} of the time;
and {no_skin} emoji of the other groups left unchanged.
"""


class TonePainterTask(FitTask):
    """`python -m core train tone_painter`: the tone painter, written to --export (default
    checkpoints/tone_painter); its state in --run (default runs/tone_painter) resumes a stopped run."""
    name = "tone painter"
    settings = TonePainterSettings
    options = frozenset({"checkpoints"})
    smoke = {"steps": 3, "batch": 8, "width": 8, "warmup": 1, "draft_share": 0.0}

    def run(self, settings, run, export, options, budget, log):
        claim_run(run, asdict(settings))
        data = load_dataset()
        drafts = None
        if settings.draft_share > 0:   # the decoder's drafts of the designs, kept in the run folder
            drafts = cached_drafts(options.get("checkpoints"), data, run, log)
        model = train_tone_painter(data, settings, drafts=drafts, log=log, stop=budget,
                                   state_path=run / "state.pt" if run is not None else None, save_every=250)
        if budget.stopped:
            return {"stopped_by_budget": True, "export": None}
        pairs, no_skin = len(tone_pairs(data)[0]), len(no_skin_indices(data))
        folder = Path(export) if export is not None else DEFAULT_CHECKPOINTS / TONE_PAINTER_FOLDER
        recipe = ", ".join(f"{k} {v}" for k, v in asdict(settings).items())
        model.save(folder, CARD.format(recipe=recipe, pairs=pairs, draft_share=settings.draft_share,
                                       recolour_p=settings.recolour_p, retone_p=settings.retone_p,
                                       no_skin=no_skin))
        log(f"wrote {folder}")
        return {"export": str(folder)}
