"""The image metrics of every evaluation, each in one place: PSNR, colour error in CIE Lab (dE76),
and diversity (the mean pairwise distance between samples)."""
from __future__ import annotations

import torch
from torch import Tensor


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim == 3:
        x, y = x[None], y[None]
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"need two image batches [B, C, H, W] of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    return x.double(), y.double().to(x.device)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, mask: Tensor | None = None) -> Tensor:
    """[B] PSNR in dB of images [B, C, H, W] (or [C, H, W]) whose values span `data_range` (1 for
    [0, 1], 2 for [-1, 1]): 10 log10(data_range^2 / MSE), the MSE over the pixels where `mask`
    ([B or 1, 1, H, W]) is 1, all of them by default; inf where the images are identical there."""
    x, y = _pair(x, y)
    err = (x - y) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.double().to(x.device).expand_as(err)
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)
    return 10 * torch.log10(data_range ** 2 / mse)   # mse 0 -> inf


def srgb_to_lab(x: Tensor) -> Tensor:
    """CIE L*a*b* (D65) of sRGB images [B, 3, H, W] in [-1, 1]: sRGB decoding (IEC 61966-2-1),
    linear RGB -> XYZ, then CIE 1976 L*a*b* relative to the D65 white."""
    c = ((x.double() + 1) / 2).clamp(0, 1)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                      [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64, device=x.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, linear)
    white = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    t = xyz / white
    delta = 6 / 29
    f = torch.where(t > delta ** 3, t.clamp(min=0) ** (1 / 3), t / (3 * delta ** 2) + 4 / 29)
    L = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], dim=1)


def delta_e(x: Tensor, y: Tensor) -> Tensor:
    """Mean CIE76 colour difference per image (Euclidean distance in Lab)."""
    return (srgb_to_lab(x) - srgb_to_lab(y)).pow(2).sum(dim=1).sqrt().mean(dim=(1, 2))


def mean_pairwise_distance(vectors: Tensor) -> float:
    """Mean Euclidean distance over all pairs of rows of [n, ...] (n >= 2): the diversity of samples
    (of their pixels, or of their features in some network)."""
    v = vectors.flatten(1).double()
    if len(v) < 2:
        raise ValueError("a pairwise distance needs at least 2 samples")
    d = torch.cdist(v, v)
    n = len(v)
    return float(d.sum() / (n * (n - 1)))


def pixel_diversity(images: Tensor) -> float:
    """The diversity of images [n, 3, H, W] in [-1, 1] in pixels: their mean pairwise distance as an
    RMS per value on the [0, 1] scale."""
    return mean_pairwise_distance(images) / 2 / images[0].numel() ** 0.5
