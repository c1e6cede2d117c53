"""Attribute editing with a diffusion autoencoder (DiffAE, Preechakul et al. CVPR 2022).

An image x0 is encoded twice (sec. 3.1-3.2 of the paper):
- the *semantic code* z_sem = Enc(x0) [B, semantic_dim] (`SemanticEncoder`, core/models/networks.py),
  which conditions the decoder UNet through its time embedding (AdaGN);
- the *stochastic code* x_T = DDIM inversion of x0 given z_sem (eq. 2 of DiffAE: the
  deterministic DDIM ODE run from t = 0 up to t = T), so that DDIM decoding (z_sem, x_T) -> x0
  nearly reproduces the image; decoding z_sem with fresh noise keeps its semantics only.

Attribute directions (sec. 4.2), on the *normalised* codes zn = (z_sem - mean) / std (mean /
std of the training-split codes): per attribute, the unit vector u along the difference of the
two class means, mu+ - mu- (a nearest-class-mean linear classifier), and its length, the
attribute's *class gap* g = |mu+ - mu-|. Strength is in class gaps: an edit moves
zn' = zn + strength * g * u, i.e. z' = z + strength * g * std * u, and decodes (z', x_T) with the
image's own x_T; strength 1 moves an average negative code onto the average positive one, for
every attribute alike (the gaps differ: 4-7 standard deviations of the code). Strength 0 takes the
same code path as a reconstruction and gives the same image. A logistic-regression classifier per attribute is
fitted too; it scores codes (`Directions.score`) but does not set the direction: with ~1,000
labelled codes in 256 dimensions its weight vector picks low-variance discriminative dimensions
(cosine 0.36 with mu+ - mu- for ``woman`` on the 7.9k-step model) that the decoder hardly
renders: no held-out man was rated woman after 3 standard deviations along it, 72% after one
class gap along u (`python -m core.diffae evaluate`; checkpoints/diffae/README.md).

Attributes (labels from core/data/emoji.py records, training split only):
- ``dark-skin``  binary, people emoji with a single skin tone: positive = medium-dark / dark,
  negative = light / medium-light (medium left out);
- ``woman``      binary, gender woman (positive) vs man (negative);
- ``smiling``    binary, faces of "Smileys & Emotion" (subgroups ``face-*``): names with
  smiling / grinning / beaming / laughing / joy / grin positive, the other faces negative.

Files of the checkpoint folder ``diffae/``: ``config.json`` + ``model.safetensors`` (the
model), ``directions.safetensors`` (``directions`` [K, D] unit vectors, ``gaps`` [K] class gaps,
``weights`` [K, D] and ``bias`` [K] of the classifiers, ``mean`` / ``std`` [D]) and ``attributes.json`` (the K names
in order, with their label rules).

Command line: ``python -m core reconstruct|attributes|edit ...`` (DESIGN.md), and
``python -m core.diffae directions`` (fit and save the directions of a trained checkpoint),
``python -m core.diffae evaluate [--n N]`` (reconstruction PSNR and edit success).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from core.models.checkpoints import CheckpointError
from core.cli import finite
from core.models.names import ATTRIBUTES_FILE, DIRECTIONS_FILE, attribute_names
from core.models.networks import DiffusionModel
from core.diffusion.rng import BatchGenerator
from core.diffusion.samplers import ddim_invert, sample_ddim

DEFAULT_STEPS = 50          # DDIM steps of encoding (inversion) and of decoding
MAX_STRENGTH = 3.0          # in class gaps: 1 moves an average image without the attribute onto the average with it
SEMANTIC_DIM = 256
ENCODER_CHANNELS = (32, 64, 128, 256)
SMILE_WORDS = ("smiling", "grinning", "beaming", "laughing", "joy", "grin")

ATTRIBUTE_RULES = {
    "dark-skin": "people with one skin tone: medium-dark/dark (+) vs light/medium-light (-)",
    "woman": "gender from the name: woman (+) vs man (-)",
    "smiling": "faces (Smileys & Emotion, face-*): smiling/grinning/beaming/laughing/joy/grin in the name (+) "
               "vs other faces (-)",
}


# ---------------------------------------------------------------------------------- codes
def _check_model(model: DiffusionModel) -> None:
    if getattr(model, "kind", None) != "diffae":
        raise ValueError(f"expected a diffae model, got kind {getattr(model, 'kind', type(model).__name__)!r}")


def _check_images(model: DiffusionModel, images: torch.Tensor) -> torch.Tensor:
    r = model.resolution
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1:] != (3, r, r):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be [B, 3, {r}, {r}] in [-1, 1], got {shape}")
    return images.to(next(model.parameters()).device, torch.float32)


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
        raise ValueError(f"steps must be an integer from 1 to 1000, got {steps!r}")
    return steps


def _denoiser(model: DiffusionModel, z_sem: torch.Tensor):
    cond = {"z_sem": z_sem}
    return lambda x_t, t: model.eps(x_t, t, cond)  # noqa: E731


@torch.no_grad()
def semantic_code(model: DiffusionModel, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """z_sem = Enc(x0) for [B, 3, r, r] images in [-1, 1] (batched; float32)."""
    _check_model(model)
    images = _check_images(model, images)
    return torch.cat([model.encoder(images[s:s + batch]).float() for s in range(0, len(images), batch)])


@torch.no_grad()
def encode(model: DiffusionModel, images: torch.Tensor,
           steps: int = DEFAULT_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_sem, x_T): the semantic code and the stochastic code, x_T = DDIM inversion (eta = 0)
    of the image conditioned on its own z_sem (DiffAE eq. 2)."""
    _check_model(model)
    images = _check_images(model, images)
    z = model.encoder(images).float()
    x_T = ddim_invert(_denoiser(model, z), images, model.schedule, _check_steps(steps))
    return z, x_T


