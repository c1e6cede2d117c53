"""Image to image that knows the emoji: the figures and grids of docs/image_to_image.md.

    python scripts/translate_study.py [--tasks colorize,colorize-128,inpaint,sdedit,sdedit-diffae,examples] [--n 32]
                                      [--out docs] [--checkpoints checkpoints] [--threads 2]

Held-out emoji (`core.evaluation.held_out.heldout_order`, seed 0, the first --n), seed 0 for
every image, 64 px:
- colorize: Palette, the DiffAE decoder with the encoder's code of the grey image, and with the
  code book's colour code (`core.translate.colorize_semantic`), and with the learnt predictor's colour
  code moved half-way to the book (the default; --snaps: other fractions), against the grey input. Mean CIE76
  delta E (Lab) on the emoji's coloured pixels (the real emoji's Lab chroma >= 10) and the
  chroma there relative to the real emoji's.
- colorize-128: a grid of the first 8 at 128 px (grey input, book, predictor on the book, predictor half-way,
  real).
- inpaint: a 32x32 hole in the middle; Palette, RePaint with the text base (unguided), the DiffAE
  decoder's RePaint with the code of the visible pixels (`core.translate.inpaint_semantic`: the smooth
  fill's code snapped to the code book, and the learnt inpainting predictor's code where the palette
  folder has it, the default), and the mean-colour fill. Kept: the emoji's design is among those of
  the 5 real emoji nearest to the result in the judge's features (`core.evaluation.judge.retrieval`,
  k = 5), and is that of the nearest one (k = 1); and the largest change outside the hole, in 0..255
  steps. The emoji the
  default misses at k = 5 are printed and the first 8 drawn (image_to_image_inpaint_missed.png).
  --short: only the mean-colour fill and the default (--before: and the code book's row); --first N:
  also the figures on the first N emoji.
- sdedit: the text base with the default sampler and steps, at 32 px (the judge reads 32 px),
  per strength: kept = with no prompt, the nearest real emoji's design is the input's (k = 1);
  reached = with the first caption of another held-out emoji as the prompt (the next in the
  order), the nearest design is that emoji's (k = 1).
- sdedit-diffae: the same through the DiffAE decoder (`core.translate.sdedit_semantic`): kept =
  with the input's own code; reached = with the prior's code for the other emoji's caption.
- examples: the tab's examples through `core.translate.translate` with its defaults, 128 px.
Prints markdown tables and writes one grid per task (input, results, real) to --out.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import diffae  # noqa: E402
from core.cascade import sr_models  # noqa: E402
from core.data.emoji import load_dataset  # noqa: E402
from core.data.masks import centred_mask, mask_from_image, resize_mask  # noqa: E402
from core.evaluation.held_out import caption_of, heldout_order  # noqa: E402
from core.evaluation.judge import Judge, retrieval  # noqa: E402
from core.images import grid_image, pil_to_tensor, resize_image  # noqa: E402
from core.metrics import srgb_to_lab  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.pipeline import StageSettings  # noqa: E402
from core.translate import (  # noqa: E402
    PALETTE_DEFAULTS,
    PREDICTOR_FILE,
    SDEDIT_GUIDANCE,
    TRANSLATE_DEFAULTS,
    CodePredictor,
    colorize,
    colorize_semantic,
    grayscale,
    inpaint,
    inpaint_semantic,
    load_code_book,
    load_inpaint_predictor,
    mean_fill,
    repaint,
    sdedit,
    sdedit_prompt_code,
    sdedit_semantic,
    translate,
)

GRID_N = 8   # emoji shown per grid


def colour_figures(out: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """(mean CIE76 delta E, chroma relative to the real) on the real emoji's coloured pixels (Lab chroma >= 10)."""
    lo, lr = srgb_to_lab(out), srgb_to_lab(real)
    chroma_out, chroma_real = lo[:, 1:].norm(dim=1), lr[:, 1:].norm(dim=1)
    coloured = (chroma_real >= 10).double()
    delta = (lo - lr).norm(dim=1)
    return (float((delta * coloured).sum() / coloured.sum()),
            float((chroma_out * coloured).sum() / (chroma_real * coloured).sum()))


