"""Inpainting masks: 1 = the region to fill, 0 = the pixels to keep. Tensors are float32
[1, 1, size, size] holding exactly 0 or 1.

- generators for training and tests, all seeded by a torch.Generator: `box_mask`,
  `stroke_mask` (free-form brush strokes, as in Palette / LaMa / DeepFill v2), `half_mask`
  (left, right, top or bottom half) and `random_mask` (one of them at random);
- `mask_from_image`: a user's mask image of any mode and size -> a binary tensor at the
  working resolution (white = fill; the alpha channel when there is one).
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.images import MAX_SIDE, MIN_SIDE, ImageError

Side = Literal["left", "right", "top", "bottom"]
SIDES: tuple[str, ...] = get_args(Side)
MASK_SHAPES: tuple[str, ...] = ("box", "strokes", "half")


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"mask size must be an integer >= 2, got {size!r}")
    return int(size)


def _uniform(gen: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=gen).item()


def box_mask(size: int, generator: torch.Generator | None = None, min_frac: float = 0.25,
             max_frac: float = 0.6) -> torch.Tensor:
    """One axis-aligned rectangle whose sides are min_frac..max_frac of the image side."""
    size = _check_size(size)
    h = max(1, round(size * _uniform(generator, min_frac, max_frac)))
    w = max(1, round(size * _uniform(generator, min_frac, max_frac)))
    top = int(torch.randint(size - h + 1, (), generator=generator))
    left = int(torch.randint(size - w + 1, (), generator=generator))
    mask = torch.zeros(1, 1, size, size)
    mask[..., top:top + h, left:left + w] = 1.0
    return mask


def _segment_distance(px: torch.Tensor, py: torch.Tensor, a: tuple[float, float],
                      b: tuple[float, float]) -> torch.Tensor:
    """Distance of every pixel centre (px, py) to the segment a-b."""
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return ((px - ax) ** 2 + (py - ay) ** 2).sqrt()
    u = (((px - ax) * dx + (py - ay) * dy) / length2).clamp(0, 1)
    return ((px - ax - u * dx) ** 2 + (py - ay - u * dy) ** 2).sqrt()


def stroke_mask(size: int, generator: torch.Generator | None = None, strokes: tuple[int, int] = (1, 4),
                vertices: tuple[int, int] = (2, 6), width: tuple[float, float] = (0.06, 0.15)) -> torch.Tensor:
    """Free-form strokes (the irregular masks of DeepFill v2 / Palette): each stroke is a random
    walk of thick line segments with a random brush width (a fraction of the side)."""
    size = _check_size(size)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                            torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    mask = torch.zeros(size, size, dtype=torch.bool)
    n_strokes = int(torch.randint(strokes[0], strokes[1] + 1, (), generator=generator))
    for _ in range(n_strokes):
        radius = max(0.75, size * _uniform(generator, *width) / 2)
        point = (_uniform(generator, 0, size), _uniform(generator, 0, size))
        n_vertices = int(torch.randint(vertices[0], vertices[1] + 1, (), generator=generator))
        for _ in range(n_vertices):
            angle = _uniform(generator, 0, 2 * math.pi)
            length = size * _uniform(generator, 0.1, 0.4)
            nxt = (min(max(point[0] + length * math.cos(angle), 0.0), float(size)),
                   min(max(point[1] + length * math.sin(angle), 0.0), float(size)))
            mask |= _segment_distance(xs, ys, point, nxt) <= radius
            point = nxt
    return mask.float().view(1, 1, size, size)


def centred_mask(size: int, side: int) -> torch.Tensor:
    """A centred square hole `side` px wide (the middle of an emoji: 32 of 64 px is the studies' hole)."""
    size = _check_size(size)
    if not isinstance(side, int) or not 1 <= side <= size:
        raise ValueError(f"side must be an integer from 1 to {size}; got {side!r}")
    mask = torch.zeros(1, 1, size, size)
    start = (size - side) // 2
    mask[..., start:start + side, start:start + side] = 1
    return mask


def half_mask(size: int, side: Side = "left") -> torch.Tensor:
    """The left, right, top or bottom half (outpainting-style)."""
    size = _check_size(size)
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}; got {side!r}")
    mask = torch.zeros(1, 1, size, size)
    half = size // 2
    if side == "left":
        mask[..., :, :half] = 1
    elif side == "right":
        mask[..., :, size - half:] = 1
    elif side == "top":
        mask[..., :half, :] = 1
    else:
        mask[..., size - half:, :] = 1
    return mask


def random_mask(size: int, generator: torch.Generator | None = None,
                shapes: tuple[str, ...] = MASK_SHAPES) -> torch.Tensor:
    """A mask of a random shape (box, strokes or a half), never empty; the training masks of
    PaletteTask."""
    unknown = [s for s in shapes if s not in MASK_SHAPES]
    if unknown or not shapes:
        raise ValueError(f"shapes must be some of {', '.join(MASK_SHAPES)}; got {shapes!r}")
    shape = shapes[int(torch.randint(len(shapes), (), generator=generator))]
    if shape == "box":
        mask = box_mask(size, generator)
    elif shape == "strokes":
        mask = stroke_mask(size, generator)
    else:
        mask = half_mask(size, SIDES[int(torch.randint(len(SIDES), (), generator=generator))])
    if not bool(mask.any()):  # a degenerate stroke on a tiny canvas: fall back to a box
        mask = box_mask(size, generator)
    return mask


def mask_from_image(image: Image.Image, size: int) -> torch.Tensor:
    """A mask image (any mode, any size) as a binary [1, 1, size, size] tensor, 1 = fill.

    The alpha channel decides when the image has one (RGBA, LA, PA, P or L with a transparent
    colour: opaque = fill); otherwise the luminance does (white = fill). A pixel fills when its
    value is >= 128. Non-square masks are centred on a square of "keep" (as `pil_to_tensor`
    pads images), then resized: when shrinking, a working pixel fills if any source pixel under
    it fills, so thin strokes are never lost; when enlarging, nearest neighbour."""
    size = _check_size(size)
    if not isinstance(image, Image.Image):
        raise ImageError(f"the mask must be an image, got {type(image).__name__}")
    w, h = image.size
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise ImageError(f"mask is {w}x{h}; each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")
    try:
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(image, dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            values = 255.0 * arr / top
        elif "A" in image.getbands() or "transparency" in image.info:
            values = np.asarray(image.convert("RGBA"), dtype=np.float64)[..., 3]
        else:
            values = np.asarray(image.convert("L"), dtype=np.float64)
    except (OSError, ValueError) as e:
        raise ImageError(f"the mask image cannot be read: {e}") from e
    fill = torch.from_numpy(values >= 128).float()
    if w != h:
        side = max(w, h)
        canvas = torch.zeros(side, side)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top:top + h, left:left + w] = fill
        fill = canvas
    fill = fill.view(1, 1, *fill.shape)
    return resize_mask(fill, size)


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """A binary mask [B, 1, H, W] at size x size: covering when shrinking (any fill -> fill),
    nearest when enlarging; the result holds exactly 0 and 1."""
    size = _check_size(size)
    mask = (mask > 0.5).float()
    if mask.shape[-1] == size and mask.shape[-2] == size:
        return mask
    if mask.shape[-1] > size:
        return (F.interpolate(mask, size=(size, size), mode="area") > 0).float()
    return F.interpolate(mask, size=(size, size), mode="nearest")


def mask_coverage(mask: torch.Tensor) -> float:
    """The fraction of pixels to fill."""
    return float((mask > 0.5).float().mean())
