"""Training the noise-aware models of the prior's codes (`core.models.code_guidance`):
`python -m core train code_classifier` and `python -m core train code_matcher`.

Data, as the prior's (`core.training.prior`): the committed DiffAE's z_sem of every training-split
emoji, normalised with the committed prior's code mean / std (so the models read exactly the space
the prior samples in), emoji drawn with weight 1 / sqrt(size of their design). Each step noises
the codes to z_t ~ q(z_t | z_0) at t uniform on 0..T-1 of the prior's schedule.

- code_classifier: cross-entropy of the emoji's subgroup. The labels keep the prior's training
  frequencies, so p(y | z_t) is the posterior that Bayes' rule in classifier guidance assumes.
- code_matcher: each emoji with one of its captions (`core.data.emoji.captions_for`, encoded once by
  the prior's text encoder), the symmetric contrastive loss of CLIP over the batch; pairs of the same
  emoji or the same caption text are not counted as negatives.

The card's figures: held-out emoji (never trained on) noised at several t with the same noise:
the classifier's subgroup accuracy, and the matcher's retrieval of each held-out emoji's name among
all held-out names.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.emoji import captions_for, design_weights
from core.diffae import semantic_code
from core.models.checkpoints import save_model
from core.models.code_guidance import (
    CLASSIFIER_KIND,
    MATCHER_KIND,
    CodeClassifier,
    CodeGuideConfig,
    CodeMatcher,
    accuracy_table,
    accuracy_vs_t,
)
from core.models.loading import load_model
from core.models.text_encoders import ClipTextEncoder
from core.training.config import MLPSettings
from core.training.task import Task


class CodeGuideTask(Task):
    settings = MLPSettings
    # a 0.3 M-parameter MLP over 256-d codes: a few minutes of one CPU thread
    defaults = dict(batch=256, lr=2e-3, warmup=100, steps=1500, save_every=500, sample_every=1500,
                    weight_decay=0.01)
    gpu_profile = dict(batch=1024, lr=1e-3, warmup=100, budget_minutes=0.5)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.weights = design_weights([self.data.records[i] for i in self.train_idx.tolist()])
        self.heldout_idx = torch.as_tensor(self.data.indices("heldout"))

    def codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The prior's normalised codes of these emoji."""
        images = self.data.images_at(self.diffae.resolution, indices)
        return self.prior.normalise(semantic_code(self.diffae, images))

    def config(self, **extra) -> CodeGuideConfig:
        width, depth = (32, 1) if self.cfg.run.smoke else (self.cfg.task.width or 128, self.cfg.task.depth or 2)
        return CodeGuideConfig(kind=self.kind, dim=self.prior.config.dim, width=width, depth=depth,
                               schedule=dict(self.prior.config.schedule), **extra)

    def build(self):
        root = Path(self.cfg.run.checkpoints)
        self.prior = load_model(root / "prior")
        self.diffae = load_model(root / self.prior.config.decoder)
        self.z0 = self.codes(self.train_idx)
        self.heldout_z0 = self.codes(self.heldout_idx)
        self.schedule = self.prior.schedule
        model = self.make_model()
        model.code_mean.copy_(self.prior.code_mean)
        model.code_std.copy_(self.prior.code_std)
        return model

    def noised(self, rows: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = self.z0[rows]
        t = torch.randint(self.schedule.T, (len(rows),), generator=gen)
        return self.schedule.q_sample(x0, t, torch.randn(x0.shape, generator=gen)).float(), t

    def draw(self, gen: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weights, self.cfg.optim.batch, replacement=True, generator=gen)

    def export(self, model, folder, card):
        save_model(model, folder, card)

    def sample_grid(self, model, path, device):
        """The held-out figures of the card, as a table next to where the grids go (the guided samples'
        grids come from `scripts/guidance_prior.py`)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".md").write_text(self.quality(model.cpu()) + "\n")
        model.to(device)


class CodeClassifierTask(CodeGuideTask):
    name, folder, kind = "noise-aware classifier of the prior's codes", CLASSIFIER_KIND, CLASSIFIER_KIND

    def make_model(self):
        self.labels = torch.as_tensor(self.data.labels)
        return CodeClassifier(self.config(classes=list(self.data.classes)))

    def loss(self, model, gen, device):
        rows = self.draw(gen)
        z_t, t = self.noised(rows, gen)
        logits = model(z_t.to(device), t.float().to(device))
        return F.cross_entropy(logits.float(), self.labels[self.train_idx[rows]].to(device))

    def quality(self, model) -> str:
        labels = self.labels[self.heldout_idx]
        rows = accuracy_vs_t(model, self.heldout_z0, labels)
        counts = torch.bincount(self.labels[self.train_idx], minlength=len(self.data.classes))
        majority = float((labels == counts.argmax()).float().mean())
        return (f"Subgroup accuracy on the held-out split ({len(labels)} emoji never trained on, "
                f"{len(self.data.classes)} subgroups), their codes noised to z_t ~ q(z_t | z_0) with the same "
                "seeded noise at every t (`core.models.code_guidance.accuracy_vs_t`); chance is the most frequent "
                "class:\n\n" + accuracy_table(rows, model.schedule, majority))


class CodeMatcherTask(CodeGuideTask):
    name, folder, kind = "noise-aware code-text matcher of the prior's codes", MATCHER_KIND, MATCHER_KIND

    def make_model(self):
        self.encoder = ClipTextEncoder.from_folder(Path(self.cfg.run.checkpoints) / self.prior.config.text_encoder)
        captions, self.caption_rows = [], []
        for i in self.train_idx.tolist():
            own = captions_for(self.data.records[i])
            self.caption_rows.append((len(captions), len(own)))
            captions.extend(own)
        unique = sorted(set(captions))
        position = {c: k for k, c in enumerate(unique)}
        self.caption_ids = torch.tensor([position[c] for c in captions])   # the same text, the same id
        with torch.no_grad():
            emb = torch.cat([self.encoder.encode(unique[s:s + 512]).pooled.float() for s in range(0, len(unique), 512)])
            self.caption_emb = emb[self.caption_ids]
            names = [self.data.records[i].name for i in self.heldout_idx.tolist()]
            self.heldout_text = self.encoder.encode(names).pooled.float()
        return CodeMatcher(self.config(text_dim=self.encoder.pooled_width, text_encoder=self.prior.config.text_encoder))

    def loss(self, model, gen, device):
        rows = self.draw(gen)
        z_t, t = self.noised(rows, gen)
        first = torch.tensor([self.caption_rows[r][0] for r in rows.tolist()])
        count = torch.tensor([self.caption_rows[r][1] for r in rows.tolist()])
        pick = first + (torch.rand(len(rows), generator=gen) * count).long().clamp(max=count - 1)
        codes = model.code_embedding(z_t.to(device), t.float().to(device))
        texts = model.text_embedding(self.caption_emb[pick].to(device))
        logits = model.temperature() * codes @ texts.T        # CLIP's logits (Radford et al. 2021, fig. 3)
        ids = self.caption_ids[pick]
        same = (rows[:, None] == rows[None, :]) | (ids[:, None] == ids[None, :])
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same.to(device), float("-inf"))   # a duplicate is not a negative
        target = torch.arange(len(rows), device=device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    def quality(self, model) -> str:
        rows = accuracy_vs_t(model, self.heldout_z0, self.heldout_text)
        n = len(self.heldout_z0)
        return (f"Retrieval on the held-out split ({n} emoji never trained on): each noisy code z_t "
                f"(the same seeded noise at every t) picks its emoji's name among all {n} held-out names "
                "(`core.models.code_guidance.accuracy_vs_t`):\n\n" + accuracy_table(rows, model.schedule, 1 / n))
