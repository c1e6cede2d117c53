"""Fit the colour code predictor of colorization (`core.translate.CodePredictor`) and compare it
with the code book on held-out emoji in code space.

    python scripts/fit_colour_predictor.py [--out checkpoints/palette/colour_predictor.safetensors]
                                           [--checkpoints checkpoints] [--threads 1]
    python scripts/fit_colour_predictor.py --snap-study 0,0.3,0.5,0.7,1 [--n-val 96]

x: the DiffAE code of the grey image of each training emoji (+ its 8x8 grey thumbnail), y: the
code of its colour image, both from the code book (`checkpoints/palette/colour_codes.safetensors`,
built with the committed DiffAE encoder at 32 px). Prints the mean cosine to the true colour code
on every held-out emoji for: the grey code itself, the code book's guess, a ridge regression
(the cheap baseline: residual on the grey code, same inputs) and the predictor (as it is, and
snapped to the book's colour codes as colorization uses it); saves the predictor.

--snap-study: how far colorization should move the predictor's guess towards its snap onto the
book (`CodePredictor.snap`), chosen without the held-out emoji: --n-val training emoji (a seeded
pick) are left out of both the predictor's fit and the book, and drawn through the DiffAE decoder
(`core.translate.colorize_semantic`, 64 px, seed 0) with the guess moved each fraction of the way;
prints delta E and chroma on their coloured pixels (as scripts/translate_study.py) and saves nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # translate_study's colour figures

from translate_study import colour_figures  # noqa: E402

from core import diffae  # noqa: E402
from core.cascade import sr_models  # noqa: E402
from core.data.emoji import load_dataset  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.translate import (  # noqa: E402
    PREDICTOR_SNAP,
    CodeBook,
    CodePredictor,
    colorize_semantic,
    grayscale,
    load_code_book,
)


def ridge(grey: torch.Tensor, colour: torch.Tensor, thumbnails: torch.Tensor, lam: float):
    """Ridge regression of colour - grey on [standardised grey code, thumbnail, 1]: a function (codes, thumbnails)."""
    mean, std = grey.mean(0), grey.std(0).clamp(min=1e-6)

    def features(g, t):
        return torch.cat([(g - mean) / std, t, torch.ones(len(g), 1)], dim=1)

    a = features(grey, thumbnails)
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ (colour - grey))   # (A'A + lam I)^-1 A'R
    return lambda g, t: g + features(g, t) @ w


VALIDATION_SEED = 1234   # the pick of the left-out training emoji of the studies


def left_out(data, book: CodeBook, n_val: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, CodeBook]:
    """(the training indices, which are the book's rows in this order; the rows of `n_val` of them left
    out, a seeded pick; the other rows; the book of those others only): training emoji to choose a
    setting on without the held-out ones."""
    train = torch.as_tensor(data.indices("train"))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    val, rest = order[:n_val], order[n_val:]
    return train, val, rest, CodeBook(book.grey[rest], book.colour[rest], book.thumbnails[rest])


def snap_study(models, data, book: CodeBook, fractions: list[float], n_val: int, hidden: int, epochs: int) -> None:
    """The table of --snap-study (see the module's docstring)."""
    train, val, rest, sub = left_out(data, book, n_val)
    predictor = replace(CodePredictor.fit(sub.grey, sub.colour, sub.thumbnails, hidden=hidden, epochs=epochs),
                        book=sub)
    x = data.images_at(64, train[val])
    decoder, sr = models.get("diffae"), sr_models(models, 64)
    print(f"{len(sub.grey)} training emoji fitted and in the book, {n_val} left out and drawn (64 px, seed 0)\n")
    print("| the predictor's guess moved towards its snap onto the book | delta E on coloured pixels "
          "| chroma / real's |")
    print("| --- | --- | --- |")
    de, chroma = colour_figures(grayscale(x), x)
    print(f"| (the grey input) | {de:.2f} | {chroma:.2f} |")
    for f in fractions:
        out = colorize_semantic(decoder, x, replace(predictor, snap=f), [0] * len(x), sr_models=sr).cpu()
        de, chroma = colour_figures(out, x)
        print(f"| {f:g} of the way | {de:.2f} | {chroma:.2f} |", flush=True)


def predictor_parser(description: str, out: str, epochs: int, study: str) -> argparse.ArgumentParser:
    """The options both predictor fits take: the file to write, the checkpoints, the MLP's size and epochs,
    the threads, and how many training emoji the study `study` (its option's name) leaves out."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=out)
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-val", type=int, default=96, help=f"--{study}: training emoji left out")
    return p


def main() -> None:
    p = predictor_parser(__doc__.split("\n\n")[0], "checkpoints/palette/colour_predictor.safetensors", 100,
                         "snap-study")
    p.add_argument("--snap-study", default="", help="comma-separated fractions: draw left-out training emoji "
                   "with the guess moved each fraction of the way to the book (saves nothing)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = ModelSet(args.checkpoints, device="cpu")
    decoder, book = models.get("diffae"), load_code_book(models)
    data = load_dataset()
    if args.snap_study:
        snap_study(models, data, book, [float(f) for f in args.snap_study.split(",")], args.n_val, args.hidden,
                   args.epochs)
        return
    x = data.images_at(decoder.resolution, data.indices("heldout"))
    grey = grayscale(x)
    with torch.no_grad():
        held_grey, held_colour = diffae.semantic_code(decoder, grey), diffae.semantic_code(decoder, x)
    held_thumbs = CodeBook.thumbnail(grey)

    def cosine(pred: torch.Tensor) -> float:
        return float(F.cosine_similarity(pred, held_colour).mean())

    print(f"{len(book.grey)} training emoji, {len(x)} held-out emoji\n")
    print("| colour code guessed from the grey image | mean cosine to the true colour code (held-out) |")
    print("| --- | --- |")
    print(f"| the grey code itself | {cosine(held_grey):.3f} |")
    print(f"| code book (k 10, temperature {book.temperature:g}, thumbnail weight {book.pixel_weight:g}) "
          f"| {cosine(book.colour_code(held_grey, grey)):.3f} |")
    for lam in (1.0, 100.0):
        fn = ridge(book.grey.float(), book.colour.float(), book.thumbnails.float(), lam)
        print(f"| ridge regression, lambda {lam:g} | {cosine(fn(held_grey, held_thumbs)):.3f} |")
    start = time.time()
    predictor = CodePredictor.fit(book.grey, book.colour, book.thumbnails, hidden=args.hidden, epochs=args.epochs)
    print(f"| MLP predictor ({args.hidden} hidden, {args.epochs} epochs, {time.time() - start:.0f} s) "
          f"| {cosine(predictor.colour_code(held_grey, grey)):.3f} |")
    for f in (1.0, PREDICTOR_SNAP):   # on the book; half-way (as colorization uses it)
        moved = replace(predictor, book=book, snap=f)
        print(f"| MLP predictor, moved {f:g} of the way to its snap onto the book "
              f"| {cosine(moved.colour_code(held_grey, grey)):.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    predictor.save(args.out)
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
