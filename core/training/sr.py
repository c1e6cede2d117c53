"""The super-resolution stages (SR3 with CDM's noise augmentation): x_t concatenated with the
bilinearly upsampled, noise-augmented low-res image. They diffuse the residual over that upsampled
input, scaled (`residual_scale`, 0 = the image itself as in SR3): the colours and shapes come from
the input, the model supplies the edges; trained on random crops (`crop`) since the UNet is
convolutional."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.images import save_grid
from core.models.networks import DiffusionModel, ModelConfig, image_unet_config, unet_backbone
from core.pipeline import augment_low_res, upscale
from core.training.config import SRSettings
from core.training.task import DiffusionTask


class SRTask(DiffusionTask):
    """low -> high px; the subclasses are the two stages of the cascade."""
    low: int
    high: int
    settings = SRSettings
    # residual scale 4: the residual over bilinear upsampling has std 0.13 (32->64) and 0.10
    # (64->128) on the training emoji, about 0.5 and 0.4 once scaled (the images: 0.63)
    defaults = dict(channels=(32, 64, 128), crop=32, residual_scale=4.0)

    def build(self):
        unet = image_unet_config(self.high, self.cfg.task.channels, in_channels=6, attention_levels=0,
                                 class_embed_type="timestep")
        model = DiffusionModel(ModelConfig(kind="sr", resolution=self.high, backbone=unet_backbone(unet),
                                           conditioner={"type": "low_res_concat", "low_resolution": self.low},
                                           residual_scale=self.cfg.task.residual_scale or None))
        self.schedule = model.schedule
        all_idx = torch.arange(len(self.data.records))
        self.images_high = self.data.images_at(self.high, all_idx)
        self.images_low = self.data.images_at(self.low, all_idx)
        return model

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.optim.batch)
        high = self.images_high[idx]
        low_up = F.interpolate(self.images_low[idx], size=self.high, mode="bilinear", align_corners=False)
        if self.cfg.task.crop:   # SR3-style patches: the same random window of both
            c = self.cfg.task.crop
            i, j = torch.randint(self.high - c + 1, (2,), generator=gen).tolist()
            high, low_up = high[..., i:i + c, j:j + c], low_up[..., i:i + c, j:j + c]
        aug_t = torch.randint(self.cfg.task.sr_aug_max + 1, (len(idx),), generator=gen)
        noise = torch.randn(low_up.shape, generator=gen)
        low_aug = augment_low_res(self.schedule, low_up, aug_t, noise)
        # Residual SR: the model diffuses what bilinear upsampling misses (edges), scaled to unit-ish
        # variance; the colours and shapes come from the clean upsampled input at sampling time.
        x0 = (high - low_up) * self.cfg.task.residual_scale if self.cfg.task.residual_scale else high
        return x0.to(device), {"low_res": low_aug.to(device), "aug_t": aug_t.float().to(device)}

    def sample_grid(self, model, path, device):
        idx = torch.as_tensor(self.data.indices("heldout"))[:6]
        low = self.data.images_at(self.low, idx)
        high = self.data.images_at(self.high, idx)
        bicubic = F.interpolate(low, size=self.high, mode="bicubic", align_corners=False).clamp(-1, 1)
        sr = upscale(model, low, steps=25, seeds=list(range(len(idx))))
        save_grid(torch.cat([bicubic, sr, high]), path, columns=len(idx))


class SR64Task(SRTask):
    name = folder = "sr64"
    low, high = 32, 64
    gpu_profile = dict(batch=256, lr=1e-3, warmup=500, crop=None, budget_minutes=1.0)


class SR128Task(SRTask):
    name = folder = "sr128"
    low, high = 64, 128
    gpu_profile = dict(batch=256, lr=1e-3, warmup=500, crop=64, budget_minutes=1.0)
