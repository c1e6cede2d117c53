"""Fit the colour code predictor of colorization (`core.translate.CodePredictor`) and compare it
with the code book on held-out emoji in code space.

    python scripts/fit_colour_predictor.py [--out checkpoints/palette/colour_predictor.safetensors]
                                           [--checkpoints checkpoints] [--threads 1]

x: the DiffAE code of the grey image of each training emoji (+ its 8x8 grey thumbnail), y: the
code of its colour image, both from the code book (`checkpoints/palette/colour_codes.safetensors`,
built with the committed DiffAE encoder at 32 px). Prints the mean cosine to the true colour code
on every held-out emoji for: the grey code itself, the code book's guess, a ridge regression
(the cheap baseline: residual on the grey code, same inputs) and the predictor (as it is, and
snapped to the book's colour codes as colorization uses it); saves the predictor.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import diffae  # noqa: E402
from core.data.emoji import load_dataset  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.translate import CodeBook, CodePredictor, grayscale, load_code_book  # noqa: E402


def ridge(grey: torch.Tensor, colour: torch.Tensor, thumbnails: torch.Tensor, lam: float):
    """Ridge regression of colour - grey on [standardised grey code, thumbnail, 1]: a function (codes, thumbnails)."""
    mean, std = grey.mean(0), grey.std(0).clamp(min=1e-6)

    def features(g, t):
        return torch.cat([(g - mean) / std, t, torch.ones(len(g), 1)], dim=1)

    a = features(grey, thumbnails)
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ (colour - grey))   # (A'A + lam I)^-1 A'R
    return lambda g, t: g + features(g, t) @ w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="checkpoints/palette/colour_predictor.safetensors")
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = ModelSet(args.checkpoints, device="cpu")
    decoder, book = models.get("diffae"), load_code_book(models)
    data = load_dataset()
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
    snapped = CodePredictor(**{**vars(predictor), "book": book})   # as colorization uses it
    print(f"| MLP predictor, snapped to the book | {cosine(snapped.colour_code(held_grey, grey)):.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    predictor.save(args.out)
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
