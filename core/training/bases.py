"""The 32 px pixel bases: the class-conditional UNet (`class_base`) and the text-conditioned one
(`text_base`, cross-attention over the project CLIP's token embeddings). Both drop their
condition 10% of the time (the null label, the empty prompt), so one network gives both halves
of classifier-free guidance."""
from __future__ import annotations

from pathlib import Path

import torch

from core.data.emoji import random_caption
from core.images import save_grid
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
    gpu_profile = dict(batch=512, lr=1e-3, warmup=500, budget_minutes=2.25)

    def build(self):
        clip_folder = Path(self.cfg.checkpoints) / "clip"
        self.encoder = ClipTextEncoder.from_folder(clip_folder)
        unet = text_unet_config(32, self.cfg.channels, cross_attention_dim=self.encoder.width, attention_levels=1)
        model = DiffusionModel(ModelConfig(kind="text_base", resolution=32, unet=unet, text_encoder="clip"))
        self.schedule = model.schedule
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        return model

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.batch)
        drop = torch.rand(len(idx), generator=gen) < self.cfg.cond_dropout
        prompts = ["" if d else random_caption(self.data.records[i], gen) for i, d in zip(idx.tolist(), drop.tolist())]
        self.encoder.to(device)
        emb = self.encoder.encode(prompts)
        return self.images[idx].to(device), {"tokens": emb.tokens, "mask": emb.mask}

    def sample_grid(self, model, path, device):
        prompts = GRID_PROMPTS
        images = generate_text(model, self.encoder, prompts, guidance=3.0, steps=25, seeds=list(range(len(prompts))))
        save_grid(images, path, columns=len(prompts) // 2)