def timed(label: str, fn):
    start = time.time()
    out = fn()
    print(f"  {label}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    return out


def study_colorize(models, x64, seeds, out_dir: Path, temperatures=(), short: bool = False, weights=(),
                   steps=(), predictor: Path | None = None, snaps=()) -> None:
    """The rows above; with `temperatures` / `weights` / `steps`, the book's code at each softmax
    temperature / thumbnail weight (the levers of the colour guess) / number of decoder steps too;
    `short`: only the grey input, the book's and the predictor's rows. `predictor`: the file of a
    `CodePredictor` (a row of its own where it exists, its guess moved half-way to its snap onto the book,
    as `translate` uses it); `snaps`: also with its guess moved these fractions of the way (0: not moved)."""
    rows = {"grey input": grayscale(x64)}
    if "palette" in models.available() and not short:
        rows["Palette"] = timed("palette", lambda: colorize(models.get("palette"), x64, seeds, PALETTE_DEFAULTS))
    decoder, sr, book = models.get("diffae"), sr_models(models, 64), load_code_book(models)
    if not short:
        rows["DiffAE, code of the grey image"] = timed("diffae", lambda: colorize_semantic(decoder, x64, None, seeds,
                                                                                           sr_models=sr))
    rows[f"DiffAE, colour code from the book (temperature {book.temperature:g})"] = timed(
        "diffae+book", lambda: colorize_semantic(decoder, x64, book, seeds, sr_models=sr))
    if predictor is not None and predictor.is_file():
        learnt = CodePredictor.load(predictor, book)   # half-way to its snap onto the book, as `translate` uses it
        rows[f"DiffAE, colour code from the predictor, moved {learnt.snap:g} of the way to the book"] = timed(
            "diffae+predictor", lambda: colorize_semantic(decoder, x64, learnt, seeds, sr_models=sr))
        for f in snaps:
            rows[f"DiffAE, colour code from the predictor, moved {f:g} of the way to the book"] = timed(
                f"diffae+predictor snap {f:g}", lambda f=f: colorize_semantic(decoder, x64, replace(learnt, snap=f),
                                                                            seeds, sr_models=sr))
    for t in temperatures:
        rows[f"DiffAE, colour code from the book, temperature {t:g}"] = timed(
            f"book {t:g}", lambda t=t: colorize_semantic(decoder, x64, replace(book, temperature=t), seeds,
                                                         sr_models=sr))
    for w in weights:
        rows[f"DiffAE, colour code from the book, thumbnail weight {w:g}"] = timed(
            f"weight {w:g}", lambda w=w: colorize_semantic(decoder, x64, replace(book, pixel_weight=w), seeds,
                                                           sr_models=sr))
    for n in steps:
        rows[f"DiffAE, colour code from the book, {n} steps"] = timed(
            f"steps {n}", lambda n=n: colorize_semantic(decoder, x64, book, seeds, n, sr_models=sr))
    print("| colorize, 64 px | delta E on coloured pixels (lower is better) | chroma / real's |")
    print("| --- | --- | --- |")
    for name, out in rows.items():
        de, chroma = colour_figures(out.cpu(), x64)
        print(f"| {name} | {de:.1f} | {chroma:.2f} |")
    grid_image([*(o[:GRID_N].cpu() for o in rows.values()), x64[:GRID_N]]).save(out_dir / "image_to_image_colorize.png")


def study_colorize_128(models, data, record_idx, out_dir: Path, predictor: Path) -> None:
    """The first GRID_N emoji colorized at 128 px (the size the tab shows), seed 0: rows grey input,
    the book's colour code, the predictor's colour code moved all the way to its snap onto the book (before) and
    half-way (as `translate` uses it), real."""
    x128 = data.images_at(128, torch.tensor(record_idx[:GRID_N]))
    decoder, sr, book = models.get("diffae"), sr_models(models, 128), load_code_book(models)
    seeds = [0] * len(x128)
    rows = [grayscale(x128), timed("book 128", lambda: colorize_semantic(decoder, x128, book, seeds, sr_models=sr))]
    if predictor.is_file():
        for f in (1.0, None):
            learnt = CodePredictor.load(predictor, book) if f is None else CodePredictor.load(predictor, book, f)
            rows.append(timed("predictor 128", lambda g=learnt: colorize_semantic(decoder, x128, g, seeds,
                                                                                  sr_models=sr)))
    grid_image([r.cpu() for r in rows] + [x128]).save(out_dir / "image_to_image_colorize_128.png")


def study_inpaint(models, x64, record_idx, records, seeds, out_dir: Path, repaint_text: bool = True,
                  short: bool = False, before: bool = False, first: int = 0) -> None:
    """The rows above; `short`: only the mean-colour fill and the default (the DiffAE decoder with the
    code of the inpainting predictor, `core.translate.load_inpaint_predictor`, where the palette folder has
    it, else the smooth fill's code snapped to the book); `before`: with --short, also the book's row where
    the predictor is the default; `first`: also the figures on the first `first` emoji. Prints the emoji
    the default misses at k = 5 and draws the
    first of them (hole, mean-colour fill, default, real; 128 px) to image_to_image_inpaint_missed.png."""
    mask = centred_mask(64, 32)
    judge = Judge.load(Path(models.root) / "judge")
    rows = {"mean-colour fill": mean_fill(x64, mask.expand(len(x64), -1, -1, -1))}
    if "palette" in models.available() and not short:
        rows["Palette"] = timed("palette", lambda: inpaint(models.get("palette"), x64, mask, seeds, PALETTE_DEFAULTS))
    sr = sr_models(models, 64)
    if repaint_text and not short:
        rows["RePaint, text base"] = timed("repaint", lambda: repaint(
            models.get("text_base"), models.text_encoder(), x64, mask, None, seeds, sr_models=sr))
    decoder, book = models.get("diffae"), load_code_book(models)
    x32, m32 = resize_image(x64, 32), resize_mask(mask, 32).expand(len(x64), -1, -1, -1)
    if not short:
        rows["DiffAE, code of the mean-colour fill (before)"] = timed("diffae mean fill", lambda: inpaint_semantic(
            decoder, x64, mask, seeds, sr_models=sr, code=diffae.semantic_code(decoder, mean_fill(x32, m32))))
        rows["DiffAE, code of the smooth fill"] = timed(
            "diffae smooth", lambda: inpaint_semantic(decoder, x64, mask, seeds, sr_models=sr))
    learnt = load_inpaint_predictor(models)
    if learnt is None:
        rows["DiffAE, smooth fill's code snapped to the book (the default)"] = timed(
            "diffae snapped", lambda: inpaint_semantic(decoder, x64, mask, seeds, sr_models=sr, book=book))
    else:
        if not short or before:
            rows["DiffAE, smooth fill's code snapped to the book (before)"] = timed(
                "diffae snapped", lambda: inpaint_semantic(decoder, x64, mask, seeds, sr_models=sr, book=book))
        rows[f"DiffAE, the predictor's code moved {learnt.snap:g} of the way to the book (the default)"] = timed(
            "diffae predictor", lambda: inpaint_semantic(decoder, x64, mask, seeds, sr_models=sr, predictor=learnt))
    print("| inpaint a 32x32 hole, 64 px | the emoji among the 5 nearest real ones | the nearest real one "
          "| max change outside the hole |")
    print("| --- | --- | --- | --- |")
    def kept(out: torch.Tensor, n: int) -> tuple[float, float]:   # k = 5 and k = 1 over the first n emoji
        return tuple(float(retrieval(judge, out[:n].cpu(), record_idx[:n], k=k).float().mean()) for k in (5, 1))

    for name, out in rows.items():
        (kept5, kept1), outside = kept(out, len(x64)), ((out.cpu() - x64).abs() * (1 - mask)).max() * 127.5
        print(f"| {name} | {kept5:.2f} | {kept1:.2f} | {outside:.1f} |")
    if 0 < first < len(x64):   # the same images as --n first (every image has its own noise stream)
        print(f"\n| the first {first} of them | among the 5 nearest | the nearest |\n| --- | --- | --- |")
        for name, out in rows.items():
            kept5, kept1 = kept(out, first)
            print(f"| {name} | {kept5:.2f} | {kept1:.2f} |")
    shown = x64 * (1 - mask) + mask * torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)
    grid_image([shown[:GRID_N], *(o[:GRID_N].cpu() for o in rows.values()), x64[:GRID_N]]).save(
        out_dir / "image_to_image_inpaint.png")
    default = list(rows.values())[-1].cpu()
    missed = (~retrieval(judge, default, record_idx, k=5)).nonzero().flatten()
    names = ", ".join(caption_of(records[record_idx[i]]) for i in missed.tolist())
    print(f"\nnot among the 5 nearest with the default ({len(missed)}): {names}")
    if len(missed):   # rows: hole, mean-colour fill, default, real; the first GRID_N misses, at 128 px to look at
        m = missed[:GRID_N]
        grid_image([resize_image(r[m], 128) for r in (shown, rows["mean-colour fill"], default, x64)]).save(
            out_dir / "image_to_image_inpaint_missed.png")


