"""The diffusion autoencoder (DiffAE, Preechakul et al. 2022): the semantic encoder and the decoder
UNet trained jointly with the v-loss of `DiffusionTask`, z_sem = Enc(x0) computed inside each loss
so the gradients reach the encoder. The min-SNR weight is floored at `snr_floor` (1 by default,
"truncated SNR", Salimans & Ho 2022): the noisiest steps, where only z_sem can tell the decoder what
the image is, would otherwise count for almost nothing and the decoder learns to ignore z_sem. With
`cond_dropout` > 0 (0 by default) the code is replaced by the null code (zeros) that often, so the
decoder can be sampled with classifier-free guidance on z_sem, as DALL-E 2's decoder is
(`core.diffae.decode(..., guidance=s)`). With `freeze_encoder` only the decoder learns: z_sem stays
what the prior, the attribute directions and the code-fed bases were fitted on (a fine-tune of both
moves the codes by a third of their length in 1,250 steps). The export also fits and stores the
attribute directions (`core.diffae`)."""
from __future__ import annotations

import torch

from core.diffae import ENCODER_CHANNELS, SEMANTIC_DIM, decode, encode, fit_directions, fresh_noise
from core.images import save_grid
from core.models.checkpoints import save_model
from core.models.networks import DiffusionModel, ModelConfig, diffae_unet_config, unet_backbone
from core.training.config import DiffAESettings
from core.training.task import DiffusionTask


class DiffAETask(DiffusionTask):
    """DDP caveat: the encoder runs outside the wrapped module's forward (through
    `accelerator.unwrap_model`). Its parameters still receive gradients, and DDP's reducer hooks
    fire on them in backward, so multi-GPU training works with every parameter used each step;
    but it relies on that, not on forward. Single-process training (CPU or one GPU) is exact."""
    name, folder = "diffae", "diffae"
    settings = DiffAESettings
    defaults = dict(channels=(32, 64, 128), snr_floor=1.0, cond_dropout=0.0)
    gpu_profile = dict(batch=256, lr=1e-3, warmup=500, budget_minutes=1.25)

    def build(self):
        smoke = self.cfg.run.smoke
        semantic_dim = 32 if smoke else SEMANTIC_DIM
        enc = (8, 16) if smoke else ENCODER_CHANNELS
        channels = tuple(self.cfg.task.channels)   # self-attention only at 16x16 or below (2 levels: none)
        self.resolution = self.cfg.task.resolution or 64
        unet = diffae_unet_config(self.resolution, channels, attention_levels=1 if len(channels) >= 3 else 0,
                                  head_dim=8 if smoke else 32)
        model = DiffusionModel(ModelConfig(kind="diffae", resolution=self.resolution, backbone=unet_backbone(unet),
                                           conditioner={"type": "semantic_code", "semantic_dim": semantic_dim,
                                                        "encoder_channels": list(enc)}))
        self.schedule = model.schedule
        self.images = self.data.images_at(self.resolution)
        self._encoder = None
        return model

    def loss(self, model, gen, device):
        self._encoder = getattr(model, "module", model).conditioner.encoder   # DDP / accelerate wrapper -> the model
        return super().loss(model, gen, device)

    def x0_and_cond(self, gen, device):
        x0 = self.images[self.draw(gen, self.cfg.optim.batch)].to(device)
        with torch.set_grad_enabled(not self.cfg.task.freeze_encoder):
            z_sem = self._encoder(x0)
        if self.cfg.task.cond_dropout:   # DALL-E 2's decoder: the code dropped (the null code, zeros) for guidance
            keep = torch.rand(len(x0), generator=gen) >= self.cfg.task.cond_dropout
            z_sem = z_sem * keep.to(device, z_sem.dtype)[:, None]
        return x0, {"z_sem": z_sem}

    def export(self, model, folder, card):
        save_model(model, folder, card)
        fit_directions(model, self.data).save(folder)

    def sample_grid(self, model, path, device):
        """Rows: held-out originals, reconstructions (z_sem, x_T), z_sem with fresh noise."""
        idx = torch.as_tensor(self.data.indices("heldout"))[:8]
        x = self.data.images_at(self.resolution, idx).to(device)
        was_training = model.training
        model.eval()
        steps = 4 if self.cfg.run.smoke else 20
        z, x_T = encode(model, x, steps)
        rec = decode(model, z, x_T, steps)
        fresh = decode(model, z, fresh_noise(model, range(len(idx))), steps)
        model.train(was_training)
        save_grid(torch.cat([x, rec, fresh]).cpu(), path, columns=len(idx))
