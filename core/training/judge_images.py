"""What the judge (:mod:`core.evaluation.judge`) is trained on, image by image: real emoji
augmented so that they must still pass (:func:`augment_real`, the positives) and degraded into
what is not an emoji (:func:`degrade`, the negatives), on [-1, 1] images, each seeded by a
torch.Generator.

- positives: real emoji under strong augmentation (shifts, scale, small colour jitter, mild
  blur, a round trip through 16x16, faint noise): a real emoji blurred to 16 px must still pass;
- negatives (``NEGATIVE_KINDS``): real emoji degraded heavily: strong Gaussian blur or a round
  trip through 8x8, additive noise, colour-only blobs (the emoji's mean colour, or a few colours
  of its blurred self, in its silhouette, soft or sharp), shuffled patches, elastic warps,
  watercolour smears, chimeras of two emoji; and (``SAMPLED_KINDS``) poor and early samples of a
  text base, drawn from a bank (:func:`core.training.judge.poor_samples`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.evaluation.judge import RESOLUTION, round_trip

NEGATIVE_KINDS = ("blur", "pixelate", "noise", "mean_blob", "colour_blob", "shuffle", "warp", "smear", "chimera",
                  "poor", "early")
SAMPLED_KINDS = ("poor", "early")   # negatives drawn from a bank of generated samples
SHAPE_KINDS = ("mean_blob", "colour_blob", "shuffle", "warp", "smear", "chimera")   # negatives by their drawing


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (pixels), borders replicated."""
    b, c, h, w = x.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float32).expand(b).clamp_min(1e-3)
    r = int(math.ceil(3 * float(sigma.max())))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)        # [b*c, 2r+1]
    y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def geometric(x: torch.Tensor, gen: torch.Generator, shift: float = 3.0, scale: tuple = (0.8, 1.1),
              out: int = RESOLUTION) -> torch.Tensor:
    """Random scale and translation (by up to ``shift`` output pixels) on a white background,
    resampled from the (larger) input, then area-resized to ``out``."""
    b, _, h, _ = x.shape
    s = _uniform(b, *scale, gen)
    t = _uniform(2 * b, -1, 1, gen).view(b, 2) * (2 * shift / out)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, (b, 3, h, h), align_corners=False)
    y = F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1
    return F.interpolate(y, size=(out, out), mode="area") if h != out else y


def colour_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Small brightness, contrast, saturation and per-channel gain changes (in [-1, 1])."""
    b = x.shape[0]
    u = (x + 1) / 2
    u = u * (1 + strength * _uniform(3 * b, -0.03, 0.03, gen).view(b, 3, 1, 1))
    grey = u.mean(1, keepdim=True)
    u = grey + (u - grey) * (1 + strength * _uniform(b, -0.15, 0.15, gen).view(b, 1, 1, 1))
    mean = u.mean((1, 2, 3), keepdim=True)
    u = mean + (u - mean) * (1 + strength * _uniform(b, -0.1, 0.1, gen).view(b, 1, 1, 1))
    u = u + strength * _uniform(b, -0.03, 0.03, gen).view(b, 1, 1, 1)
    return (u.clamp(0, 1) * 2 - 1)


def shift_exact(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translations by whole pixels (up to ``shift``) on white: the render's own pixels, no resampling."""
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=1.0)
    offs = torch.randint(2 * shift + 1, (b, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])


