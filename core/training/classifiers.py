"""Training the attribute classifiers of :mod:`core.evaluation.classifiers` (subgroup, skin tone,
gender): the registered training task ``python -m core train classifiers`` (:class:`ClassifiersTask`;
``python -m core classifiers`` is the same under its older name).

Recipe (:class:`core.evaluation.classifiers.ClassifierSettings`): the real images of the training
split at 32x32, batches drawn with probability proportional to count(class)^-balance, light
augmentation (:func:`augment`), cross-entropy with label smoothing, AdamW with linear warm-up and
cosine decay through the shared loop (:func:`core.optim.fit`). Each classifier's run state is
``RUN/<cache name>.pt``, so an interrupted run (``--budget-minutes``, Ctrl-C after a save)
continues where it stopped; the trained classifier goes to the export folder (default the cache,
``~/.cache/diffusion-hub/classifiers``), where evaluation loads it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.emoji import load_dataset
from core.evaluation.classifiers import (
    FORMAT_VERSION,
    TASKS,
    Classifier,
    ClassifierMissing,
    ClassifierSettings,
    cache_name,
    data_fingerprint,
    default_folder,
    load_classifier,
    task_classes,
    task_examples,
    training_examples,
)
from core.models.small_cnn import RESOLUTION, SmallCNN
from core.optim import fit
from core.training.task import Budget, FitTask, claim_run


def augment(x: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
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
                     device: str | torch.device = "cpu", log: Callable[[str], None] | None = print,
                     state_path: str | os.PathLike | None = None, budget: Budget | None = None,
                     save_every: int = 250) -> Classifier | None:
    """Train one classifier on the training split; its held-out accuracy goes into ``info``. With
    ``state_path``, resume from it and save to it; None when ``budget`` ended the run first."""
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
        x = augment(images[pick], settings.shift, settings.flip, gen).to(device)
        return F.cross_entropy(model(x), labels[pick].to(device), label_smoothing=settings.label_smoothing)

    def report(step: int, running: dict[str, float]) -> None:
        log(f"  {task}: step {step}/{settings.steps} loss {running['loss']:.3f} ({time.perf_counter() - t0:.0f} s)")

    fit(model, step_loss, settings.steps, settings.lr, weight_decay=settings.weight_decay,
        warmup=settings.warmup, report=report, reports=5, state_path=state_path, generators={"batches": gen},
        save_every=save_every, stop=budget, log=log)
    if budget is not None and budget.stopped:
        return None
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


def train_all(folder: str | os.PathLike | None = None, data=None, settings: ClassifierSettings | None = None,
              tasks: Sequence[str] = TASKS, device: str | torch.device = "cpu", force: bool = False,
              run: str | os.PathLike | None = None, budget: Budget | None = None,
              log: Callable[[str], None] | None = print) -> dict[str, Classifier]:
    """``{task: Classifier}``: each classifier of ``tasks`` loaded from ``folder`` (default the
    cache) when it is there for these settings and data, else (or with ``force``) trained and
    written there. With ``run``, each training resumes from and saves ``run/<name>.pt``. The
    classifiers ``budget`` left unfinished are missing from the result."""
    settings = settings or ClassifierSettings()
    data = data if data is not None else load_dataset()
    folder = Path(folder or default_folder())
    log = log or (lambda s: None)
    out = {}
    for task in tasks:
        name = cache_name(task, settings)
        if not force:
            try:
                out[task] = load_classifier(task, folder, data, settings, device)
                continue
            except ClassifierMissing as e:
                log(f"  {task}: {str(e).split(': train it')[0]}")
        log(f"  {task}: training a classifier ({settings.steps} steps), written to {folder / name} "
            "(a few MB; set DIFFUSION_HUB_CLASSIFIERS to keep them elsewhere)")
        state = Path(run) / f"{name}.pt" if run is not None else None
        clf = train_classifier(task, data, settings, device=device, log=log, state_path=state, budget=budget)
        if clf is None:
            log(f"  {task}: stopped at the time budget; the same command continues it")
            break
        clf.save(folder / name)
        if state is not None and state.exists():
            state.unlink()   # written: the next training of these settings starts afresh
        out[task] = clf.to(device)
    return out


def load_or_train(task: str, folder: str | os.PathLike | None = None, data=None,
                  settings: ClassifierSettings | None = None, device: str | torch.device = "cpu",
                  log: Callable[[str], None] | None = print) -> Classifier:
    """The classifier of ``task`` in ``folder``, trained (and written there) first when it is
    missing: what the evaluation commands do (`missing` of :func:`load_classifier`)."""
    return train_all(folder, data, settings, (task,), device, log=log)[task]


class ClassifiersTask(FitTask):
    """`python -m core train classifiers`: the attribute classifiers missing from the export folder
    (default the cache), or all of them with --force."""
    name = "attribute classifiers"
    settings = ClassifierSettings
    options = frozenset({"tasks", "force"})
    smoke = {"steps": 4, "batch": 4, "width": 4, "max_train": 16, "warmup": 2}

    def run(self, settings, run, export, options, budget, log):
        tasks = options.get("tasks") or TASKS
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            raise ValueError(f"unknown classifier {bad[0]!r}; choose from {', '.join(TASKS)}")
        claim_run(run, asdict(settings))
        clfs = train_all(export, settings=settings, tasks=tasks, force=bool(options.get("force")), run=run,
                         budget=budget, log=log)
        for line in accuracy_table(clfs):
            log(line)
        return {"tasks": list(clfs), "export": str(export or default_folder()),
                "stopped_by_budget": budget.stopped}


def accuracy_table(clfs: dict[str, Classifier]) -> list[str]:
    """The classifiers' held-out accuracies as the lines of a markdown table."""
    lines = ["| classifier | classes | train images | held-out images | held-out accuracy | majority class "
             "| train s (wall) | train s (CPU) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t, c in clfs.items():
        i = c.info
        lines.append(f"| {t} | {len(c.classes)} | {i['train_images']} | {i['heldout_images']} | "
                     f"{i['heldout_accuracy']:.3f} | {i['chance_accuracy']:.3f} | {i['train_seconds']} | "
                     f"{i.get('train_cpu_seconds', '-')} |")
    return lines

