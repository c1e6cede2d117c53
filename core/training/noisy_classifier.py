"""The noise-aware classifier of classifier guidance (`core.models.noisy_classifier`):
cross-entropy of p(y | x_t, t) on noised training images at 32x32 with light augmentation (shifts
with white padding, flips), t uniform on 0..T-1 of the class base's schedule, on the natural class
frequencies (so that p(y | x_t) is the posterior that Bayes' rule in classifier guidance assumes).
The model card gets the held-out accuracy against t."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from core.models.checkpoints import save_model
from core.models.noisy_classifier import KIND, NoisyClassifier, NoisyClassifierConfig, accuracy_table, accuracy_vs_t
from core.training.classifiers import augment
from core.training.config import NetworkSettings
from core.training.task import Task


class NoisyClassifierTask(Task):
    name, folder = KIND, KIND
    settings = NetworkSettings
    # a 0.3 M-parameter conv net on x_t: bigger batches, a higher rate
    defaults = dict(channels=(32, 64, 128, 128), batch=64, lr=2e-3, warmup=100, steps=5000, sample_every=1000)
    gpu_profile = dict(batch=1024, lr=4e-3, warmup=100, budget_minutes=0.5)

    def build(self):
        config = NoisyClassifierConfig(classes=list(self.data.classes), channels=tuple(self.cfg.task.channels))
        model = NoisyClassifier(config)
        self.schedule = model.schedule
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        self.labels = torch.as_tensor(self.data.labels)
        return model

    def loss(self, model, gen, device):
        idx = self.train_idx[torch.randint(len(self.train_idx), (self.cfg.optim.batch,), generator=gen)]
        x0 = augment(self.images[idx], 2, True, gen)
        t = torch.randint(self.schedule.T, (len(idx),), generator=gen)
        x_t = self.schedule.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
        with self.autocast(device):
            logits = model(x_t.to(device), t.float().to(device))
        return F.cross_entropy(logits.float(), self.labels[idx].to(device))

    def heldout(self) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(self.data.indices("heldout"))
        return self.images[idx], self.labels[idx]

    def quality(self, model) -> str:
        images, labels = self.heldout()
        rows = accuracy_vs_t(model, images, labels)
        counts = torch.bincount(self.labels[self.train_idx], minlength=len(self.data.classes))
        majority = float((labels == counts.argmax()).float().mean())
        return (f"Held-out split ({len(images)} emoji, {len(self.data.classes)} subgroups), each noised to "
                "x_t ~ q(x_t | x_0) with the same seeded noise at every t "
                "(`core.models.noisy_classifier.accuracy_vs_t`):\n\n"
                + accuracy_table(rows, majority))

    def export(self, model, folder, card):
        save_model(model, folder, card)

    def sample_grid(self, model, path, device):
        """No samples: the held-out accuracy against t, as a table next to where the grids go."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".md").write_text(self.quality(model) + "\n")