def study_sdedit(models, data, record_idx, seeds, strengths, out_dir: Path) -> None:
    judge = Judge.load(Path(models.root) / "judge")
    x32 = data.images_at(32, torch.tensor(record_idx))
    other = record_idx[1:] + record_idx[:1]
    prompts = [caption_of(data.records[j]) for j in other]
    base, encoder = models.get("text_base"), models.text_encoder()
    guided = StageSettings(sampler=TRANSLATE_DEFAULTS.sampler, steps=TRANSLATE_DEFAULTS.steps, guidance=3.0)
    unguided = StageSettings(sampler=TRANSLATE_DEFAULTS.sampler, steps=TRANSLATE_DEFAULTS.steps, guidance=1.0)
    print("| SDEdit strength, text base, 32 px | kept (no prompt: still the input) "
          "| reached (prompt: the other emoji) |")
    print("| --- | --- | --- |")
    shown = [x32[:GRID_N]]
    for strength in strengths:
        kept = torch.cat([sdedit(base, encoder, x32[i:i + 1], strength, None, [seeds[i]], unguided)
                          for i in range(len(x32))]).cpu()
        moved = torch.cat([sdedit(base, encoder, x32[i:i + 1], strength, prompts[i], [seeds[i]], guided)
                           for i in range(len(x32))]).cpu()
        k_rate = retrieval(judge, kept, record_idx, k=1).float().mean()
        m_rate = retrieval(judge, moved, other, k=1).float().mean()
        print(f"| {strength:.2f} | {k_rate:.2f} | {m_rate:.2f} |", flush=True)
        shown += [kept[:GRID_N], moved[:GRID_N]]
    grid_image(shown + [data.images_at(32, torch.tensor(other[:GRID_N]))]).save(out_dir / "image_to_image_sdedit.png")


