"""A training run's state (`state.pt`, what `core.training.loop` saves with torch.save) kept in the
repository as safetensors plus JSON, not as a pickle: `write` splits a state into its tensors
(`state.safetensors`, each under its path in the state) and the rest (`state.json`, the structure
with the numbers, flags and names); `read` puts them together again, bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _split(value, path: str, tensors: dict):
    if isinstance(value, torch.Tensor):
        tensors[path] = value.contiguous()
        return {"tensor": path}
    if isinstance(value, dict):   # keys may be ints (an optimizer's state): kept as pairs
        return {"dict": [[k, _split(v, f"{path}/{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list":
                [_split(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]}
    return {"value": value}


def _join(node, tensors: dict):
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "dict" in node:
        return {k: _join(v, tensors) for k, v in node["dict"]}
    if "list" in node:
        return [_join(v, tensors) for v in node["list"]]
    if "tuple" in node:
        return tuple(_join(v, tensors) for v in node["tuple"])
    return node["value"]


def write(state: dict, folder: Path) -> None:
    tensors: dict = {}
    structure = _split(state, "", tensors)
    save_file(tensors, str(folder / "state.safetensors"))
    (folder / "state.json").write_text(json.dumps(structure) + "\n")


def read(folder: Path) -> dict:
    return _join(json.loads((folder / "state.json").read_text()), load_file(str(folder / "state.safetensors")))


if __name__ == "__main__":   # python -m tests.run_state_files STATE.pt FOLDER: convert a saved state
    import sys
    original = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
    write(original, Path(sys.argv[2]))
    back = read(Path(sys.argv[2]))
    assert torch.equal(back["generator"], original["generator"]) and back["step"] == original["step"]
    print("wrote", sys.argv[2])