@torch.no_grad()
def decode(model: DiffusionModel, z_sem: torch.Tensor, x_T: torch.Tensor, steps: int = DEFAULT_STEPS,
           callback=None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from x_T given z_sem; images in [-1, 1]. With the x_T of
    `encode` this reconstructs the image; with fresh N(0, I) noise it renders z_sem's semantics.
    `callback` gets the sampler's progress dicts (core.diffusion.samplers)."""
    _check_model(model)
    if z_sem.ndim != 2 or x_T.ndim != 4 or z_sem.shape[0] != x_T.shape[0]:
        raise ValueError(f"z_sem [B, D] and x_T [B, 3, H, W] must share B; "
                         f"got {tuple(z_sem.shape)}, {tuple(x_T.shape)}")
    return sample_ddim(_denoiser(model, z_sem), x_T, model.schedule, _check_steps(steps),
                       callback=callback).clamp(-1, 1)


def fresh_noise(model: DiffusionModel, seeds: Sequence[int]) -> torch.Tensor:
    """N(0, I) stochastic codes, one generator per seed."""
    device = next(model.parameters()).device
    r = model.resolution
    return BatchGenerator(list(seeds), device).randn((len(seeds), 3, r, r))


def reconstruct(model: DiffusionModel, images: torch.Tensor, steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """decode(encode(x)): the autoencoder's reconstruction."""
    z, x_T = encode(model, images, steps)
    return decode(model, z, x_T, steps)


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation of two noise tensors (per sample), exact at alpha 0 and 1."""
    if alpha == 0:
        return a.clone()
    if alpha == 1:
        return b.clone()
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    theta = cos.clamp(-1, 1).acos().view(-1, *([1] * (a.ndim - 1)))
    small = theta.abs() < 1e-4   # nearly parallel: linear interpolation
    s = theta.sin().clamp_min(1e-12)
    wa = torch.where(small, torch.full_like(theta, 1 - alpha), ((1 - alpha) * theta).sin() / s)
    wb = torch.where(small, torch.full_like(theta, alpha), (alpha * theta).sin() / s)
    return (wa * a.double() + wb * b.double()).to(a.dtype)


def interpolate(model: DiffusionModel, a: torch.Tensor, b: torch.Tensor, n: int = 5,
                steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """n images from a to b ([1, 3, r, r] each, or [3, r, r]): z_sem linearly, x_T spherically
    (DiffAE sec. 4.1). The first and last are the reconstructions of a and b."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    a, b = (x.unsqueeze(0) if x.ndim == 3 else x for x in (a, b))
    if a.shape[0] != 1 or b.shape[0] != 1:
        raise ValueError("interpolate takes one image a and one image b")
    z, x_T = encode(model, torch.cat([a, b]), steps)
    alphas = [i / (n - 1) for i in range(n)]
    zs = torch.cat([z[:1] if al == 0 else z[1:] if al == 1 else torch.lerp(z[:1], z[1:], al) for al in alphas])
    xs = torch.cat([slerp(x_T[:1], x_T[1:], al) for al in alphas])
    return decode(model, zs, xs, steps)


# ---------------------------------------------------------------------------------- directions
@dataclass
class Directions:
    """Linear attribute directions in the normalised semantic space."""
    names: list[str]
    directions: torch.Tensor   # [K, D] unit vectors along mu+ - mu- (normalised space)
    gaps: torch.Tensor         # [K] |mu+ - mu-|: the strength that moves the negative mean onto the positive
    weights: torch.Tensor      # [K, D] logistic-regression weights (normalised space)
    bias: torch.Tensor         # [K]
    mean: torch.Tensor         # [D] of the training-split codes
    std: torch.Tensor          # [D]

    def index(self, attribute: str) -> int:
        if attribute not in self.names:
            raise ValueError(f"unknown attribute {attribute!r}; valid attributes: {', '.join(self.names)}")
        return self.names.index(attribute)

    def gap(self, attribute: str) -> float:
        """The attribute's class gap |mu+ - mu-| in normalised space (the unit of strength)."""
        return float(self.gaps[self.index(attribute)])

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean.to(z)) / self.std.to(z)

    def denormalise(self, zn: torch.Tensor) -> torch.Tensor:
        return zn * self.std.to(zn) + self.mean.to(zn)

    def shift(self, z: torch.Tensor, attribute: str, strength: float) -> torch.Tensor:
        """z' = denormalise(normalise(z) + strength * g * u) = z + strength * g * std * u (DiffAE
        sec. 4.2, with `strength` in units of the attribute's class gap g), written in the second
        form so that strength 0 returns z unchanged, bit for bit."""
        k = self.index(attribute)
        u = self.directions[k].to(z)
        return z + float(strength) * float(self.gaps[k]) * (self.std.to(z) * u)

    def score(self, z: torch.Tensor, attribute: str) -> torch.Tensor:
        """The attribute classifier's logit for each code [B]."""
        k = self.index(attribute)
        return self.normalise(z) @ self.weights[k].to(z) + self.bias[k].to(z)

    def save(self, folder: str | os.PathLike) -> Path:
        """directions.safetensors + attributes.json, each written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"directions": self.directions, "gaps": self.gaps, "weights": self.weights, "bias": self.bias,
                   "mean": self.mean, "std": self.std}
        tmp = folder / f".{DIRECTIONS_FILE}.tmp"
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, folder / DIRECTIONS_FILE)
        meta = {"attributes": list(self.names),
                "rules": {n: ATTRIBUTE_RULES.get(n, "") for n in self.names},
                "class_gaps": {n: round(float(g), 4) for n, g in zip(self.names, self.gaps)},
                "space": "normalised z_sem: (z - mean) / std of the training-split codes"}
        tmp = folder / f".{ATTRIBUTES_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, folder / ATTRIBUTES_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Directions":
        folder = Path(folder)
        names = attribute_names(folder)
        try:
            t = load_file(str(folder / DIRECTIONS_FILE))
            if "gaps" not in t:
                raise CheckpointError(f"directions in {folder} predate the class-mean directions (no class gaps); "
                                      f"refit them with `python -m core.diffae directions`")
            d = cls(names, t["directions"], t["gaps"], t["weights"], t["bias"], t["mean"], t["std"])
        except CheckpointError:
            raise
        except Exception as e:  # JSON, missing keys, and safetensors' own error types
            raise CheckpointError(f"directions in {folder} cannot be read: {e}") from e
        if d.directions.shape[0] != len(names) or d.directions.shape != d.weights.shape or d.gaps.shape != (len(names),):
            raise CheckpointError(f"directions in {folder}: {len(names)} names but "
                                  f"{tuple(d.directions.shape)} directions")
        return d


def fit_logistic(x: torch.Tensor, y: torch.Tensor, iterations: int = 300, lr: float = 0.05,
                 l2: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced logistic regression (full batch, Adam) -> (w [D], b)."""
    x, y = x.double(), y.double()
    pos = y.mean().clamp(1e-6, 1 - 1e-6)
    sample_w = torch.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))   # each class weighs half
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(iterations):
            opt.zero_grad()
            logits = x @ w + b
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
                    * sample_w).mean() + l2 * w.pow(2).sum()
            loss.backward()
            opt.step()
    return w.detach().float(), b.detach().float()


