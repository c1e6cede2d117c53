"""The small CNN of the evaluators: the trunk of the attribute classifiers
(`core.evaluation.classifiers`) and of the judge (`core.evaluation.judge`), and the 32x32 input
they both read (`to_resolution`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESOLUTION = 32


class SmallCNN(nn.Module):
    """conv(w) -> conv(2w, /2) -> conv(4w, /2) -> conv(4w, /2) -> mean pool -> linear."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        w = width

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

        self.features = nn.Sequential(block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 4 * w, 2),
                                      block(4 * w, 4 * w, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_resolution(images: torch.Tensor, resolution: int = RESOLUTION) -> torch.Tensor:
    """[-1,1] images [B,3,H,W] of any size -> [B,3,r,r]: area-downsampled, or bilinearly upsampled."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B,3,H,W] in [-1,1], got {tuple(images.shape)}")
    images = images.float()
    h, w = images.shape[-2:]
    if (h, w) == (resolution, resolution):
        return images
    if h >= resolution and w >= resolution:
        return F.interpolate(images, size=(resolution, resolution), mode="area")
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


__all__ = ["RESOLUTION", "SmallCNN", "to_resolution"]
