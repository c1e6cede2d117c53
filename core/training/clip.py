"""The project's CLIP (`core.models.clip_model`): an image tower and a text tower over a vocabulary
built from the captions, trained contrastively on the emoji and their captions. Its text tower
conditions the text base and the semantic prior; its image tower scores samples."""
from __future__ import annotations

from dataclasses import replace

import torch

from core.data.emoji import captions_for, random_caption
from core.models.checkpoints import save_folder
from core.models.clip_model import ClipConfig, CompactTokenizer, build_clip, build_vocab, clip_loss
from core.training.task import Task


class ClipTask(Task):
    name, folder = "clip", "clip"
    defaults = dict(batch=128, lr=5e-4, steps=3000)
    gpu_profile = dict(batch=1024, lr=1e-3, warmup=100, budget_minutes=0.75)

    def build(self):
        captions = [c for r in self.data.records for c in captions_for(r)]
        base = ClipConfig.tiny() if self.cfg.run.smoke else ClipConfig()
        self.clip_config = replace(base, vocab=build_vocab(captions))
        self.tokenizer = CompactTokenizer(self.clip_config)
        self.images = self.data.images_at(64, torch.arange(len(self.data.records)))
        return build_clip(self.clip_config)

    def loss(self, model, gen, device):
        idx = self.train_idx[torch.randperm(len(self.train_idx), generator=gen)[: self.cfg.optim.batch]]
        prompts = [random_caption(self.data.records[i], gen) for i in idx.tolist()]
        ids, _ = self.tokenizer(prompts)
        with self.autocast(device):
            return clip_loss(model, self.images[idx].to(device), ids.to(device))

    def export(self, model, folder, card):
        save_folder(folder, {"kind": "clip", "clip": self.clip_config.to_dict()}, model.state_dict(), card)

    def sample_grid(self, model, path, device):
        pass  # CLIP has no samples; its retrieval accuracy is printed by the evaluation script
