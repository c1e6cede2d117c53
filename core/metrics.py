"""The image metrics of every evaluation, each in one place: PSNR, SSIM, the Frechet distance
between two sets of features, colour error in CIE Lab (dE76), and diversity (the mean pairwise
distance between samples).

SSIM is the standard one (Wang et al. 2004): an 11x11 Gaussian window with sigma 1.5, K1=0.01,
K2=0.03, computed on each RGB channel in [0, 1] and averaged over channels and over the valid
region (no padding); this equals ``skimage.metrics.structural_similarity(x, y,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``.
PSNR is per image; the evaluations average it over images.

A Frechet distance from N samples in a D-dimensional space is biased upward when N is small (the
covariance has rank <= N-1, often < D): compare FD numbers only at equal N."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
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


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian of SSIM (float64)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """[B] SSIM (Wang et al. 2004) of images [B, C, H, W] (or [C, H, W]) in [0, data_range].

    Gaussian-weighted local statistics (``window`` x ``window``, ``sigma``), the SSIM map on
    each channel over the valid region (windows fully inside the image), averaged over the
    map and the channels. Computed in float64.
    """
    x, y = _pair(x, y)
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM with a {window}x{window} window needs images at least that big, "
                         f"got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    g = gaussian_window(window, sigma).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def filt(z):
        return F.conv2d(z, kernel, groups=c)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = filt(x), filt(y)
    s_xx = filt(x * x) - mu_x ** 2
    s_yy = filt(y * y) - mu_y ** 2
    s_xy = filt(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * s_xy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (s_xx + s_yy + c2)
    return (num / den).flatten(1).mean(1)


def frechet_distance(x, y, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two sets of vectors [N, D] and [M, D]:
    ||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)), with ``scipy.linalg.sqrtm``.

    As in pytorch-fid, when the matrix square root is not finite (singular covariances) both
    covariances get ``eps`` added to their diagonal; the imaginary part sqrtm may leave from
    rounding is dropped, and a tiny negative result from rounding is returned as 0.
    """
    from scipy import linalg

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two [N, D] arrays with the same D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the Frechet distance needs at least 2 vectors per set")
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s_x @ s_y)
        if not np.isfinite(covmean).all():
            offset = np.eye(s_x.shape[0]) * eps
            covmean = linalg.sqrtm((s_x + offset) @ (s_y + offset))
    covmean = np.real(covmean)
    diff = mu_x - mu_y
    fd = float(diff @ diff + np.trace(s_x) + np.trace(s_y) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> [0, 1], float, on the CPU (what PSNR and SSIM read)."""
    return ((images.float().clamp(-1, 1) + 1) / 2).cpu()


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