def fit_from_codes(z: torch.Tensor, labels: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   iterations: int = 300) -> Directions:
    """Directions from training codes z [N, D] and, per attribute, (row indices into z, 0/1 labels):
    the unit class-mean difference and its length (the class gap), plus a logistic classifier."""
    z = z.float().cpu()
    mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
    zn = (z - mean) / std
    names, dirs, gaps, weights, biases = [], [], [], [], []
    for name, (idx, y) in labels.items():
        y = torch.as_tensor(y).float()
        if len(y) < 2 or y.min() == y.max():
            raise ValueError(f"attribute {name!r} needs examples of both classes, got {len(y)} examples")
        x = zn[torch.as_tensor(idx, dtype=torch.long)]
        diff = x[y > 0.5].mean(0) - x[y < 0.5].mean(0)       # mu+ - mu-
        w, b = fit_logistic(x, y, iterations)
        names.append(name)
        dirs.append(diff / diff.norm().clamp_min(1e-12))
        gaps.append(diff.norm())
        weights.append(w)
        biases.append(b)
    return Directions(names, torch.stack(dirs), torch.stack(gaps), torch.stack(weights), torch.stack(biases),
                      mean, std)


def attribute_labels(records: Sequence) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per attribute: (record positions, 0/1 labels); the rules of ATTRIBUTE_RULES."""
    out: dict[str, tuple[list[int], list[int]]] = {n: ([], []) for n in ATTRIBUTE_RULES}

    def add(name, i, label):
        out[name][0].append(i)
        out[name][1].append(label)

    for i, r in enumerate(records):
        if r.group == "People & Body" and r.skin_tone in ("light", "medium-light", "medium-dark", "dark"):
            add("dark-skin", i, int(r.skin_tone in ("medium-dark", "dark")))
        if r.gender in ("woman", "man"):
            add("woman", i, int(r.gender == "woman"))
        if r.group == "Smileys & Emotion" and r.subgroup.startswith("face-"):
            add("smiling", i, int(any(w in r.name.lower().split() or w in r.name.lower() for w in SMILE_WORDS)))
    return {n: (torch.tensor(i, dtype=torch.long), torch.tensor(y, dtype=torch.long))
            for n, (i, y) in out.items() if i and len(set(y)) == 2}


def fit_directions(model: DiffusionModel, dataset, iterations: int = 300) -> Directions:
    """Encode the training split (z_sem only, no inversion), then fit one direction per attribute."""
    _check_model(model)
    idx = dataset.indices("train")
    z = semantic_code(model, dataset.images_at(model.resolution, idx))
    records = [dataset.records[i] for i in idx.tolist()]
    labels = attribute_labels(records)
    if not labels:
        raise ValueError("the data set has no labelled examples for any attribute")
    return fit_from_codes(z, labels, iterations)


def edit(model: DiffusionModel, directions: Directions, images: torch.Tensor, attribute: str,
         strength: float, steps: int = DEFAULT_STEPS, x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Move z_sem along the attribute's direction and decode with the image's own x_T (or the
    x_T given, e.g. fresh noise). strength 0 is exactly `reconstruct`."""
    directions.index(attribute)
    strength = _check_strength(strength)
    z, own_x_T = encode(model, images, steps)
    return decode(model, directions.shift(z, attribute, strength), own_x_T if x_T is None else x_T, steps)


