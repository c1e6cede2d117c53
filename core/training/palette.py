"""Palette (Saharia et al. 2022) at 64x64: one model for colorization and inpainting, conditioned
on a source image and a mask concatenated to x_t and on a task label (`PALETTE_TASKS`). Each
example is one task at random; inpainting masks are boxes, free-form strokes or halves
(`core.data.masks`). No condition dropout: the source is always given. With `residual_scale`
the model diffuses the scaled difference to the task's baseline (`core.translate.palette_baseline`),
as the SR stages do over their upsampled input."""
from __future__ import annotations

import torch

from core.data.masks import random_mask
from core.images import save_grid
from core.models.networks import PALETTE_TASKS, DiffusionModel, ModelConfig, palette_unet_config, unet_backbone
from core.pipeline import StageSettings
from core.training.config import PaletteSettings
from core.training.task import DiffusionTask
from core.translate import colorize, grayscale, inpaint, palette_baseline


class PaletteTask(DiffusionTask):
    name, folder = "palette", "palette"
    resolution = 64
    settings = PaletteSettings
    # residual scale 2 over the task's baseline (grayscale / mean-colour fill): the residuals
    # have std 0.33 (colorize) and 0.30 (inpaint; 0.55 inside the mask) on the training emoji
    defaults = dict(channels=(32, 64, 128), residual_scale=2.0)
    gpu_profile = dict(batch=256, lr=1e-3, warmup=500, budget_minutes=0.75)

    def build(self):
        unet = palette_unet_config(self.resolution, self.cfg.task.channels, attention_levels=1)
        model = DiffusionModel(ModelConfig(kind="palette", resolution=self.resolution, backbone=unet_backbone(unet),
                                           conditioner={"type": "source_mask_concat", "tasks": list(PALETTE_TASKS)},
                                           residual_scale=self.cfg.task.residual_scale or None))
        self.schedule = model.schedule
        self.images = self.data.images_at(self.resolution, torch.arange(len(self.data.records)))
        # A bank of masks drawn once (seeded), each used under one of the 8 flips / rotations:
        # drawing free-form strokes costs ~1 ms a mask, too much per example for big GPU batches.
        bank_gen = torch.Generator().manual_seed(self.cfg.run.seed + 4321)
        n_bank = max(64, min(2048, 8 * self.cfg.optim.batch))
        self.mask_bank = torch.cat([random_mask(self.resolution, bank_gen) for _ in range(n_bank)])
        return model

    def random_masks(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n training masks [n, 1, r, r]: bank masks under a random element of the dihedral group."""
        pick = torch.randint(len(self.mask_bank), (n,), generator=gen)
        op = torch.randint(8, (n,), generator=gen).tolist()
        masks = self.mask_bank[pick]
        return torch.stack([torch.rot90(m, k % 4, dims=(-2, -1)).flip(-1) if k >= 4 else
                            torch.rot90(m, k, dims=(-2, -1)) for m, k in zip(masks, op)])

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.optim.batch)
        x0 = self.images[idx]
        b = x0.shape[0]
        task = torch.randint(len(PALETTE_TASKS), (b,), generator=gen)
        inpainting = (task == PALETTE_TASKS.index("inpaint")).view(b, 1, 1, 1)
        mask = torch.where(inpainting, self.random_masks(b, gen), torch.ones(()))
        colorizing = (task == PALETTE_TASKS.index("colorize")).view(b, 1, 1, 1)
        source = torch.where(colorizing, grayscale(x0), x0 * (1 - mask))
        if self.cfg.task.residual_scale:   # the target is the scaled residual over the whole image's baseline
            x0 = (x0 - palette_baseline(source, mask, colorizing)) * self.cfg.task.residual_scale
        if self.cfg.task.crop:   # the same random window of target, source and mask (the UNet is convolutional)
            c = self.cfg.task.crop
            i, j = torch.randint(self.resolution - c + 1, (2,), generator=gen).tolist()
            x0, source, mask = (v[..., i:i + c, j:j + c] for v in (x0, source, mask))
        return x0.to(device), {"source": source.to(device), "mask": mask.to(device), "task": task.to(device)}

    def sample_grid(self, model, path, device):
        """Rows: source | result | real, three colorizations then three inpaintings (held out)."""
        idx = torch.as_tensor(self.data.indices("heldout"))[:6]
        x = self.images[idx].to(device)
        settings = StageSettings(steps=5 if self.cfg.run.smoke else 25, guidance=1.0)
        gen = torch.Generator().manual_seed(1)
        masks = torch.cat([random_mask(self.resolution, gen) for _ in range(3)]).to(device)
        col = colorize(model, x[:3], seeds=range(3), settings=settings)
        inp = inpaint(model, x[3:], masks, seeds=range(3, 6), settings=settings)
        sources = torch.cat([grayscale(x[:3]), x[3:] * (1 - masks)])
        save_grid(torch.cat([sources, col, inp, x]).cpu(), path, columns=6)
