"""Every kind `python -m core train` knows, in dependency order (CLIP before the text base and the
prior that read it; the DiffAE before the prior that learns its codes, the prior before the
models of its codes that guide it): kind -> its task; and `default_config`, which starts from a
kind's recipe (its task's `defaults`), applies the smoke-test sizes and the caller's overrides, and
refuses an option the kind's task does not read. The judge and the attribute classifiers are
registered too (`FIT_TASKS`), with the tone painter: small networks trained by `core.optim.fit`, with
a settings dataclass each (`fit_settings`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

from core.models.networks import LABEL_CONDITIONINGS, TEXT_CONDITIONINGS
from core.training.bases import ClassBaseTask, TextBaseTask
from core.training.classifiers import ClassifiersTask
from core.training.clip import ClipTask
from core.training.code_guidance import CodeClassifierTask, CodeMatcherTask
from core.training.config import T_SAMPLINGS, TrainConfig, task_fields
from core.training.diffae import DiffAETask
from core.training.judge import JudgeTask
from core.training.noisy_classifier import NoisyClassifierTask
from core.training.palette import PaletteTask
from core.training.prior import PriorTask
from core.training.sr import SR64Task, SR128Task
from core.training.task import FitTask, Task
from core.training.tone_painter import TonePainterTask

TASKS: dict[str, type[Task]] = {
    "clip": ClipTask,
    "text_base": TextBaseTask,
    "class_base": ClassBaseTask,
    "sr64": SR64Task,
    "sr128": SR128Task,
    "palette": PaletteTask,
    "diffae": DiffAETask,
    "noisy_classifier": NoisyClassifierTask,
    "prior": PriorTask,
    "code_classifier": CodeClassifierTask,
    "code_matcher": CodeMatcherTask,
}
TRAIN_KINDS: tuple[str, ...] = tuple(TASKS)
# The settings only some kinds read (the fields of their settings dataclasses), and their defaults.
TASK_OPTIONS = frozenset().union(*(task_fields(task.settings) for task in TASKS.values()))
TASK_DEFAULTS = {f.name: f.default for task in TASKS.values() for f in dataclasses.fields(task.settings)}
# The small networks trained by the small networks' loop (`core.optim.fit`) with a settings dataclass
# each: the two that measure the models and the tone painter; not part of `train all` (the judge reads
# the committed text base).
FIT_TASKS: dict[str, type[FitTask]] = {
    "judge": JudgeTask,
    "classifiers": ClassifiersTask,
    "tone_painter": TonePainterTask,
}
FIT_SETTINGS = ("steps", "batch", "lr", "seed")   # shared flags that set a field of their settings


def fit_settings(kind: str, smoke: bool = False, **overrides):
    """The settings dataclass of a small-network task: its recipe, the smoke sizes, then
    `overrides` (steps, batch, lr, seed and the task's own fields). ValueError for a bad value."""
    task = FIT_TASKS[kind]
    settings = task.settings(**(task.smoke if smoke else {}))
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def accepting(option: str) -> list[str]:
    """The kinds whose task reads `option` (a field of its settings dataclass)."""
    return [kind for kind, task in TASKS.items() if option in task_fields(task.settings)]


def make_task(cfg) -> Task:
    """The task of `cfg.kind` for this configuration (its data set loaded; the network not built yet)."""
    return TASKS[cfg.kind](cfg)


def _names(kinds: list[str]) -> str:
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"


def default_config(kind: str, run: str, smoke: bool = False, **overrides) -> TrainConfig:
    """The recipe of `kind` (its task's `defaults`), with tiny sizes for a smoke test, then
    `overrides` (flat names, as the command line's). ValueError for an unknown kind, an option the
    kind does not read, or a bad value."""
    if kind not in TRAIN_KINDS:
        raise ValueError(f"kind must be one of {TRAIN_KINDS}, got {kind!r}")
    task = TASKS[kind]
    reads = task_fields(task.settings)
    for name, value in list(overrides.items()):
        if name in TASK_OPTIONS and name not in reads:
            if value != TASK_DEFAULTS[name]:
                raise ValueError(f"--{name.replace('_', '-')} applies to {_names(accepting(name))} only, not {kind}")
            del overrides[name]   # another kind's setting at its default: nothing to apply
    flat = {"run": run, **task.defaults}
    if smoke:
        flat |= dict(steps=4, batch=4, save_every=2, sample_every=4, warmup=2, smoke=True)
        flat |= {"channels": (16, 32)} if "channels" in reads else {}
    cfg = TrainConfig.build(kind, task.settings, **(flat | overrides))
    check(cfg.flat())
    return cfg


def check(flat: dict) -> None:
    """ValueError naming a setting (by its flag) whose value is out of its range."""
    if flat["precision"] not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {flat['precision']!r}")
    scale = flat.get("residual_scale")
    if scale is not None and not 0 <= scale < math.inf:   # also NaN
        raise ValueError(f"--residual-scale must be a finite number >= 0, got {scale!r}")
    if "snr_floor" in flat and not 0 <= flat["snr_floor"] <= flat["min_snr_gamma"]:   # also NaN
        raise ValueError(f"--snr-floor must be between 0 and min_snr_gamma ({flat['min_snr_gamma']}), "
                         f"got {flat['snr_floor']!r}")
    if flat.get("t_sampling", "uniform") not in T_SAMPLINGS:
        raise ValueError(f"--t-sampling must be one of {', '.join(T_SAMPLINGS)}, got {flat['t_sampling']!r}")
    if flat.get("text_conditioning", "tokens") not in TEXT_CONDITIONINGS:
        raise ValueError(f"--text-conditioning must be one of {', '.join(TEXT_CONDITIONINGS)}, "
                         f"got {flat['text_conditioning']!r}")
    if flat.get("label_conditioning", "embedding") not in LABEL_CONDITIONINGS:
        raise ValueError(f"--label-conditioning must be one of {', '.join(LABEL_CONDITIONINGS)}, "
                         f"got {flat['label_conditioning']!r}")
    if not 0 <= flat.get("balance", 0.0) <= 1:   # also NaN
        raise ValueError("--balance must be between 0 (uniform over emoji) and 1 (uniform over designs), "
                         f"got {flat['balance']!r}")


def task_overrides(kind: str, options: dict) -> dict:
    """`options` without the task settings that `kind` does not read (for `train all`, whose
    options apply to each kind that reads them)."""
    return {k: v for k, v in options.items() if k not in TASK_OPTIONS or k in task_fields(TASKS[kind].settings)}