def _check_strength(strength) -> float:
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a number, got {strength!r}") from None
    if not math.isfinite(strength) or abs(strength) > MAX_STRENGTH:
        raise ValueError(f"strength must be a finite number between -{MAX_STRENGTH:g} and {MAX_STRENGTH:g}, "
                         f"got {strength!r}")
    return strength


# ---------------------------------------------------------------------------------- CLI
def load_directions(models) -> Directions:
    """The directions stored next to the diffae model of a ModelSet."""
    return Directions.load(Path(models.root) / "diffae")


def _load_input(path, model):
    from core.images import open_image, pil_to_tensor
    return pil_to_tensor(open_image(path), size=model.resolution).to(next(model.parameters()).device)


def _cmd_reconstruct(args, models) -> None:
    from core.images import save_png, tensor_to_pil
    model = models.get("diffae")
    steps = _check_steps(args.steps)
    x = _load_input(args.image, model)
    out = reconstruct(model, x, steps)
    save_png(tensor_to_pil(out)[0], args.out, {"command": "reconstruct", "image": str(args.image), "steps": steps})
    print(f"wrote {args.out}")


def _cmd_edit(args, models) -> None:
    from core.images import save_png, tensor_to_pil
    model = models.get("diffae")
    directions = load_directions(models)
    directions.index(args.attribute)
    strength = _check_strength(args.strength)
    steps = _check_steps(args.steps)
    x = _load_input(args.image, model)
    x_T = fresh_noise(model, [args.seed]) if args.fresh_noise else None
    out = edit(model, directions, x, args.attribute, strength, steps, x_T=x_T)
    params = {"command": "edit", "image": str(args.image), "attribute": args.attribute, "strength": strength,
              "steps": steps, "seed": args.seed, "fresh_noise": bool(args.fresh_noise)}
    save_png(tensor_to_pil(out)[0], args.out, params)
    print(f"wrote {args.out}")


