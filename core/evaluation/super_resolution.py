"""The SR stages measured on held-out emoji: each stage from the real low-res image
(area-downsampled) and the whole chain 32 -> 64 -> 128 from the real 32 px image, against the
real high-res image (PSNR, SSIM), beside bicubic upsampling of the same input. Sections of
`core.evaluation.evaluate`."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from core.cascade import upscale_chain
from core.evaluation.held_out import chunks, mean_of
from core.metrics import psnr, ssim, to_unit
from core.pipeline import SR_STAGE_DEFAULTS, upscale, with_overrides


def _compare(images: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> dict:
    """PSNR and SSIM of `images` and of bicubic upsampling of `low`, both against `high`."""
    bicubic = F.interpolate(low, size=high.shape[-1], mode="bicubic", align_corners=False).clamp(-1, 1)
    target = to_unit(high)
    return {"model": {"psnr": mean_of(psnr(to_unit(images), target)), "ssim": mean_of(ssim(to_unit(images), target))},
            "bicubic": {"psnr": mean_of(psnr(to_unit(bicubic), target)),
                        "ssim": mean_of(ssim(to_unit(bicubic), target))}}


def sr_stage_section(models, name: str, data, order: list[int], args: dict, log) -> dict:
    """One stage (sr64 or sr128) from the real held-out image at its input size, at the
    cascade's settings for that stage (`--steps` applies)."""
    model = models.get(name)
    low_res, res = int(model.config.low_resolution), int(model.resolution)
    idx = order[: args["n_sr"]]
    seeds = [args["seed"] + i for i in range(len(idx))]
    low = data.images_at(low_res, idx)
    settings = with_overrides(SR_STAGE_DEFAULTS[0 if name == "sr64" else 1], steps=args["steps"])
    t0 = time.perf_counter()
    sr = torch.cat([upscale(model, low[s], seeds[s], settings).cpu() for s in chunks(len(idx), args["batch"])])
    out = {"n": len(idx), "low_resolution": low_res, "resolution": res, "steps": settings.steps,
           "sampler": settings.sampler, "aug_level": settings.aug_level,
           "seconds": round(time.perf_counter() - t0, 2), **_compare(sr, low, data.images_at(res, idx))}
    log(f"  {name}: {out}")
    return out


def sr_chain_section(models, data, order: list[int], args: dict, log) -> dict:
    """Both stages in turn, 32 -> 64 -> 128, as the cascade runs them (`core.cascade.upscale_chain`
    at SR_STAGE_DEFAULTS; `--steps` applies to each), from the real held-out 32 px image; the 128
    px result against the real 128 px image, beside bicubic 32 -> 128."""
    chain = [models.get("sr64"), models.get("sr128")]
    idx = order[: args["n_sr"]]
    seeds = [args["seed"] + i for i in range(len(idx))]
    low = data.images_at(32, idx)
    settings = [with_overrides(s, steps=args["steps"]) for s in SR_STAGE_DEFAULTS]
    t0 = time.perf_counter()
    sr = torch.cat([upscale_chain(chain, low[s], seeds[s], settings)[128].cpu()
                    for s in chunks(len(idx), args["batch"])])
    out = {"n": len(idx), "low_resolution": 32, "resolution": 128, "steps": [s.steps for s in settings],
           "sampler": settings[0].sampler, "aug_level": settings[0].aug_level,
           "seconds": round(time.perf_counter() - t0, 2), **_compare(sr, low, data.images_at(128, idx))}
    log(f"  sr chain 32 -> 128: {out}")
    return out