def study_sdedit_diffae(models, data, record_idx, seeds, strengths, out_dir: Path) -> None:
    """SDEdit through the DiffAE decoder (`core.translate.sdedit_semantic`), 32 px: kept = with the
    input's own code, the nearest design is the input's; reached = with the prior's code for the other
    emoji's caption (guidance 3), the nearest design is that emoji's."""
    judge = Judge.load(Path(models.root) / "judge")
    x32 = data.images_at(32, torch.tensor(record_idx))
    other = record_idx[1:] + record_idx[:1]
    prompts = [caption_of(data.records[j]) for j in other]
    decoder = models.get("diffae")
    codes = torch.cat([sdedit_prompt_code(models, p, [s], SDEDIT_GUIDANCE) for p, s in zip(prompts, seeds)])
    print("| SDEdit strength, DiffAE decoder, 32 px | kept (own code: still the input) "
          "| reached (the prompt's code: the other emoji) |")
    print("| --- | --- | --- |")
    shown = [x32[:GRID_N]]
    for strength in strengths:
        kept = timed(f"own code {strength}", lambda s=strength: sdedit_semantic(decoder, x32, s, None, seeds)).cpu()
        moved = timed(f"prompt {strength}", lambda s=strength: sdedit_semantic(decoder, x32, s, codes, seeds)).cpu()
        k_rate = retrieval(judge, kept, record_idx, k=1).float().mean()
        m_rate = retrieval(judge, moved, other, k=1).float().mean()
        print(f"| {strength:.2f} | {k_rate:.2f} | {m_rate:.2f} |", flush=True)
        shown += [kept[:GRID_N], moved[:GRID_N]]
    grid_image(shown + [data.images_at(32, torch.tensor(other[:GRID_N]))]).save(
        out_dir / "image_to_image_sdedit_diffae.png")