def add_cli(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """`reconstruct` and `edit` for `python -m core` (DESIGN.md; `attributes` reads only a JSON file,
    `core.models.names`, and lives in `core.__main__`)."""
    r = sub.add_parser("reconstruct", help="DiffAE encode (z_sem + DDIM inversion) and decode an image")
    r.add_argument("--image", required=True)
    r.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    r.add_argument("--out", required=True, help="output PNG file")
    common(r)
    r.set_defaults(handler=_cmd_reconstruct, out_kind="file")

    e = sub.add_parser("edit", help="move an image along an attribute direction of the DiffAE semantic code")
    e.add_argument("--image", required=True)
    e.add_argument("--attribute", required=True, help="a name from `python -m core attributes`")
    e.add_argument("--strength", type=finite, required=True,
                   help="in class gaps (-3..3): 1 moves an average image without the attribute onto the average "
                        "one with it; + towards the attribute, - away")
    e.add_argument("--seed", type=int, default=0,
                   help="used with --fresh-noise only (encode/decode is deterministic DDIM)")
    e.add_argument("--fresh-noise", action="store_true",
                   help="decode with seeded fresh noise instead of the image's own x_T (keeps semantics only)")
    e.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    e.add_argument("--out", required=True, help="output PNG file")
    common(e)
    e.set_defaults(handler=_cmd_edit, out_kind="file")


# ---------------------------------------------------------------------------------- evaluation
def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


def skin_masks(data, idx: Sequence[int], resolution: int, threshold: float = 0.1) -> torch.Tensor:
    """[N, 1, r, r] masks of where the skin is in each emoji: the pixels that change between its
    skin-tone variants (the same codepoints with another or no tone modifier). An emoji without
    such a sibling gets an all-zero mask."""
    from core.data.emoji import SKIN_TONE_BY_CODEPOINT

    def base(record):
        return tuple(c for c in record.codepoints if c not in SKIN_TONE_BY_CODEPOINT)

    by_base: dict[tuple, list[int]] = {}
    for j, record in enumerate(data.records):
        by_base.setdefault(base(record), []).append(j)
    masks = []
    for i in idx:
        siblings = [j for j in by_base[base(data.records[i])] if j != i]
        if not siblings:
            masks.append(torch.zeros(1, 1, resolution, resolution))
            continue
        own = data.images_at(resolution, torch.tensor([i]))
        others = data.images_at(resolution, torch.tensor(siblings))
        change = (others - own).abs().amax(dim=1, keepdim=True).amax(dim=0, keepdim=True)
        masks.append((change > threshold).float())
    return torch.cat(masks)


def change_on_mask(before: torch.Tensor, after: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """(share of the total absolute pixel change that falls inside the masks, share of the image
    area the masks cover), over the images whose mask is not empty: a change spread evenly would
    give equal shares."""
    keep = masks.flatten(1).sum(1) > 0
    change = (after - before).abs().sum(1, keepdim=True)[keep]
    m = masks[keep]
    return float((change * m).sum() / change.sum().clamp_min(1e-12)), float(m.mean())


def sweep_grid(model, directions: "Directions", images: torch.Tensor, attributes: Sequence[str],
               strengths: Sequence[float], steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """Rows: each image under each attribute; columns: the original, then one edit per strength
    (the image's own x_T). Returns [rows * (1 + len(strengths)), 3, r, r] for save_grid."""
    z, x_T = encode(model, images, steps)
    rows = []
    for attribute in attributes:
        edits = [decode(model, directions.shift(z, attribute, s), x_T, steps).cpu() for s in strengths]
        for k in range(len(images)):
            rows.append(torch.stack([images[k].cpu(), *[e[k] for e in edits]]))
    return torch.cat(rows)


def evaluate(models, n: int = 32, strength: float | None = None, steps: int = DEFAULT_STEPS, batch: int = 16,
             classifier_folder=None, grid: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Reconstruction PSNR on held-out emoji, and edit success on held-out people emoji at
    +-`strength` class gaps (None: 1, one class gap); `grid`: also write a strength-sweep image
    there (rows: people with skin tones under dark-skin, then men and women under woman)."""
    from core.data.emoji import load_dataset
    model = models.get("diffae")
    directions = load_directions(models)
    data = load_dataset()
    held = data.indices("heldout")[:n]
    x = data.images_at(model.resolution, held)
    recs, fresh = [], []
    t0 = time.time()
    for s in range(0, len(x), batch):
        z, x_T = encode(model, x[s:s + batch], steps)
        recs.append(decode(model, z, x_T, steps).cpu())
        fresh.append(decode(model, z, fresh_noise(model, range(s, s + len(z))), steps).cpu())
    rec, fr = torch.cat(recs), torch.cat(fresh)
    result = {"n": len(held), "steps": steps, "psnr_reconstruction": float(psnr(rec, x).mean()),
              "psnr_z_sem_only": float(psnr(fr, x).mean()), "seconds_reconstruction": round(time.time() - t0, 1)}
    log(f"reconstruction PSNR on {len(held)} held-out emoji at {model.resolution}x{model.resolution}, "
        f"{steps} steps: {result['psnr_reconstruction']:.2f} dB (z_sem + x_T), "
        f"{result['psnr_z_sem_only']:.2f} dB (z_sem + fresh noise)")
    # Does z_sem hold each attribute at all? The attribute's logistic classifier on held-out codes
    all_held = data.indices("heldout").tolist()
    labels = attribute_labels([data.records[i] for i in all_held])
    result["direction_accuracy_heldout"] = {}
    for name, (pos, y) in labels.items():
        if name in directions.names:
            z = semantic_code(model, data.images_at(model.resolution, torch.as_tensor(all_held)[pos]))
            result["direction_accuracy_heldout"][name] = {
                "n": len(y), "accuracy": float(((directions.score(z, name) > 0).long().cpu() == y).float().mean())}
    log(f"attribute classifiers on held-out z_sem: {json.dumps(result['direction_accuracy_heldout'])}")
    try:
        from core.classifiers import load_or_train
    except ImportError:
        log("edit success: skipped (core.classifiers is not available)")
        return result
    clfs = {t: load_or_train(t, classifier_folder, data, log=log) for t in ("skin_tone", "gender", "subgroup")}
    tones = ["light", "medium-light", "medium", "medium-dark", "dark"]
    tone_idx = torch.tensor([clfs["skin_tone"].index(t) for t in tones])

    def tone_level(images):   # expected tone index 0..4 under the classifier, among the 5 tones
        p = clfs["skin_tone"].logits(images)[:, tone_idx].softmax(1)
        return p @ torch.arange(5.0)

    def codes(idx):   # (z_sem, x_T) per batch, encoded once for all strengths
        xs = data.images_at(model.resolution, idx)
        return [encode(model, xs[b:b + batch], steps) for b in range(0, len(xs), batch)]

    def edited(cs, attribute, s):   # = `edit`, sharing the encoding; s = 0 is the reconstruction
        return torch.cat([decode(model, directions.shift(z, attribute, s), x_T, steps).cpu() for z, x_T in cs])

    def sub_kept(base, other):
        return float((clfs["subgroup"].predict(base) == clfs["subgroup"].predict(other)).float().mean())

    people = [i for i in all_held if data.records[i].group == "People & Body"
              and data.records[i].skin_tone in tones][:n]

    def strength_of(attribute):
        return 1.0 if strength is None else strength

    if "dark-skin" in directions.names and people:
        s = strength_of("dark-skin")
        cs = codes(torch.tensor(people))
        base = edited(cs, "dark-skin", 0.0)
        up, down = edited(cs, "dark-skin", s), edited(cs, "dark-skin", -s)
        lb, lu, ld = tone_level(base), tone_level(up), tone_level(down)
        result["dark_skin"] = {"n": len(people), "strength": s, "darker_after_plus": float((lu > lb).float().mean()),
                               "lighter_after_minus": float((ld < lb).float().mean()),
                               "mean_tone_change_plus": float((lu - lb).mean()),
                               "mean_tone_change_minus": float((ld - lb).mean()),
                               "subgroup_kept": (sub_kept(base, up) + sub_kept(base, down)) / 2}
        masks = skin_masks(data, people, model.resolution)
        on_skin, area = change_on_mask(base, up, masks)
        result["dark_skin"].update({"change_on_skin_plus": on_skin, "skin_area": area,
                                    "change_on_skin_minus": change_on_mask(base, down, masks)[0]})
        log(f"dark-skin ±{s:.2f}: {json.dumps(result['dark_skin'])}")
    men = [i for i in all_held if data.records[i].gender == "man"][:n]
    women = [i for i in all_held if data.records[i].gender == "woman"][:n]
    if "woman" in directions.names:
        g, s = clfs["gender"], strength_of("woman")
        res = {"n_men": len(men), "n_women": len(women), "strength": s}
        if men:
            cs = codes(torch.tensor(men))
            base, up = edited(cs, "woman", 0.0), edited(cs, "woman", s)
            res["man_to_woman"] = g.predict_names(up).count("woman") / len(men)
            res["man_rated_woman_before"] = g.predict_names(base).count("woman") / len(men)
            res["subgroup_kept_plus"] = sub_kept(base, up)
        if women:
            cs = codes(torch.tensor(women))
            base, dn = edited(cs, "woman", 0.0), edited(cs, "woman", -s)
            res["woman_to_man"] = g.predict_names(dn).count("man") / len(women)
            res["woman_rated_man_before"] = g.predict_names(base).count("man") / len(women)
            res["subgroup_kept_minus"] = sub_kept(base, dn)
        result["woman"] = res
        log(f"woman ±{s:.2f}: {json.dumps(res)}")
    # the grid: 4 toned people under dark-skin, then 2 men and 2 women under woman
    rows_of = {"dark-skin": people[:4], "woman": men[:2] + women[:2]}
    attributes = [a for a in ("dark-skin", "woman") if a in directions.names and rows_of[a]]
    if grid is not None and attributes:
        from core.images import save_grid
        tiles, result["grid"] = [], {"path": str(grid), "strengths": {}, "rows": []}
        for a in attributes:
            s = strength_of(a)
            strengths = [-s, -s / 2, 0.0, s / 2, s]
            picks = torch.tensor(rows_of[a])
            tiles.append(sweep_grid(model, directions, data.images_at(model.resolution, picks), [a], strengths, steps))
            result["grid"]["strengths"][a] = [round(v, 2) for v in strengths]
            result["grid"]["rows"] += [f"{a}: {data.records[i].name}" for i in picks.tolist()]
        save_grid(torch.cat(tiles), Path(grid), columns=1 + len(strengths))
        log(f"wrote the strength sweep {grid}: rows {result['grid']['rows']}; columns the original, then "
            f"the strengths {result['grid']['strengths']}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from core.cascade import ModelSet
    p = argparse.ArgumentParser(prog="python -m core.diffae", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("directions", help="fit and save the attribute directions of a trained checkpoint")
    d.add_argument("--iterations", type=int, default=300)
    ev = sub.add_parser("evaluate", help="reconstruction PSNR and edit success on held-out emoji")
    ev.add_argument("--n", type=int, default=32)
    ev.add_argument("--strength", type=finite, default=None,
                    help="edit strength in class gaps for every attribute (default: 1)")
    ev.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ev.add_argument("--grid", help="also write a strength-sweep image grid (PNG) here")
    for q in (d, ev):
        q.add_argument("--checkpoints", default=None)
        q.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    a = p.parse_args(argv)
    try:
        models = ModelSet(a.checkpoints, a.device)
        if a.command == "directions":
            from core.data.emoji import load_dataset
            dirs = fit_directions(models.get("diffae"), load_dataset(), a.iterations)
            dirs.save(Path(models.root) / "diffae")
            print(f"wrote {len(dirs.names)} directions ({', '.join(dirs.names)}) to {Path(models.root) / 'diffae'}")
        else:
            if a.n < 1:
                raise ValueError(f"--n must be at least 1, got {a.n}")
            strength = None if a.strength is None else _check_strength(a.strength)
            print(json.dumps(evaluate(models, a.n, strength, _check_steps(a.steps), grid=a.grid), indent=2))
    except (ValueError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
