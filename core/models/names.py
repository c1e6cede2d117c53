"""The class labels and edit attributes of a checkpoints root, read from its JSON files without
importing torch: what `python -m core classes` / `attributes` print, in well under a second.

The names live in `class_base/config.json` ("classes") and `diffae/attributes.json`
("attributes", written with `directions.safetensors` by `core.diffae.Directions.save`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from core.models.checkpoints import CONFIG_FILE, CheckpointError

DIRECTIONS_FILE = "directions.safetensors"
ATTRIBUTES_FILE = "attributes.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def class_names(root: str | os.PathLike) -> list[str]:
    """The class base's labels, in label order (the null label is not among them)."""
    path = Path(root) / "class_base" / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"model 'class_base' is not available: {path} is missing")
    config = _read_json(path)
    classes = config.get("classes") or (config.get("conditioner") or {}).get("classes")   # before / since version 2
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{path} has no list of class names ('classes')")
    return classes


def attribute_names(folder: str | os.PathLike) -> list[str]:
    """The edit attributes of the DiffAE model in `folder` (root/diffae), in direction order; a
    CheckpointError naming the file when its directions are missing."""
    folder = Path(folder)
    for name in (DIRECTIONS_FILE, ATTRIBUTES_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"checkpoint folder {folder} has no {name} "
                                  f"(run `python -m core diffae-directions` to fit them)")
    names = _read_json(folder / ATTRIBUTES_FILE).get("attributes")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"directions in {folder} cannot be read: {ATTRIBUTES_FILE} has no 'attributes' list")
    return names
