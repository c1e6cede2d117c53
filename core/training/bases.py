"""The 32 px pixel bases: the class-conditional UNet (`class_base`) and the text-conditioned one
(`text_base`). Both drop their condition 10% of the time (the null label, the empty prompt), so
one network gives both halves of classifier-free guidance.

The text base comes in two conditionings (`--text-conditioning`, `core.models.networks`):
- ``tokens``: a UNet trained from scratch, cross-attention over the project CLIP's token states.
- ``pooled``: transfer from the committed DiffAE. Its decoder already draws almost every training
  emoji from the emoji's semantic code z_sem; what a text base lacks is the code. So the network
  is the decoder (its UNet and z_proj copied), fed code = text_mlp(pooled CLIP embedding),
  de-normalised with the training codes' mean and std. A fresh run first fits text_mlp by
  regression, caption -> the normalised code of its emoji (`warm_start`, a few minutes on one
  CPU thread), then the whole network is fine-tuned with the usual diffusion loss, so it learns
  p(image | text) itself, the empty prompt included (classifier-free guidance).
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.data.emoji import captions_for, random_caption
from core.diffae import semantic_code
from core.images import save_grid
from core.models.checkpoints import CheckpointError, load_model
from core.models.networks import DiffusionModel, ModelConfig, image_unet_config, text_unet_config
from core.models.text_encoders import ClipTextEncoder
from core.pipeline import generate_class, generate_text
from core.training.task import DiffusionTask

GRID_PROMPTS = ["woman dancing, dark skin tone", "man dancing, light skin tone", "thumbs up", "red apple",
                "grinning face", "cat face", "a blue car", "keycap: 7", "person raising hand, medium skin tone",
                "woman with headscarf", "fire", "globe showing americas"]
# balance 0.5: People & Body is ~60% of the emoji but mostly tone and gender variants of a few
# hundred designs; weight (design size) ** -0.5 gives the other ~1,200 designs ~2x the draws
BASE_DEFAULTS = dict(channels=(32, 64, 128), balance=0.5)
TEXT_HIDDEN = 768            # pooled: hidden width of text_mlp
# pooled warm start: AdamW steps of the caption -> code regression, the learning rate on a cosine
# to 0. Decoding the predicted codes of 128 names of training emoji outside People & Body
# (`--focus-n`'s split): 3,000 steps leave a mean squared error of 0.035 on those names and
# 0.52 of them recognisable; 10,000 steps 0.011 and 0.59 (real renders 0.71).
REGRESSION_STEPS = 10_000
REGRESSION_BATCH, REGRESSION_LR = 256, 1e-3
# The pooled base's default guidance (its config's `guidance`). The decoder is conditioned so
# strongly by its code that guidance above 1 saturates and simplifies the emoji: on 64 names of
# training emoji outside People & Body, recognisable 0.59 / 0.53 / 0.38 at guidance 1 / 1.5 / 2
# after 500 fine-tuning steps (/ 0.13 at 3 after 250); see checkpoints/text_base/README.md.
POOLED_GUIDANCE = 1.0


class PixelBaseTask(DiffusionTask):
    """What the two 32 px bases share: their recipe and the design balance of their draws."""
    options = DiffusionTask.options | {"balance"}
    defaults = BASE_DEFAULTS


class ClassBaseTask(PixelBaseTask):
    name, folder = "class_base", "class_base"
    gpu_profile = dict(batch=512, lr=1e-3, warmup=500, budget_minutes=1.25)

    def build(self):
        classes = self.data.classes
        unet = image_unet_config(32, self.cfg.channels, num_class_embeds=len(classes) + 1,
                                 attention_levels=1)
        model = DiffusionModel(ModelConfig(kind="class_base", resolution=32, unet=unet, classes=list(classes)))
        self.schedule = model.schedule
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        self.labels = torch.as_tensor(self.data.labels)
        return model

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.batch)
        labels = self.labels[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < self.cfg.cond_dropout
        labels[drop] = len(self.data.classes)  # the null label
        return self.images[idx].to(device), {"labels": labels.to(device)}

    def sample_grid(self, model, path, device):
        names = [self.data.records[i].subgroup for i in self.draw(torch.Generator().manual_seed(1), 8)]
        images = generate_class(model, names, guidance=3.0, steps=25, seeds=list(range(len(names))))
        save_grid(images, path, columns=8)


class TextBaseTask(PixelBaseTask):
    name, folder = "text_base", "text_base"
    options = PixelBaseTask.options | {"text_conditioning"}
    gpu_profile = dict(batch=512, lr=1e-3, warmup=500, budget_minutes=2.25)

    def build(self):
        clip_folder = Path(self.cfg.checkpoints) / "clip"
        self.encoder = ClipTextEncoder.from_folder(clip_folder)
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        if self.cfg.text_conditioning == "pooled":
            model = self._build_from_decoder()
        else:
            unet = text_unet_config(32, self.cfg.channels, cross_attention_dim=self.encoder.width, attention_levels=1)
            model = DiffusionModel(ModelConfig(kind="text_base", resolution=32, unet=unet, text_encoder="clip"))
        self.schedule = model.schedule
        return model

    def _build_from_decoder(self) -> DiffusionModel:
        """The pooled text base: the committed DiffAE decoder's UNet and z_proj, a fresh text_mlp,
        and the mean / std of the training emoji's codes (`self.codes`, kept for `warm_start`)."""
        folder = Path(self.cfg.checkpoints) / "diffae"
        decoder = load_model(folder)
        if decoder.kind != "diffae" or decoder.resolution != 32:
            raise CheckpointError(f"{folder} holds a {decoder.kind!r} model at {decoder.resolution} px; "
                                  "the pooled text base starts from a 32 px DiffAE")
        d = decoder.config
        config = ModelConfig(kind="text_base", resolution=32, unet=d.unet, prediction=d.prediction,
                             schedule=d.schedule, text_encoder="clip", text_conditioning="pooled",
                             pooled_dim=self.encoder.pooled_width, text_hidden=TEXT_HIDDEN,
                             semantic_dim=d.semantic_dim, guidance=POOLED_GUIDANCE)
        model = DiffusionModel(config)
        model.net.load_state_dict(decoder.net.state_dict())
        model.z_proj.load_state_dict(decoder.z_proj.state_dict())
        self.codes = semantic_code(decoder, self.images[self.train_idx])
        model.code_mean.copy_(self.codes.mean(0))
        model.code_std.copy_(self.codes.std(0))
        return model

    def warm_start(self, model, log):
        """Pooled: fit text_mlp so that every caption of a training emoji predicts the emoji's
        normalised code (MSE, AdamW), before the fine-tuning starts."""
        if self.cfg.text_conditioning != "pooled":
            return
        captions, rows = [], []
        for j, i in enumerate(self.train_idx.tolist()):
            for caption in captions_for(self.data.records[i]):
                captions.append(caption)
                rows.append(j)
        device = model.code_mean.device   # the network is on the training device already (a GPU too)
        self.encoder.to(device)
        pooled = torch.cat([self.encoder.encode(captions[s:s + 512]).pooled for s in range(0, len(captions), 512)])
        target = ((self.codes.to(device) - model.code_mean) / model.code_std)[torch.as_tensor(rows, device=device)]
        gen = torch.Generator().manual_seed(self.cfg.seed)
        mlp = model.text_mlp
        optimizer = torch.optim.AdamW(mlp.parameters(), lr=REGRESSION_LR)
        steps = 20 if self.cfg.smoke else REGRESSION_STEPS
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(steps):
            b = torch.randint(len(pooled), (REGRESSION_BATCH,), generator=gen).to(device)
            loss = (mlp(pooled[b]) - target[b]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        log(f"text_base: text_mlp fitted to {len(captions)} captions of {len(set(rows))} emoji "
            f"by regression ({steps} steps; last batch MSE {loss.item():.3f})")

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.batch)
        drop = torch.rand(len(idx), generator=gen) < self.cfg.cond_dropout
        prompts = ["" if d else random_caption(self.data.records[i], gen) for i, d in zip(idx.tolist(), drop.tolist())]
        self.encoder.to(device)
        emb = self.encoder.encode(prompts)
        return self.images[idx].to(device), emb.as_cond()

    def sample_grid(self, model, path, device):
        prompts = GRID_PROMPTS
        images = generate_text(model, self.encoder, prompts, guidance=3.0, steps=25, seeds=list(range(len(prompts))))
        save_grid(images, path, columns=len(prompts) // 2)
