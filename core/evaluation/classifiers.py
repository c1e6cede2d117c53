"""Small CNN classifiers of the emoji data set, used to evaluate generated images.

Three tasks, each trained on the REAL images of the training split only (never the held-out
split), at 32x32:

- ``subgroup``  the ~99 subgroups (the class labels of the class-conditional base);
- ``skin_tone`` none / light / medium-light / medium / medium-dark / dark, on the "People &
  Body" emoji with a single skin tone or none (``"mixed"`` entries are left out);
- ``gender``    man / woman / person, on the emoji whose gender is one of those.

Images of any size are area-downsampled (or bilinearly upsampled) to 32x32 first, so the
same classifier rates the 32x32 base samples and the 64 / 128 SR outputs.

Network: four 3x3 conv layers (widths w, 2w, 4w, 4w; the last three with stride 2), each
with BatchNorm and SiLU, global average pooling, dropout 0.2 and a linear head; about 0.25 M
parameters at w = 32. Training: AdamW with linear warm-up and cosine decay, label smoothing
0.1, batches drawn with probability proportional to count(class)^-``balance`` (square-root
re-balancing by default, since subgroups range from 1 to ~440 training images), light
augmentation (random translations by up to ``shift`` pixels, padding with white, the
background of every emoji, and horizontal flips). Seeded: the same settings give the same
weights (on the same machine and thread count). The network is
:class:`core.models.small_cnn.SmallCNN`, the judge's trunk too.

Cache: one folder per task (``subgroup``; ``subgroup-<hash>`` for non-default settings) under
``$DIFFUSION_HUB_CLASSIFIERS`` or ``~/.cache/diffusion-hub/classifiers`` (``config.json`` with
the classes, the settings, the data fingerprint and the measured held-out accuracy, plus
``model.safetensors``). A cached classifier is used when its settings and data fingerprint
match, else it is retrained. Not committed: it is rebuilt from the data in about 3.5 CPU
minutes per task (one thread; measured: held-out accuracy subgroup 0.72, skin tone 0.97,
gender 0.96).

Command line: ``python -m core classifiers [--folder DIR] [--tasks subgroup,skin_tone,gender]
[--steps N] [--force] [--threads N]`` trains (or loads) them and prints their accuracies
(:mod:`core.cli.classifiers`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.emoji import load_dataset
from core.models.small_cnn import RESOLUTION, SmallCNN, to_resolution
from core.optim import fit

TASKS = ("subgroup", "skin_tone", "gender")
SKIN_TONE_CLASSES = ("none", "light", "medium-light", "medium", "medium-dark", "dark")
GENDER_CLASSES = ("man", "woman", "person")
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
_PEOPLE_GROUP = "People & Body"


def default_folder() -> Path:
    """``$DIFFUSION_HUB_CLASSIFIERS`` or ``~/.cache/diffusion-hub/classifiers``."""
    env = os.environ.get("DIFFUSION_HUB_CLASSIFIERS")
    return Path(env) if env else Path.home() / ".cache" / "diffusion-hub" / "classifiers"


@dataclass(frozen=True)
class ClassifierSettings:
    """How one classifier is trained. ``max_train`` keeps only that many training images (a
    seeded subset; for tests); ``balance`` is the exponent of the class re-weighting."""
    steps: int = 1500
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 50
    width: int = 32
    shift: int = 2
    flip: bool = True
    label_smoothing: float = 0.1
    balance: float = 0.5
    seed: int = 0
    max_train: int | None = None

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps!r}")
        if not isinstance(self.batch, int) or self.batch < 2:
            raise ValueError(f"batch must be an integer >= 2 (BatchNorm), got {self.batch!r}")
        if self.width < 1 or self.shift < 0:
            raise ValueError("width must be >= 1 and shift >= 0")

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- labels


def task_classes(task: str, data) -> list[str]:
    """The class names of a task (the data set's subgroups for ``subgroup``)."""
    if task == "subgroup":
        return list(data.classes)
    if task == "skin_tone":
        return list(SKIN_TONE_CLASSES)
    if task == "gender":
        return list(GENDER_CLASSES)
    raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")


def task_label(task: str, record) -> str | None:
    """The label a record has for a task, or None when the record is not part of that task."""
    if task == "subgroup":
        return record.subgroup
    if task == "skin_tone":
        if record.group != _PEOPLE_GROUP or record.skin_tone not in SKIN_TONE_CLASSES:
            return None
        return record.skin_tone
    if task == "gender":
        return record.gender if record.gender in GENDER_CLASSES else None
    raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")


def task_examples(data, task: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(data set indices, class indices) of the split's records that belong to the task."""
    classes = {c: i for i, c in enumerate(task_classes(task, data))}
    idx, labels = [], []
    for i in data.indices(split).tolist():
        lab = task_label(task, data.records[i])
        if lab is not None:
            idx.append(i)
            labels.append(classes[lab])
    return torch.tensor(idx, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def training_examples(data, task: str, settings: ClassifierSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, class indices) a classifier trains on: the task's training-split examples, or a
    seeded subset of ``settings.max_train`` of them."""
    idx, labels = task_examples(data, task, "train")
    if settings.max_train is not None and settings.max_train < len(idx):
        gen = torch.Generator().manual_seed(settings.seed + 7919)
        keep = torch.randperm(len(idx), generator=gen)[: settings.max_train].sort().values
        idx, labels = idx[keep], labels[keep]
    return idx, labels


def data_fingerprint(data) -> str:
    """A short hash of the data set's build fingerprint (a rebuilt data set retrains)."""
    fp = (getattr(data, "meta", None) or {}).get("fingerprint")
    blob = json.dumps([fp, len(data), list(data.classes)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the classifier


class Classifier:
    """A trained classifier: ``logits`` / ``predict`` / ``predict_names`` on [-1,1] images of
    any size, ``info`` (task, classes, settings, accuracies), ``save`` / ``load``."""

    def __init__(self, model: SmallCNN, classes: Sequence[str], info: dict):
        self.model = model.eval()
        self.classes = list(classes)
        self.info = dict(info)

    @property
    def task(self) -> str:
        return self.info.get("task", "?")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> Classifier:
        self.model.to(device)
        return self

    def index(self, name: str) -> int:
        return self.classes.index(name)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """[B, num_classes] float logits (on CPU) for [-1,1] images of any size."""
        self.model.eval()
        out = []
        for s in range(0, len(images), batch):
            x = to_resolution(images[s:s + batch]).to(self.device)
            out.append(self.model(x).float().cpu())
        if not out:
            return torch.zeros((0, len(self.classes)))
        return torch.cat(out)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """[B] long class indices."""
        return self.logits(images).argmax(dim=1)

    def predict_names(self, images: torch.Tensor) -> list[str]:
        return [self.classes[i] for i in self.predict(images).tolist()]

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor, topk: int = 1) -> float:
        """Fraction of images whose label is among the top-k predictions (nan for none)."""
        if len(images) == 0:
            return float("nan")
        logits = self.logits(images)
        k = min(topk, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        return float((top == torch.as_tensor(labels).view(-1, 1)).any(dim=1).float().mean())

    def save(self, folder: str | os.PathLike) -> Path:
        """config.json + model.safetensors (fp32, a few hundred kB), each written then renamed."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tmp_w, tmp_c = folder / (WEIGHTS_FILE + ".tmp"), folder / (CONFIG_FILE + ".tmp")
        save_file(sd, str(tmp_w), metadata={"format": "pt"})
        tmp_c.write_text(json.dumps({**self.info, "classes": self.classes}, indent=1))
        os.replace(tmp_w, folder / WEIGHTS_FILE)
        os.replace(tmp_c, folder / CONFIG_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> Classifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"classifier {folder}: missing {p.name}")
        info = json.loads(cfg_path.read_text())
        settings = ClassifierSettings.from_dict(info.get("settings", {}))
        model = SmallCNN(len(info["classes"]), settings.width)
        model.load_state_dict(load_file(str(w_path)))
        classes = info.pop("classes")
        return cls(model.to(device), classes, info)


# --------------------------------------------------------------------------- training


def _augment(x: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random translations by up to `shift` pixels (white padding) and horizontal flips."""
    b, _, h, w = x.shape
    if shift > 0:
        padded = F.pad(x, (shift, shift, shift, shift), value=1.0)
        offs = torch.randint(2 * shift + 1, (b, 2), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        x = torch.where(mask.view(b, 1, 1, 1), x.flip(-1), x)
    return x


def train_classifier(task: str, data=None, settings: ClassifierSettings | None = None,
                     device: str | torch.device = "cpu",
                     log: Callable[[str], None] | None = print) -> Classifier:
    """Train one classifier on the training split; its held-out accuracy goes into ``info``."""
    settings = settings or ClassifierSettings()
    data = data if data is not None else load_dataset()
    classes = task_classes(task, data)
    log = log or (lambda s: None)
    t0, c0 = time.perf_counter(), time.process_time()
    idx, labels = training_examples(data, task, settings)
    gen = torch.Generator().manual_seed(settings.seed)
    images = data.images_at(RESOLUTION, idx)
    counts = torch.bincount(labels, minlength=len(classes)).float()
    weights = counts[labels].pow(-settings.balance)

    torch.manual_seed(settings.seed)
    model = SmallCNN(len(classes), settings.width).to(device)
    model.train()

    def step_loss(step: int) -> torch.Tensor:   # one augmented, class-balanced batch
        pick = torch.multinomial(weights, settings.batch, replacement=True, generator=gen)
        x = _augment(images[pick], settings.shift, settings.flip, gen).to(device)
        return F.cross_entropy(model(x), labels[pick].to(device), label_smoothing=settings.label_smoothing)

    def report(step: int, running: dict[str, float]) -> None:
        log(f"  {task}: step {step}/{settings.steps} loss {running['loss']:.3f} ({time.perf_counter() - t0:.0f} s)")

    fit(model.parameters(), step_loss, settings.steps, settings.lr, weight_decay=settings.weight_decay,
        warmup=settings.warmup, report=report, reports=5)
    model.eval()
    clf = Classifier(model, classes, {})
    h_idx, h_labels = task_examples(data, task, "heldout")
    heldout_acc = clf.accuracy(data.images_at(RESOLUTION, h_idx), h_labels)
    seconds = time.perf_counter() - t0
    clf.info = {
        "format_version": FORMAT_VERSION, "task": task, "settings": asdict(settings),
        "data_fingerprint": data_fingerprint(data), "resolution": RESOLUTION,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_images": len(idx), "heldout_images": len(h_idx),
        "heldout_accuracy": heldout_acc, "chance_accuracy": float(counts.max() / counts.sum()),
        "train_seconds": round(seconds, 1), "train_cpu_seconds": round(time.process_time() - c0, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    log(f"  {task}: {len(classes)} classes, {len(idx)} training images, held-out accuracy "
        f"{heldout_acc:.3f} on {len(h_idx)} images (majority class {clf.info['chance_accuracy']:.3f}); "
        f"{seconds:.0f} s ({clf.info['train_cpu_seconds']:.0f} CPU s)")
    return clf


def cache_name(task: str, settings: ClassifierSettings) -> str:
    """``task`` for the default settings, ``task-<hash of the settings>`` for others, so a
    quick run with other settings never replaces the default classifiers."""
    if settings == ClassifierSettings():
        return task
    blob = json.dumps(asdict(settings), sort_keys=True)
    return f"{task}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def load_or_train(task: str, folder: str | os.PathLike | None = None, data=None,
                  settings: ClassifierSettings | None = None, device: str | torch.device = "cpu",
                  force: bool = False, log: Callable[[str], None] | None = print) -> Classifier:
    """The cached classifier in ``folder/task`` if its settings and data match, else train and cache it."""
    settings = settings or ClassifierSettings()
    data = data if data is not None else load_dataset()
    sub = Path(folder or default_folder()) / cache_name(task, settings)
    log = log or (lambda s: None)
    if not force and (sub / CONFIG_FILE).is_file():
        try:
            clf = Classifier.load(sub, device)
            if (clf.info.get("format_version") == FORMAT_VERSION
                    and clf.info.get("settings") == asdict(settings)
                    and clf.info.get("data_fingerprint") == data_fingerprint(data)
                    and clf.classes == task_classes(task, data)):
                return clf
            log(f"  {task}: cached classifier in {sub} is for other settings or data; retraining")
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            log(f"  {task}: cached classifier in {sub} unreadable ({e}); retraining")
    log(f"  {task}: training a classifier ({settings.steps} steps), cached in {sub} "
        "(a few MB; set DIFFUSION_HUB_CLASSIFIERS to keep them elsewhere)")
    clf = train_classifier(task, data, settings, device=device, log=log)
    clf.save(sub)
    return clf.to(device)


def load_all(folder: str | os.PathLike | None = None, data=None, settings: ClassifierSettings | None = None,
             tasks: Sequence[str] = TASKS, device: str | torch.device = "cpu", force: bool = False,
             log: Callable[[str], None] | None = print) -> dict[str, Classifier]:
    """``{task: Classifier}`` for each task, loaded from the cache or trained."""
    data = data if data is not None else load_dataset()
    return {t: load_or_train(t, folder, data, settings, device, force, log) for t in tasks}


__all__ = ["TASKS", "SKIN_TONE_CLASSES", "GENDER_CLASSES", "ClassifierSettings", "Classifier",
           "task_classes", "task_label", "task_examples", "training_examples", "train_classifier", "load_or_train",
           "load_all",
           "default_folder", "data_fingerprint", "cache_name"]
