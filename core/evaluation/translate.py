"""The translation models measured on held-out emoji (`python -m core evaluate-translate`):
Palette's colorization and inpainting against their baselines (the grayscale input, the
mean-colour fill) in PSNR, Lab colour error and FD_CLIP; RePaint's inpainting with the text base;
and SDEdit's trade-off between faithfulness to a colour sketch and realism (Meng et al., fig. 4)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from core.checks import check_int
from core.data.emoji import load_dataset
from core.data.masks import random_mask
from core.metrics import delta_e, frechet_distance, psnr
from core.pipeline import StageSettings
from core.translate import colorize, grayscale, inpaint, mean_fill, repaint, sdedit


def evaluate(models, n: int = 32, steps: int = 25, seed: int = 0, batch: int = 16,
             strengths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), repaint_steps: int = 25,
             inpaint_samples: int = 1, log: Callable[[str], None] = print) -> dict:
    """Measure the translation models on the first `n` held-out emoji; returns a dict of rows
    (missing models are listed under "missing"). With `inpaint_samples` K > 1, Palette inpainting
    is also scored as the mean of K samples per image: PSNR rewards the posterior mean, which a
    single sharp sample is not and the mean-colour fill crudely is. With the CLIP model, Palette's
    outputs and baselines are also scored for realism (FD_CLIP to the real emoji)."""
    inpaint_samples = check_int("inpaint_samples", inpaint_samples, 1)
    available = set(models.available())
    results: dict = {"n": 0, "steps": steps, "missing": [m for m in ("palette", "text_base", "clip")
                                                          if m not in available], "rows": [], "sdedit": []}
    if "palette" not in available and not {"text_base", "clip"} <= available:
        return results   # nothing to measure: no need for the data set
    data = load_dataset()
    idx = torch.as_tensor(data.indices("heldout"))[:n]
    results["n"] = len(idx)
    settings = StageSettings(steps=steps, guidance=1.0)
    gen = torch.Generator().manual_seed(seed)

    def batches(x):
        for s in range(0, len(x), batch):
            yield s, x[s:s + batch]

    # realism is scored as the Frechet distance to real emoji in the project CLIP's image space
    embedder = models.clip_embedder() if "clip" in available else None

    def embed(images):
        return torch.cat([embedder.image_embeddings(xb).cpu() for _, xb in batches(images)]).double().numpy()

    if "palette" in available:
        model = models.get("palette")
        x64 = data.images_at(64, idx)
        masks = torch.cat([random_mask(64, gen) for _ in range(len(idx))])
        col, samples = [], [[] for _ in range(inpaint_samples)]
        for s, xb in batches(x64):
            seeds = list(range(seed + s, seed + s + len(xb)))
            col.append(colorize(model, xb, seeds, settings).cpu())
            for k, sample_k in enumerate(samples):   # sample k of each image: its seed shifted by k * n
                sample_k.append(inpaint(model, xb, masks[s:s + len(xb)], [sd + k * len(idx) for sd in seeds],
                                        settings).cpu())
        samples = [torch.cat(sample_k) for sample_k in samples]
        col, inp, gray, fill = torch.cat(col), samples[0], grayscale(x64), mean_fill(x64, masks)
        results["rows"] += [
            ("colorize (Palette, 64x64)", "PSNR, dB (higher is better)", psnr(col, x64, 2.0).mean().item(),
             psnr(gray, x64, 2.0).mean().item(), "grayscale input"),
            ("colorize (Palette, 64x64)", "mean Lab colour error dE76 (lower is better)",
             delta_e(col, x64).mean().item(), delta_e(gray, x64).mean().item(), "grayscale input"),
            ("inpaint (Palette, 64x64)", "PSNR inside the mask, dB", psnr(inp, x64, 2.0, masks).mean().item(),
             psnr(fill, x64, 2.0, masks).mean().item(), "mean-colour fill"),
            ("inpaint (Palette, 64x64)", "max abs change outside the mask (must be 0)",
             ((inp - x64).abs() * (1 - masks)).max().item(), 0.0, "-"),
        ]
        if inpaint_samples > 1:
            mean = torch.stack(samples).mean(dim=0)
            results["rows"].append(
                ("inpaint (Palette, 64x64)", f"PSNR inside the mask, mean of {inpaint_samples} samples, dB",
                 psnr(mean, x64, 2.0, masks).mean().item(), psnr(fill, x64, 2.0, masks).mean().item(),
                 "mean-colour fill"))
        if embedder is not None and len(idx) >= 2:
            # Realism, as Palette (Saharia et al. 2022) reports FID beside the per-pixel errors
            # (lower is better).
            real = embed(x64)
            results["rows"] += [
                ("colorize (Palette, 64x64)", "FD_CLIP to the real emoji (lower is better)",
                 frechet_distance(embed(col), real), frechet_distance(embed(gray), real), "grayscale input"),
                ("inpaint (Palette, 64x64)", "FD_CLIP to the real emoji (lower is better)",
                 frechet_distance(embed(inp), real), frechet_distance(embed(fill), real), "mean-colour fill")]
    if "text_base" in available and "clip" in available:
        base, encoder = models.get("text_base"), models.text_encoder()
        x32 = data.images_at(32, idx)
        masks32 = torch.cat([random_mask(32, gen) for _ in range(len(idx))])
        rep = []
        for s, xb in batches(x32):
            seeds = list(range(seed + s, seed + s + len(xb)))
            rep.append(repaint(base, encoder, xb, masks32[s:s + len(xb)], None, seeds, repaint_steps).cpu())
        rep = torch.cat(rep)
        results["rows"] += [
            ("inpaint (RePaint, text base unguided, 32x32)", "PSNR inside the mask, dB",
             psnr(rep, x32, 2.0, masks32).mean().item(), psnr(mean_fill(x32, masks32), x32, 2.0, masks32).mean().item(),
             "mean-colour fill"),
            ("inpaint (RePaint, text base unguided, 32x32)", "max abs change outside the mask (must be 0)",
             ((rep - x32).abs() * (1 - masks32)).max().item(), 0.0, "-"),
        ]
        # SDEdit's trade-off (Meng et al., fig. 4): colour sketches of the held-out emoji, edited at
        # each strength; faithfulness = distance to the sketch, realism = FD to real emoji in CLIP space.
        real = embedder.image_embeddings(x32).cpu().double().numpy()
        train = torch.as_tensor(data.indices("train"))
        pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 2))[: len(idx)]]
        results["fd_real_train"] = frechet_distance(
            embedder.image_embeddings(data.images_at(32, pick)).cpu().double().numpy(), real)
        sketches = colour_sketch(x32)
        base_settings = StageSettings(steps=steps, guidance=1.0)
        for strength in strengths:
            outs = []
            for s, xb in batches(sketches):
                seeds = list(range(seed + s, seed + s + len(xb)))
                outs.append(sdedit(base, encoder, xb, strength, None, seeds, base_settings).cpu())
            out = torch.cat(outs)
            rmse = (((out - sketches) / 2) ** 2).mean(dim=(1, 2, 3)).sqrt().mean().item()
            fd = frechet_distance(embedder.image_embeddings(out).cpu().double().numpy(), real)
            results["sdedit"].append((strength, rmse, psnr(out, x32, 2.0).mean().item(), fd))
    return results


def colour_sketch(images: torch.Tensor, cells: int = 8, levels: int = 4) -> torch.Tensor:
    """A rough colour sketch of each image (SDEdit's stroke-painting input, made synthetically):
    the mean colour of each of cells x cells blocks, quantised to `levels` values per channel."""
    size = images.shape[-1]
    blocks = F.interpolate(images, size=cells, mode="area")
    blocks = torch.round((blocks + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
    return F.interpolate(blocks, size=size, mode="nearest")


def markdown(results: dict) -> str:
    lines = [f"Held-out emoji: {results['n']}, {results['steps']} sampling steps.", ""]
    if results["missing"]:
        lines += [f"Missing models (not evaluated): {', '.join(results['missing'])}.", ""]
    if results["rows"]:
        lines += ["| task | metric | model | baseline | baseline is |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {t} | {m} | {v:.3f} | {b:.3f} | {what} |" for t, m, v, b, what in results["rows"]]
        lines.append("")
    if results["sdedit"]:
        lines += ["SDEdit (text base, unguided, 32x32) on colour sketches of the held-out emoji (8x8 blocks, "
                  "4 levels per channel): faithfulness (RMSE to the sketch) against realism (Frechet "
                  f"distance to the real held-out emoji in CLIP image space; real training emoji score "
                  f"{results.get('fd_real_train', math.nan):.3f})", "",
                  "| strength | RMSE to the sketch ([0, 1] scale) | PSNR to the original emoji, dB | FD_CLIP to real |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {s:.2f} | {r:.4f} | {p:.2f} | {fd:.3f} |" for s, r, p, fd in results["sdedit"]]
    return "\n".join(lines)
