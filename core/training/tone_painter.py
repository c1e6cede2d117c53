"""Training the tone painter (`core.models.tone_painter`): `python -m core train tone_painter`.

What it learns from, all from the training split at the painter's resolution:
- pairs: every design the data draws both ways (the default, yellow emoji and its tone-T emoji, the
  same gender), the default as input and tone T as the target; the skin mask is where the two
  differ (`skin_mask`);
- the same pairs as the semantic base draws them (`draft_pairs`, `draft_share` of the pairs): the
  DiffAE decoder's 32 px drafts of both emoji's codes from the same noise, softer than the renders,
  as what the painter repaints in the app is;
- its input's skin in a random colour (`recolour_skin`: the chroma rotated and scaled, the
  lightness a little changed) most of the time, so that a blue or green skin is repainted too;
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
    draft_share: float = 0.5   # the share of the pairs taken from the decoder's drafts (`draft_pairs`)
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


def draft_pairs(decoder, data, seed: int = 0, batch: int = 64,
                n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs of `tone_pairs` (the first `n`; None: all) as the semantic base draws them (what the
    painter repaints in the app): (drafts of the default emoji, drafts of the toned ones, tone index).
    Each pair's two codes (`core.diffae.semantic_code` of the real renders) are decoded from the same
    fresh noise at the decoder's defaults, so the two drafts line up and differ where the tone does."""
    default_idx, toned_idx, tones = (t[:n] for t in tone_pairs(data))
    r = decoder.resolution
    drafts = []
    for idx in (default_idx, toned_idx):
        codes = semantic_code(decoder, data.images_at(r, idx))
        seeds = [seed + k for k in range(len(idx))]   # pair k: the same noise for both of its drafts
        drafts.append(torch.cat([render(decoder, codes[s:s + batch], seeds[s:s + batch])
                                 for s in range(0, len(idx), batch)]).cpu())
    return drafts[0], drafts[1], tones


class PainterBatches:
    """Seeded batches of (input, tone index, target, skin mask) as the module doc describes."""

    def __init__(self, data, settings: TonePainterSettings, resolution: int = 32, split: str = "train",
                 drafts: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        self.s = settings
        self.default_idx, self.toned_idx, self.tones = tone_pairs(data, split)
        self.images = data.images_at(resolution)
        self.no_skin = no_skin_indices(data, split)
        self.drafts = drafts
        if settings.draft_share > 0 and drafts is None:
            raise ValueError("draft_share > 0 needs the decoder's drafts of the pairs (draft_pairs)")
        self.generator = torch.Generator().manual_seed(settings.seed)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        g, s = self.generator, self.s
        n_id = int(round(s.batch * s.identity_p))
        n_pair = s.batch - n_id
        n_draft = int(round(n_pair * s.draft_share)) if self.drafts is not None else 0
        pick = torch.randint(len(self.tones), (n_pair - n_draft,), generator=g)
        default, toned = self.images[self.default_idx[pick]], self.images[self.toned_idx[pick]]
        tones = self.tones[pick]
        if n_draft:
            drafted = torch.randint(len(self.drafts[2]), (n_draft,), generator=g)
            default = torch.cat([default, self.drafts[0][drafted]])
            toned = torch.cat([toned, self.drafts[1][drafted]])
            tones = torch.cat([tones, self.drafts[2][drafted]])
        mask = skin_mask(default, toned)
        recolour = (torch.rand(n_pair, generator=g) < s.recolour_p).float()[:, None, None, None]
        inputs = default + recolour * (recolour_skin(default, mask, g) - default)
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
                       drafts: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                       log=print, **fit_options) -> TonePainter:
    """Fit a tone painter on `data`'s training split and, for `settings.draft_share` of the pairs,
    the decoder's `drafts` of them (`draft_pairs`); `fit_options` go to `core.optim.fit` (a state
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


def cached_drafts(checkpoints, data, run: Path | None, log) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`draft_pairs` of the DiffAE decoder under `checkpoints` (default the committed ones), read from
    `run/drafts.pt` when a sitting before this one made them."""
    path = run / "drafts.pt" if run is not None else None
    if path is not None and path.is_file():
        return tuple(torch.load(path, weights_only=True))
    log("drawing the pairs with the DiffAE decoder (once per run)")
    decoder = load_model(model_folder(checkpoints, "diffae"))
    drafts = draft_pairs(decoder, data)
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
the five tones ({draft_share:.0%} of the time as the DiffAE decoder draws both from the same noise),
the default skin shown in a random colour {recolour_p:.0%} of the time, and {no_skin} emoji of the
other groups left unchanged.
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
        if settings.draft_share > 0:   # the decoder's drafts of the pairs, kept in the run folder
            drafts = cached_drafts(options.get("checkpoints"), data, run, log)
        model = train_tone_painter(data, settings, drafts=drafts, log=log, stop=budget,
                                   state_path=run / "state.pt" if run is not None else None, save_every=250)
        if budget.stopped:
            return {"stopped_by_budget": True, "export": None}
        pairs, no_skin = len(tone_pairs(data)[0]), len(no_skin_indices(data))
        folder = Path(export) if export is not None else DEFAULT_CHECKPOINTS / TONE_PAINTER_FOLDER
        recipe = ", ".join(f"{k} {v}" for k, v in asdict(settings).items())
        model.save(folder, CARD.format(recipe=recipe, pairs=pairs, draft_share=settings.draft_share,
                                       recolour_p=settings.recolour_p, no_skin=no_skin))
        log(f"wrote {folder}")
        return {"export": str(folder)}
