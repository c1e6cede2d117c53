"""Training the semantic prior (`python -m core.training.loop prior`): what it learns from.

Data: the committed DiffAE's semantic code z_sem of every training-split emoji at the DiffAE's
resolution (one deterministic code per emoji, computed once at start), normalised per dimension
with the mean / std of those codes; and, per emoji, the pooled CLIP embedding of each of its
captions (`core.data.emoji.captions_for`, computed once) and its subgroup label.

Each batch draws emoji with weight 1 / sqrt(number of emoji of the same design) (a design is an
emoji up to skin tone and gender, `design_of`): People & Body is ~60% of the emoji but mostly
tone and gender variants of a few hundred designs, so uniform draws would spend most steps on
them. Each sample is conditioned on one random caption (55%), on its label (35%) or on nothing
(10%, the unconditional half of classifier-free guidance). Loss: plain MSE of the predicted x0
(DALL-E 2's prior objective), noise levels uniform on the cosine schedule.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.models.checkpoints import load_model, save_folder
from core.data.emoji import captions_for, design_weights
from core.models.prior import PriorConfig, SemanticPrior, sample_codes
from core.training.loop import GRID_PROMPTS, Task, _data, save_grid

TEXT_SHARE, LABEL_SHARE = 0.55, 0.35   # the rest (10%) is unconditional


@torch.no_grad()
def semantic_codes(diffae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """z_sem of [N, 3, r, r] images in [-1, 1] (the DiffAE's encoder), float32."""
    from core.diffae import semantic_code
    return semantic_code(diffae, images, batch)


class PriorTask(Task):
    name, folder = "semantic prior", "prior"

    def __init__(self, cfg):
        self.cfg = cfg
        self.data = _data(cfg)
        self.train_idx = torch.as_tensor(self.data.indices("train"))
        self.weights = design_weights([self.data.records[i] for i in self.train_idx.tolist()])

    def build(self):
        from core.models.text_encoders import ClipTextEncoder
        root = Path(self.cfg.checkpoints)
        self.diffae = load_model(root / "diffae")
        self.encoder = ClipTextEncoder.from_folder(root / "clip")
        images = self.data.images_at(self.diffae.resolution, self.train_idx)
        z = semantic_codes(self.diffae, images)
        width, depth = ((32, 1) if self.cfg.smoke else (self.cfg.width or 384, self.cfg.depth or 4))
        config = PriorConfig(dim=z.shape[1], text_dim=self.encoder.pooled_width, classes=list(self.data.classes),
                             width=width, depth=depth)
        model = SemanticPrior(config)
        model.code_mean.copy_(z.mean(0))
        model.code_std.copy_(z.std(0).clamp_min(1e-6))
        self.schedule = model.schedule
        self.codes = model.normalise(z)
        self.labels = torch.as_tensor(self.data.labels)[self.train_idx]
        # every caption of every training emoji, encoded once; caption_rows[i] = (first, count)
        captions, self.caption_rows = [], []
        for i in self.train_idx.tolist():
            own = captions_for(self.data.records[i])
            self.caption_rows.append((len(captions), len(own)))
            captions.extend(own)
        self.caption_emb = torch.cat([self.encoder.encode(captions[s:s + 512]).pooled.float()
                                      for s in range(0, len(captions), 512)])
        return model

    def cond_batch(self, rows: torch.Tensor, gen: torch.Generator, model: SemanticPrior) -> dict:
        b = len(rows)
        u = torch.rand(b, generator=gen)
        use_text, use_label = u < TEXT_SHARE, (u >= TEXT_SHARE) & (u < TEXT_SHARE + LABEL_SHARE)
        pick = torch.rand(b, generator=gen)
        first = torch.tensor([self.caption_rows[r][0] for r in rows.tolist()])
        count = torch.tensor([self.caption_rows[r][1] for r in rows.tolist()])
        text = self.caption_emb[first + (pick * count).long().clamp(max=count - 1)]
        labels = torch.where(use_label, self.labels[rows], torch.full((b,), model.num_classes))
        return {"text": text * use_text[:, None], "has_text": use_text.float(), "labels": labels}

    def loss(self, model, gen, device):
        rows = torch.multinomial(self.weights, self.cfg.batch, replacement=True, generator=gen)
        x0 = self.codes[rows]
        cond = {k: v.to(device) for k, v in self.cond_batch(rows, gen, model).items()}
        t = torch.randint(self.schedule.T, (len(rows),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        x_t = self.schedule.q_sample(x0, t, noise).to(device)
        with self.autocast(device):
            pred = model(x_t, t.to(device).float(), cond)
        return (pred.float() - x0.to(device)).pow(2).mean()   # x0 MSE (DALL-E 2 sec. 2.1)

    def export(self, model, folder, card):
        save_folder(folder, model.config.to_dict(), model.state_dict(), card)

    def sample_grid(self, model, path, device):
        from core.diffae import decode, fresh_noise
        seeds = list(range(len(GRID_PROMPTS)))
        pooled = self.encoder.to(device).encode(GRID_PROMPTS).pooled
        z = sample_codes(model, model.text_cond(pooled), model.null_cond(len(seeds), device), seeds, steps=25)
        images = decode(self.diffae.to(device), z, fresh_noise(self.diffae, seeds), steps=25)
        save_grid(images, path, nrow=len(seeds) // 2)
