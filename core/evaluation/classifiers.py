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

Trained by the registered training task ``python -m core train classifiers``
(:mod:`core.training.classifiers`); this module only loads them and says which command trains a
missing one (:class:`ClassifierMissing`).

Cache: one folder per task (``subgroup``; ``subgroup-<hash>`` for non-default settings) under
``$DIFFUSION_HUB_CLASSIFIERS`` or ``~/.cache/diffusion-hub/classifiers`` (``config.json`` with
the classes, the settings, the data fingerprint and the measured held-out accuracy, plus
``model.safetensors``). A cached classifier is used when its settings and data fingerprint
match (a stale or missing one is an error naming the command that trains it; the evaluation
commands train it then, through the same task). Not committed: it is rebuilt from the data in about 3.5 CPU
minutes per task (one thread; measured: held-out accuracy subgroup 0.72, skin tone 0.97,
gender 0.96).

Command line: ``python -m core train classifiers [--export DIR] [--tasks subgroup,skin_tone,gender]
[--steps N] [--force] [--threads N]`` trains those missing (``--force``: all) and prints their
accuracies; ``python -m core classifiers`` is the same command under its older name.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from core.data.emoji import load_dataset
from core.models.small_cnn import SmallCNN, to_resolution

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


def cache_name(task: str, settings: ClassifierSettings) -> str:
    """``task`` for the default settings, ``task-<hash of the settings>`` for others, so a
    quick run with other settings never replaces the default classifiers."""
    if settings == ClassifierSettings():
        return task
    blob = json.dumps(asdict(settings), sort_keys=True)
    return f"{task}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


TRAIN_COMMAND = "python -m core train classifiers"


class ClassifierMissing(FileNotFoundError):
    """No trained classifier of these settings and data in the folder; the message names the
    command that trains it."""


def matches(clf: Classifier, task: str, data, settings: ClassifierSettings) -> bool:
    """Whether a loaded classifier is the one of these settings and data (else it is stale)."""
    return (clf.info.get("format_version") == FORMAT_VERSION and clf.info.get("settings") == asdict(settings)
            and clf.info.get("data_fingerprint") == data_fingerprint(data) and clf.classes == task_classes(task, data))


def load_classifier(task: str, folder: str | os.PathLike | None = None, data=None,
                    settings: ClassifierSettings | None = None, device: str | torch.device = "cpu",
                    missing: Callable[[str], Classifier] | None = None) -> Classifier:
    """The trained classifier of ``task`` in ``folder`` (default :func:`default_folder`) whose
    settings and data match. Absent, unreadable or stale: ``missing(task)`` when given (the command
    line trains it there, through the registered training task), else ClassifierMissing naming
    the command that trains it. Never trains by itself."""
    settings = settings or ClassifierSettings()
    data = data if data is not None else load_dataset()
    sub = Path(folder or default_folder()) / cache_name(task, settings)
    why = "no classifier there"
    if (sub / CONFIG_FILE).is_file():
        try:
            clf = Classifier.load(sub, device)
            if matches(clf, task, data, settings):
                return clf
            why = "the one there is for other settings or data"
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            why = f"the one there is unreadable ({e})"
    if missing is not None:
        return missing(task).to(device)
    steps = "" if settings == ClassifierSettings() else f" --steps {settings.steps}"
    raise ClassifierMissing(f"attribute classifier {task!r} missing in {sub.parent} ({why}): train it with "
                            f"`{TRAIN_COMMAND} --tasks {task}{steps}`"
                            f"{'' if folder is None else f' --export {sub.parent}'}")


def load_all(folder: str | os.PathLike | None = None, data=None, settings: ClassifierSettings | None = None,
             tasks: Sequence[str] = TASKS, device: str | torch.device = "cpu",
             missing: Callable[[str], Classifier] | None = None) -> dict[str, Classifier]:
    """``{task: Classifier}`` for each task (:func:`load_classifier`)."""
    data = data if data is not None else load_dataset()
    return {t: load_classifier(t, folder, data, settings, device, missing) for t in tasks}


__all__ = ["TASKS", "SKIN_TONE_CLASSES", "GENDER_CLASSES", "ClassifierSettings", "Classifier",
           "task_classes", "task_label", "task_examples", "training_examples", "load_classifier", "load_all",
           "ClassifierMissing", "matches",
           "default_folder", "data_fingerprint", "cache_name"]
