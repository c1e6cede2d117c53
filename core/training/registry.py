"""Every kind `python -m core train` knows, in dependency order (CLIP before the text base and the
prior that read it; the DiffAE before the prior that learns its codes, the prior before the
models of its codes that guide it): kind -> its task."""
from __future__ import annotations

from core.training.bases import ClassBaseTask, TextBaseTask
from core.training.clip import ClipTask
from core.training.code_guidance import CodeClassifierTask, CodeMatcherTask
from core.training.diffae import DiffAETask
from core.training.noisy_classifier import NoisyClassifierTask
from core.training.palette import PaletteTask
from core.training.prior import PriorTask
from core.training.sr import SR64Task, SR128Task
from core.training.task import Task

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


def accepting(option: str) -> list[str]:
    """The kinds whose task reads `option` (a field of `config.TASK_OPTIONS`)."""
    return [kind for kind, task in TASKS.items() if option in task.options]


def make_task(cfg) -> Task:
    """The task of `cfg.kind` for this configuration (its data set loaded; the network not built yet)."""
    return TASKS[cfg.kind](cfg)
