"""Which lever gives crisp 128 px pictures? The decoder ceiling at the size the app shows: each
emoji's own semantic code z_sem = Enc(real 32 px render) drawn by the DiffAE decoder from fresh
noise, taken through the committed SR 64 and SR 128 stages (the cascade's settings), scored by SSIM
(grey, Gaussian window sigma 1.5) against the real 128 px emoji; beside it the real 32 px emoji
through the same stages (what a perfect draft gives) and bicubic.

    python scripts/decoder_study.py [--checkpoints checkpoints] [--candidate DIR ...] [--n 24]
                                    [--split other|people|heldout] [--grid FILE] [--threads 2]

Rows, all with the same seeds:
- the committed decoder, 10 DPM-Solver++(2M) steps (what the app does today); 50-step DDPM (a
  stochastic sampler); guidance against the training codes' mean code at 2 and 3 (no training: the
  committed decoder never saw a null code, the mean code is the nearest thing to "any emoji");
- each --candidate (a diffae checkpoint folder trained with condition dropout): guidance 1 (the
  extra training alone) and classifier-free guidance on z_sem at --scales against the null code,
  with each of --candidate-steps decoder steps. A candidate is scored on its own codes (with a
  frozen encoder they are the committed ones).
The split's emoji are a seeded draw (`core.evaluation.scorecard.text_splits`, seed 0): names of
training emoji outside People & Body by default; `heldout-tones` draws held-out emoji with one skin
tone (people never seen in that tone). With --from-name every row draws the emoji from its *name*
(the prior's code for it, as the app does) instead of from its own code. With --grid, a PNG of
the first 8 emoji at 128 px: one row per row of the table, the real emoji last.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cascade import upscale_chain  # noqa: E402
from core.data.emoji import TONES, load_dataset  # noqa: E402
from core.diffae import decode, fresh_noise, fresh_noise_guidance, semantic_code  # noqa: E402
from core.diffusion.guidance import cfg_denoiser  # noqa: E402
from core.diffusion.rng import BatchGenerator  # noqa: E402
from core.diffusion.samplers import sample, sampler_stage_spacing  # noqa: E402
from core.evaluation.scorecard import TEXT_SPLITS, _seeded_prefix, text_splits  # noqa: E402
from core.images import save_grid  # noqa: E402
from core.metrics import ssim, to_unit  # noqa: E402
from core.models.loading import load_model  # noqa: E402
from core.models.modelset import ModelSet  # noqa: E402
from core.pipeline import SR_STAGE_DEFAULTS, generate_text  # noqa: E402
from core.semantic import DECODER_SAMPLER, DECODER_STEPS, sample_semantic_codes  # noqa: E402

SPLITS = {"people": TEXT_SPLITS[0], "other": TEXT_SPLITS[1], "heldout": TEXT_SPLITS[2], "heldout-tones": None}
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def grey_ssim(images: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """[B] SSIM of the luma of two [B, 3, H, W] batches in [-1, 1] (sigma 1.5, 11x11 window)."""
    return ssim((to_unit(images) * LUMA).sum(1, keepdim=True), (to_unit(real) * LUMA).sum(1, keepdim=True))


def mean_code_guided(decoder, z: torch.Tensor, mean: torch.Tensor, scale: float, seeds) -> torch.Tensor:
    """Guidance of the committed decoder away from the mean training code: eps(mean) + s (eps(z) - eps(mean))."""
    denoiser = cfg_denoiser(decoder.eps, {"z_sem": z}, {"z_sem": mean.expand_as(z)}, scale)
    return sample(DECODER_SAMPLER, denoiser, fresh_noise(decoder, seeds), decoder.schedule, DECODER_STEPS,
                  spacing=sampler_stage_spacing(DECODER_SAMPLER)).clamp(-1, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--candidate", action="append", default=[], help="a diffae checkpoint folder (repeatable)")
    p.add_argument("--scales", default="1,1.5,2,3", help="decoder guidance scales of each candidate")
    p.add_argument("--candidate-steps", default=str(DECODER_STEPS),
                   help="comma-separated decoder steps each candidate scale is drawn with")
    p.add_argument("--split", choices=tuple(SPLITS), default="other")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--grid", help="write the 128 px grid here")
    p.add_argument("--quick", action="store_true", help="only the committed decoder's default row and the candidates")
    p.add_argument("--from-name", action="store_true",
                   help="draw each emoji from its name (the prior's code, default settings), not its own code")
    p.add_argument("--pixel-text-base", action="store_true",
                   help="add a row: the pixel text base (checkpoints/text_base) drawing each name at its defaults")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_dataset()
    if a.split == "heldout-tones":
        pool = [i for i in data.indices("heldout").tolist() if data.records[i].skin_tone in TONES]
        idx = _seeded_prefix(pool, a.n, 0)
        split_name = "held-out emoji with one skin tone"
    else:
        idx, split_name = text_splits(data, a.n, 0)[SPLITS[a.split]], SPLITS[a.split]
    seeds = list(range(len(idx)))
    real32, real128 = data.images_at(32, idx), data.images_at(128, idx)
    models = ModelSet(a.checkpoints, "cpu")
    chain = [models.get("sr64"), models.get("sr128")]
    decoder = models.get("diffae")
    if a.from_name:   # the prior's code for each name, one seed each: what the text tab draws
        prior, text_encoder = models.get("prior"), models.get("clip")
        z = torch.cat([sample_semantic_codes(prior, text_encoder, prompt=data.records[i].name, seeds=[seed])
                       for i, seed in zip(idx, seeds)])
    else:
        z = semantic_code(decoder, real32)
    mean = semantic_code(decoder, data.images_at(32, data.indices("train"))).mean(0, keepdim=True)

    def fresh(model, code, guidance=1.0, steps=DECODER_STEPS):
        return decode(model, code, fresh_noise(model, seeds), steps, sampler=DECODER_SAMPLER, guidance=guidance)

    rows = {}
    if not a.quick:
        rows["real 32 px through SR 64, SR 128"] = lambda: real32
    committed_guidance = fresh_noise_guidance(decoder)   # the decoder checkpoint's own default
    rows[f"committed decoder, guidance {committed_guidance:g}, 10 DPM-Solver++ steps (today)"] = (
        lambda: fresh(decoder, z, committed_guidance))
    if not a.quick:
        rows["committed decoder, 50 DDPM steps"] = lambda: sample(
            "ddpm", lambda x, t: decoder.eps(x, t, {"z_sem": z}), fresh_noise(decoder, seeds), decoder.schedule, 50,
            generator=BatchGenerator([s + 10_000 for s in seeds])).clamp(-1, 1)
        for s in (2.0, 3.0):
            rows[f"committed decoder, guidance {s:g} against the mean code"] = (
                lambda s=s: mean_code_guided(decoder, z, mean, s, seeds))
    if a.pixel_text_base:   # the pixel cascade's base: a fine-tuned copy of an earlier decoder, fed text
        names = [data.records[i].name for i in idx]
        rows["pixel text base, drawn from the name (its defaults)"] = lambda: generate_text(
            models.get("text_base"), models.text_encoder(), names, seeds=seeds).clamp(-1, 1)
    for folder in a.candidate:
        cand = load_model(folder, "cpu")
        cz = z if a.from_name else semantic_code(cand, real32)
        for n in [int(v) for v in a.candidate_steps.split(",")]:
            for s in [float(v) for v in a.scales.split(",")]:
                rows[f"{Path(folder).name}, decoder guidance {s:g}, {n} steps"] = (
                    lambda cand=cand, cz=cz, s=s, n=n: fresh(cand, cz, s, n))

    source = "drawn from their names" if a.from_name else "their own codes"
    print(f"{len(idx)} emoji ({split_name}; {source}), SSIM (grey, sigma 1.5) of the 128 px picture to the real "
          f"128 px emoji; SR stages at the cascade's settings ({SR_STAGE_DEFAULTS[0].steps} / "
          f"{SR_STAGE_DEFAULTS[1].steps} {SR_STAGE_DEFAULTS[0].sampler} steps, aug {SR_STAGE_DEFAULTS[0].aug_level})")
    print("| 32 px draft | SSIM at 128 | SSIM at 32 | seconds |\n| --- | --- | --- | --- |")
    pictures = []
    if not a.quick:
        bicubic = F.interpolate(real32, size=128, mode="bicubic", align_corners=False).clamp(-1, 1)
        print(f"| real 32 px, bicubic to 128 | {grey_ssim(bicubic, real128).mean():.3f} | 1.000 | - |", flush=True)
    for name, draft in rows.items():
        start = time.perf_counter()
        with torch.no_grad():
            low = draft()
            high = upscale_chain(chain, low, seeds, list(SR_STAGE_DEFAULTS))[128]
        s128, s32 = grey_ssim(high, real128).mean(), grey_ssim(low, real32).mean()
        print(f"| {name} | {s128:.3f} | {s32:.3f} | {time.perf_counter() - start:.0f} |", flush=True)
        pictures.append(high[:8])
    if a.grid:
        save_grid(torch.cat(pictures + [real128[:8]]).cpu(), a.grid, columns=min(8, len(idx)))
        print(f"grid: {a.grid} (rows in the table's order, then the real emoji)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
