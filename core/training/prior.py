"""Training the semantic prior (`python -m core train prior`): what it learns from.

Data: the committed DiffAE's semantic code z_sem of every training-split emoji at the DiffAE's
resolution (one deterministic code per emoji, computed once at start), normalised per dimension
with the mean / std of those codes; and, per emoji, the pooled CLIP embedding of each of its
captions (`core.data.emoji.captions_for`, computed once) and its subgroup label.

Each batch draws emoji with weight 1 / sqrt(number of emoji of the same design) (a design is an
emoji up to skin tone and gender, `design_of`): People & Body is ~60% of the emoji but mostly
tone and gender variants of a few hundred designs, so uniform draws would spend most steps on
them. Each sample is conditioned on one random caption (55%), on its label (35%) or on nothing
(10%, the unconditional half of classifier-free guidance). With ``--captions everyday`` a text
sample takes, half the time, one of the emoji's captions as people type them instead
(`core.data.captions.everyday_captions`, with the colour of its own pixels), leaving out those
with a word outside the CLIP's vocabulary (it would read them as an unknown token) and the
everyday prompts the evaluation keeps to itself (`core.evaluation.everyday`). Loss: plain MSE of the predicted x0
(DALL-E 2's prior objective), noise levels uniform on the cosine schedule.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.data.captions import colour_of, everyday_captions
from core.data.emoji import captions_for, design_weights
from core.diffae import decode, fresh_noise, semantic_code
from core.evaluation.everyday import load_everyday
from core.images import save_grid
from core.models.checkpoints import save_folder
from core.models.loading import load_model
from core.models.prior import PriorConfig, SemanticPrior, sample_codes
from core.models.text_encoders import ClipTextEncoder
from core.reading import unknown_words
from core.training.bases import GRID_PROMPTS
from core.training.config import PriorSettings
from core.training.task import Task

TEXT_SHARE, LABEL_SHARE = 0.55, 0.35   # the rest (10%) is unconditional
EVERYDAY_SHARE = 0.5   # --captions everyday: the share of text samples with an everyday caption


class PriorTask(Task):
    name, folder = "semantic prior", "prior"
    settings = PriorSettings
    # a vector model over the DiffAE's z_sem: big batches are cheap (~0.05 s/step on one core)
    defaults = dict(batch=256, lr=1e-3, steps=20_000, save_every=1000, sample_every=5000)
    gpu_profile = dict(batch=1024, lr=1e-3, warmup=200, budget_minutes=0.5)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.weights = design_weights([self.data.records[i] for i in self.train_idx.tolist()])

    def build(self):
        root = Path(self.cfg.run.checkpoints)
        self.diffae = load_model(root / "diffae")
        self.encoder = ClipTextEncoder.from_folder(root / "clip")
        images = self.data.images_at(self.diffae.resolution, self.train_idx)
        z = semantic_code(self.diffae, images)
        width, depth = ((32, 1) if self.cfg.run.smoke else (self.cfg.task.width or 384, self.cfg.task.depth or 4))
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
        self.caption_emb = self._encode(captions)
        self.everyday_rows = None
        if self.cfg.task.captions == "everyday":
            self.everyday_emb, self.everyday_rows = self._everyday()
        return model

    def _encode(self, captions: list[str]) -> torch.Tensor:
        return torch.cat([self.encoder.encode(captions[s:s + 512]).pooled.float()
                          for s in range(0, len(captions), 512)])

    def _everyday(self) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The everyday captions of every training emoji, encoded once, and (first, count) per emoji
        (an emoji left with none keeps its name captions: count 0)."""
        held = {p.prompt for p in load_everyday()}
        captions, rows = [], []
        for i in self.train_idx.tolist():
            record = self.data.records[i]
            own = [c for c in everyday_captions(record, colour_of(self.data.images[i]))
                   if c not in held and not unknown_words(self.encoder, c)]
            rows.append((len(captions), len(own)))
            captions.extend(own)
        return self._encode(captions), rows

    def cond_batch(self, rows: torch.Tensor, gen: torch.Generator, model: SemanticPrior) -> dict:
        b = len(rows)
        u = torch.rand(b, generator=gen)
        use_text, use_label = u < TEXT_SHARE, (u >= TEXT_SHARE) & (u < TEXT_SHARE + LABEL_SHARE)
        pick = torch.rand(b, generator=gen)
        first = torch.tensor([self.caption_rows[r][0] for r in rows.tolist()])
        count = torch.tensor([self.caption_rows[r][1] for r in rows.tolist()])
        text = self.caption_emb[first + (pick * count).long().clamp(max=count - 1)]
        if self.everyday_rows is not None:
            e_first = torch.tensor([self.everyday_rows[r][0] for r in rows.tolist()])
            e_count = torch.tensor([self.everyday_rows[r][1] for r in rows.tolist()])
            use = (torch.rand(b, generator=gen) < EVERYDAY_SHARE) & (e_count > 0)
            j = (e_first + (pick * e_count).long().clamp(max=(e_count - 1).clamp_min(0))).clamp(
                max=len(self.everyday_emb) - 1)
            text = torch.where(use[:, None], self.everyday_emb[j], text)
        labels = torch.where(use_label, self.labels[rows], torch.full((b,), model.num_classes))
        return {"text": text * use_text[:, None], "has_text": use_text.float(), "labels": labels}

    def loss(self, model, gen, device):
        rows = torch.multinomial(self.weights, self.cfg.optim.batch, replacement=True, generator=gen)
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
        seeds = list(range(len(GRID_PROMPTS)))
        pooled = self.encoder.to(device).encode(GRID_PROMPTS).pooled
        z = sample_codes(model, model.text_cond(pooled), model.null_cond(len(seeds), device), seeds, steps=25)
        images = decode(self.diffae.to(device), z, fresh_noise(self.diffae, seeds), steps=25)
        save_grid(images, path, columns=len(seeds) // 2)
