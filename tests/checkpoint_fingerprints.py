"""Fingerprints of every committed checkpoint: each model's output on fixed seeded inputs, reduced
to a few numbers (sums and a strided sample). `tests/test_checkpoint_parity.py` compares them with
`tests/data/checkpoint_fingerprints.json`, so a change to how checkpoints are read or run that
changes any output shows. After replacing a checkpoint on purpose, rewrite its entries (the diffae
decoder's were rewritten when its fine-tuned version was committed; the rest were written by the code
before models became parts): `python -m tests.checkpoint_fingerprints --write`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

FILE = Path(__file__).resolve().parent / "data" / "checkpoint_fingerprints.json"
NAMES = ("text_base", "class_base", "sr64", "sr128", "palette", "diffae", "prior", "clip", "noisy_classifier")
PROMPTS = ["a red apple", "cat"]


def fingerprint(x: torch.Tensor) -> dict:
    x = x.detach().double().flatten()
    return {"sum": x.sum().item(), "abs_sum": x.abs().sum().item(),
            "sample": x[:: max(1, len(x) // 32)][:32].tolist()}


@torch.no_grad()
def outputs(models, name: str) -> dict[str, torch.Tensor]:
    """The model's outputs on inputs seeded by its name's position in NAMES."""
    g = torch.Generator().manual_seed(NAMES.index(name))
    m = models.get(name)
    if name == "clip":
        return {name: m.encode(PROMPTS).pooled}
    if name == "prior":
        z = torch.randn(2, m.config.dim, generator=g)
        return {name: m.eps(z, torch.tensor([500]), m.label_cond(list(m.config.classes[:2])))}
    if name == "noisy_classifier":
        return {name: m(torch.randn(2, 3, 32, 32, generator=g), torch.tensor([300, 300]))}
    r = m.resolution
    x, t, out = torch.randn(2, 3, r, r, generator=g), torch.tensor([400]), {}
    if name == "text_base":
        cond = models.get("clip").encode(PROMPTS).as_cond()
    elif name == "class_base":
        cond = m.null_cond(2, code_noise=torch.randn(2, m.config.semantic_dim, generator=g))
        cond["labels"] = torch.tensor([3, 7])
    elif name.startswith("sr"):
        cond = {"low_res": torch.randn(2, 3, r, r, generator=g), "aug_t": torch.tensor([50, 50])}
    elif name == "palette":
        cond = {"source": torch.randn(2, 3, r, r, generator=g), "mask": torch.ones(2, 1, r, r),
                "task": torch.tensor([0, 1])}
    else:   # diffae: the encoder's codes, and the decoder on them
        z = m.conditioner.encoder(torch.rand(2, 3, r, r, generator=g) * 2 - 1)
        out["diffae encoder"], cond = z, {"z_sem": z}
    out[name] = m.eps(x, t, cond)
    return out


def all_fingerprints(root=None) -> dict[str, dict]:
    from core.models.modelset import ModelSet
    models = ModelSet(root, device="cpu")
    return {key: fingerprint(value) for name in NAMES for key, value in outputs(models, name).items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {FILE.name}")
    parser.add_argument("--checkpoints", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prints = all_fingerprints(args.checkpoints)
    if args.write:
        FILE.write_text(json.dumps(prints, indent=1) + "\n")
    print({k: round(v["abs_sum"], 6) for k, v in prints.items()})
