"""Fit the code predictor of inpainting through the DiffAE decoder (`core.translate.visible_code`
with a `CodePredictor`) and choose how far its guess moves towards the code book, without the
held-out emoji.

    python scripts/fit_inpaint_predictor.py [--out checkpoints/palette/inpaint_predictor.safetensors]
                                            [--checkpoints checkpoints] [--threads 1]
    python scripts/fit_inpaint_predictor.py --val-study 0,0.5,1 [--n-val 96] [--draw] [--cache FILE]
                                            [--hole centre|left|right|top|bottom]

x: the DiffAE code of a training emoji at 32 px with a hole filled smoothly from its border
(`core.translate.smooth_fill`), with the hole's 8x8 coverage and the filled image's 8x8 thumbnail
(`core.translate.inpaint_features`); y: the code of the whole emoji (the code book's colour code).
Each training emoji gets MASKS_PER_EMOJI holes (seeded): centred squares of 8, 12, 16 and 20 px
(at 32 px; the study's 32x32 hole at 64 px is the 16 px one), a random box, free-form strokes, a
half and one more of `core.data.masks.random_mask`'s shapes. The predictor is the colorization
predictor's residual MLP (`CodePredictor.fit`); `translate` moves its guess INPAINT_SNAP of the way
to its snap onto the code book (`CodePredictor.snap`).

--val-study: --n-val training emoji (a seeded pick) are left out of the fit and of the book; prints
the mean cosine of the code guessed from their visible pixels (the 16 px centred hole) to their
true code, for today's guess (the encoder of the smooth fill snapped onto the book), the
predictor's guess, and the predictor's guess moved each fraction of the way to the book. With
--draw, each is also drawn (`core.translate.inpaint_semantic`, 64 px with the 32x32 hole, seed 0)
and the judge's k = 5 / k = 1 retrieval of the emoji printed (as scripts/translate_study.py does
for held-out emoji). Saves nothing.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # fit_colour_predictor's left-out pick

from fit_colour_predictor import left_out, predictor_parser  # noqa: E402

from core import diffae  # noqa: E402
from core.cascade import sr_models  # noqa: E402
from core.data.emoji import load_dataset  # noqa: E402
from core.data.masks import SIDES, box_mask, centred_mask, half_mask, random_mask, stroke_mask  # noqa: E402
from core.evaluation.judge import Judge, retrieval  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.translate import (  # noqa: E402
    INPAINT_SNAP,
    CodeBook,
    CodePredictor,
    inpaint_features,
    inpaint_semantic,
    load_code_book,
    smooth_fill,
)

CENTRED = (8, 12, 16, 20)   # sides of the centred square holes at 32 px
MASKS_PER_EMOJI = len(CENTRED) + 4
MASK_SEED = 0
TEST_HOLE = 16           # at 32 px: the study's 32x32 hole at 64 px


def emoji_masks(size: int, gen: torch.Generator) -> torch.Tensor:
    """[MASKS_PER_EMOJI, 1, size, size]: the centred squares, a random box, strokes, a half, a random shape."""
    side = SIDES[int(torch.randint(len(SIDES), (), generator=gen))]
    masks = [centred_mask(size, s) for s in CENTRED]
    masks += [box_mask(size, gen), stroke_mask(size, gen), half_mask(size, side), random_mask(size, gen)]
    return torch.cat(masks)


def training_pairs(decoder, images: torch.Tensor, cache: str = "", chunk: int = 512) -> tuple[torch.Tensor, ...]:
    """(visible code [N * M, D], extra features [N * M, P], emoji index [N * M]) for images [N, 3, 32, 32],
    read from / written to the file `cache` when one is named (it holds those of these images)."""
    if cache and Path(cache).is_file():
        t = load_file(cache)
        if len(t["owner"]) == len(images) * MASKS_PER_EMOJI:
            return t["codes"], t["extra"], t["owner"]
    start = time.time()
    gen = torch.Generator().manual_seed(MASK_SEED)
    masks = torch.cat([emoji_masks(images.shape[-1], gen) for _ in range(len(images))])
    owner = torch.arange(len(images)).repeat_interleave(MASKS_PER_EMOJI)
    codes, extra = [], []
    with torch.no_grad():
        for s in range(0, len(masks), chunk):
            filled = smooth_fill(images[owner[s:s + chunk]], masks[s:s + chunk])
            codes.append(diffae.semantic_code(decoder, filled))
            extra.append(inpaint_features(filled, masks[s:s + chunk]))
    codes, extra = torch.cat(codes), torch.cat(extra)
    print(f"{len(codes)} holes encoded in {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    if cache:
        save_file({"codes": codes, "extra": extra, "owner": owner}, cache)
    return codes, extra, owner


def val_study(models, data, book: CodeBook, fractions: list[float], n_val: int, hidden: int, epochs: int,
              draw: bool, cache: str = "", hole: str = "centre") -> None:
    """The table of --val-study (see the module's docstring)."""
    train, val, rest, sub = left_out(data, book, n_val)
    decoder = models.get("diffae")
    codes, extra, owner = training_pairs(decoder, data.images_at(32, train), cache)   # owner: the book's row
    fitted = torch.isin(owner, rest)
    codes, extra, owner = codes[fitted], extra[fitted], owner[fitted]
    start = time.time()
    predictor = CodePredictor.fit(codes, book.colour[owner], extra, hidden=hidden, epochs=epochs)
    print(f"fitted in {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    x32 = data.images_at(32, train[val])
    mask = centred_mask(32, TEST_HOLE) if hole == "centre" else half_mask(32, hole)
    filled = smooth_fill(x32, mask)
    with torch.no_grad():
        z = diffae.semantic_code(decoder, filled)
    feats, true = inpaint_features(filled, mask), book.colour[val].float()
    guesses = {"today: the encoder of the smooth fill, snapped onto the book": sub.snap(z),
               "the encoder of the smooth fill, not snapped": z}
    for f in fractions:
        guesses[f"the predictor, moved {f:g} of the way to the book"] = replace(predictor, book=sub, snap=f).guess(
            z, feats)
    print(f"{len(rest)} training emoji fitted ({len(codes)} holes) and in the book, {n_val} left out "
          f"({f'a centred {TEST_HOLE} px hole' if hole == 'centre' else f'the {hole} half'} at 32 px)\n")
    head = "| code guessed from the visible pixels | mean cosine to the true code |"
    print(head + (" kept k=5 | kept k=1 (64 px, seed 0) |" if draw else ""))
    print("| --- | --- |" + (" --- | --- |" if draw else ""))
    judge = Judge.load(Path(models.root) / "judge") if draw else None
    m64 = centred_mask(64, 2 * TEST_HOLE) if hole == "centre" else half_mask(64, hole)
    x64, sr = data.images_at(64, train[val]), sr_models(models, 64)
    idx = train[val].tolist()
    for name, g in guesses.items():
        row = f"| {name} | {float(F.cosine_similarity(g, true).mean()):.3f} |"
        if draw and "not snapped" in name:   # a code neither default uses: not drawn
            row += " | |"
        elif draw:
            out = inpaint_semantic(decoder, x64, m64, [0] * len(x64), sr_models=sr, code=g).cpu()
            k5, k1 = (float(retrieval(judge, out, idx, k=k).float().mean()) for k in (5, 1))
            row += f" {k5:.2f} | {k1:.2f} |"
        print(row, flush=True)


def main() -> None:
    p = predictor_parser(__doc__.split("\n\n")[0], "checkpoints/palette/inpaint_predictor.safetensors", 30,
                         "val-study")
    p.add_argument("--val-study", default="", help="comma-separated fractions: compare guesses on training emoji "
                   "left out of the fit and the book (saves nothing)")
    p.add_argument("--cache", default="", help="a file to keep the encoded holes in between runs")
    p.add_argument("--hole", default="centre", choices=("centre", *SIDES), help="--val-study: the hole, the "
                   "centred square (the study's) or a half")
    p.add_argument("--draw", action="store_true", help="--val-study: also draw them and ask the judge")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = ModelSet(args.checkpoints, device="cpu")
    book, data = load_code_book(models), load_dataset()
    if args.val_study:
        val_study(models, data, book, [float(f) for f in args.val_study.split(",")], args.n_val, args.hidden,
                  args.epochs, args.draw, args.cache, args.hole)
        return
    train = torch.as_tensor(data.indices("train"))
    codes, extra, owner = training_pairs(models.get("diffae"), data.images_at(32, train), args.cache)
    predictor = CodePredictor.fit(codes, book.colour[owner], extra, hidden=args.hidden, epochs=args.epochs)
    decoder, x32 = models.get("diffae"), data.images_at(32, data.indices("heldout"))
    mask = centred_mask(32, TEST_HOLE)
    filled = smooth_fill(x32, mask)
    with torch.no_grad():
        z, true = diffae.semantic_code(decoder, filled), diffae.semantic_code(decoder, x32)
    feats = inpaint_features(filled, mask)
    moved = replace(predictor, book=book, snap=INPAINT_SNAP)
    cos = [float(F.cosine_similarity(g, true).mean()) for g in (book.snap(z), predictor.guess(z, feats),
                                                                moved.guess(z, feats))]
    print(f"mean cosine to the true code, {len(x32)} held-out emoji, a centred {TEST_HOLE} px hole at 32 px: "
          f"the smooth fill's code snapped to the book {cos[0]:.3f}, the predictor {cos[1]:.3f}, moved "
          f"{INPAINT_SNAP:g} of the way to the book {cos[2]:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    predictor.save(args.out)
    print(f"{len(train)} training emoji, {len(codes)} holes; moved {INPAINT_SNAP:g} of the way to the book "
          f"when used\nsaved {args.out}")


if __name__ == "__main__":
    main()