def augment_real(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What must still pass as an emoji: colour jitter, then one of: nothing, a 16 px round
    trip, a mild blur (sigma 0.3-1), faint noise."""
    x = colour_jitter(x, gen)
    b = x.shape[0]
    kind = torch.randint(4, (b,), generator=gen)
    out = x.clone()
    m = kind == 1
    if m.any():
        out[m] = round_trip(x[m], 16)
    m = kind == 2
    if m.any():
        out[m] = gaussian_blur(x[m], _uniform(int(m.sum()), 0.3, 1.0, gen))
    m = kind == 3
    if m.any():
        out[m] = x[m] + _uniform(int(m.sum()), 0.0, 0.05, gen).view(-1, 1, 1, 1) * torch.randn(
            x[m].shape, generator=gen)
    return out.clamp(-1, 1)


def silhouette(x: torch.Tensor, threshold: float = 0.08) -> torch.Tensor:
    """[B,1,H,W] 1 where the image differs from its white background."""
    return ((1 - x).abs().amax(1, keepdim=True) > 2 * threshold).float()


def _few_colours(x: torch.Tensor, mask: torch.Tensor, k: int, gen: torch.Generator, iters: int = 4) -> torch.Tensor:
    """Each pixel replaced by the nearest of k colours (k-means started on random pixels of the silhouette)."""
    b, c, h, w = x.shape
    px = x.flatten(2).transpose(1, 2)                        # [B, HW, 3]
    weight = mask.flatten(1) + 1e-6                          # pick starting pixels inside the silhouette
    start = torch.multinomial(weight, k, replacement=True, generator=gen)
    centres = torch.gather(px, 1, start[..., None].expand(b, k, c))
    for _ in range(iters):
        assign = torch.cdist(px, centres).argmin(2)          # [B, HW]
        onehot = F.one_hot(assign, k).float() * weight[..., None]
        centres = (onehot.transpose(1, 2) @ px) / onehot.sum(1)[..., None].clamp_min(1e-6)
    assign = torch.cdist(px, centres).argmin(2)
    return torch.gather(centres, 1, assign[..., None].expand(b, h * w, c)).transpose(1, 2).reshape(b, c, h, w)


def _shuffle_patches(x: torch.Tensor, patch: int, gen: torch.Generator) -> torch.Tensor:
    b, c, h, w = x.shape
    cols = F.unfold(x, patch, stride=patch)                  # [B, c*p*p, L]
    perm = torch.argsort(torch.rand(b, cols.shape[2], generator=gen), dim=1)
    cols = torch.gather(cols, 2, perm[:, None, :].expand_as(cols))
    return F.fold(cols, (h, w), patch, stride=patch)


def _smooth_field(b: int, size: int, sigma: torch.Tensor, gen: torch.Generator, channels: int = 2) -> torch.Tensor:
    """Smooth random fields [b, channels, size, size], each scaled to a root mean square of 1."""
    f = gaussian_blur(torch.randn(b, channels, size, size, generator=gen), sigma)
    return f / f.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-6).view(b, 1, 1, 1)


def elastic_warp(x: torch.Tensor, amplitude: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image resampled along a smooth random displacement field of ``amplitude`` pixels
    (root mean square; correlation length ``sigma`` pixels), on white: outlines wobble,
    features smear."""
    b, _, h, w = x.shape
    disp = _smooth_field(b, h, sigma, gen) * amplitude.view(b, 1, 1, 1) * (2 / h)
    theta = torch.eye(2, 3).expand(b, 2, 3)
    grid = F.affine_grid(theta, (b, 3, h, w), align_corners=False) + disp.permute(0, 2, 3, 1)
    return F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1


def degrade(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """A real emoji (after :func:`geometric`) made into something that is not an emoji."""
    b = x.shape[0]
    if kind == "blur":           # strong Gaussian blur (a 16 px round trip is about sigma 0.8)
        y = gaussian_blur(x, _uniform(b, 2.0, 4.0, gen))
    elif kind == "pixelate":     # a round trip through 8 or 4 px
        size = 8 if torch.rand(1, generator=gen).item() < 0.7 else 4
        y = round_trip(x, size)
    elif kind == "noise":        # heavy additive noise, sometimes on a blurred image
        base = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.5, x,
                           gaussian_blur(x, _uniform(b, 1.0, 2.5, gen)))
        y = base + _uniform(b, 0.25, 0.8, gen).view(b, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    elif kind in ("mean_blob", "colour_blob"):
        mask = silhouette(x)
        soft = gaussian_blur(mask, _uniform(b, 1.0, 3.0, gen))
        sharp = (soft > 0.5).float()
        use_soft = torch.rand(b, 1, 1, 1, generator=gen) < 0.5
        m = torch.where(use_soft, soft, sharp)
        if kind == "mean_blob":
            fill = (x * mask).sum((2, 3), keepdim=True) / mask.sum((2, 3), keepdim=True).clamp_min(1)
            fill = fill.expand_as(x)
        else:
            k = int(torch.randint(2, 5, (1,), generator=gen))
            blurred = gaussian_blur(x, _uniform(b, 1.5, 3.0, gen))
            fill = _few_colours(blurred, mask, k, gen)
            fill = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.5, fill,
                               gaussian_blur(fill, _uniform(b, 0.5, 1.5, gen)))
        y = m * fill + (1 - m)
    elif kind == "shuffle":
        patch = 4 if torch.rand(1, generator=gen).item() < 0.5 else 8
        y = _shuffle_patches(x, patch, gen)
    elif kind == "warp":         # a strong elastic warp: the colours and edges stay, the drawing goes
        y = elastic_warp(x, _uniform(b, 3.0, 6.0, gen), _uniform(b, 1.5, 3.0, gen), gen)
    elif kind == "smear":        # warped, then reduced to a few flat colours: a watercolour blob
        y = elastic_warp(x, _uniform(b, 2.0, 4.0, gen), _uniform(b, 1.5, 4.0, gen), gen)
        k = int(torch.randint(3, 6, (1,), generator=gen))
        mask = silhouette(y)
        y = mask * _few_colours(gaussian_blur(y, _uniform(b, 0.5, 1.5, gen)), mask, k, gen) + (1 - mask)
    elif kind == "chimera":      # pieces of two emoji joined along a smooth random seam
        other = x[torch.randperm(b, generator=gen)]
        field = _smooth_field(b, x.shape[-1], _uniform(b, 3.0, 6.0, gen), gen, 1)
        mask = (field > field.flatten(1).median(1).values.view(b, 1, 1, 1)).float()   # about half of each
        y = mask * x + (1 - mask) * other
    else:
        raise ValueError(f"unknown degradation {kind!r}; choose from "
                         f"{', '.join(k for k in NEGATIVE_KINDS if k not in SAMPLED_KINDS)}")
    return y.clamp(-1, 1)


__all__ = ["NEGATIVE_KINDS", "SAMPLED_KINDS", "SHAPE_KINDS", "gaussian_blur", "geometric", "colour_jitter",
           "shift_exact", "augment_real", "silhouette", "elastic_warp", "degrade"]
