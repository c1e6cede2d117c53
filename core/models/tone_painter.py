"""The tone painter: a small image-to-image network that puts a skin tone on a 32 px emoji, the way
an emoji font does it, by repainting the skin and leaving everything else as it is.

Unicode draws a toned emoji as the default (yellow) design with its skin repainted in the tone's
colours; the rest of the artwork is the same pixels. The painter learns that repainting from the
designs the data draws both ways: given an image and a tone, it predicts where the skin is (a
mask m) and the skin's colour there (c), and returns (1 - m) * x + m * c, so a pixel it does not
take for skin is returned unchanged. Its training shows it the default skin in random hues (the
same design with a blue, green or grey skin, `core.training.tone_painter.recolour_skin`), so it
finds skin by its shape and shading, not by being yellow: a green zombie and a blue genie's face
are repainted too (not the troll's grey-green hide: its card has the figures). It serves the
designs Unicode never draws with a tone ("troll, dark skin tone"), whose codes the prior and the
decoder only know in one colour (`core.tone_words`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.models.checkpoints import WEIGHTS_FILE, load_configured, save_folder

TONE_PAINTER_FOLDER = "tone_painter"


@dataclass
class TonePainterConfig:
    tones: list[str]       # the tones it paints, light to dark (`core.data.emoji.TONES` when trained here)
    width: int = 24        # channels at 32 px; 2x and 4x that at 16 and 8 px
    resolution: int = 32   # the size it paints at (the semantic base's)
    kind: str = "tone_painter"

    def __post_init__(self):
        self.tones = list(self.tones)
        if not self.tones or not all(isinstance(t, str) for t in self.tones):
            raise ValueError(f"tones must be a list of tone names, got {self.tones!r}")
        if not isinstance(self.width, int) or self.width < 8 or self.width % 8:
            raise ValueError(f"width must be a whole multiple of 8 (its group norms have 8 groups), got {self.width!r}")
        if self.resolution not in (32, 64, 128):
            raise ValueError(f"resolution must be 32, 64 or 128, got {self.resolution!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TonePainterConfig:
        if d.get("kind") != "tone_painter":
            raise ValueError(f"the config is a {d.get('kind')!r}, not a tone painter's")
        return cls(**d)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class TonePainter(nn.Module):
    """x [N, 3, r, r] in [-1, 1] and a tone index per image (into `config.tones`) -> (painted image, skin
    mask [N, 1, r, r] in [0, 1]). A three-level UNet over the image and the tone as one-hot constant planes."""

    def __init__(self, config: TonePainterConfig):
        super().__init__()
        self.config = config
        w = self.config.width
        self.down1 = _block(3 + len(config.tones), w)
        self.down2 = _block(w, 2 * w)
        self.mid = _block(2 * w, 4 * w)
        self.up2 = _block(4 * w + 2 * w, 2 * w)
        self.up1 = _block(2 * w + w, w)
        self.head = nn.Conv2d(w, 4, 1)   # mask logit + skin colour

    def forward(self, x: torch.Tensor, tone: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        planes = F.one_hot(tone.long(), len(self.config.tones)).to(x.dtype)[:, :, None, None]
        planes = planes.expand(-1, -1, *x.shape[-2:])
        h1 = self.down1(torch.cat([x, planes], 1))
        h2 = self.down2(F.avg_pool2d(h1, 2))
        h3 = self.mid(F.avg_pool2d(h2, 2))
        u2 = self.up2(torch.cat([F.interpolate(h3, scale_factor=2.0, mode="nearest"), h2], 1))
        u1 = self.up1(torch.cat([F.interpolate(u2, scale_factor=2.0, mode="nearest"), h1], 1))
        out = self.head(u1)
        mask, colour = torch.sigmoid(out[:, :1]), torch.tanh(out[:, 1:])
        return (1 - mask) * x + mask * colour, mask   # pixels not taken for skin pass through unchanged

    def save(self, folder: str | os.PathLike, card: str) -> Path:
        """config.json + fp16 model.safetensors + the card (`core.models.checkpoints.save_folder`)."""
        return save_folder(folder, self.config.to_dict(), self.state_dict(), card)

    @torch.no_grad()
    def paint(self, x: torch.Tensor, tone: str) -> torch.Tensor:
        """`x` [N, 3, r, r] in [-1, 1] at the painter's resolution, repainted in `tone` (one of its tones)."""
        tones = self.config.tones
        if tone not in tones:
            raise ValueError(f"skin tone must be one of {', '.join(tones)}; got {tone!r}")
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != self.config.resolution:
            raise ValueError(f"the tone painter paints [N, 3, {self.config.resolution}, {self.config.resolution}] "
                             f"images; got {tuple(x.shape)}")
        p = next(self.parameters())
        index = torch.full((len(x),), tones.index(tone), device=p.device)
        return self(x.to(p.device, p.dtype), index)[0].to(x.device, x.dtype).clamp(-1, 1)


def load_tone_painter(root: str | os.PathLike, device: str | torch.device = "cpu") -> TonePainter | None:
    """The tone painter under a checkpoints root, or None where there is none (prompts are then toned
    through the code alone, `core.tone_words`)."""
    folder = Path(root) / TONE_PAINTER_FOLDER
    if not (folder / WEIGHTS_FILE).is_file():
        return None
    return load_configured(folder, TonePainterConfig, TonePainter, device)
