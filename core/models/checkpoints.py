"""Checkpoint folders: `config.json` + fp16 `model.safetensors` + `README.md` (model card).

`--checkpoints` names either a local folder holding one sub-folder per model, or a Hugging
Face Hub repo id with the same layout, fetched by `huggingface_hub.snapshot_download`
(which honours HF_HUB_OFFLINE and the local Hub cache). Weights are never pickled.

torch and safetensors are imported by the functions that handle tensors, so that resolving a
folder and reading its JSON (`python -m core classes`) costs no torch import.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
DEFAULT_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(ValueError):
    """A checkpoint folder or repo that cannot be used; the message names it and why."""


class JsonConfig:
    """The config.json of a dataclass config: `to_dict` (every field, tuples as lists, containers
    copied) and `from_dict` (a key the dataclass has no field for is named, with `CONFIG_NAME` in
    the message; `check_dict` is where a subclass checks the dict before the dataclass is built)."""
    CONFIG_NAME = ""   # e.g. "prior " in "unknown prior config keys: [...]"

    def to_dict(self) -> dict:
        return {name: _plain(getattr(self, name)) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown {cls.CONFIG_NAME}config keys: {sorted(unknown)}")
        cls.check_dict(d)
        return cls(**d)

    @classmethod
    def check_dict(cls, d: dict) -> None:
        """ValueError naming what a config dict holds that this config cannot take (none here)."""


def _plain(value):
    """A config value as JSON holds it: lists for tuples, containers copied all the way down."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def resolve_checkpoints(location: str | os.PathLike | None = None) -> Path:
    """A local folder as is; a Hub repo id downloaded (or found in the local Hub cache)."""
    if location is None:
        return DEFAULT_CHECKPOINTS
    path = Path(location).expanduser()
    if path.is_dir():
        return path
    text = str(location)
    if not _REPO_ID.match(text) or path.exists():
        raise CheckpointError(f"checkpoints {text!r}: no such folder, and not a Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    try:
        return Path(snapshot_download(repo_id=text))
    except LocalEntryNotFoundError as e:
        raise CheckpointError(f"checkpoints {text!r}: not in the local Hub cache and the Hub cannot be "
                              f"reached (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})") from e
    except HfHubHTTPError as e:
        raise CheckpointError(f"checkpoints {text!r}: the Hub refused it ({e.__class__.__name__}: "
                              f"{str(e).splitlines()[0]}); "
                              "is the id right, and is HF_TOKEN set for a gated repo?") from e
    except OSError as e:
        raise CheckpointError(f"checkpoints {text!r}: could not be fetched: {e}") from e


def model_folder(root: str | os.PathLike | None, name: str) -> Path:
    """The folder of model `name` under a checkpoints root (local or Hub)."""
    folder = resolve_checkpoints(root) / name
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} is missing (expected model {name!r})")
    return folder


def save_folder(folder: str | os.PathLike, config: dict, state_dict: dict[str, torch.Tensor],
                card: str, dtype: torch.dtype | None = None) -> Path:
    """Write config + weights (cast to `dtype`, float16 by default) + card into a new folder,
    atomically: the files go to a temporary sibling first, which then replaces `folder`."""
    import torch
    from safetensors.torch import save_file
    dtype = dtype or torch.float16
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is meant to be shared
    try:
        tensors = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
                   for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_FILE).write_text(card)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_folder(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """config and float32 weights of a checkpoint folder, with errors naming what is missing."""
    from safetensors.torch import load_file
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for p in (config_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint folder {folder} has no {p.name}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_path} is not valid JSON: {e}") from e
    try:
        tensors = load_file(str(weights_path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights_path} cannot be read as safetensors: {e}") from e
    return config, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def load_state_checked(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], folder: Path) -> None:
    """load_state_dict, with a message naming the folder and the first mismatching tensors (names
    written by an older layout are first upgraded by the module's `upgrade_state_dict`, if any)."""
    state_dict = getattr(module, "upgrade_state_dict", lambda state: state)(state_dict)
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [f"{k}: {tuple(state_dict[k].shape)} != {tuple(own[k].shape)}"
             for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:3]}{'...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    if wrong:
        problems.append(f"wrong shapes {wrong[:3]}{'...' if len(wrong) > 3 else ''}")
    if problems:
        raise CheckpointError(f"checkpoint {folder} does not match its config: " + "; ".join(problems))
    module.load_state_dict(state_dict)


def save_model(model, folder: str | os.PathLike, card: str) -> Path:
    """Save a model built from a config with `to_dict()` (a DiffusionModel of networks.py, a
    NoisyClassifier) as config + fp16 weights + card."""
    return save_folder(folder, model.config.to_dict(), model.state_dict(), card)


def load_configured(folder: str | os.PathLike, config_class, model_class, device: str | torch.device = "cpu",
                    **model_kwargs):
    """Load a folder written by `save_model`: `model_class(config_class.from_dict(config), **model_kwargs)`
    with its float32 weights, in eval mode and without parameter gradients."""
    folder = Path(folder)
    config_dict, state = read_folder(folder)
    try:
        config = config_class.from_dict(config_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {folder}: {e}") from e
    model = model_class(config, **model_kwargs)
    load_state_checked(model, state, folder)
    return model.to(device).eval().requires_grad_(False)