def study_examples(models, out_dir: Path, strength: float | None = None) -> None:
    """The tab's examples through `translate` with its defaults at 128 px, seed 0: every inpainting
    example (image and mask) -> image_to_image_examples_inpaint.png (rows: the input with the hole,
    the result, the input); SDEdit of the first four with no prompt and of each with the prompt
    "an emoji of a red apple" -> image_to_image_examples_sdedit.png (rows: input, no prompt, prompt)."""
    from demos.common import example_images  # the tab's example images
    from demos.image_to_image import example_masks
    examples, masks = example_images()[:4], example_masks()
    pairs = [(examples[0], "middle"), (examples[1], "middle"), (examples[2], "left half"), (examples[3], "middle")]
    shown, filled, real = [], [], []
    for path, name in pairs:
        image, mask = Image.open(path), Image.open(masks[name])
        x = pil_to_tensor(image, size=128)
        m = mask_from_image(mask, 128)
        shown.append(x * (1 - m) + m * torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1))
        out, params = timed(f"inpaint {Path(path).stem}", lambda i=image, k=mask: translate(models, "inpaint", i, k))
        filled.append(pil_to_tensor(out))
        real.append(x)
        print(f"inpaint {Path(path).name} ({name}): {params}")
    grid = grid_image([torch.cat(shown), torch.cat(filled), torch.cat(real)])
    grid.save(out_dir / "image_to_image_examples_inpaint.png")
    rows = {"input": [], "no prompt": [], "prompt": []}
    for path in examples:
        image = Image.open(path)
        rows["input"].append(pil_to_tensor(image, size=128))
        for key, prompt in (("no prompt", None), ("prompt", "an emoji of a red apple")):
            out, params = timed(f"sdedit {Path(path).stem} {key}", lambda p=prompt, i=image: translate(
                models, "sdedit", i, prompt=p, strength=strength))
            rows[key].append(pil_to_tensor(out))
            print(f"sdedit {Path(path).name} ({key}): {params}")
    grid_image([torch.cat(r) for r in rows.values()]).save(out_dir / "image_to_image_examples_sdedit.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="colorize,inpaint,sdedit,sdedit-diffae")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--strengths", default="0.3,0.4,0.5,0.6")
    p.add_argument("--book-temperatures", default="", help="colorize: also the code book at these temperatures")
    p.add_argument("--strength", type=float, help="examples: SDEdit's strength (default: translate's)")
    p.add_argument("--book-weights", default="", help="colorize: also the code book at these thumbnail weights")
    p.add_argument("--colorize-steps", default="", help="colorize: also the decoder at these numbers of steps")
    p.add_argument("--short", action="store_true", help="colorize: only the grey input and the book's rows; "
                   "inpaint: only the mean-colour fill and the default")
    p.add_argument("--predictor", help="colorize: a colour code predictor's file "
                   f"(default: palette/{PREDICTOR_FILE} of --checkpoints)")
    p.add_argument("--unsnapped", action="store_true", help="colorize: also the predictor's guess not moved")
    p.add_argument("--snaps", default="", help="colorize: also the predictor's guess moved these fractions of the "
                   "way to its snap onto the book (1: on the book)")
    p.add_argument("--out", default="docs")
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--before", action="store_true", help="inpaint with --short: also the code book's row where the "
                   "inpainting predictor is the default")
    p.add_argument("--first", type=int, default=0, help="inpaint: also the figures on the first FIRST emoji")
    p.add_argument("--no-repaint-text", action="store_true", help="inpaint: leave out RePaint with the text base")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = ModelSet(args.checkpoints, device="cpu")
    data = load_dataset()
    record_idx = heldout_order(data, 0)[:args.n]
    x64 = data.images_at(64, torch.tensor(record_idx))
    seeds = [0] * len(record_idx)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks.split(",")
    print(f"{len(record_idx)} held-out emoji, seed 0\n")
    if "colorize" in tasks:
        temperatures = [float(t) for t in args.book_temperatures.split(",") if t]
        weights = [float(w) for w in args.book_weights.split(",") if w]
        steps = [int(n) for n in args.colorize_steps.split(",") if n]
        predictor = Path(args.predictor) if args.predictor else Path(args.checkpoints) / "palette" / PREDICTOR_FILE
        snaps = [0.0] * args.unsnapped + [float(f) for f in args.snaps.split(",") if f]
        study_colorize(models, x64, seeds, out_dir, temperatures, args.short, weights, steps, predictor, snaps)
        print()
    if "colorize-128" in tasks:
        predictor = Path(args.predictor) if args.predictor else Path(args.checkpoints) / "palette" / PREDICTOR_FILE
        study_colorize_128(models, data, record_idx, out_dir, predictor)
    if "inpaint" in tasks:
        study_inpaint(models, x64, record_idx, data.records, seeds, out_dir, not args.no_repaint_text, args.short,
                      args.before, args.first)
        print()
    if "sdedit" in tasks:
        study_sdedit(models, data, record_idx, seeds, [float(s) for s in args.strengths.split(",")], out_dir)
        print()
    if "examples" in tasks:
        study_examples(models, out_dir, args.strength)
    if "sdedit-diffae" in tasks:
        study_sdedit_diffae(models, data, record_idx, seeds, [float(s) for s in args.strengths.split(",")], out_dir)


if __name__ == "__main__":
    main()
